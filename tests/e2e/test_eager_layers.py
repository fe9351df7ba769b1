"""Eager layers (a target stage writes each blob in the step's one tar pass) give the same image
as lazy ones (hashed in the step, written from the snapshot when the image is stored)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import forklift.execute.engine as engine
from forklift.build import BuildOptions, build
from forklift.report.progress import PlainRenderer
from support import require_tool

pytestmark = pytest.mark.e2e

DOCKERFILE = (
    "FROM busybox AS builder\nCOPY f.txt /in/f.txt\nRUN cat /in/f.txt /in/f.txt > /artifact\n"
    "FROM busybox\nWORKDIR /srv/app\nCOPY --from=builder /artifact .\nCOPY f.txt sub/dir/\n"
    "RUN echo x > /x\n"
)


def _build(tmp_path: Path, name: str, busybox_image: Callable[[Path], str]) -> tuple[str, set[str]]:
    ctx, store = tmp_path / f"ctx-{name}", tmp_path / f"store-{name}"
    ctx.mkdir()
    (ctx / "f.txt").write_text("same\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    busybox_image(store)
    options = BuildOptions(context=ctx, root=store, source_date_epoch=1700000000)
    result = build(options, events=PlainRenderer(io.StringIO()))
    return result.image.digest, {p.name for p in (store / "blobs" / "sha256").iterdir()}


def test_eager_layers_make_the_same_image_with_blobs_written_at_once(
    tmp_path: Path, busybox_image: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("runc")
    lazy_digest, lazy_blobs = _build(tmp_path, "lazy", busybox_image)

    @dataclass(kw_only=True)
    class EveryStageEager(engine.BuildEnv):
        def __post_init__(self) -> None:
            self.eager_stages = frozenset(range(8))

    monkeypatch.setattr(engine, "BuildEnv", EveryStageEager)  # build() imports it at call time
    eager_digest, eager_blobs = _build(tmp_path, "eager", busybox_image)
    assert eager_digest == lazy_digest  # byte-identical layers, config and manifest
    # The builder stage's two layers exist as blobs now; lazily they are never written.
    assert lazy_blobs < eager_blobs and len(eager_blobs - lazy_blobs) == 2
