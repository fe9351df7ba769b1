"""Describing a tree and building (hostile) tars by hand, for the snapshot tests."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (chown, mknod, trusted.* xattrs)")


def describe(root: Path, *, with_root_mtime: bool = False) -> dict[str, tuple[Any, ...]]:
    """Everything a layer records about a tree, per relative path, plus hardlink groups."""
    out: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            try:
                xattrs = tuple(
                    sorted(
                        (n, os.getxattr(full, n, follow_symlinks=False))
                        for n in os.listxattr(full, follow_symlinks=False)
                    )
                )
            except OSError:
                xattrs = ()
            if stat.S_ISREG(st.st_mode):
                detail: Any = hashlib.sha256(Path(full).read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                detail = os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                detail = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                detail = None
            mode = None if stat.S_ISLNK(st.st_mode) else stat.S_IMODE(st.st_mode)
            out[rel] = (kind, mode, st.st_uid, st.st_gid, int(st.st_mtime), detail, xattrs)
    out["<hardlinks>"] = tuple(sorted(tuple(sorted(v)) for v in inodes.values()))
    if with_root_mtime:
        out["."] = (int(os.stat(root).st_mtime),)
    return out


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar of exactly these members (names taken verbatim, nothing sanitised)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(
    name: str, kind: bytes = tarfile.REGTYPE, *, data: bytes = b"", **fields: Any
) -> tuple[tarfile.TarInfo, bytes | None]:
    """One member: ``entry("a/b", data=b"x")``, ``entry("l", tarfile.SYMTYPE, linkname="t")``."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = fields.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    info.mtime = fields.pop("mtime", 1_600_000_000)
    for key, value in fields.items():
        setattr(info, key, value)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def snapshot_tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """A sentinel's full state, to assert that nothing touched it."""
    return describe(root, with_root_mtime=True)
