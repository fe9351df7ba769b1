"""COPY --from sources are read ahead on a worker while the stage's earlier steps run; a cached
rebuild reads nothing, and a missing source is still reported by its own step."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from forklift.build import BuildOptions, build
from forklift.errors import BuildError
from forklift.execute.ops import copy as copy_op
from forklift.report.progress import PlainRenderer
from support import require_tool

pytestmark = pytest.mark.e2e

DOCKERFILE = """\
FROM busybox AS one
RUN echo one > /one
FROM busybox AS two
RUN echo two > /two
FROM busybox
RUN echo first step
COPY --from=one /one /got/one
COPY --from=two /two /got/two
"""


def _gathers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(thread name, source) of every gather call from now on."""
    calls: list[tuple[str, str]] = []
    real = copy_op.gather

    def recording(tree, op, sources):  # type: ignore[no-untyped-def]
        calls.append((threading.current_thread().name, ",".join(sources)))
        return real(tree, op, sources)

    monkeypatch.setattr(copy_op, "gather", recording)
    return calls


def test_sources_read_ahead_then_remembered(
    tmp_path: Path, busybox_image: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("runc")
    ctx, store = tmp_path / "ctx", tmp_path / "store"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    busybox_image(store)
    calls = _gathers(monkeypatch)
    out = io.StringIO()
    build(BuildOptions(context=ctx, root=store, no_cache=True), events=PlainRenderer(out))
    assert sorted(calls) == [("forklift-readahead_0", "/one"), ("forklift-readahead_0", "/two")], (
        out.getvalue()
    )
    # Same builders, the COPY steps cache hits (only a LABEL added after them): their digests are
    # remembered, so nothing is mounted or hashed, neither ahead nor in the step.
    build(BuildOptions(context=ctx, root=store), events=PlainRenderer(io.StringIO()))
    calls.clear()
    (ctx / "Dockerfile").write_text(DOCKERFILE + "LABEL changed=yes\n")
    build(BuildOptions(context=ctx, root=store), events=PlainRenderer(io.StringIO()))
    assert calls == []


def test_a_missing_source_fails_at_its_step(tmp_path: Path, busybox_image: Callable[[Path], str]) -> None:
    require_tool("runc")
    ctx, store = tmp_path / "ctx", tmp_path / "store"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.replace("/two /got/two", "/nothing /got/two"))
    busybox_image(store)
    with pytest.raises(BuildError) as caught:
        build(BuildOptions(context=ctx, root=store), events=PlainRenderer(io.StringIO()))
    assert "nothing" in caught.value.message and caught.value.location is not None
    assert caught.value.location.line == 8
    assert not list((store / "snapshots").glob(".view-*"))  # the read-ahead's mounts are gone
