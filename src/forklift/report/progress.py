"""Progress events as plain data, and the renderers the CLI picks from (plain, rawjson, tty).

The library emits events through an ``EventSink`` (a callable) and never prints. Events from
concurrent stages interleave; each carries its ``vertex`` number (as BuildKit's ``#N``) and its
stage name so a renderer can keep them readable.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import IO, Any

from forklift.records import record


@record
class StepStarted:
    """A step (or an internal task such as an export) began."""

    vertex: int
    name: str  # "[builder 2/4] RUN make" as BuildKit shows it
    stage: str = ""
    location: str = ""  # "Dockerfile:7"


@record
class StepCached:
    """The step was a cache hit: its result was reused and no work was done."""

    vertex: int


@record
class StepMissed:
    """The step was a cache miss, and why (which file, which argument, which parent changed)."""

    vertex: int
    reason: str


@record
class StepLog:
    """Output of a running step (a RUN's stdout and stderr, or a note of the engine)."""

    vertex: int
    text: str


@record
class StepDone:
    """The step finished (cached or not)."""

    vertex: int
    seconds: float
    cached: bool = False


@record
class StepFailed:
    """The step failed; ``message`` is the rendered error."""

    vertex: int
    seconds: float
    message: str


@record
class BuildFinished:
    """The build succeeded: the image ID of each target and a short summary."""

    image_ids: tuple[str, ...]
    seconds: float
    summary: tuple[str, ...] = ()


Event = StepStarted | StepCached | StepMissed | StepLog | StepDone | StepFailed | BuildFinished
EventSink = Callable[[Event], None]


def discard(event: Event) -> None:
    """An event sink that drops everything (the Python API's default)."""


def event_to_json(event: Event) -> dict[str, Any]:
    """An event as a JSON object with its ``type``."""
    doc = asdict(event)
    doc["type"] = type(event).__name__
    return doc


class PlainRenderer:
    """BuildKit's ``--progress=plain`` style: ``#N`` lines, ``CACHED``, ``DONE 0.3s``; plus miss reasons."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}
        self._partial: dict[int, str] = {}

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._render(event)
            self._stream.flush()

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")

    def _render(self, event: Event) -> None:
        if isinstance(event, StepStarted):
            self._started[event.vertex] = time.monotonic()
            self._write(f"#{event.vertex} {event.name}")
        elif isinstance(event, StepCached):
            self._write(f"#{event.vertex} CACHED")
        elif isinstance(event, StepMissed):
            self._write(f"#{event.vertex} cache miss: {event.reason}")
        elif isinstance(event, StepLog):
            elapsed = time.monotonic() - self._started.get(event.vertex, time.monotonic())
            text = self._partial.pop(event.vertex, "") + event.text
            lines = text.split("\n")
            if lines[-1]:
                self._partial[event.vertex] = lines[-1]
            for line in lines[:-1]:
                self._write(f"#{event.vertex} {elapsed:.3f} {line.rstrip(chr(13))}")
        elif isinstance(event, StepDone):
            self._flush_partial(event.vertex)
            if not event.cached:
                self._write(f"#{event.vertex} DONE {event.seconds:.1f}s")
        elif isinstance(event, StepFailed):
            self._flush_partial(event.vertex)
            first = event.message.splitlines()[0] if event.message else "failed"
            self._write(f"#{event.vertex} ERROR: {first}")
        elif isinstance(event, BuildFinished):
            for line in event.summary:
                self._write(line)

    def _flush_partial(self, vertex: int) -> None:
        rest = self._partial.pop(vertex, "")
        if rest:
            self._write(f"#{vertex} {rest}")


class RawJsonRenderer:
    """One JSON object per event and line (``--progress=rawjson``)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._stream.write(json.dumps(event_to_json(event), sort_keys=True) + "\n")
            self._stream.flush()


_FAILED_TAIL = 10  # output lines of a failed step the tty view prints (the live view showed only one)


class TtyRenderer:
    """A live view (rich): the running steps with their last output line; finished steps scroll above.

    Use as a context manager around the build so the live display is torn down cleanly.
    """

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console

        self._console = Console(file=stream, highlight=False)
        self._lock = threading.Lock()
        self._names: dict[int, str] = {}
        self._last: dict[int, str] = {}
        self._tails: dict[int, list[str]] = {}  # a running step's last output lines, shown if it fails
        self._partial: dict[int, str] = {}  # a running step's unfinished output line
        self._started: dict[int, float] = {}
        self._live: Any = None

    def __enter__(self) -> TtyRenderer:
        from rich.live import Live

        self._live = Live(
            console=self._console, refresh_per_second=8, transient=True, get_renderable=self._view
        )
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def _view(self) -> Any:
        from rich.text import Text

        now = time.monotonic()
        view = Text(no_wrap=True, overflow="ellipsis")
        with self._lock:
            for v in sorted(self._names):
                # Each running step: its name (cut so the timer stays on screen), elapsed time, and
                # below it the latest line of its output; lines are cut, never wrapped.
                elapsed = f"{now - self._started[v]:.1f}s"
                prefix = f"[+] #{v} "
                name = self._fit(self._names[v], len(prefix) + len(elapsed) + 2)
                view.append(f"{prefix}{name}  {elapsed}\n", style="cyan")
                last = self._last.get(v)
                if last:
                    view.append(f"    {last}\n", style="dim")
        view.rstrip()
        return view

    def _fit(self, name: str, reserved: int) -> str:
        """``name`` cut (with an ellipsis) so that a step line with ``reserved`` more columns (the
        ``#N `` prefix and the status) fits the terminal: a long RUN never wraps its DONE away."""
        room = max(self._console.width - reserved, 20)
        return name if len(name) <= room else name[: room - 1] + "…"

    def __call__(self, event: Event) -> None:
        from rich.markup import escape

        out: str | None = None
        with self._lock:
            if isinstance(event, StepStarted):
                self._names[event.vertex] = event.name
                self._started[event.vertex] = time.monotonic()
            elif isinstance(event, StepMissed):
                name = self._names.get(event.vertex, "")
                self._last[event.vertex] = f"(miss: {event.reason})"
                shown = escape(self._fit(name, 16))
                out = f"[dim]#{event.vertex} {shown}: cache miss: {escape(event.reason)}[/dim]"
            elif isinstance(event, StepLog):
                # Output arrives in chunks that may end mid-line: the unfinished line waits.
                text = self._partial.pop(event.vertex, "") + event.text
                *complete, rest = text.replace("\r\n", "\n").split("\n")
                if rest:
                    self._partial[event.vertex] = rest
                tail = [line.rstrip() for line in complete if line.strip()]
                if tail:
                    self._tails[event.vertex] = (self._tails.get(event.vertex, []) + tail)[-_FAILED_TAIL:]
                shown = (rest or (tail[-1] if tail else "")).split("\r")[-1].strip()
                if shown:
                    self._last[event.vertex] = shown
            elif isinstance(event, StepDone):
                name = self._names.pop(event.vertex, "")
                self._last.pop(event.vertex, None)
                self._tails.pop(event.vertex, None)
                self._partial.pop(event.vertex, None)
                status = (
                    "[blue]CACHED[/blue]" if event.cached else f"[green]DONE {event.seconds:.1f}s[/green]"
                )
                out = f"#{event.vertex} {escape(self._fit(name, 16))}  {status}"
            elif isinstance(event, StepFailed):
                name = self._names.pop(event.vertex, "")
                self._last.pop(event.vertex, None)
                first = event.message.splitlines()[0] if event.message else "failed"
                shown = escape(self._fit(name, 12 + len(first)))
                out = f"[red]#{event.vertex} {shown}  ERROR: {escape(first)}[/red]"
                rest = self._partial.pop(event.vertex, "").strip()
                for line in self._tails.pop(event.vertex, []) + ([rest] if rest else []):
                    out += f"\n[dim]#{event.vertex} {escape(line)}[/dim]"
            elif isinstance(event, BuildFinished):
                out = escape("\n".join(event.summary)) if event.summary else None
        if out is not None:
            if self._live is not None:
                # Printing redraws the live view as last rendered; refresh it first so a step that
                # just finished is not drawn again as running below its DONE line.
                self._live.refresh()
            self._console.print(out, markup=True, highlight=False)
