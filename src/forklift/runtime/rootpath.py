"""Paths inside a root filesystem, resolved the way the container will see them.

A path in an image may cross symlinks (``/etc/resolv.conf -> ../run/resolv.conf``), and a symlink
may be absolute (``/run/...``) or try to climb out with ``..``. Inside the container ``/`` is the
rootfs, so every symlink is resolved against the rootfs and ``..`` never leaves it. This is what
runc does for mount destinations, so forklift creates mount targets where runc will look for them.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from forklift.errors import ForkliftError

_MAX_SYMLINKS = 40  # the kernel's own limit (ELOOP)


def resolve_in_root(rootfs: Path, path: str) -> Path:
    """The host path of container path ``path``, following symlinks scoped to ``rootfs``.

    Components that do not exist are kept as they are (the result may not exist). Never returns a
    path outside ``rootfs``.
    """
    pending = [p for p in PurePosixPath("/", path).parts[1:] if p not in ("", ".")]
    pending.reverse()  # a stack: the next component is at the end
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = rootfs.joinpath(*resolved, part)
        try:
            target = os.readlink(candidate)
        except (FileNotFoundError, NotADirectoryError):
            # A missing component: the rest cannot be symlinks either; keep them literally.
            resolved.append(part)
            resolved.extend(p for p in reversed(pending) if p not in ("", "."))
            return _normalised(rootfs, resolved)
        except OSError:  # EINVAL: not a symlink
            resolved.append(part)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise ForkliftError(f"too many levels of symbolic links resolving {path} in the image")
        if target.startswith("/"):
            resolved = []
        pending.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
    return rootfs.joinpath(*resolved)


def _normalised(rootfs: Path, parts: list[str]) -> Path:
    """Join ``parts`` under ``rootfs`` with ``..`` applied lexically and clamped at the root."""
    out: list[str] = []
    for part in parts:
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    return rootfs.joinpath(*out)
