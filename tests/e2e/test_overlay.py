"""Snapshots end to end: real overlayfs mounts, and the copy fallback giving the same upper dir."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from forklift.runtime.base import Process
from forklift.runtime.oci import OciRuntime
from forklift.snapshot.overlay import (
    OPAQUE_XATTRS,
    copied_rootfs,
    mount_overlay,
    overlay_options,
    overlay_supported,
    writable_rootfs,
)

pytestmark = pytest.mark.e2e


def _is_mountpoint(path: Path) -> bool:
    return any(line.split()[4] == str(path) for line in Path("/proc/self/mountinfo").read_text().splitlines())


def _whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTRS[0], follow_symlinks=False) == b"y"
    except OSError:
        return False


def test_overlay_is_supported_here(tmp_path: Path) -> None:
    assert overlay_supported(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_changes_land_in_upper_and_the_mount_goes_away(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "dir").mkdir(parents=True)
    (lower / "dir" / "old").write_text("old")
    (lower / "keep").write_text("keep")
    (lower / "gone").write_text("gone")
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    with mount_overlay([lower], upper, work, merged) as root:
        assert _is_mountpoint(root)
        assert (root / "keep").read_text() == "keep"
        (root / "new").write_text("new")
        (root / "gone").unlink()
        (root / "dir" / "old").unlink()
        (root / "dir").rmdir()
        (root / "dir").mkdir()
        (root / "dir" / "fresh").write_text("fresh")
    assert not _is_mountpoint(merged)
    assert list(merged.iterdir()) == []
    assert sorted(p.name for p in upper.iterdir()) == ["dir", "gone", "new"]
    assert (upper / "new").read_text() == "new"
    assert _whiteout(upper / "gone")
    assert _opaque(upper / "dir")
    assert [p.name for p in (upper / "dir").iterdir()] == ["fresh"]
    assert (lower / "gone").exists()  # the lower is never written


def test_unmounts_when_the_body_fails(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    merged = tmp_path / "merged"
    with pytest.raises(RuntimeError), mount_overlay([lower], tmp_path / "u", tmp_path / "w", merged):
        raise RuntimeError("boom")
    assert not _is_mountpoint(merged)


def test_scratch_base_without_lowers(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    with mount_overlay([], upper, tmp_path / "work", tmp_path / "merged") as root:
        assert list(root.iterdir()) == []
        (root / "f").write_text("x")
    assert [p.name for p in upper.iterdir()] == ["f"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged", "upper"]  # work is removed


def test_volatile_mount_keeps_changes(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    upper = tmp_path / "upper"
    with mount_overlay([lower], upper, tmp_path / "work", tmp_path / "merged", volatile=True) as root:
        with open(root / "f", "wb") as f:
            f.write(b"data")
            os.fsync(f.fileno())
        options = next(
            line for line in Path("/proc/self/mountinfo").read_text().splitlines() if f" {root} " in line
        )
        assert "volatile" in options
    assert (upper / "f").read_bytes() == b"data"


def test_a_layer_given_twice_is_mounted_once(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
    (a / "f").write_text("a")
    (b / "f").write_text("b")
    (b / "g").write_text("b")
    with mount_overlay([a, b, a], tmp_path / "u", tmp_path / "w", tmp_path / "m") as root:
        assert (root / "f").read_text() == "a"
        assert (root / "g").read_text() == "b"


@pytest.mark.parametrize("count", [60, 300])
def test_many_long_lower_paths(tmp_path: Path, count: int) -> None:
    # 60 lowers with ~150-character paths overflow one page of mount data (short links needed);
    # 300 overflow even the short links (staged read-only overlays needed).
    base = tmp_path / ("x" * 100)
    lowers = []
    for index in range(count):
        lower = base / f"layer-{index:04d}-{'y' * 30}"
        lower.mkdir(parents=True)
        (lower / f"only-{index}").write_text(str(index))
        (lower / "shared").write_text(str(index))
        lowers.append(lower)
    lowers.reverse()  # top-most first: the highest index wins
    assert len(overlay_options(lowers, tmp_path / "u", tmp_path / "w")) > os.sysconf("SC_PAGE_SIZE")
    merged = tmp_path / "merged"
    with mount_overlay(lowers, tmp_path / "u", tmp_path / "w", merged) as root:
        assert (root / "shared").read_text() == str(count - 1)
        assert (root / "only-0").read_text() == "0"
        assert len(list(root.iterdir())) == count + 1
        (root / "shared").write_text("top")
    assert (tmp_path / "u" / "shared").read_text() == "top"
    assert not _is_mountpoint(merged)


# --- the copy fallback gives the same upper directory --------------------------------------------

FIRST_STEP = (
    "mkdir -p /app/data /app/old && echo 1 > /app/data/a && echo 2 > /app/old/b && rm /bin/vi"
    " && rm -r /usr && mkdir -p /usr/lib && echo l > /usr/lib/l"  # an opaque dir in a lower layer
)
SECOND_STEP = " && ".join(
    [
        "test ! -e /bin/vi && test ! -e /usr/bin && test -f /usr/lib/l",  # the lowers, merged
        "echo changed > /app/data/a",  # modify a file from a lower layer
        "echo new > /app/data/c",  # add beside existing files
        "rm -r /app/old",  # delete a lower directory: one whiteout
        "rm /bin/ls",  # delete a file of the bottom layer
        "rm -r /usr && mkdir /usr && echo x > /usr/only",  # replace a directory: opaque
        "chmod 700 /root",  # metadata-only change
        "ln -s /app/data/a /app/link",
        "echo hard > /tmp/h && ln /tmp/h /tmp/h2",
        "mkdir -p /new/deep/dir && touch /new/deep/dir/f",
        "mv /bin/cat /bin/kitty",  # a rename: whiteout + new entry
        "touch /bin/vi",  # recreate what the layer below deleted
    ]
)


@pytest.fixture
def runtime(oci_runtime: OciRuntime) -> OciRuntime:
    return oci_runtime


Snapshot = Callable[[list[Path], Path, Path, Path], object]


def _step(runtime: OciRuntime, lowers: list[Path], base: Path, script: str, *, use_overlay: bool) -> Path:
    upper, work, merged = base / "upper", base / "work", base / "merged"
    with writable_rootfs(lowers, upper, work, merged, use_overlay=use_overlay) as root:
        chunks: list[bytes] = []
        status = runtime.run(Process(args=("/bin/sh", "-c", script)), root, output=chunks.append)
        assert status == 0, b"".join(chunks).decode()
    return upper


def _describe(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry of a tree with what a layer records (times of directories aside)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            mode = st.st_mode
            if stat.S_ISREG(mode):
                detail: object = (path.read_bytes(), st.st_nlink, st.st_mtime_ns)
            elif stat.S_ISLNK(mode):
                detail = os.readlink(path)
            elif stat.S_ISDIR(mode):
                detail = _opaque(path)
            else:
                detail = st.st_rdev
            out[str(path.relative_to(root))] = (stat.filemode(mode), st.st_uid, st.st_gid, detail)
    return out


def test_fallback_gives_the_same_upper_as_overlay(
    runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path
) -> None:
    layer1 = _step(runtime, [busybox_rootfs], tmp_path / "l1", FIRST_STEP, use_overlay=True)
    assert _whiteout(layer1 / "bin" / "vi")
    assert _opaque(layer1 / "usr")
    lowers = [layer1, busybox_rootfs]
    with_overlay = _step(runtime, lowers, tmp_path / "ovl", SECOND_STEP, use_overlay=True)
    with_copy = _step(runtime, lowers, tmp_path / "copy", SECOND_STEP, use_overlay=False)
    overlay_tree, copy_tree = _describe(with_overlay), _describe(with_copy)
    # Regular files' mtimes differ between the two runs; compare them separately.
    for tree in (overlay_tree, copy_tree):
        for key, value in tree.items():
            if value[0].startswith("-"):
                content, nlink, _ = value[3]  # type: ignore[misc]
                tree[key] = (*value[:3], (content, nlink))
    assert copy_tree == overlay_tree
    assert _whiteout(with_copy / "app" / "old")
    assert _whiteout(with_copy / "bin" / "ls")
    assert _opaque(with_copy / "usr")
    assert (with_copy / "bin" / "vi").is_file()
    assert list((tmp_path / "copy" / "merged").iterdir()) == []


def test_fallback_keeps_unchanged_files_out_of_upper(busybox_rootfs: Path, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    with copied_rootfs([busybox_rootfs], upper, tmp_path / "merged") as root:
        assert (root / "bin" / "busybox").is_file()
        (root / "tmp" / "x").write_text("x")
    assert sorted(str(p.relative_to(upper)) for p in upper.rglob("*")) == ["tmp", "tmp/x"]
    assert os.stat(upper / "tmp").st_mode == os.stat(busybox_rootfs / "tmp").st_mode


def test_lower_paths_with_colons_and_commas(tmp_path: Path) -> None:
    lower = tmp_path / "odd:name,with\\chars"
    lower.mkdir()
    (lower / "f").write_text("odd")
    assert "lowerdir=" + str(tmp_path) + "/odd\\:name\\,with\\\\chars" in overlay_options([lower], None, None)
    with mount_overlay([lower], tmp_path / "u", tmp_path / "w", tmp_path / "m") as root:
        assert (root / "f").read_text() == "odd"
