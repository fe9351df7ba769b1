"""COPY of several sources onto one destination: later entries replace earlier ones, dirs merge."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from forklift.build import BuildOptions, OutputSpec, build
from forklift.report.progress import PlainRenderer
from support import require_tool

pytestmark = pytest.mark.e2e


def test_overlapping_sources_replace_files_and_symlinks_and_merge_dirs(
    tmp_path: Path, store_root: Path, busybox_image: Callable[[Path], str]
) -> None:
    require_tool("runc")
    busybox_image(store_root)
    ctx = tmp_path / "ctx"
    for side, n in (("one", "1"), ("two", "2")):
        (ctx / side / "sub" / "deep").mkdir(parents=True)
        (ctx / side / "f.txt").write_text(n)
        (ctx / side / "sub" / "deep" / f"only-{side}").write_text(n)
    os.symlink("f.txt", ctx / "one" / "link")
    (ctx / "two" / "link").write_text("a file now")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY one/ two/ /dest/\nCOPY one/f.txt /dest/sub/deep/f\n")
    out = tmp_path / "rootfs"
    options = BuildOptions(context=ctx, root=store_root, outputs=(OutputSpec(type="local", dest=out),))
    build(options, events=PlainRenderer(io.StringIO()))
    dest = out / "dest"
    assert (dest / "f.txt").read_text() == "2"
    assert not (dest / "link").is_symlink() and (dest / "link").read_text() == "a file now"
    assert sorted(os.listdir(dest / "sub" / "deep")) == ["f", "only-one", "only-two"]
    assert (dest / "sub" / "deep" / "f").read_text() == "1"


def test_copy_onto_a_multi_layer_image_sees_symlinks_whiteouts_and_dir_modes(
    tmp_path: Path, store_root: Path, busybox_image: Callable[[Path], str]
) -> None:
    require_tool("runc")
    busybox_image(store_root)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("f")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN mkdir -p /opt/real /gone/old && ln -s /opt/real /opt/link && chmod 700 /opt/real\n"
        "RUN rm -rf /gone\n"
        "COPY f.txt /opt/link/\n"  # a symlink on the way: followed inside the image
        "COPY f.txt /gone/\n"  # deleted by a lower layer: made again, nothing of the old one shows
        "COPY f.txt /opt/real/sub/g.txt\n"  # an existing dir keeps its mode
    )
    out = tmp_path / "rootfs"
    options = BuildOptions(context=ctx, root=store_root, outputs=(OutputSpec(type="local", dest=out),))
    build(options, events=PlainRenderer(io.StringIO()))
    assert (out / "opt/link").is_symlink() and (out / "opt/real/f.txt").read_text() == "f"
    assert sorted(os.listdir(out / "gone")) == ["f.txt"]
    assert stat.S_IMODE(os.lstat(out / "opt/real").st_mode) == 0o700
    assert (out / "opt/real/sub/g.txt").read_text() == "f"
