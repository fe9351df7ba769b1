"""Filesystem -> layer: a deterministic PAX tar writer with OCI whiteouts.

Three kinds of source become a layer:

* :class:`DirectorySource`: a full tree (a COPY's staging directory, a root filesystem to import);
* :class:`OverlayUpperSource`: an overlayfs upper directory, whose whiteouts (character devices
  0/0) become ``.wh.NAME`` entries and whose opaque directories (``trusted.overlay.opaque=y`` or
  ``user.overlay.opaque=y``) get a ``.wh..wh..opq`` entry;
* :class:`ChangesSource`: an explicit list of added and deleted paths under a root (the tree-diff
  fallback where overlayfs cannot be mounted).

The tar is deterministic: entries in depth-first order with siblings sorted bytewise (so parents come
before children), integral mtimes (optionally clamped, like SOURCE_DATE_EPOCH), no atime or ctime,
empty uname/gname, xattrs as sorted PAX ``SCHILY.xattr.*`` records, hardlinks detected by inode
within the layer. Headers are built by hand: the format is fixed here, not by a Python version.
The uncompressed tar is hashed (diff_id) and optionally compressed and hashed again (digest) in the
same pass, via :mod:`forklift.oci.compression`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import field
from pathlib import Path
from typing import Literal

from forklift.errors import BuildError
from forklift.oci.compression import ByteSink, CompressingWriter, Compression
from forklift.records import record

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"

# Overlay-internal attributes never belong in a layer; SELinux labels are the host's, not the image's.
_SKIPPED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "security.selinux")
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")

_BLOCK = 512
_ZEROS = bytes(_BLOCK)
_FLUSH_AT = 1 << 20  # hand the buffer to the compressor in ~1 MiB pieces
_LARGE_FILE = 1 << 20  # files above this are streamed in chunks instead of read whole
_PAX_NAME = b"././@PaxHeader"


@record
class DirectorySource:
    """Every entry under ``root``, placed under ``prefix`` in the layer.

    With ``prefix=""`` the root directory itself is not an entry (its children are the layer's top
    level). With ``prefix="app/data"`` the layer holds ``app/`` (mode 0755, owner 0:0 mapped through
    ``map_owner``, mtime of ``root``), then ``app/data/`` with ``root``'s own metadata, then the tree.
    """

    root: Path
    prefix: str = ""


@record
class OverlayUpperSource:
    """An overlayfs upper directory: overlay whiteouts and opaque directories become OCI ones."""

    upper: Path


@record
class Change:
    """One changed path, relative to the source root (``"etc/passwd"``, no leading slash).

    ``add``: the path's entry as it is now under the root (a directory is NOT expanded: list its
    children too). ``delete``: a ``.wh.`` whiteout. Parents of listed paths are added from the root
    automatically, as docker and BuildKit do.
    """

    path: str
    kind: Literal["add", "delete"] = "add"


@record
class ChangesSource:
    """An explicit list of changes under ``root`` (the tree-diff fallback)."""

    root: Path
    changes: tuple[Change, ...]


LayerSource = DirectorySource | OverlayUpperSource | ChangesSource

OwnerMap = Callable[[str, int, int], tuple[int, int]]
"""(layer path, uid, gid) -> (uid, gid): for COPY --chown."""
ModeMap = Callable[[str, int], int]
"""(layer path, st_mode) -> permission bits (0o7777 range): for COPY --chmod."""
PathFilter = Callable[[str], bool]
"""(layer path, e.g. ``"etc/resolv.conf"``) -> True to leave the entry (and its subtree) out."""


@record(kw_only=True)
class LayerOptions:
    """How to write a layer. All fields are keyword-only; the defaults write a plain tar."""

    compression: Compression = "none"
    level: int | None = None  # see forklift.oci.compression.compress_file
    clamp_mtime: int | None = None  # SOURCE_DATE_EPOCH: no entry is newer than this
    exclude: PathFilter | None = None
    map_owner: OwnerMap | None = None
    map_mode: ModeMap | None = None
    xattrs: bool = True  # read and record extended attributes


@record
class LayerDigests:
    """What a written layer is. ``diff_id``/``size``: the uncompressed tar. ``digest``/
    ``compressed_size``: the bytes written to ``out`` (equal to the former when uncompressed)."""

    diff_id: str
    size: int
    digest: str
    compressed_size: int
    compression: Compression
    entries: int = field(default=0)


def write_layer(source: LayerSource, out: ByteSink, options: LayerOptions | None = None) -> LayerDigests:
    """Write ``source`` as a layer tar to ``out`` (compressed per ``options``) and return its digests.

    Deterministic: the same tree and options give the same bytes. ``out`` is written sequentially and
    not closed. Raises BuildError when a file changes size while it is being read.
    """
    opts = options if options is not None else LayerOptions()
    sink = CompressingWriter(out, opts.compression, level=opts.level)
    writer = _TarWriter(sink, opts)
    if isinstance(source, DirectorySource):
        writer.write_directory(os.fspath(source.root), _clean_prefix(source.prefix), overlay=False)
    elif isinstance(source, OverlayUpperSource):
        writer.write_directory(os.fspath(source.upper), b"", overlay=True)
    else:
        writer.write_changes(os.fspath(source.root), source.changes)
    writer.close()
    result = sink.finish()
    return LayerDigests(
        diff_id=result.diff_id,
        size=result.uncompressed_size,
        digest=result.digest,
        compressed_size=result.size,
        compression=opts.compression,
        entries=writer.entries,
    )


def _clean_prefix(prefix: str) -> bytes:
    parts = [p for p in prefix.split("/") if p and p != "."]
    if ".." in parts:
        raise BuildError(f"layer prefix {prefix!r} must not contain '..'")
    return os.fsencode("/".join(parts))


def _octal(value: int, width: int) -> bytes:
    """A NUL-terminated, zero-padded octal field of ``width`` bytes (caller checks it fits)."""
    return b"%0*o\0" % (width - 1, value)


_LIMITS = {8: 8**7, 12: 8**11}


def _fits(value: int, width: int) -> bool:
    return 0 <= value < _LIMITS[width]


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + len(str(len(body)))
    if len(str(n)) + len(body) != n:
        n = len(body) + len(str(n))
    return b"%d" % n + body


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) so that a long ASCII path fits USTAR's 155 + 100 bytes, or None."""
    if len(name) > 256:
        return None
    # A directory's trailing slash stays with the name part.
    i = name.rfind(b"/", 0, min(len(name) - 1, 156))
    if i <= 0 or len(name) - i - 1 > 100 or len(name) - i - 1 == 0:
        return None
    return name[:i], name[i + 1 :]


def _header(
    name: bytes,
    *,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
    xattrs: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """One entry's header block(s): a PAX extended header first when USTAR cannot hold a field."""
    pax: list[bytes] = []
    prefix = b""
    if len(name) > 100 or not name.isascii():
        split = _split_ustar(name) if name.isascii() else None
        if split is None:
            pax.append(_pax_record(b"path", name))
            name = name[:100]
        else:
            prefix, name = split
    if len(linkname) > 100 or not linkname.isascii():
        pax.append(_pax_record(b"linkpath", linkname))
        linkname = linkname[:100]
    if not _fits(size, 12):
        pax.append(_pax_record(b"size", b"%d" % size))
    if not _fits(uid, 8):
        pax.append(_pax_record(b"uid", b"%d" % uid))
    if not _fits(gid, 8):
        pax.append(_pax_record(b"gid", b"%d" % gid))
    if not _fits(mtime, 12):
        pax.append(_pax_record(b"mtime", b"%d" % mtime))
    if xattrs:
        pax.extend(_pax_record(b"SCHILY.xattr." + k, v) for k, v in xattrs)
    block = b"".join(
        (
            name.ljust(100, b"\0"),
            _octal(mode & 0o7777, 8),
            _octal(uid, 8) if _fits(uid, 8) else _ZEROS[:8],
            _octal(gid, 8) if _fits(gid, 8) else _ZEROS[:8],
            _octal(size, 12) if _fits(size, 12) else _ZEROS[:12],
            _octal(mtime, 12) if _fits(mtime, 12) else _ZEROS[:12],
            b"        ",
            typeflag,
            linkname.ljust(100, b"\0"),
            b"ustar\x0000",
            _ZEROS[:64],  # uname, gname: empty, so layers do not depend on the host's user names
            _octal(devmajor, 8),
            _octal(devminor, 8),
            prefix.ljust(155, b"\0"),
            _ZEROS[:12],
        )
    )
    block = block[:148] + b"%06o\0 " % sum(block) + block[156:]
    if not pax:
        return block
    data = b"".join(pax)
    return _header(_PAX_NAME, mode=0o644, uid=0, gid=0, size=len(data), mtime=0, typeflag=b"x") + (
        data + _ZEROS[: -len(data) % _BLOCK] + block
    )


class _TarWriter:
    """Writes entries into a buffer that is handed to the compressing sink in large pieces."""

    def __init__(self, sink: CompressingWriter, options: LayerOptions) -> None:
        self._sink = sink
        self._opts = options
        self._buf = bytearray()
        self._links: dict[tuple[int, int], bytes] = {}
        self._chunk = bytearray(_LARGE_FILE)
        self.entries = 0

    # -- output ---------------------------------------------------------------------------------

    def _flush(self) -> None:
        if self._buf:
            self._sink.write(self._buf)
            self._buf.clear()

    def close(self) -> None:
        self._buf += _ZEROS
        self._buf += _ZEROS
        self._flush()

    # -- sources --------------------------------------------------------------------------------

    def write_directory(self, root: str, prefix: bytes, *, overlay: bool) -> None:
        """The tree under ``root`` in depth-first order, siblings sorted bytewise."""
        if prefix:
            parts = prefix.split(b"/")
            root_st = os.lstat(root)
            for i in range(len(parts) - 1):
                parent = b"/".join(parts[: i + 1])
                if not self._excluded(parent):
                    self._directory_entry(parent, 0o040755, 0, 0, root_st.st_mtime_ns // 1_000_000_000, [])
            if self._excluded(prefix):
                return
            self._entry(root, prefix, root_st, overlay=False)
            base = prefix + b"/"
        else:
            base = b""
        # An explicit stack of sorted listings keeps deep trees off Python's recursion limit.
        stack: list[Iterator[tuple[bytes, os.DirEntry[str]]]] = [iter(_sorted_listing(root, base))]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                continue
            layer_path, entry = item
            if self._excluded(layer_path):
                continue
            st = entry.stat(follow_symlinks=False)
            is_dir = self._entry(entry.path, layer_path, st, overlay=overlay)
            if is_dir:
                stack.append(iter(_sorted_listing(entry.path, layer_path + b"/")))

    def write_changes(self, root: str, changes: tuple[Change, ...]) -> None:
        """Listed paths plus their parents, in the same order a directory walk would give."""
        kinds: dict[tuple[bytes, ...], Literal["add", "delete", "parent"]] = {}
        for change in changes:
            parts = tuple(os.fsencode(p) for p in change.path.split("/") if p and p != ".")
            if not parts or b".." in parts:
                raise BuildError(f"invalid path in layer changes: {change.path!r}")
            for i in range(1, len(parts)):
                kinds.setdefault(parts[:i], "parent")
            kinds[parts] = change.kind
        skipped: tuple[bytes, ...] | None = None
        for parts in sorted(kinds):
            if skipped is not None and parts[: len(skipped)] == skipped:
                continue
            layer_path = b"/".join(parts)
            if self._excluded(layer_path):
                skipped = parts
                continue
            if kinds[parts] == "delete":
                parent = b"/".join(parts[:-1])
                fs_parent = os.path.join(root, os.fsdecode(parent)) if parent else root
                mtime = os.lstat(fs_parent).st_mtime_ns // 1_000_000_000 if os.path.lexists(fs_parent) else 0
                self._whiteout(parts[:-1], WHITEOUT_PREFIX.encode() + parts[-1], mtime)
                continue
            fs_path = os.path.join(root, os.fsdecode(layer_path))
            self._entry(fs_path, layer_path, os.lstat(fs_path), overlay=False)

    # -- entries --------------------------------------------------------------------------------

    def _excluded(self, layer_path: bytes) -> bool:
        exclude = self._opts.exclude
        return exclude is not None and bool(exclude(os.fsdecode(layer_path)))

    def _mtime(self, mtime: int) -> int:
        clamp = self._opts.clamp_mtime
        return mtime if clamp is None or mtime <= clamp else clamp

    def _read_xattrs(self, fs_path: str) -> tuple[list[tuple[bytes, bytes]], bool]:
        """(recorded xattrs sorted by name, whether the directory is overlay-opaque)."""
        try:
            names = os.listxattr(fs_path, follow_symlinks=False)
        except OSError:  # ENOTSUP and friends: the filesystem keeps none
            return [], False
        if not names:
            return [], False
        opaque = False
        out: list[tuple[bytes, bytes]] = []
        for name in sorted(names):
            if name in _OPAQUE_XATTRS:
                with contextlib.suppress(OSError):
                    opaque = opaque or os.getxattr(fs_path, name, follow_symlinks=False) == b"y"
                continue
            if name.startswith(_SKIPPED_XATTR_PREFIXES) or not self._opts.xattrs:
                continue
            try:
                value = os.getxattr(fs_path, name, follow_symlinks=False)
            except OSError:
                continue
            out.append((os.fsencode(name), value))
        return out, opaque

    def _owner(self, layer_path: bytes, uid: int, gid: int) -> tuple[int, int]:
        mapper = self._opts.map_owner
        return (uid, gid) if mapper is None else mapper(os.fsdecode(layer_path), uid, gid)

    def _mode(self, layer_path: bytes, st_mode: int) -> int:
        mapper = self._opts.map_mode
        return stat.S_IMODE(st_mode) if mapper is None else mapper(os.fsdecode(layer_path), st_mode) & 0o7777

    def _directory_entry(
        self,
        layer_path: bytes,
        st_mode: int,
        uid: int,
        gid: int,
        mtime: int,
        xattrs: list[tuple[bytes, bytes]],
    ) -> None:
        uid, gid = self._owner(layer_path, uid, gid)
        self._buf += _header(
            layer_path + b"/",
            mode=self._mode(layer_path, st_mode),
            uid=uid,
            gid=gid,
            size=0,
            mtime=self._mtime(mtime),
            typeflag=b"5",
            xattrs=xattrs,
        )
        self.entries += 1

    def _whiteout(self, parent: tuple[bytes, ...] | bytes, name: bytes, mtime: int) -> None:
        parent_path = parent if isinstance(parent, bytes) else b"/".join(parent)
        path = parent_path + b"/" + name if parent_path else name
        self._buf += _header(path, mode=0, uid=0, gid=0, size=0, mtime=self._mtime(mtime), typeflag=b"0")
        self.entries += 1

    def _entry(self, fs_path: str, layer_path: bytes, st: os.stat_result, *, overlay: bool) -> bool:
        """Write one entry; True when it is a directory whose children should follow."""
        mode = st.st_mode
        mtime = st.st_mtime_ns // 1_000_000_000
        if stat.S_ISDIR(mode):
            xattrs, opaque = self._read_xattrs(fs_path)
            self._directory_entry(layer_path, mode, st.st_uid, st.st_gid, mtime, xattrs)
            if overlay and opaque:
                self._whiteout(layer_path, OPAQUE_WHITEOUT.encode(), mtime)
            return True
        if overlay and stat.S_ISCHR(mode) and st.st_rdev == 0:
            head, _, base = layer_path.rpartition(b"/")
            self._whiteout(head, WHITEOUT_PREFIX.encode() + base, mtime)
            return False
        if stat.S_ISSOCK(mode):
            return False  # a socket cannot be stored in a tar (docker and BuildKit skip them too)
        uid, gid = self._owner(layer_path, st.st_uid, st.st_gid)
        perm = self._mode(layer_path, mode)
        mtime = self._mtime(mtime)
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self._links.get(key)
            if first is not None:
                self._buf += _header(
                    layer_path,
                    mode=perm,
                    uid=uid,
                    gid=gid,
                    size=0,
                    mtime=mtime,
                    typeflag=b"1",
                    linkname=first,
                )
                self.entries += 1
                return False
            self._links[key] = layer_path
        xattrs = self._read_xattrs(fs_path)[0] if self._opts.xattrs else []
        self.entries += 1
        if stat.S_ISREG(mode):
            size = st.st_size
            self._buf += _header(
                layer_path, mode=perm, uid=uid, gid=gid, size=size, mtime=mtime, typeflag=b"0", xattrs=xattrs
            )
            self._file_data(fs_path, size)
        elif stat.S_ISLNK(mode):
            target = os.fsencode(os.readlink(fs_path))
            self._buf += _header(
                layer_path,
                mode=perm,
                uid=uid,
                gid=gid,
                size=0,
                mtime=mtime,
                typeflag=b"2",
                linkname=target,
                xattrs=xattrs,
            )
        else:
            typeflag = b"3" if stat.S_ISCHR(mode) else b"4" if stat.S_ISBLK(mode) else b"6"
            is_dev = stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            self._buf += _header(
                layer_path,
                mode=perm,
                uid=uid,
                gid=gid,
                size=0,
                mtime=mtime,
                typeflag=typeflag,
                devmajor=os.major(st.st_rdev) if is_dev else 0,
                devminor=os.minor(st.st_rdev) if is_dev else 0,
                xattrs=xattrs,
            )
        if len(self._buf) >= _FLUSH_AT:
            self._flush()
        return False

    def _file_data(self, fs_path: str, size: int) -> None:
        """Exactly ``size`` bytes of the file, then padding to the block size."""
        fd = os.open(fs_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if size <= _LARGE_FILE:
                remaining = size
                while remaining:
                    data = os.read(fd, remaining)
                    if not data:
                        break
                    self._buf += data
                    remaining -= len(data)
            else:
                self._flush()
                remaining = size
                chunk = self._chunk
                view = memoryview(chunk)
                with open(fd, "rb", buffering=0, closefd=False) as f:
                    while remaining:
                        n = f.readinto(view[: min(remaining, len(chunk))])
                        if not n:
                            break
                        self._sink.write(view[:n])
                        remaining -= n
                del view
            if remaining:  # it shrank: the header already promised ``size`` bytes
                raise BuildError(f"{fs_path} changed size while it was being written into a layer")
        finally:
            os.close(fd)
        self._buf += _ZEROS[: -size % _BLOCK]


def _sorted_listing(fs_dir: str, layer_base: bytes) -> list[tuple[bytes, os.DirEntry[str]]]:
    with os.scandir(fs_dir) as it:
        listing = [(layer_base + os.fsencode(e.name), e) for e in it]
    listing.sort(key=lambda item: item[0])
    return listing
