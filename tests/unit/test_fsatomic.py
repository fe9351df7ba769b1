"""atomic_write: replaces regular files whole, writes through anything else, leaves no temp behind."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from forklift.fsatomic import atomic_write, atomic_writer


@pytest.mark.parametrize("durable", [False, True])
def test_new_and_existing_files_are_replaced(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "f.json"
    atomic_write(path, "one", durable=durable)
    assert path.read_text() == "one"
    inode = path.stat().st_ino
    atomic_write(path, b"two", durable=durable)
    assert path.read_bytes() == b"two"
    assert path.stat().st_ino != inode  # a new file renamed into place, not the old one rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_a_reader_holding_the_old_file_keeps_its_content(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"old content", durable=False)
    with open(path, "rb") as reader:
        atomic_write(path, b"new", durable=True)
        assert reader.read() == b"old content"
    assert path.read_bytes() == b"new"


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"kept", durable=False)
    with pytest.raises(RuntimeError), atomic_writer(path, durable=True) as out:
        out.write(b"half")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"kept"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_mode_and_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "secret"
    old = os.umask(0o022)
    try:
        atomic_write(path, b"x", durable=True, mode=0o600, parents=True)
        atomic_write(tmp_path / "plain", b"x", durable=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o644


def test_missing_parent_without_parents_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "no" / "f", b"x", durable=False)


def _null_device(tmp_path: Path) -> Path:
    """A node of the null device (1, 3) of our own: a regression must not replace /dev/null."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        with open(node, "wb"):
            pass
    except OSError:  # not root, or a filesystem mounted nodev
        return Path("/dev/null")
    return node


@pytest.mark.parametrize("durable", [False, True])
def test_a_char_device_is_written_through(tmp_path: Path, durable: bool) -> None:
    device = _null_device(tmp_path)
    before = os.stat(device)
    atomic_write(device, b"discarded", durable=durable)
    after = os.lstat(device)
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("durable", [False, True])
def test_a_fifo_is_written_through(tmp_path: Path, durable: bool) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            received.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    atomic_write(fifo, b"through the pipe", durable=durable)
    reader.join(timeout=120)  # a safety net, not a measurement: a write that missed the pipe hangs it
    if reader.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # let the reader go
    assert received == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_a_symlink_survives_and_its_target_gets_the_content(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.write_text("before")
    link = tmp_path / "link"
    link.symlink_to(target)
    atomic_write(link, "after", durable=True)
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert target.read_text() == "after"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_dangling_symlink_survives(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "created")
    atomic_write(link, b"new", durable=False)
    assert link.is_symlink()
    assert (tmp_path / "created").read_bytes() == b"new"


def test_a_directory_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path / "d", b"x", durable=False)
    assert (tmp_path / "d").is_dir()
