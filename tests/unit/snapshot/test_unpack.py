"""apply_layer: whiteouts, replacements, both modes, and tars written by other tools."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from snapshot_trees import IS_ROOT, describe, entry, needs_root, tar_bytes

from forklift.errors import ImageError
from forklift.snapshot.diff import DirectorySource, OverlayUpperSource, write_layer
from forklift.snapshot.unpack import AppliedLayer, ApplyOptions, apply_layer, unpack_layer_for_overlay

D = tarfile.DIRTYPE
SYM = tarfile.SYMTYPE
LNK = tarfile.LNKTYPE


def apply(data: bytes, root: Path, **opts: object) -> AppliedLayer:
    return apply_layer(io.BytesIO(data), root, options=ApplyOptions(**opts))  # type: ignore[arg-type]


def lower(root: Path) -> Path:
    """A lower tree: etc/{passwd,hosts}, var/{log/x,cache}, bin/sh."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("lower passwd")
    (root / "etc" / "hosts").write_text("lower hosts")
    (root / "var" / "log").mkdir(parents=True)
    (root / "var" / "log" / "x").write_text("log")
    (root / "var" / "cache").mkdir()
    (root / "bin").mkdir()
    (root / "bin" / "sh").write_text("sh")
    return root


def test_merge_applies_whiteouts_to_lower_content_only(tmp_path: Path) -> None:
    root = lower(tmp_path / "root")
    layer = tar_bytes(
        entry("etc", D),
        entry("etc/.wh.passwd"),
        entry("etc/new", data=b"new"),
        entry("etc/.wh.new"),  # same layer: must not hide etc/new
        entry("var", D),
        entry("var/.wh..wh..opq"),
        entry("var/fresh", data=b"fresh"),
        entry(".wh.bin"),
    )
    result = apply(layer, root)
    assert not (root / "etc" / "passwd").exists()
    assert (root / "etc" / "hosts").read_text() == "lower hosts"
    assert (root / "etc" / "new").read_text() == "new"
    assert sorted(p.name for p in (root / "var").iterdir()) == ["fresh"]
    assert not (root / "bin").exists()
    assert result.whiteouts == 4


def test_opaque_marker_after_children_still_keeps_this_layers_entries(tmp_path: Path) -> None:
    root = lower(tmp_path / "root")
    layer = tar_bytes(
        entry("var", D),
        entry("var/log", D),
        entry("var/log/new", data=b"n"),
        entry("var/.wh..wh..opq"),
    )
    apply(layer, root)
    assert sorted(str(p.relative_to(root)) for p in (root / "var").rglob("*")) == ["var/log", "var/log/new"]


def test_replacements_between_kinds(tmp_path: Path) -> None:
    root = lower(tmp_path / "root")
    (root / "link").symlink_to("etc")
    layer = tar_bytes(
        entry("etc/passwd", D),  # a file becomes a directory
        entry("var/log", data=b"now a file"),  # a directory becomes a file
        entry("link", D),  # a symlink to a directory becomes a real directory
        entry("bin/sh", SYM, linkname="busybox"),  # a file becomes a symlink
    )
    apply(layer, root)
    assert (root / "etc" / "passwd").is_dir()
    assert (root / "var" / "log").read_text() == "now a file"
    assert (root / "link").is_dir() and not (root / "link").is_symlink()
    assert (root / "etc" / "hosts").exists()  # the symlink's target was not emptied
    assert os.readlink(root / "bin" / "sh") == "busybox"


def test_implicit_parents_and_mtimes_and_modes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    layer = tar_bytes(
        entry("deep/er/file", data=b"x", mode=0o600, mtime=1_234_567_890),
        entry("ro", D, mode=0o555, mtime=1_111_111_111),
        entry("ro/child", data=b"c", mtime=1_222_222_222),
    )
    apply(layer, root)
    assert (root / "deep" / "er").is_dir()
    st = os.stat(root / "deep" / "er" / "file")
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_mtime == 1_234_567_890
    ro = os.stat(root / "ro")
    assert stat.S_IMODE(ro.st_mode) == 0o555 and ro.st_mtime == 1_111_111_111  # set after its child


def test_root_entry_sets_root_metadata(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(tar_bytes(entry("./", D, mode=0o750, mtime=1_000_000_000), entry("./f", data=b"f")), root)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o750
    assert os.stat(root).st_mtime == 1_000_000_000
    assert (root / "f").read_bytes() == b"f"


@needs_root
def test_owners_devices_and_xattrs_as_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    layer = tar_bytes(
        entry("f", data=b"x", uid=1000, gid=2000, mode=0o4755, pax_headers={"SCHILY.xattr.user.k": "v"}),
        entry("l", SYM, linkname="f", uid=7, gid=8),
        entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        entry("dev/loop", tarfile.BLKTYPE, devmajor=7, devminor=0),
        entry("p", tarfile.FIFOTYPE),
    )
    result = apply(layer, root)
    st = os.stat(root / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 2000, 0o4755)
    assert os.getxattr(root / "f", "user.k") == b"v"
    assert os.lstat(root / "l").st_uid == 7
    null = os.lstat(root / "dev" / "null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(os.lstat(root / "dev" / "loop").st_mode)
    assert stat.S_ISFIFO(os.lstat(root / "p").st_mode)
    assert result.devices == 2
    skipped = apply(
        tar_bytes(entry("dev/zero", tarfile.CHRTYPE, devmajor=1, devminor=5)), root, devices="skip"
    )
    assert not (root / "dev" / "zero").exists() and skipped.skipped == 1


@needs_root
def test_overlay_mode_writes_overlay_whiteouts(tmp_path: Path) -> None:
    layer = tar_bytes(
        entry("etc", D),
        entry("etc/.wh.passwd"),
        entry("var", D),
        entry("var/.wh..wh..opq"),
        entry("var/new", data=b"n"),
        entry("usr", D, pax_headers={"SCHILY.xattr.trusted.overlay.opaque": "y"}),  # smuggled: ignored
    )
    target = tmp_path / "layer"
    apply(layer, target, mode="overlay")
    wh = os.lstat(target / "etc" / "passwd")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(target / "var", "trusted.overlay.opaque") == b"y"
    assert (target / "var" / "new").read_bytes() == b"n"
    assert "trusted.overlay.opaque" not in os.listxattr(target / "usr")


@needs_root
def test_overlay_upper_layer_overlay_lower_round_trip(tmp_path: Path) -> None:
    """An upper dir -> layer -> overlay-mode unpack gives the upper back (as the next lower)."""
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc" / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "etc" / "conf").write_text("c")
    (upper / "opaque").mkdir()
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    (upper / "opaque" / "x").write_text("x")
    for p in [upper, *upper.rglob("*")]:
        os.utime(p, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    blob = io.BytesIO()
    write_layer(OverlayUpperSource(upper), blob)
    target = tmp_path / "lower"
    unpack_layer_for_overlay(io.BytesIO(gzip.compress(blob.getvalue())), target)
    assert describe(target) == describe(upper)


def test_overlay_mode_refuses_hardlinks_to_lower_layers(tmp_path: Path) -> None:
    target = tmp_path / "layer"
    target.mkdir()
    (target / "old").write_text("from somewhere else")
    with pytest.raises(ImageError, match="outside its own layer"):
        apply(tar_bytes(entry("new", LNK, linkname="old")), target, mode="overlay")


def test_merge_mode_allows_hardlinks_to_lower_layers(tmp_path: Path) -> None:
    root = lower(tmp_path / "root")
    apply(tar_bytes(entry("etc/pw2", LNK, linkname="etc/passwd")), root)
    assert os.stat(root / "etc" / "pw2").st_ino == os.stat(root / "etc" / "passwd").st_ino


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_python_tarfile_formats_apply(tmp_path: Path, fmt: int) -> None:
    long_dir = "x" * 40 + "/" + "y" * 40 if fmt == tarfile.USTAR_FORMAT else "x" * 90 + "/" + "y" * 90
    members = [
        entry(long_dir, D),
        entry(long_dir + "/f", data=b"data" * 1000, mtime=1_500_000_000),
        entry(long_dir + "/hl", LNK, linkname=long_dir + "/f"),
        entry("s", SYM, linkname=long_dir + "/f"),
    ]
    if fmt != tarfile.USTAR_FORMAT:
        members.append(entry("big-uid", data=b"u", uid=10_000_000, gid=10_000_001))
        members.append(entry("z" * 150, data=b"long name"))
    root = tmp_path / "root"
    apply(tar_bytes(*members, fmt=fmt), root)
    assert (root / long_dir / "f").read_bytes() == b"data" * 1000
    assert os.stat(root / long_dir / "hl").st_ino == os.stat(root / long_dir / "f").st_ino
    assert (root / "s").read_bytes() == b"data" * 1000
    if fmt != tarfile.USTAR_FORMAT:
        assert (root / ("z" * 150)).read_bytes() == b"long name"
        if IS_ROOT:
            assert os.stat(root / "big-uid").st_uid == 10_000_000


def test_gnu_tar_archive_applies_like_gnu_tar_extracts(tmp_path: Path) -> None:
    gnutar = shutil.which("tar")
    if gnutar is None:
        pytest.skip("tar is not installed")
    src = tmp_path / "src"
    (src / ("n" * 120)).mkdir(parents=True)
    (src / ("n" * 120) / ("m" * 120)).write_text("gnu long names")
    (src / "sym").symlink_to("n" * 120)
    os.link(src / ("n" * 120) / ("m" * 120), src / "hard")
    archive = tmp_path / "a.tar"
    for fmt in ("gnu", "posix"):
        subprocess.run([gnutar, f"--format={fmt}", "-cf", str(archive), "-C", str(src), "."], check=True)
        ours, theirs = tmp_path / f"ours-{fmt}", tmp_path / f"theirs-{fmt}"
        theirs.mkdir()
        with archive.open("rb") as f:
            apply_layer(f, ours)
        subprocess.run([gnutar, "-xpf", str(archive), "-C", str(theirs)], check=True)
        assert describe(ours) == describe(theirs)


def test_compute_diff_id_hashes_the_whole_stream(tmp_path: Path) -> None:
    data = tar_bytes(entry("a", data=b"a")) + bytes(10240)  # trailing padding, as GNU tar writes
    result = apply(data, tmp_path / "root", compute_diff_id=True)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.tar_size == len(data)


def test_exclude_skips_entries_and_their_data(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(
        tar_bytes(entry("etc/resolv.conf", data=b"placeholder"), entry("etc/keep", data=b"k")),
        root,
        exclude=lambda p: p == "etc/resolv.conf",
    )
    assert not (root / "etc" / "resolv.conf").exists()
    assert (root / "etc" / "keep").read_bytes() == b"k"


def test_directory_source_round_trip_of_busybox(busybox_rootfs: Path, tmp_path: Path) -> None:
    blob = io.BytesIO()
    write_layer(DirectorySource(busybox_rootfs), blob)
    target = tmp_path / "rootfs"
    result = apply_layer(io.BytesIO(blob.getvalue()), target)
    assert describe(target) == describe(busybox_rootfs)
    assert result.symlinks > 100


def test_whiteouts_can_be_plain_files_for_user_archives(tmp_path: Path) -> None:
    root = lower(tmp_path / "root")
    apply(tar_bytes(entry("etc/.wh.passwd", data=b"just a file")), root, whiteouts=False)
    assert (root / "etc" / "passwd").read_text() == "lower passwd"
    assert (root / "etc" / ".wh.passwd").read_bytes() == b"just a file"


def test_streams_with_only_read_work_for_large_files(tmp_path: Path) -> None:
    class ReadOnly:
        def __init__(self, data: bytes) -> None:
            self._f = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._f.read(min(n, 1000) if n > 0 else n)  # short reads, too

    big = os.urandom(3 << 20)
    root = tmp_path / "root"
    apply_layer(ReadOnly(tar_bytes(entry("big", data=big))), root)  # type: ignore[arg-type]
    assert (root / "big").read_bytes() == big
