"""Replace a file so that a reader sees the old content or the new, never half of either.

``atomic_write`` writes to a temp file beside the destination and renames it over the destination
(``rename`` is atomic within a filesystem). With ``durable=True`` the temp file is fsynced before
the rename and the directory after it, so the new content survives a crash once the call returns;
without, the rename is still atomic but a crash may lose the update (fine for caches and hints).

Only a regular file (or a path that does not exist yet) is replaced. A destination that is
something else, a device such as ``/dev/stdout``, a FIFO or a symlink, is written through as it
is: renaming over it would swap the device node or the link for a plain file.

Temp files are named ``.<name>.<pid>.<thread>.<random>.tmp`` in the destination's directory, so
a clean-up that knows the destination's name can find the ones a crash left behind.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replaceable(path: Path) -> bool:
    """Whether ``path`` may be replaced by a rename: it is a regular file or does not exist."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True


def temp_name(path: Path) -> Path:
    """A fresh temp path beside ``path``, unique across processes and threads."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{os.urandom(4).hex()}.tmp")


@contextlib.contextmanager
def atomic_writer(
    path: Path, *, durable: bool, mode: int = 0o666, parents: bool = False
) -> Iterator[BinaryIO]:
    """A binary file whose content replaces ``path`` when the block ends without an error.

    ``mode`` is the new file's permission bits (less the umask); ``parents`` creates missing
    parent directories. On an error the temp file is removed and ``path`` is left as it was. A
    destination that is not a regular file is opened and written through instead (see the module).
    """
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    if not replaceable(path):
        with open(path, "wb") as through:
            yield cast(BinaryIO, through)
            if durable:
                through.flush()
                with contextlib.suppress(OSError):  # a pipe or a terminal cannot be synced
                    os.fsync(through.fileno())
        return
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with open(fd, "wb") as out:
            yield cast(BinaryIO, out)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write(
    path: Path, data: bytes | str, *, durable: bool, mode: int = 0o666, parents: bool = False
) -> None:
    """Replace ``path``'s content with ``data`` (text is written as UTF-8) atomically.

    ``durable`` fsyncs the file before the rename and the directory after it. See
    ``atomic_writer`` for ``mode``, ``parents`` and destinations that are not regular files.
    """
    raw = data.encode() if isinstance(data, str) else data
    with atomic_writer(path, durable=durable, mode=mode, parents=parents) as out:
        out.write(raw)
