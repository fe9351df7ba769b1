"""``forklift build --progress=tty`` under a real pseudo-terminal: what the live view renders.

The build runs as a user runs it (the installed command) with its stdio on a pty (TERM=xterm, a
fixed 100-column window); everything written to the terminal is read back and checked, escape
sequences and all: stage names, timings, CACHED markers, the tail of a running RUN's output and the
final image ID line. ``--progress=auto`` must pick that view on a terminal and plain logs on a pipe.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from forklift.oci.image import image_id, load_image
from forklift.oci.store import Store

pytestmark = pytest.mark.e2e
FORKLIFT = Path(sys.executable).with_name("forklift")
COLUMNS, ROWS = 100, 30
# The RUN prints a marker and keeps running long enough for the live view (8 refreshes a second) to
# show it as the step's latest output line.
DOCKERFILE = """\
FROM busybox AS builder
RUN echo built > /out && echo first-line && sleep 0.3 && echo tail-marker-42 && sleep 1.5
FROM busybox AS final
COPY --from=builder /out /out
RUN cat /out > /copy
"""
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_pty(args: list[str], *, timeout: float = 120) -> tuple[int, str]:
    """Run ``args`` with stdin, stdout and stderr on a new pty; (exit status, everything it wrote)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = {**os.environ, "TERM": "xterm", "COLUMNS": str(COLUMNS), "LINES": str(ROWS)}
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM_PROGRAM", "CI"):
        env.pop(name, None)  # rich reads these; the test wants what a plain xterm user sees
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child side is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        proc.wait()
    return proc.returncode, b"".join(chunks).decode("utf-8", errors="replace")


def screen_lines(raw: str) -> list[str]:
    """The rendered text as lines, escape sequences and carriage returns removed."""
    text = CSI.sub("", raw).replace("\r\n", "\n")
    return [part for line in text.split("\n") for part in line.split("\r") if part.strip()]


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, busybox_image: Callable[[Path], str], oci_runtime: object
) -> tuple[Path, Path]:
    """(store with busybox, build context with the two-stage Dockerfile)."""
    base = tmp_path_factory.mktemp("progress-tty")
    store, ctx = base / "store", base / "ctx"
    busybox_image(store)
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return store, ctx


def build_args(project: tuple[Path, Path], *extra: str) -> list[str]:
    store, ctx = project
    return [str(FORKLIFT), "--root", str(store), "build", "-t", "demo", *extra, str(ctx)]


def final_image_id(store: Path) -> str:
    return str(image_id(load_image(Store(store), "docker.io/library/demo:latest")))


def step_line(lines: list[str], name: str) -> str:
    """The (last) scrolled-up line of the finished step ``name`` (not a live-view line)."""
    found = [
        line for line in lines if name in line and not line.startswith("[+]") and "cache miss" not in line
    ]
    assert found, f"no line for {name!r} in:\n" + "\n".join(lines)
    return found[-1]


def test_tty_view_of_a_cold_then_a_cached_build(project: tuple[Path, Path]) -> None:
    status, raw = run_on_pty(build_args(project, "--progress=tty"))
    lines = screen_lines(raw)
    assert status == 0, raw
    assert "\x1b[?25l" in raw and "\x1b[?25h" in raw  # a live display: cursor hidden, then restored
    # Each stage's steps, with their stage names, in BuildKit's [stage n/m] form; timings on work done.
    for name in ("[builder 1/2] FROM busybox", "[final 1/3] FROM busybox"):
        assert step_line(lines, name).endswith("CACHED")  # the base is already in the store
    for name in (
        "[builder 2/2] RUN echo built",
        "[final 2/3] COPY --from=builder /out /out",
        "[final 3/3] RUN cat /out",
    ):
        assert re.search(r"  DONE \d+\.\ds$", step_line(lines, name)), step_line(lines, name)
    run_done = float(step_line(lines, "[builder 2/2] RUN").rsplit(" ", 1)[1].rstrip("s"))
    assert run_done >= 1.5  # the RUN's own duration (it sleeps 1.8s), not a constant
    # The live view: the running step with its elapsed time, the tail of its output below it.
    live = re.compile(r"\[\+\] #\d+ \[builder 2/2\] RUN echo built .*  \d+\.\ds")
    assert any(
        live.fullmatch(line.rstrip()) and after.strip() == "tail-marker-42"
        for line, after in itertools.pairwise(lines)
    ), "\n".join(lines)
    assert all(len(line) <= COLUMNS for line in lines if line.startswith("[+]"))  # cut, never wrapped
    # A finished step is never drawn as running again after its DONE line.
    done = next(m for m in re.finditer(r"#\d+ \[builder 2/2\] RUN [^\n]*DONE", CSI.sub("", raw)))
    assert "[builder 2/2] RUN" not in CSI.sub("", raw)[done.end() :]
    # The final image ID line.
    image = final_image_id(project[0])
    assert f"image final: {image} (demo)" in lines

    status, raw = run_on_pty(build_args(project, "--progress=tty"))
    lines = screen_lines(raw)
    assert status == 0, raw
    for name in (
        "[builder 2/2] RUN echo built",
        "[final 2/3] COPY --from=builder",
        "[final 3/3] RUN cat /out",
    ):
        assert step_line(lines, name).endswith("  CACHED"), step_line(lines, name)
    assert "tail-marker-42" not in raw  # cached: the RUN did not run again
    assert f"image final: {image} (demo)" in lines


def test_auto_is_tty_on_a_terminal_and_plain_on_a_pipe(project: tuple[Path, Path]) -> None:
    status, raw = run_on_pty(build_args(project, "--progress=auto"))
    assert status == 0, raw
    assert "\x1b[" in raw
    assert step_line(screen_lines(raw), "[final 3/3] RUN cat /out").endswith("  CACHED")

    piped = subprocess.run(build_args(project, "--progress=auto"), capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr
    assert "\x1b" not in piped.stderr
    lines = piped.stderr.splitlines()
    # BuildKit's plain form: a "#N name" line, then "#N CACHED" on a line of its own.
    index = next(
        i for i, line in enumerate(lines) if re.fullmatch(r"#\d+ \[final 3/3\] RUN cat /out > /copy", line)
    )
    vertex = lines[index].split()[0]
    assert f"{vertex} CACHED" in lines[index:]
    assert f"image final: {final_image_id(project[0])} (demo)" in lines
