# Two entry points (see README): `make demo` and `make test`. Both create .venv/ if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast bench bench-mining bench-training lint clean

setup: $(STAMP)

# torch is installed first and pinned: pip takes the CPU build (other versions or uv pull CUDA).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# The main job on the bundled demo: build (or re-index) the collection, then search it.
demo: setup
	$(BIN)/neartext index demo/feedback.csv -c demo/feedback --text text --id id
	$(BIN)/neartext info demo/feedback
	$(BIN)/neartext search demo/feedback "the app crashes when I open it" -k 5
	$(BIN)/neartext search demo/feedback "I was billed two times" -k 3 --where "year>=2023"
	$(BIN)/neartext search demo/feedback "cannot sign in" -k 3 --contains password

# Full suite (slow tests included, as in CI).
test: setup
	$(BIN)/python -m pytest --runslow

# Default local suite: slow tests skipped.
test-fast: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/bench_core.py

# Needs ../shared/datasets; embeds 250k texts once (~12 min, cached in bench/.cache).
bench-mining: setup
	$(BIN)/python bench/bench_mining.py

# Needs ../shared/datasets; fine-tunes four times on this CPU (~25 min with 2 cores).
bench-training: setup
	$(BIN)/python bench/bench_training.py

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) demo/feedback build dist src/*.egg-info
