"""Running a build from the command line, without click: shared by ``forklift build`` and the fast path.

``pairs`` also parses ``--build-arg`` for ``forklift graph`` and ``forklift check``.

``forklift build``'s click command parses every flag; the fast path (``cli/entry.py``) parses the
common ones of a cached rebuild without importing click (~60 ms of a 0.1 s rebuild). Both end here,
so a build prints the same either way.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from forklift.errors import ForkliftError

if TYPE_CHECKING:
    from forklift.build import BuildOptions

PROGRESS_MODES = ("auto", "tty", "plain", "rawjson", "quiet")


def pairs(values: tuple[str, ...], flag: str, *, from_env: bool) -> dict[str, str]:
    """``K=V`` pairs; with ``from_env`` a bare ``K`` takes its value from the environment (as docker)."""
    out: dict[str, str] = {}
    for item in values:
        key, has_value, value = item.partition("=")
        if not key:
            raise ForkliftError(f"{flag} {item!r}: the name is empty", hint=f"write {flag} NAME=VALUE")
        if has_value:
            out[key] = value
        elif from_env:
            if key in os.environ:
                out[key] = os.environ[key]
        else:
            out[key] = ""
    return out


def source_date_epoch(build_args: dict[str, str]) -> int | None:
    """SOURCE_DATE_EPOCH from ``--build-arg`` or the environment (as buildx takes it)."""
    text = build_args.get("SOURCE_DATE_EPOCH") or os.environ.get("SOURCE_DATE_EPOCH")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ForkliftError(f"SOURCE_DATE_EPOCH={text!r} is not a number of seconds") from None


def run_build(options: BuildOptions, *, quiet: bool, progress: str) -> None:
    """Build with the chosen progress display on stderr; with ``quiet``, print the image IDs."""
    from forklift.build import build

    mode = "quiet" if quiet else progress
    if mode == "auto":
        mode = "tty" if sys.stderr.isatty() else "plain"
    if mode == "quiet":
        from forklift.report.progress import discard

        result = build(options, events=discard)
    elif mode == "rawjson":
        from forklift.report.progress import RawJsonRenderer

        result = build(options, events=RawJsonRenderer(sys.stderr))
    elif mode == "tty":
        from forklift.report.progress import TtyRenderer

        with TtyRenderer(sys.stderr) as renderer:
            result = build(options, events=renderer)
    else:
        from forklift.report.progress import PlainRenderer

        result = build(options, events=PlainRenderer(sys.stderr))
    if quiet:
        for image in result.images:
            print(image.image_id)
