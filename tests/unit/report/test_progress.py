"""The tty renderer's scrolled-up lines (the live view itself is checked under a pty in
tests/e2e/test_progress_tty.py)."""

from __future__ import annotations

import io

import pytest

from forklift.report.progress import StepDone, StepFailed, StepLog, StepStarted, TtyRenderer

LONG = "[builder 2/2] RUN " + "make all " * 20


def _render(monkeypatch: pytest.MonkeyPatch, *events: object) -> list[str]:
    monkeypatch.setenv("COLUMNS", "60")
    out = io.StringIO()
    with TtyRenderer(out) as renderer:
        for event in events:
            renderer(event)  # type: ignore[arg-type]
    return out.getvalue().splitlines()


def test_a_long_step_name_is_cut_so_its_status_stays_on_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _render(monkeypatch, StepStarted(2, LONG, "builder"), StepDone(2, 12.34))
    done = [line for line in lines if line.startswith("#2 ")]
    assert len(done) == 1 and done[0].endswith("…  DONE 12.3s") and len(done[0]) <= 60


def test_a_failed_step_shows_the_error_and_the_tail_of_its_output(monkeypatch: pytest.MonkeyPatch) -> None:
    output = "".join(f"line {i}\n" for i in range(30)) + "no newline"
    cut = output.index("line 25") + 3  # a chunk boundary inside a line the tail shows
    lines = _render(
        monkeypatch,
        StepStarted(3, "[app 1/1] RUN ./configure", "app"),
        StepLog(3, output[:cut]),
        StepLog(3, output[cut:]),
        StepFailed(3, 1.0, "exit code 2\ndetails"),
    )
    assert "#3 [app 1/1] RUN ./configure  ERROR: exit code 2" in lines
    tail = [line for line in lines if line.startswith("#3 line")]
    assert tail == [f"#3 line {i}" for i in range(20, 30)] and lines[-1] == "#3 no newline"
