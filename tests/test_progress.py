"""Progress of long steps: a bar on a terminal, plain lines with rate and time left elsewhere."""

from __future__ import annotations

import io

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
