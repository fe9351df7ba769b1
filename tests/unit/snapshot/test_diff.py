"""The layer writer: deterministic, complete, readable by other tools, and undone by apply_layer."""

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
from snapshot_trees import IS_ROOT, describe, needs_root

from forklift.errors import BuildError
from forklift.oci.compression import open_uncompressed
from forklift.snapshot.diff import (
    Change,
    ChangesSource,
    DirectorySource,
    LayerOptions,
    OverlayUpperSource,
    write_layer,
)
from forklift.snapshot.unpack import apply_layer

LONG = "/".join(["d" * 60] * 3)


def make_tree(root: Path) -> Path:
    """A tree with one of everything a layer can hold."""
    root.mkdir()
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(os.urandom(3_000_000))  # above the streaming threshold
    (root / "bin" / "tool").chmod(0o4755)
    (root / "bin" / "alias").symlink_to("tool")
    (root / "bin" / "dangling").symlink_to("/nowhere/at/all")
    os.link(root / "etc" / "passwd", root / "bin" / "passwd-hardlink")
    (root / "a.txt").write_text("a")  # sorts after "a/" bytewise? "." < "/": a.txt before a/
    (root / "a").mkdir()
    (root / "a" / "inner").write_text("inner")
    (root / "empty").mkdir(mode=0o700)
    (root / "empty").chmod(0o700)
    (root / LONG).mkdir(parents=True)
    (root / LONG / ("é" * 70)).write_text("unicode and long")
    os.mkfifo(root / "fifo")
    os.setxattr(root / "etc" / "passwd", "user.checksum", b"\x00\x01binary")
    for p in [root, *root.rglob("*")]:
        os.utime(p, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    os.utime(root / "a.txt", (1_800_000_123, 1_800_000_123))
    if IS_ROOT:
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.utime(root / "null", (1_700_000_000, 1_700_000_000))
        os.chown(root / "etc" / "passwd", 1234, 5678)
        os.chown(root / "bin" / "alias", 42, 43, follow_symlinks=False)
        os.chown(root / "a", 3_000_000, 7)  # above USTAR's 7 octal digits: a PAX uid
        os.chmod(root / "bin" / "tool", 0o4755)  # chown cleared nothing here, but be explicit
    return root


def layer_bytes(source: DirectorySource | OverlayUpperSource | ChangesSource, **opts: object) -> bytes:
    out = io.BytesIO()
    write_layer(source, out, LayerOptions(**opts))  # type: ignore[arg-type]
    return out.getvalue()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_same_tree_gives_the_same_bytes(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    for compression in ("none", "gzip", "zstd"):
        first = layer_bytes(DirectorySource(tree), compression=compression)
        second = layer_bytes(DirectorySource(tree), compression=compression)
        assert first == second, compression
    # A copy of the tree (other inodes, other directory order on disk) gives the same layer too.
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(tree), str(copy)], check=True)
    assert layer_bytes(DirectorySource(copy)) == layer_bytes(DirectorySource(tree))


def test_digests_describe_what_was_written(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    out = io.BytesIO()
    result = write_layer(DirectorySource(tree), out, LayerOptions(compression="gzip"))
    blob = out.getvalue()
    raw = gzip.decompress(blob)
    assert result.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert result.compressed_size == len(blob)
    assert result.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert result.size == len(raw)
    assert raw == layer_bytes(DirectorySource(tree))
    assert result.entries == len(members(raw))
    plain = io.BytesIO()
    uncompressed = write_layer(DirectorySource(tree), plain)
    assert uncompressed.digest == uncompressed.diff_id == result.diff_id
    assert uncompressed.compressed_size == uncompressed.size == len(raw)


def test_entries_are_sorted_parents_first_with_clean_names(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    names = [m.name for m in members(layer_bytes(DirectorySource(tree)))]
    raw_names = [n.encode() for n in names]
    # Depth-first, siblings in bytewise order: the order of the path components themselves.
    assert raw_names == sorted(raw_names, key=lambda n: n.split(b"/"))
    assert names.index("a") < names.index("a/inner") < names.index("a.txt")
    for name in names:
        assert not name.startswith(("/", "./"))
    assert "." not in names and "" not in names


def test_metadata_is_recorded_and_nothing_host_specific(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    data = layer_bytes(DirectorySource(tree))
    by_name = {m.name: m for m in members(data)}
    tool = by_name["bin/tool"]
    assert tool.mode == 0o4755 and tool.size == 3_000_000 and tool.isreg()
    assert by_name["bin/alias"].issym() and by_name["bin/alias"].linkname == "tool"
    assert by_name["bin/dangling"].linkname == "/nowhere/at/all"
    # The first path of an inode in layer order carries the data, later ones link to it.
    assert by_name["bin/passwd-hardlink"].isreg()
    assert by_name["etc/passwd"].islnk() and by_name["etc/passwd"].linkname == "bin/passwd-hardlink"
    assert by_name["fifo"].isfifo()
    assert by_name["empty"].mode == 0o700 and by_name["empty"].isdir()
    assert by_name[f"{LONG}/{'é' * 70}"].size == len("unicode and long")
    assert by_name["bin/passwd-hardlink"].pax_headers["SCHILY.xattr.user.checksum"] == "\x00\x01binary"
    assert by_name["a.txt"].mtime == 1_800_000_123
    for m in by_name.values():
        assert m.uname == "" and m.gname == ""
        assert not {"atime", "ctime"} & set(m.pax_headers)
    if IS_ROOT:
        assert (by_name["bin/passwd-hardlink"].uid, by_name["bin/passwd-hardlink"].gid) == (1234, 5678)
        assert (by_name["bin/alias"].uid, by_name["bin/alias"].gid) == (42, 43)
        assert by_name["a"].uid == 3_000_000
        assert by_name["null"].ischr() and (by_name["null"].devmajor, by_name["null"].devminor) == (1, 3)


def test_gnu_tar_lists_and_extracts_the_layer(tmp_path: Path) -> None:
    gnutar = shutil.which("tar")
    if gnutar is None:
        pytest.skip("tar is not installed")
    tree = make_tree(tmp_path / "tree")
    layer = tmp_path / "layer.tar"
    with layer.open("wb") as f:
        write_layer(DirectorySource(tree), f)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([gnutar, "--xattrs", "--xattrs-include=*", "-xpf", str(layer), "-C", str(out)], check=True)
    os.utime(out, (1_700_000_000, 1_700_000_000))
    assert describe(out) == describe(tree)


def test_round_trip_through_apply_layer_reproduces_the_tree(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    for compression in ("none", "zstd"):
        out = io.BytesIO()
        write_layer(DirectorySource(tree), out, LayerOptions(compression=compression))
        target = tmp_path / f"applied-{compression}"
        apply_layer(open_uncompressed(io.BytesIO(out.getvalue())), target)
        assert describe(target) == describe(tree)


def test_clamp_mtime_caps_every_timestamp(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    ms = members(layer_bytes(DirectorySource(tree), clamp_mtime=1_750_000_000))
    assert max(m.mtime for m in ms) == 1_750_000_000
    assert {m.name for m in ms if m.mtime == 1_750_000_000} == {"a.txt"}
    assert all(m.mtime == 1_700_000_000 for m in ms if m.name != "a.txt")


def test_owner_mode_mapping_and_exclusion(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    seen: list[str] = []

    def exclude(path: str) -> bool:
        seen.append(path)
        return path in {"etc", "fifo"}

    ms = members(
        layer_bytes(
            DirectorySource(tree),
            exclude=exclude,
            map_owner=lambda path, uid, gid: (1000, 1001),
            map_mode=lambda path, st_mode: 0o750 if stat.S_ISDIR(st_mode) else 0o640,
        )
    )
    names = {m.name for m in ms}
    assert "etc" not in names and "etc/passwd" not in names and "fifo" not in names
    assert "etc/passwd" not in seen  # an excluded directory is not even walked
    assert "bin/passwd-hardlink" in names
    for m in ms:
        assert (m.uid, m.gid) == (1000, 1001)
        if m.isdir():
            assert m.mode == 0o750
        elif not m.issym() and not m.islnk():
            assert m.mode == 0o640, m.name


def test_prefix_places_the_tree_under_a_path(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    ms = members(layer_bytes(DirectorySource(tree, prefix="/app/data/")))
    assert [m.name for m in ms[:3]] == ["app", "app/data", "app/data/a"]
    assert ms[0].mode == 0o755 and ms[0].uid == 0
    by_name = {m.name: m for m in ms}
    assert by_name["app/data/etc/passwd"].linkname == "app/data/bin/passwd-hardlink"
    with pytest.raises(BuildError):
        layer_bytes(DirectorySource(tree, prefix="../x"))


def test_empty_directory_gives_an_empty_layer(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = io.BytesIO()
    result = write_layer(DirectorySource(tmp_path / "empty"), out)
    assert result.entries == 0
    assert out.getvalue() == bytes(1024)


def test_a_file_that_shrinks_while_written_is_an_error(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(b"x" * 100)

    def shrink(path: str, st_mode: int) -> int:  # runs after the entry was stat'ed, before the read
        (tree / "f").write_bytes(b"x" * 10)
        return 0o644

    with pytest.raises(BuildError, match="changed size"):
        write_layer(DirectorySource(tree), io.BytesIO(), LayerOptions(map_mode=shrink))


@needs_root
def test_overlay_upper_whiteouts_and_opaque_directories(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc" / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "etc" / "new").write_text("new")
    (upper / "var").mkdir()
    os.setxattr(upper / "var", "trusted.overlay.opaque", b"y")
    os.setxattr(upper / "var", "trusted.overlay.origin", b"\x00junk")
    (upper / "var" / "kept").write_text("k")
    (upper / "usr").mkdir()
    os.setxattr(upper / "usr", "user.overlay.opaque", b"y")
    (upper / "dev").mkdir()
    os.mknod(upper / "dev" / "tty", stat.S_IFCHR, os.makedev(5, 0))  # a real device, not a whiteout
    ms = members(layer_bytes(OverlayUpperSource(upper)))
    names = [m.name for m in ms]
    assert names == [
        "dev",
        "dev/tty",
        "etc",
        "etc/.wh.gone",
        "etc/new",
        "usr",
        "usr/.wh..wh..opq",
        "var",
        "var/.wh..wh..opq",
        "var/kept",
    ]
    by_name = {m.name: m for m in ms}
    assert by_name["etc/.wh.gone"].isreg() and by_name["etc/.wh.gone"].size == 0
    assert by_name["dev/tty"].ischr() and by_name["dev/tty"].devmajor == 5
    for m in ms:
        assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for k in m.pax_headers)
    # A DirectorySource keeps a 0/0 device as the device it is: only an upper has whiteouts.
    assert "etc/gone" in {m.name for m in members(layer_bytes(DirectorySource(upper)))}


def test_changes_source_adds_parents_and_whiteouts(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    changes = (
        Change("a/inner"),
        Change("etc/removed", "delete"),
        Change("bin/alias"),
        Change("gone-dir", "delete"),
    )
    ms = members(layer_bytes(ChangesSource(root, changes)))
    # Sorted by the changed path: a whiteout sits where the deleted entry would be.
    assert [m.name for m in ms] == [
        "a",
        "a/inner",
        "bin",
        "bin/alias",
        "etc",
        "etc/.wh.removed",
        ".wh.gone-dir",
    ]
    assert ms[0].isdir() and ms[0].mtime == 1_700_000_000  # a parent comes from the tree as it is
    with pytest.raises(BuildError):
        layer_bytes(ChangesSource(root, (Change("../etc"),)))


def test_any_object_with_write_is_a_sink(tmp_path: Path) -> None:
    class Sink:
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def write(self, data: bytes | bytearray | memoryview) -> int:
            self.chunks.append(bytes(data))  # the writer reuses its buffer: a sink must copy
            return len(data)

    tree = make_tree(tmp_path / "tree")
    sink = Sink()
    result = write_layer(DirectorySource(tree), sink, LayerOptions(compression="gzip"))
    blob = b"".join(sink.chunks)
    assert result.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert gzip.decompress(blob) == layer_bytes(DirectorySource(tree))
