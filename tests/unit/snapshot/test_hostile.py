"""Hostile layers: each tries to reach outside the root; none may touch the sentinel next to it."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from snapshot_trees import entry, needs_root, snapshot_tree, tar_bytes

from forklift.errors import ImageError
from forklift.snapshot.unpack import ApplyMode, ApplyOptions, apply_layer

D = tarfile.DIRTYPE
SYM = tarfile.SYMTYPE
LNK = tarfile.LNKTYPE
MODES: list[ApplyMode] = ["merge", "overlay"]


@pytest.fixture
def root(tmp_path: Path, sentinel: Path) -> Iterator[Path]:
    """The extraction root, next to the sentinel; after the test the sentinel must be unchanged."""
    before = snapshot_tree(sentinel)
    target = tmp_path / "root"
    target.mkdir()
    yield target
    assert snapshot_tree(sentinel) == before, "a layer wrote outside its root"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root", "sentinel"]


def apply(data: bytes, root: Path, mode: ApplyMode = "merge", **opts: object) -> None:
    apply_layer(io.BytesIO(data), root, options=ApplyOptions(mode=mode, **opts))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["../sentinel/file", "a/../../sentinel/file", "./../sentinel/evil", ".."])
def test_dotdot_components_are_refused(root: Path, mode: ApplyMode, name: str) -> None:
    with pytest.raises(ImageError, match=r"'\.\.'"):
        apply(tar_bytes(entry(name, data=b"pwned")), root, mode)


@pytest.mark.parametrize("mode", MODES)
def test_absolute_paths_stay_inside_the_root(root: Path, sentinel: Path, mode: ApplyMode) -> None:
    evil = str(sentinel / "file")
    apply(tar_bytes(entry(evil, data=b"pwned"), entry("/abs-dir", D)), root, mode)
    assert (root / evil.lstrip("/")).read_bytes() == b"pwned"
    assert (root / "abs-dir").is_dir()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["absolute", "relative", "chained"])
def test_write_through_a_symlink_stays_inside(root: Path, sentinel: Path, mode: ApplyMode, how: str) -> None:
    members = {
        "absolute": [entry("a", SYM, linkname=str(sentinel))],
        "relative": [entry("a", SYM, linkname="../../../../../../../" + str(sentinel))],
        "chained": [entry("b", SYM, linkname="../sentinel"), entry("a", SYM, linkname="b/../../sentinel")],
    }[how]
    apply(tar_bytes(*members, entry("a/file", data=b"pwned"), entry("a/sub/deep", data=b"pwned")), root, mode)
    # Resolved as if the root were "/": the writes land under the root.
    found = [p for p in root.rglob("file") if p.is_file()]
    assert found and all(p.read_bytes() == b"pwned" for p in found)


@pytest.mark.parametrize("mode", MODES)
def test_etc_symlink_then_passwd(root: Path, mode: ApplyMode) -> None:
    host_passwd = Path("/etc/passwd").read_bytes()
    apply(
        tar_bytes(entry("a", SYM, linkname="/etc"), entry("a/passwd", data=b"root::0:0::/:/bin/sh\n")),
        root,
        mode,
    )
    assert Path("/etc/passwd").read_bytes() == host_passwd
    assert (root / "etc" / "passwd").read_bytes() == b"root::0:0::/:/bin/sh\n"


def test_lower_symlink_then_file_replaces_the_symlink(root: Path, sentinel: Path) -> None:
    (root / "f").symlink_to(sentinel / "file")
    apply(tar_bytes(entry("f", data=b"pwned")), root)
    assert not (root / "f").is_symlink() and (root / "f").read_bytes() == b"pwned"


@pytest.mark.parametrize("mode", MODES)
def test_symlink_outside_then_hardlink_to_it_links_the_symlink(
    root: Path, sentinel: Path, mode: ApplyMode
) -> None:
    links_before = os.stat(sentinel / "file").st_nlink
    apply(
        tar_bytes(entry("s", SYM, linkname=str(sentinel / "file")), entry("h", LNK, linkname="s")), root, mode
    )
    assert (root / "h").is_symlink() and os.readlink(root / "h") == str(sentinel / "file")
    assert os.stat(sentinel / "file").st_nlink == links_before


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("linkname", "message"),
    [
        ("../sentinel/file", r"'\.\.'"),
        ("SENTINEL/file", "not"),  # an absolute path is inside the root, where nothing is
        ("dir-link/file", "not"),  # through a symlink to the sentinel: resolved inside the root
        ("later", "not \\(yet\\) extracted"),
        ("", "root"),
    ],
)
def test_hardlinks_that_point_outside_or_nowhere(
    root: Path, sentinel: Path, mode: ApplyMode, linkname: str, message: str
) -> None:
    layer = tar_bytes(
        entry("dir-link", SYM, linkname=str(sentinel)),
        entry("h", LNK, linkname=linkname.replace("SENTINEL", str(sentinel))),
        entry("later", data=b"x"),
    )
    with pytest.raises(ImageError, match=message):
        apply(layer, root, mode)


def test_hardlink_to_a_directory_is_refused(root: Path) -> None:
    with pytest.raises(ImageError, match="directory"):
        apply(tar_bytes(entry("d", D), entry("h", LNK, linkname="d")), root)


def test_directory_replaced_by_a_symlink_later_gets_no_deferred_chmod(root: Path, sentinel: Path) -> None:
    # The directory's mode and mtime are applied at the end; by then "d" points at the sentinel.
    layer = tar_bytes(
        entry("d", D, mode=0o777, mtime=1),
        entry("d/x", data=b"x"),
        entry("d", SYM, linkname=str(sentinel)),
    )
    apply(layer, root)
    assert (root / "d").is_symlink()


@pytest.mark.parametrize("mode", MODES)
def test_whiteouts_through_a_symlink_stay_inside(root: Path, sentinel: Path, mode: ApplyMode) -> None:
    (root / "lower-link").symlink_to(sentinel)
    layer = tar_bytes(
        entry("lower-link/.wh.file"),
        entry("lower-link/.wh..wh..opq"),
        entry("rel", SYM, linkname="../sentinel"),
        entry("rel/.wh.sub"),
    )
    apply(layer, root, mode)


@pytest.mark.parametrize("mode", MODES)
def test_overlay_control_xattrs_in_the_tar_are_dropped(root: Path, mode: ApplyMode) -> None:
    layer = tar_bytes(
        entry(
            "d",
            D,
            pax_headers={
                "SCHILY.xattr.trusted.overlay.redirect": "/elsewhere",
                "SCHILY.xattr.user.overlay.opaque": "y",
            },
        )
    )
    apply(layer, root, mode)
    assert not [n for n in os.listxattr(root / "d") if ".overlay." in n]


def test_symlink_loops_are_an_error(root: Path) -> None:
    with pytest.raises(ImageError, match="too many levels"):
        apply(
            tar_bytes(entry("a", SYM, linkname="b"), entry("b", SYM, linkname="a"), entry("a/x", data=b"x")),
            root,
        )


def test_writing_under_a_file_is_an_error(root: Path) -> None:
    with pytest.raises(ImageError, match="not a directory"):
        apply(tar_bytes(entry("f", data=b"f"), entry("f/x", data=b"x")), root)


@pytest.mark.parametrize("name", ["x" * 256, "a/" + "y" * 300 + "/b", "/".join(["d" * 200] * 25)])
def test_over_long_names_are_refused(root: Path, name: str) -> None:
    with pytest.raises(ImageError, match="longer than"):
        apply(tar_bytes(entry(name, data=b"x")), root)


def test_nul_in_a_pax_path_is_refused(root: Path) -> None:
    with pytest.raises(ImageError, match="NUL"):
        apply(tar_bytes(entry("x", data=b"x", pax_headers={"path": "nul\0byte"})), root)


def header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    return info.tobuf(tarfile.GNU_FORMAT)  # GNU: any size fits (base-256)


@pytest.mark.parametrize("size", [10_000, 1 << 40, (1 << 62) + 3])
def test_absurd_sizes_are_a_clear_error_without_big_allocations(root: Path, size: int) -> None:
    data = header("huge", size) + b"only a little data" * 50
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="truncated"):
            apply(data, root)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


@pytest.mark.parametrize(
    ("kind", "message"), [(b"x", "PAX header .* too large"), (b"L", "long name .* too large")]
)
def test_absurd_extended_headers_are_refused_before_reading(root: Path, kind: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        apply(header("././@x", 1 << 40, kind) + bytes(4096), root)


def test_malformed_pax_records_are_refused(root: Path) -> None:
    records = b"99999 path=x\n"
    data = header("pax", len(records), b"x") + records.ljust(512, b"\0") + header("f", 0) + bytes(1024)
    with pytest.raises(ImageError, match="malformed PAX"):
        apply(data, root)


def test_garbage_and_truncated_headers_are_refused(root: Path) -> None:
    with pytest.raises(ImageError, match="checksum"):
        apply(os.urandom(512) + bytes(1024), root)
    with pytest.raises(ImageError, match="partial header"):
        apply(header("f", 0)[:300], root)
    with pytest.raises(ImageError, match="sparse"):
        apply(header("s", 0, tarfile.GNUTYPE_SPARSE) + bytes(1024), root)


def test_devices_are_refused_when_not_allowed(root: Path) -> None:
    with pytest.raises(ImageError, match="device node 'dev/sda' is not allowed"):
        apply(tar_bytes(entry("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0)), root, devices="refuse")
    assert not (root / "dev" / "sda").exists()


@needs_root
def test_devices_when_allowed_are_made_inside_the_root(root: Path) -> None:
    apply(tar_bytes(entry("/dev/mem", tarfile.CHRTYPE, devmajor=1, devminor=1)), root)
    assert stat.S_ISCHR(os.lstat(root / "dev" / "mem").st_mode)
