# Two entry points (see README): `make demo` and `make test`. Both create .venv/ if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup layers system-packages browser milvus-engine demo test test-fast bench bench-mining bench-training bench-serve bench-multilingual bench-clusters bench-cluster-defaults bench-startup bench-milvus bench-versions bench-ann bench-adapters bench-feedback-loop bench-ray bench-ranker bench-rank-latency bench-tune-cli bench-tune-choice bench-peers bench-build bench-scale bench-cold-search bench-twin lint clean

setup: $(STAMP)

# torch is installed first and pinned: pip takes the CPU build (other versions or uv pull CUDA).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# Debian's chromium + chromium-driver for the web UI test (a real headless browser), and strace
# for the tests that kill a swap at every rename and fsync. Installed when missing and possible
# (root or sudo); without them those tests skip, except in CI.
system-packages:
	@if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/strace ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ]; then echo "note: no root: install chromium, chromium-driver and strace for the UI and swap tests"; \
	  else $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver strace >/dev/null; fi; \
	fi
browser: system-packages

# Milvus' C++ engine (the milvus binary that milvus-lite 2.5 bundles) in its own venv, for the
# Milvus tests: tests/test_milvus.py starts it as a server on a free port. Milvus Lite 3 (in
# .venv) is a Python rewrite; this is the engine Milvus servers run. setuptools<70: pkg_resources.
MILVUS_ENGINE := .venv-milvus
$(MILVUS_ENGINE)/.installed:
	$(PYTHON) -m venv $(MILVUS_ENGINE)
	$(MILVUS_ENGINE)/bin/pip install --quiet 'milvus-lite==2.5.1' 'pymilvus==2.5.14' 'setuptools<70'
	touch $@
milvus-engine: $(MILVUS_ENGINE)/.installed

# The main job on the bundled demo: build (or re-index) the collection, show a search, then
# serve it with the web UI at http://127.0.0.1:8000 (Ctrl-C stops).
demo: setup
	$(BIN)/neartext index demo/feedback.csv -c demo/feedback --text text --id id
	$(BIN)/neartext search demo/feedback "the app crashes when I open it" -k 3
	$(BIN)/neartext serve demo/feedback --port $${PORT:-8000}

# The layers contract and the light-imports contract in pyproject.toml ([tool.importlinter]);
# docs/architecture.md draws them.
layers: setup
	$(BIN)/lint-imports

# One pytest-xdist worker per core, each given its share of the cores (tests/conftest.py);
# the files that share a process-wide resource (Ray, the Milvus engine) are marked to keep to one
# worker (xdist_group). A worker that dies ends the session with its test named (restarting it
# left the rest of its group unscheduled: a hang). PARALLEL= runs the suite in one process.
PARALLEL ?= -n auto --dist loadgroup --max-worker-restart=0

# Full suite (slow tests included, as in CI), after the import contracts.
test: setup layers system-packages milvus-engine
	$(BIN)/python -m pytest --runslow $(PARALLEL)

# Default local suite: slow tests skipped.
test-fast: setup system-packages milvus-engine
	$(BIN)/python -m pytest $(PARALLEL)

bench: setup
	$(BIN)/python bench/bench_core.py

# Needs ../shared/datasets; embeds 250k texts once (~12 min, cached in bench/.cache).
bench-mining: setup
	$(BIN)/python bench/bench_mining.py

# Needs ../shared/datasets; fine-tunes four times on this CPU (~25 min with 2 cores).
bench-training: setup
	$(BIN)/python bench/bench_training.py

lint: setup layers
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) $(MILVUS_ENGINE) demo/feedback build dist src/*.egg-info

# A cold `neartext search` (a new process) with the ONNX query encoder vs the model, ~1 min.
bench-cold-search: setup
	$(BIN)/python bench/bench_cold_search.py

bench-twin: setup
	$(BIN)/python bench/bench_twin.py

bench-serve: setup
	$(BIN)/python bench/bench_serve.py

# Needs ../shared/datasets: STS-B en/ru, ParaPhraser, cross-lingual, Cranfield/Quora hybrid, USE speed.
bench-multilingual: setup
	$(BIN)/python bench/bench_multilingual.py

# Needs bench-mining's cached embeddings: clustering and map time/memory at 10k/100k, ARI on Quora.
bench-clusters: setup
	$(BIN)/python bench/bench_clusters.py

# A new service or bot: seconds to ready, first search, first document (model vs ONNX export).
bench-startup: setup
	$(BIN)/python bench/bench_startup.py

# What `cluster` gives without options: the old default against the new one (demo, Quora 2k/20k).
bench-cluster-defaults: setup
	$(BIN)/python bench/bench_cluster_defaults.py

# 100k documents on the local store vs Milvus Lite (embedded and as a gRPC server); ~15 min.
bench-milvus: setup
	$(BIN)/python bench/bench_milvus.py

# This code against an earlier neartext, side by side: BASELINE=its src directory (e.g. of
# `git worktree add /tmp/base COMMIT`), BASELINE_NAME=what to call it; ~6 min with 4 rounds.
bench-versions: setup
	$(BIN)/python bench/bench_versions.py --baseline $(BASELINE) --name $(or $(BASELINE_NAME),baseline) --rounds 4

# Exact index, HNSW, IVF and float16/int8 vectors on 20k real vectors (embeds them once: ~1 min).
bench-ann: setup
	$(BIN)/python bench/bench_ann.py

# Query adapters vs none vs full fine-tuning, Russian and English (~12 min, the fine-tune most).
bench-adapters: setup
	$(BIN)/python bench/bench_adapters.py

bench-ray: setup
	$(BIN)/python bench/bench_ray.py

bench-feedback-loop: setup
	$(BIN)/python bench/bench_feedback_loop.py --model all-MiniLM-L6-v2
	$(BIN)/python bench/bench_feedback_loop.py --model use-multilingual

# The learned fusion's features and fit, Cranfield (title + body) and Quora, 5 folds (~3 min).
bench-ranker: setup
	$(BIN)/python bench/bench_ranker.py

# What a learned ranking adds to one search (with and without remembering) against blend, Quora
# 20k, three rounds in one process (~2 min, the collection built first).
bench-rank-latency: setup
	$(BIN)/python bench/bench_rank_latency.py

# The memes user's loop through the CLI on a Russian set of her shape: index, eval, tune on 2,000
# pairs (timed), eval on 1,000 held-out queries (~2 min).
bench-tune-cli: setup
	$(BIN)/python bench/bench_tune_cli.py

# How tune chooses among the rankings it measured, against how it chose before, from the same
# tune runs on 5 folds of seven sets; and the issue's targets on what tune chose (~25 min).
bench-tune-choice: setup
	$(BIN)/python bench/bench_tune_choice.py

# neartext against qdrant-client (local), LanceDB, txtai and Chroma on the same given vectors, each in its
# own environment under bench/.peers (torch pinned first for txtai: the CPU build).
PEERS := bench/.peers
$(PEERS)/%/.installed:
	$(PYTHON) -m venv $(PEERS)/$*
	$(PEERS)/$*/bin/pip install --quiet $(PEER_PACKAGES_$*)
	touch $@
PEER_PACKAGES_qdrant  := qdrant-client numpy
PEER_PACKAGES_lancedb := lancedb numpy pyarrow
PEER_PACKAGES_txtai   := torch==2.13.0 txtai faiss-cpu
PEER_PACKAGES_chroma  := chromadb numpy
# A million given vectors on one machine (build, memory, open, p50, recall): bench/results/scale-*.
bench-scale: setup
	$(BIN)/python bench/bench_scale.py --n $${N:-1000000}

bench-build: setup $(PEERS)/txtai/.installed
	$(BIN)/python bench/bench_build.py

bench-peers: setup $(PEERS)/qdrant/.installed $(PEERS)/lancedb/.installed $(PEERS)/txtai/.installed \
		$(PEERS)/chroma/.installed
	$(BIN)/python bench/bench_peers.py
