"""COPY --from hard-links a builder's file into the new snapshot when the copy would be identical,
and the image is byte-for-byte what copying gives. RUN's overlay is mounted volatile."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from forklift.build import BuildOptions, build
from forklift.execute.ops import copy as copy_op
from forklift.report.progress import PlainRenderer
from support import require_tool

pytestmark = pytest.mark.e2e

DOCKERFILE = """\
FROM busybox AS builder
RUN head -c 30000 /dev/urandom > /artifact && chmod 750 /artifact \\
 && grep ' / / ' /proc/self/mountinfo > /rootmount
FROM busybox
COPY --from=builder /artifact /linked
COPY --from=builder --chmod=644 /artifact /copied
COPY --from=builder /rootmount /rootmount
"""


def _build(ctx: Path, store: Path, busybox_image: Callable[[Path], str]) -> str:
    busybox_image(store)
    options = BuildOptions(context=ctx, root=store, source_date_epoch=1700000000)
    return build(options, events=PlainRenderer(io.StringIO())).image.digest


def _snapshot_files(store: Path, name: str) -> list[Path]:
    return [p for p in (store / "snapshots").glob(f"sha256-*/{name}") if p.is_file()]


def test_copy_from_links_identical_files_and_gives_the_same_image(
    tmp_path: Path, busybox_image: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("runc")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    linked_store = tmp_path / "linked"
    linked_digest = _build(ctx, linked_store, busybox_image)

    (artifact,) = _snapshot_files(linked_store, "artifact")
    (linked,) = _snapshot_files(linked_store, "linked")
    (copied,) = _snapshot_files(linked_store, "copied")
    assert os.stat(linked).st_ino == os.stat(artifact).st_ino  # same owner, mode, mtime: one inode
    assert os.stat(copied).st_ino != os.stat(artifact).st_ino  # --chmod changes the mode: a copy
    assert (
        oct(os.stat(copied).st_mode & 0o777) == "0o644" and oct(os.stat(artifact).st_mode & 0o777) == "0o750"
    )
    assert linked.read_bytes() == copied.read_bytes() == artifact.read_bytes()
    # RUN's overlay skips syncs: the container sees the volatile option on its root mount.
    rootmount = _snapshot_files(linked_store, "rootmount")[0]  # the builder's and its link
    assert "volatile" in rootmount.read_text()

    # The same build with every file copied: the same image, to the byte. (The random artifact
    # differs per build, so the builder stage is shared through a copy of the first store.)
    monkeypatch.setattr(copy_op._SnapshotOriginals, "linkable", lambda self, p, owner, chmod: None)
    copied_store = tmp_path / "copied"
    shutil.copytree(linked_store, copied_store, symlinks=True)
    options = BuildOptions(
        context=ctx, root=copied_store, source_date_epoch=1700000000, no_cache_filter=("stage-1",)
    )
    copied_digest = build(options, events=PlainRenderer(io.StringIO())).image.digest
    assert copied_digest == linked_digest
    (again,) = [p for p in _snapshot_files(copied_store, "linked") if os.stat(p).st_nlink == 1]
    assert again.read_bytes() == artifact.read_bytes()
