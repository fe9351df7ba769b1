"""Read-only lookups in a stack of layer snapshots, as overlayfs would show them, without a mount.

A COPY onto a multi-layer image only needs a few facts about the image: whether the destination
is a directory, and the metadata of the directories on the way to it. Mounting an overlay for that
(mount, umount, removing its work dir) cost about 0.1 s per step; these lookups cost a few lstat
calls. The rules are overlayfs' own: the top-most layer with an entry at a path wins; a whiteout
(a character device 0/0) hides the path in the layers below it; directories merge down the stack
until a layer holds a non-directory there or marks the directory opaque (the ``overlay.opaque``
xattr). Anything harder (a symlink on the way) is left to a real mount by the caller.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence
from pathlib import Path

_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def _opaque(path: str) -> bool:
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


class LayeredView:
    """The merged view of snapshot dirs ``layers`` (top-most first), for lstat only."""

    def __init__(self, layers: Sequence[Path]) -> None:
        self._layers = [os.fspath(p) for p in layers]

    def lstat(self, rel: str) -> os.stat_result | None:
        """What lstat of ``rel`` (relative to the root, no ``..``) shows in the merged view; None if absent.

        Symlinks are not followed, neither at the end nor on the way (a symlink on the way: None).
        """
        found = self.locate(rel)
        return found[1] if found is not None else None

    def locate(self, rel: str) -> tuple[str, os.stat_result] | None:
        """The host path of the entry the merged view shows at ``rel`` (in the top-most layer that
        holds it) and its lstat; None when absent or when a symlink is on the way."""
        parts = [p for p in rel.split("/") if p and p != "."]
        if not parts:
            return (self._layers[0], os.lstat(self._layers[0])) if self._layers else None
        layers = self._layers
        found: tuple[str, os.stat_result] | None = None
        for i in range(len(parts)):
            sub = "/".join(parts[: i + 1])
            found = None
            below: list[str] = []  # the layers whose directory at ``sub`` merges into the view
            for layer in layers:
                path = os.path.join(layer, sub)
                try:
                    st = os.lstat(path)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    break  # a whiteout: nothing below shows
                if found is None:
                    found = (path, st)
                if not stat.S_ISDIR(st.st_mode):
                    break  # a non-directory hides everything below it
                below.append(layer)
                if _opaque(path):
                    break
            if found is None:
                return None
            if i < len(parts) - 1 and not stat.S_ISDIR(found[1].st_mode):
                return None  # a file or a symlink on the way: nothing below it
            layers = below
        return found

    def plain_dest(self, dest_abs: str) -> str | None:
        """``dest_abs`` relative to the root when no directory on the way to it is a symlink (nor
        ``..``; nor the destination itself when it ends with ``/``), as ``resolve_in_root`` would
        give it; None when a real resolution is needed."""
        parent, name = posixpath.split(dest_abs.rstrip("/") or "/")
        parts = [p for p in parent.split("/") if p not in ("", ".")]
        if ".." in parts or name == "..":
            return None
        if dest_abs.endswith("/") and name:  # a directory: a symlink there is followed (by a mount)
            st = self.lstat(posixpath.join(*parts, name) if parts else name)
            if st is not None and stat.S_ISLNK(st.st_mode):
                return None
        for i in range(len(parts)):
            st = self.lstat("/".join(parts[: i + 1]))
            if st is None:
                break  # missing: the rest is taken literally
            if stat.S_ISLNK(st.st_mode):
                return None
            if not stat.S_ISDIR(st.st_mode):
                break
        rel = "/".join(parts)
        return posixpath.join(rel, name) if name else rel
