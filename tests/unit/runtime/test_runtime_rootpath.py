"""Container paths resolved inside a rootfs: symlinks are followed but never leave it."""

from __future__ import annotations

from pathlib import Path

import pytest

from forklift.errors import ForkliftError
from forklift.runtime.rootpath import resolve_in_root


def test_plain_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    assert resolve_in_root(tmp_path, "/etc/hosts") == tmp_path / "etc" / "hosts"
    assert resolve_in_root(tmp_path, "/no/such/dir/../file") == tmp_path / "no" / "such" / "file"
    assert resolve_in_root(tmp_path, "/") == tmp_path


def test_absolute_symlink_is_relative_to_the_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "etc" / "resolv.conf").symlink_to("/run/systemd/resolve/stub-resolv.conf")
    assert resolve_in_root(tmp_path, "/etc/resolv.conf") == tmp_path / "run/systemd/resolve/stub-resolv.conf"


def test_dotdot_and_symlinks_cannot_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "up").symlink_to("../../../../outside")
    (root / "a" / "abs").symlink_to("/../../etc")
    assert resolve_in_root(root, "/../../etc/passwd") == root / "etc" / "passwd"
    assert resolve_in_root(root, "/a/up/x") == root / "outside" / "x"
    assert resolve_in_root(root, "/a/abs") == root / "etc"


def test_relative_symlink_chain(tmp_path: Path) -> None:
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    (tmp_path / "usr" / "bin" / "sh").symlink_to("dash")
    assert resolve_in_root(tmp_path, "/bin/sh") == tmp_path / "usr" / "bin" / "dash"


def test_symlink_loop_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(ForkliftError, match="too many levels"):
        resolve_in_root(tmp_path, "/a/x")
