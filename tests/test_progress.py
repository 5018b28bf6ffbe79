"""Progress of long steps: a bar on a terminal, plain lines with rate and time left elsewhere."""

from __future__ import annotations

import io

import pytest

from neartext.util.progress import LogLines, progress_bar


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_carry_count_rate_and_time_left(monkeypatch):
    out = io.StringIO()
    with LogLines(1000, "embedding", "text", every=0, stream=out) as bar:
        bar.update(250)
        bar.set_postfix(loss="0.5")
        bar.update(750)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("embedding: 250/1,000 texts (25%), ")
    assert " texts/s, " in lines[0] and lines[0].endswith(" left")
    assert lines[-1].startswith("embedding: 1,000/1,000 texts (100%)") and "in all" in lines[-1]
    assert "loss 0.5" in lines[-1]


def test_slow_steps_show_seconds_per_step(monkeypatch):
    import neartext.util.progress as progress

    clock = iter([0.0, 0.0, 25.0, 25.0, 25.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = LogLines(10, "training", "step", every=0, stream=out)
    bar.update(2)
    assert out.getvalue().startswith("training: 2/10 steps (20%), 12.5 s/step, 1 min 40 s left")


def test_quiet_until_the_interval_has_passed(monkeypatch):
    monkeypatch.setenv("NEARTEXT_PROGRESS_SECONDS", "3600")
    out = io.StringIO()
    with progress_bar(10, "mining", "text", enabled=True, stream=out) as bar:
        bar.update(10)
    assert out.getvalue() == ""  # a short step writes nothing to a log


def test_a_terminal_gets_a_bar_and_disabled_gets_nothing():
    tty = Tty()
    with progress_bar(10, "copying", "doc", enabled=True, stream=tty) as bar:
        bar.update(10)
    assert "\r" in tty.getvalue() and "copying" in tty.getvalue()
    off = io.StringIO()
    with progress_bar(10, "copying", "doc", enabled=False, stream=off) as bar:
        bar.update(10)
    assert off.getvalue() == "" and bar.n == 10


def test_the_final_line_is_written_once():
    """Before, a step whose last update had just been shown wrote the same line again on
    close."""
    out = io.StringIO()
    with LogLines(10, "embedding", "text", every=0, stream=out) as bar:
        bar.update(5)
        bar.update(5)  # shown: 10/10
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("embedding: 10/10 texts (100%)")


def test_a_slow_step_is_announced_and_a_quick_or_quiet_one_is_not():
    import time

    from neartext.util.progress import SHOWN, slow_step

    out = io.StringIO()
    token = SHOWN.set(True)
    try:
        with slow_step("loading the model x", after=0.05, stream=out):
            time.sleep(0.3)
        with slow_step("quick", after=0.5, stream=out):
            pass
        time.sleep(0.6)  # (a cancelled announcement never comes)
    finally:
        SHOWN.reset(token)
    with slow_step("quiet", after=0.0, stream=out):
        time.sleep(0.1)
    assert out.getvalue() == "loading the model x ...\n"


@pytest.mark.slow
def test_an_index_into_a_log_says_it_loads_the_model_moves_and_ends_once(tmp_path):
    """A redirected `index` of 599 texts: a 'loading the model' line, progress before the end
    (before, encoded 1,024 at a time, the only lines were at 100%: 0 -> 100%), one final
    line."""
    import os
    import subprocess
    import sys

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"note {i}: the sync of folder {i % 17} stalls at {i} percent"
                                for i in range(599)) + "\n")
    env = {**os.environ, "NEARTEXT_PROGRESS_SECONDS": "0",
           "NEARTEXT_DOCUMENT_ENCODER": "model"}  # (the model's twin loads in no time)
    res = subprocess.run([sys.executable, "-m", "neartext", "index", str(corpus), "-c",
                          str(tmp_path / "col")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0] == "loading the model default ...", lines
    progress = [ln for ln in lines if ln.startswith("embedding: ")]
    assert progress[0].startswith("embedding: 256/599 texts (43%)"), progress
    assert [ln for ln in progress if "599/599" in ln] == [progress[-1]], progress
