"""LayeredView answers lstat as a real overlay mount of the same layers does."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from forklift.execute.layerview import LayeredView


def _layers(tmp: Path) -> list[Path]:
    """Three snapshots, bottom to top, in the overlay format (whiteouts, an opaque dir)."""
    low, mid, top = (tmp / n for n in ("low", "mid", "top"))
    for d in (low / "etc/app", low / "gone/sub", low / "opaque/old", low / "usr/lib", low / "file-then-dir"):
        d.mkdir(parents=True)
    (low / "etc/app/conf").write_text("low")
    (low / "gone/sub/f").write_text("x")
    (low / "opaque/old/f").write_text("x")
    (low / "dir-then-file").mkdir()
    (low / "dir-then-file/inner").write_text("x")
    os.symlink("usr/lib", low / "lib")
    for d in (mid / "etc", mid / "opaque/new", mid / "srv"):
        d.mkdir(parents=True)
    os.chmod(mid / "etc", 0o750)
    os.mknod(mid / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    os.setxattr(mid / "opaque", "trusted.overlay.opaque", b"y")
    (mid / "dir-then-file").write_text("now a file")
    (top / "etc/app").mkdir(parents=True)
    (top / "etc/app/extra").write_text("top")
    (top / "file-then-dir").write_text("a file on top")
    return [top, mid, low]


PATHS = [
    "",
    "etc",
    "etc/app",
    "etc/app/conf",
    "etc/app/extra",
    "gone",
    "gone/sub",
    "gone/sub/f",
    "opaque",
    "opaque/old",
    "opaque/old/f",
    "opaque/new",
    "dir-then-file",
    "dir-then-file/inner",
    "file-then-dir",
    "lib",
    "lib/x",
    "usr/lib",
    "srv",
    "missing",
    "missing/deeper",
]


def _sig(st: os.stat_result | None) -> tuple[int, int, int] | None:
    """Type, mode and (for non-directories) size: what the view must get right."""
    if st is None:
        return None
    return stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), 0 if stat.S_ISDIR(st.st_mode) else st.st_size


def test_lookups_match_a_real_overlay_mount(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod, trusted xattrs and overlay mounts need root")
    from forklift.snapshot.overlay import mount_overlay, overlay_supported

    if not overlay_supported(tmp_path / "probe"):
        pytest.skip("no overlayfs here")
    layers = _layers(tmp_path)
    view = LayeredView(layers)
    with mount_overlay(layers, tmp_path / "upper", tmp_path / "work", tmp_path / "merged") as merged:
        for rel in PATHS:
            try:
                real = os.lstat(merged / rel) if rel else os.lstat(merged)
            except OSError:
                real = None
            if rel == "lib/x":  # through a symlink: the view declines (the caller mounts)
                assert view.lstat(rel) is None
                continue
            assert _sig(view.lstat(rel)) == _sig(real), rel


def test_plain_dest_declines_symlinks_and_dotdot(tmp_path: Path) -> None:
    low = tmp_path / "low"
    (low / "usr/lib").mkdir(parents=True)
    (low / "file").write_text("x")
    os.symlink("usr/lib", low / "lib")
    view = LayeredView([low])
    assert view.plain_dest("/usr/lib/") == "usr/lib"
    assert view.plain_dest("/usr/lib/x.so") == "usr/lib/x.so"
    assert view.plain_dest("/new/dir/f") == "new/dir/f"
    assert view.plain_dest("/") == ""
    assert view.plain_dest("/file/x") == "file/x"
    assert view.plain_dest("/lib/x.so") is None
    assert view.plain_dest("/usr/../lib/x") is None


def test_a_directory_destination_that_is_a_symlink_needs_a_real_resolution(tmp_path: Path) -> None:
    low = tmp_path / "low"
    (low / "opt/real").mkdir(parents=True)
    os.symlink("/opt/real", low / "opt/link")
    view = LayeredView([low])
    assert view.plain_dest("/opt/link/") is None
    assert view.plain_dest("/opt/link") == "opt/link"  # a file destination replaces the symlink
    assert view.plain_dest("/opt/real/") == "opt/real"


def test_locate_names_the_layer_that_shows_each_path(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod and trusted xattrs need root")
    top, mid, low = _layers(tmp_path)
    view = LayeredView([top, mid, low])
    expected = {
        "etc/app/conf": low / "etc/app/conf",  # merged directories: found below
        "etc/app/extra": top / "etc/app/extra",
        "etc": top / "etc",  # a directory: the top-most one
        "dir-then-file": mid / "dir-then-file",
        "file-then-dir": top / "file-then-dir",
        "opaque/new": mid / "opaque/new",
    }
    for rel, path in expected.items():
        found = view.locate(rel)
        assert found is not None and found[0] == str(path), rel
        assert found[1].st_ino == os.lstat(path).st_ino
    for hidden in ("gone", "gone/sub/f", "opaque/old/f", "dir-then-file/inner", "lib/x", "missing"):
        assert view.locate(hidden) is None, hidden
