"""Layer -> filesystem: apply a layer tar onto a directory, whiteout-aware and safe against escapes.

Two modes:

* ``merge``: apply onto an existing tree (a root filesystem being assembled, ``type=local``
  output). ``.wh.NAME`` removes NAME, ``.wh..wh..opq`` empties its directory of lower content; in
  both cases only what came from earlier layers goes (OCI: a whiteout never hides an entry of its
  own layer).
* ``overlay``: unpack one layer into its own fresh directory for use as an overlayfs lower layer:
  ``.wh.NAME`` becomes a character device 0/0 named NAME, ``.wh..wh..opq`` the xattr
  ``trusted.overlay.opaque=y`` (``user.overlay.`` with ``overlay_xattr_prefix`` for userxattr
  mounts).

Safety, whatever the tar holds: member names are relative to the root (a leading ``/`` is
dropped, a ``..`` component is refused); symlinks met on the way to an entry are resolved *inside*
the root, as if it were ``/`` (so ``a -> /etc`` then ``a/passwd`` writes ROOT/etc/passwd); the last
component is never followed (files are created with O_EXCL|O_NOFOLLOW after removing what was
there); hardlinks must point at something already inside the root; header fields, PAX records
and GNU long names are bounded, and a size the stream does not hold is an error, not an allocation.
Hostile or malformed content raises :class:`forklift.errors.ImageError`.

The tar parser is written here (USTAR, PAX, GNU long names, base-256 numbers) so those bounds are
ours and no member is ever read into memory whole.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Literal

from forklift.errors import ImageError
from forklift.oci.compression import open_uncompressed
from forklift.records import record

ApplyMode = Literal["merge", "overlay"]
DevicePolicy = Literal["create", "skip", "refuse"]

_BLOCK = 512
_CHUNK = 1 << 20
_MAX_PAX = 1 << 20  # a PAX header larger than this is not a real layer
_MAX_LONGNAME = 64 << 10
_NAME_MAX = 255
_PATH_MAX = 4096
_MAX_SYMLINK_HOPS = 40
_ZERO_BLOCK = bytes(_BLOCK)
_WHITEOUT = b".wh."
_OPAQUE = b".wh..wh..opq"
_HOSTILE_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


@record(kw_only=True)
class ApplyOptions:
    """How to apply a layer. Keyword-only; the defaults merge onto an existing tree."""

    mode: ApplyMode = "merge"
    # lchown entries to the tar's uid/gid; None: only when running as root (otherwise it fails).
    same_owner: bool | None = None
    # Device nodes: "create" (mknod; skipped and counted when not permitted), "skip", or "refuse"
    # (an ImageError, for content that should never carry devices).
    devices: DevicePolicy = "create"
    xattrs: bool = True
    overlay_xattr_prefix: str = "trusted.overlay."
    compute_diff_id: bool = False  # hash the whole uncompressed stream (costs ~1 ms per MB)
    # Called with each entry's layer path ("etc/passwd"); True leaves the entry out.
    exclude: Callable[[str], bool] | None = None
    # False: ``.wh.*`` entries are ordinary files (ADD of a user's archive is not an image layer).
    whiteouts: bool = True


@record
class AppliedLayer:
    """What applying a layer did. ``skipped`` counts devices and xattrs that were not permitted."""

    entries: int
    files: int
    directories: int
    symlinks: int
    hardlinks: int
    devices: int
    whiteouts: int
    bytes_written: int
    skipped: int
    tar_size: int
    diff_id: str | None = None
    skipped_reasons: tuple[str, ...] = field(default=())


@dataclass(slots=True)
class _Member:
    name: bytes
    typeflag: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: bytes
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes]


class _TarReader:
    """Reads tar headers and data from a stream, bounded and (optionally) hashing what it reads."""

    def __init__(self, stream: BinaryIO, hashing: bool) -> None:
        self._stream = stream
        self._readinto: Callable[[memoryview], int | None] | None = getattr(stream, "readinto", None)
        self._hash = hashlib.sha256() if hashing else None
        self.offset = 0

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the stream."""
        data = self._stream.read(n)
        if len(data) < n:
            parts = [data]
            got = len(data)
            while got < n:
                more = self._stream.read(n - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        if self._hash is not None:
            self._hash.update(data)
        self.offset += len(data)
        return data

    def readinto_exact(self, view: memoryview, what: bytes) -> None:
        """Fill ``view`` completely (no new allocation: big files reuse one buffer)."""
        if self._readinto is None:
            view[:] = self.read_exact(len(view), what)
            return
        got = 0
        n = len(view)
        while got < n:
            k = self._readinto(view[got:])
            if not k:
                self.offset += got
                raise ImageError(
                    f"layer is truncated: the data of {os.fsdecode(what)!r} needs {n} bytes "
                    f"at offset {self.offset - got}"
                )
            got += k
        if self._hash is not None:
            self._hash.update(view)
        self.offset += n

    def read_exact(self, n: int, what: str | bytes) -> bytes:
        """Exactly ``n`` bytes; ``what`` (a description, or an entry name) is only for the error."""
        data = self.read(n)
        if len(data) != n:
            if isinstance(what, bytes):
                what = f"the data of {os.fsdecode(what)!r}"
            raise ImageError(
                f"layer is truncated: {what} needs {n} bytes at offset {self.offset - len(data)}"
            )
        return data

    def skip(self, n: int, what: str) -> None:
        while n > 0:
            n -= len(self.read_exact(min(n, _CHUNK), what))

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str | None:
        return None if self._hash is None else "sha256:" + self._hash.hexdigest()

    def next_member(self) -> _Member | None:
        """The next member with PAX and GNU long-name headers folded in; None at the end."""
        pax: dict[bytes, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            block = self.read(_BLOCK)
            if not block or block == _ZERO_BLOCK:
                if pax or long_name is not None or long_link is not None:
                    raise ImageError("layer ends after an extended header without its entry")
                return None
            if len(block) != _BLOCK:
                raise ImageError(f"layer is truncated: partial header at offset {self.offset - len(block)}")
            _check_checksum(block, self.offset - _BLOCK)
            typeflag = block[156:157]
            size = _number(block[124:136], "size")
            if typeflag in (b"x", b"g"):
                if size > _MAX_PAX:
                    raise ImageError(f"PAX header of {size} bytes at offset {self.offset} is too large")
                data = self.read_exact(size, "a PAX header")
                self.skip(-size % _BLOCK, "padding")
                if typeflag == b"x":
                    pax.update(_pax_records(data))
                continue  # global headers carry nothing a layer needs
            if typeflag in (b"L", b"K"):
                if size > _MAX_LONGNAME:
                    raise ImageError(f"GNU long name of {size} bytes at offset {self.offset} is too large")
                data = self.read_exact(size, "a GNU long name").split(b"\0", 1)[0]
                self.skip(-size % _BLOCK, "padding")
                if typeflag == b"L":
                    long_name = data
                else:
                    long_link = data
                continue
            if typeflag in (b"S", b"M", b"V"):
                raise ImageError(f"unsupported tar entry type {typeflag.decode()!r} (sparse or multi-volume)")
            return self._member(block, typeflag, size, pax, long_name, long_link)

    def _member(
        self,
        block: bytes,
        typeflag: bytes,
        size: int,
        pax: dict[bytes, bytes],
        long_name: bytes | None,
        long_link: bytes | None,
    ) -> _Member:
        if long_name is not None:
            name = long_name
        else:
            end = block.find(b"\0", 0, 100)
            name = block[: end if end >= 0 else 100]
            if block[257:263] == b"ustar\0" and block[345] != 0:
                end = block.find(b"\0", 345, 500)
                name = block[345 : end if end >= 0 else 500] + b"/" + name
        if long_link is not None:
            linkname = long_link
        elif block[157] == 0:
            linkname = b""
        else:
            end = block.find(b"\0", 157, 257)
            linkname = block[157 : end if end >= 0 else 257]
        uid = _number(block[108:116], "uid")
        gid = _number(block[116:124], "gid")
        mtime = _number(block[136:148], "mtime")
        xattrs: dict[str, bytes] = {}
        for key, value in pax.items():
            if key == b"path":
                name = value
            elif key == b"linkpath":
                linkname = value
            elif key == b"size":
                size = _decimal(value, "size")
            elif key == b"uid":
                uid = _decimal(value, "uid")
            elif key == b"gid":
                gid = _decimal(value, "gid")
            elif key == b"mtime":
                mtime = _decimal(value.split(b".", 1)[0] or b"0", "mtime")
            elif key.startswith(b"SCHILY.xattr."):
                xattrs[os.fsdecode(key[len(b"SCHILY.xattr.") :])] = value
            elif key.startswith(b"GNU.sparse."):
                raise ImageError("sparse tar entries are not supported in layers")
        if size < 0:
            raise ImageError(f"negative size for {name!r}")
        if typeflag in (b"\0", b"7"):
            typeflag = b"0"
        if typeflag == b"0" and name.endswith(b"/"):
            typeflag = b"5"  # pre-POSIX tars mark directories by the trailing slash only
        return _Member(
            name=name,
            typeflag=typeflag,
            mode=_number(block[100:108], "mode") & 0o7777,
            uid=uid,
            gid=gid,
            size=size,
            mtime=mtime,
            linkname=linkname,
            devmajor=_number(block[329:337], "devmajor") if typeflag in (b"3", b"4") else 0,
            devminor=_number(block[337:345], "devminor") if typeflag in (b"3", b"4") else 0,
            xattrs=xattrs,
        )


def _check_checksum(block: bytes, offset: int) -> None:
    stored = _number(block[148:156], "checksum")
    unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
    if stored == unsigned:
        return
    signed = unsigned - 2 * sum(b for b in block[:148] + block[156:] if b >= 0x80)
    if stored != signed:
        raise ImageError(f"not a tar layer: bad header checksum at offset {offset}")


def _number(field_bytes: bytes, what: str) -> int:
    """A numeric header field: octal text, or GNU base-256 when the high bit is set."""
    try:  # the common case: zero-padded octal, NUL- or space-terminated (int() strips spaces)
        return int(field_bytes.rstrip(b"\0 ") or b"0", 8)
    except ValueError:
        pass
    if field_bytes and field_bytes[0] & 0x80:
        value = int.from_bytes(field_bytes[1:], "big")
        if field_bytes[0] == 0xFF:  # negative base-256
            value -= 1 << (8 * (len(field_bytes) - 1))
        return value
    text = field_bytes.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ImageError(f"not a tar layer: bad {what} field {field_bytes!r}") from None


def _decimal(value: bytes, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ImageError(f"bad PAX {what} value {value!r}") from None


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """``LEN key=value\\n`` records, every length checked against the data it claims."""
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # NUL padding after the last record
            break
        space = data.find(b" ", pos, pos + 24)
        if space < 0:
            raise ImageError("malformed PAX record")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ImageError("malformed PAX record length") from None
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1] != 0x0A:
            raise ImageError("malformed PAX record")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise ImageError("malformed PAX record")
        records[key] = value
        pos = end
    return records


def _split_name(name: bytes, what: str) -> list[bytes]:
    """A member name as components under the root: leading ``/`` and ``.`` dropped, ``..`` refused."""
    if len(name) > _PATH_MAX:
        raise ImageError(f"{what} is longer than {_PATH_MAX} bytes")
    if b"\0" in name:
        raise ImageError(f"{what} contains a NUL byte")
    if name.startswith((b"/", b"./")) or b"//" in name or b"/./" in name or name.endswith(b"/."):
        parts = [p for p in name.split(b"/") if p and p != b"."]
    else:  # the common, already clean name: only a directory's trailing slash to drop
        parts = name.rstrip(b"/").split(b"/") if name not in (b"", b".") else []
    if b".." in parts:
        raise ImageError(f"{what} {os.fsdecode(name)!r} has a '..' component: refusing to leave the root")
    if len(name) > _NAME_MAX and parts and max(map(len, parts)) > _NAME_MAX:
        raise ImageError(f"{what} has a component longer than {_NAME_MAX} bytes")
    return parts


class _Applier:
    def __init__(self, root: bytes, options: ApplyOptions) -> None:
        self.root = root
        self.opts = options
        self.chown = options.same_owner if options.same_owner is not None else os.geteuid() == 0
        self.created: set[tuple[bytes, ...]] = set()
        self.deferred_dirs: list[tuple[tuple[bytes, ...], int, int]] = []  # (parts, mode, mtime)
        self.cache: dict[tuple[bytes, ...], tuple[bytes, ...]] = {}
        self.counts = dict.fromkeys(
            (
                "entries",
                "files",
                "directories",
                "symlinks",
                "hardlinks",
                "devices",
                "whiteouts",
                "bytes",
                "skipped",
            ),
            0,
        )
        self.reasons: list[str] = []
        self.buffer = memoryview(bytearray(_CHUNK))  # reused for large files: no per-chunk allocation

    # -- paths ----------------------------------------------------------------------------------

    def path(self, parts: tuple[bytes, ...]) -> bytes:
        return self.root + b"/" + b"/".join(parts) if parts else self.root

    def resolve_dir(self, parts: tuple[bytes, ...], *, create: bool) -> tuple[bytes, ...]:
        """The real (symlink-free) location of directory ``parts``, with symlinks resolved inside
        the root as if it were ``/``. Missing directories are made when ``create``; a missing one
        otherwise, or a non-directory on the way, is an ImageError."""
        cached = self.cache.get(parts)
        if cached is not None:
            return cached
        resolved: list[bytes] = []
        queue = list(parts)
        queue.reverse()  # a stack: pop() takes the next component
        hops = 0
        while queue:
            comp = queue.pop()
            if comp in (b"", b"."):
                continue
            if comp == b"..":  # only from a symlink target: clamp at the root
                if resolved:
                    resolved.pop()
                continue
            candidate = (*resolved, comp)
            full = self.path(candidate)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                if not create:
                    raise ImageError(
                        f"{os.fsdecode(b'/'.join(parts))!r} does not exist in the layer"
                    ) from None
                os.mkdir(full, 0o755)
                self.created.add(candidate)
                resolved.append(comp)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise ImageError(f"too many levels of symlinks under {os.fsdecode(b'/'.join(parts))!r}")
                target = os.readlink(full)
                if target.startswith(b"/"):
                    resolved = []
                queue.extend(reversed(target.split(b"/")))
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise ImageError(f"{os.fsdecode(b'/'.join(candidate))!r} is not a directory in the layer")
            resolved.append(comp)
        result = tuple(resolved)
        self.cache[parts] = result
        return result

    def remove(self, parts: tuple[bytes, ...]) -> None:
        """Remove whatever is at ``parts`` (never following a symlink); a directory with its tree."""
        full = self.path(parts)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(full)
        else:
            os.unlink(full)
        self.cache.clear()  # a resolved path may have gone through what was just removed

    # -- entries --------------------------------------------------------------------------------

    def apply(self, member: _Member, reader: _TarReader) -> None:
        parts = _split_name(member.name, "entry name")
        typeflag = member.typeflag
        data_left = member.size  # non-file entries should have none, but skip whatever is there
        if self.opts.exclude is not None and parts and self.opts.exclude(os.fsdecode(b"/".join(parts))):
            reader.skip(data_left + (-data_left % _BLOCK), "excluded entry data")
            return
        self.counts["entries"] += 1
        if not parts:
            if typeflag != b"5":
                raise ImageError("a non-directory entry names the root itself")
            self.directory((), member)
            return
        parent = self.resolve_dir(tuple(parts[:-1]), create=True)
        base = parts[-1]
        if base.startswith(_WHITEOUT) and self.opts.whiteouts:
            reader.skip(data_left + (-data_left % _BLOCK), "whiteout data")
            self.whiteout(parent, base, member.mtime)
            return
        target = (*parent, base)
        if typeflag == b"5":
            self.directory(target, member)
        elif typeflag == b"0":
            self.file(target, member, reader)
            return
        elif typeflag == b"1":
            self.hardlink(target, member)
        elif typeflag == b"2":
            self.symlink(target, member)
        elif typeflag in (b"3", b"4"):
            self.device(target, member)
        elif typeflag == b"6":
            self.replace_with(target)
            os.mkfifo(self.path(target), 0o600)
            self.created.add(target)
            self.metadata_by_path(target, member)
        else:
            raise ImageError(f"unsupported tar entry type {typeflag!r} for {os.fsdecode(member.name)!r}")
        reader.skip(data_left + (-data_left % _BLOCK), "entry data")

    def replace_with(self, target: tuple[bytes, ...]) -> None:
        """Clear the way for a non-directory entry at ``target``."""
        self.remove(target)

    def directory(self, target: tuple[bytes, ...], member: _Member) -> None:
        full = self.path(target)
        if target:
            try:
                os.mkdir(full, 0o700)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(full).st_mode):
                    self.remove(target)
                    os.mkdir(full, 0o700)
        self.created.add(target)
        self.counts["directories"] += 1
        fd = os.open(full, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if self.chown:
                os.fchown(fd, member.uid, member.gid)
            if member.xattrs:
                self.set_xattrs(fd, member)
        finally:
            os.close(fd)
        # Mode and mtime last: children change the mtime, and a read-only mode would block them.
        self.deferred_dirs.append((target, member.mode, member.mtime))

    def file(self, target: tuple[bytes, ...], member: _Member, reader: _TarReader) -> None:
        full = self.path(target)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(full, flags, 0o600)
        except FileExistsError:
            self.remove(target)
            fd = os.open(full, flags, 0o600)
        self.created.add(target)
        self.counts["files"] += 1
        size = member.size
        pad = -size % _BLOCK
        try:
            if size <= _CHUNK:  # one read takes the data and its padding
                view = memoryview(reader.read_exact(size + pad, member.name))[:size]
                while view:
                    view = view[os.write(fd, view) :]
                pad = 0
            else:
                remaining = size
                buf = self.buffer
                while remaining:
                    view = buf[: min(remaining, _CHUNK)]
                    reader.readinto_exact(view, member.name)
                    remaining -= len(view)
                    while view:
                        view = view[os.write(fd, view) :]
            self.counts["bytes"] += size
            if self.chown:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode)  # after chown, which clears set-id bits
            if member.xattrs:
                self.set_xattrs(fd, member)
            os.utime(fd, ns=(member.mtime * 1_000_000_000, member.mtime * 1_000_000_000))
        finally:
            os.close(fd)
        if pad:
            reader.skip(pad, "padding")

    def hardlink(self, target: tuple[bytes, ...], member: _Member) -> None:
        link_parts = _split_name(member.linkname, "hardlink target")
        if not link_parts:
            raise ImageError(f"hardlink {os.fsdecode(member.name)!r} points at the root")
        try:
            link_parent = self.resolve_dir(tuple(link_parts[:-1]), create=False)
        except ImageError:
            raise ImageError(
                f"hardlink {os.fsdecode(member.name)!r} points at {os.fsdecode(member.linkname)!r}, "
                "which is not in the root"
            ) from None
        source = (*link_parent, link_parts[-1])
        try:
            st = os.lstat(self.path(source))
        except FileNotFoundError:
            raise ImageError(
                f"hardlink {os.fsdecode(member.name)!r} points at {os.fsdecode(member.linkname)!r}, "
                "which is not (yet) extracted"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"hardlink {os.fsdecode(member.name)!r} points at a directory")
        if self.opts.mode == "overlay" and source not in self.created:
            raise ImageError(f"hardlink {os.fsdecode(member.name)!r} points outside its own layer")
        if source == target:
            return
        self.replace_with(target)
        os.link(self.path(source), self.path(target), follow_symlinks=False)
        self.created.add(target)
        self.counts["hardlinks"] += 1

    def symlink(self, target: tuple[bytes, ...], member: _Member) -> None:
        if b"\0" in member.linkname or len(member.linkname) > _PATH_MAX:
            raise ImageError(f"symlink {os.fsdecode(member.name)!r} has an invalid target")
        self.replace_with(target)
        os.symlink(member.linkname, self.path(target))
        self.created.add(target)
        self.cache.clear()  # a new symlink can redirect a later entry's parents
        self.counts["symlinks"] += 1
        self.metadata_by_path(target, member)

    def device(self, target: tuple[bytes, ...], member: _Member) -> None:
        policy = self.opts.devices
        what = f"device node {os.fsdecode(member.name)!r}"
        if policy == "refuse":
            raise ImageError(f"{what} is not allowed here")
        if policy == "skip":
            self.skip(f"{what}: devices are skipped")
            return
        kind = stat.S_IFCHR if member.typeflag == b"3" else stat.S_IFBLK
        self.replace_with(target)
        try:
            os.mknod(self.path(target), kind | 0o600, os.makedev(member.devmajor, member.devminor))
        except PermissionError:
            self.skip(f"{what}: mknod is not permitted")
            return
        self.created.add(target)
        self.counts["devices"] += 1
        self.metadata_by_path(target, member)

    def whiteout(self, parent: tuple[bytes, ...], base: bytes, mtime: int) -> None:
        self.counts["whiteouts"] += 1
        if base == _OPAQUE:
            if self.opts.mode == "overlay":
                xattr = self.opts.overlay_xattr_prefix + "opaque"
                try:
                    os.setxattr(self.path(parent), xattr, b"y", follow_symlinks=False)
                except PermissionError as exc:
                    raise ImageError(
                        f"cannot mark an overlay directory opaque ({xattr}): not permitted",
                        hint="trusted.* xattrs need root; use overlay_xattr_prefix='user.overlay.' "
                        "with a userxattr overlay mount",
                    ) from exc
            else:
                self.prune_lower(parent)
            return
        if base.startswith(_WHITEOUT + _WHITEOUT):
            return  # other AUFS metadata (.wh..wh.plnk and friends) means nothing here
        name = base[len(_WHITEOUT) :]
        if name in (b"", b".", b".."):
            raise ImageError(f"invalid whiteout {os.fsdecode(base)!r}")
        victim = (*parent, name)
        if victim in self.created:
            return  # a whiteout hides lower layers only, never its own layer's entries
        self.remove(victim)
        if self.opts.mode == "overlay":
            try:  # mode 0, as the kernel makes them
                os.mknod(self.path(victim), stat.S_IFCHR, os.makedev(0, 0))
            except PermissionError as exc:
                raise ImageError(
                    "cannot create an overlay whiteout (a character device 0/0): mknod is not permitted",
                ) from exc
            self.created.add(victim)
            os.utime(self.path(victim), ns=(mtime * 1_000_000_000,) * 2, follow_symlinks=False)

    def prune_lower(self, directory: tuple[bytes, ...]) -> None:
        """Remove everything under ``directory`` that this layer did not create."""
        with os.scandir(self.path(directory)) as it:
            names = [os.fsencode(e.name) for e in it]
        for name in names:
            child = (*directory, name)
            if child not in self.created:
                self.remove(child)
            elif stat.S_ISDIR(os.lstat(self.path(child)).st_mode):
                self.prune_lower(child)

    # -- metadata -------------------------------------------------------------------------------

    def skip(self, reason: str) -> None:
        self.counts["skipped"] += 1
        if len(self.reasons) < 20:
            self.reasons.append(reason)

    def set_xattrs(self, fd: int, member: _Member) -> None:
        if not self.opts.xattrs:
            return
        for name, value in member.xattrs.items():
            if name.startswith(_HOSTILE_XATTR_PREFIXES):
                continue  # overlay control attributes from a tar could redirect or hide lower content
            try:
                os.setxattr(fd, name, value)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES, errno.EINVAL):
                    raise
                self.skip(f"xattr {name} on {os.fsdecode(member.name)!r}: {exc.strerror}")

    def metadata_by_path(self, target: tuple[bytes, ...], member: _Member) -> None:
        """Owner, mode and mtime of a just-created symlink, device or fifo (its parents are real)."""
        full = self.path(target)
        is_link = member.typeflag == b"2"
        if self.chown:
            os.chown(full, member.uid, member.gid, follow_symlinks=False)
        if not is_link:
            os.chmod(full, member.mode)  # not a symlink: we just created it, so nothing is followed
        ns = member.mtime * 1_000_000_000
        os.utime(full, ns=(ns, ns), follow_symlinks=False)

    def finish_directories(self) -> None:
        """Deferred directory modes and mtimes, deepest first, each opened without following links."""
        for parts, mode, mtime in reversed(self.deferred_dirs):
            fd = self.open_dir_nofollow(parts)
            if fd is None:
                continue  # removed or replaced later in the layer
            try:
                os.fchmod(fd, mode)
                os.utime(fd, ns=(mtime * 1_000_000_000, mtime * 1_000_000_000))
            finally:
                os.close(fd)

    def open_dir_nofollow(self, parts: tuple[bytes, ...]) -> int | None:
        """An fd for ROOT/parts walking component by component with O_NOFOLLOW, or None."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.root, flags)
        for comp in parts:
            try:
                nxt = os.open(comp, flags, dir_fd=fd)
            except OSError:
                os.close(fd)
                return None
            os.close(fd)
            fd = nxt
        return fd


def apply_layer(tar: BinaryIO, root: Path, *, options: ApplyOptions | None = None) -> AppliedLayer:
    """Apply the uncompressed layer tar ``tar`` onto the directory ``root`` (created if missing).

    See the module docstring for the two modes and the safety promises. Nothing outside ``root``
    is ever created, modified or removed. Use ``forklift.oci.compression.open_uncompressed`` for a
    compressed blob. Raises ImageError for malformed or hostile content; what was applied before
    the error stays (apply into a scratch directory and rename it when that matters).
    """
    opts = options if options is not None else ApplyOptions()
    os.makedirs(root, exist_ok=True)
    applier = _Applier(os.fsencode(os.path.realpath(root)), opts)
    reader = _TarReader(tar, opts.compute_diff_id)
    while (member := reader.next_member()) is not None:
        try:
            applier.apply(member, reader)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise ImageError(f"entry name {os.fsdecode(member.name)[:80]!r}... is too long") from exc
            raise
    applier.finish_directories()
    if opts.compute_diff_id:
        reader.drain()
    c = applier.counts
    return AppliedLayer(
        entries=c["entries"],
        files=c["files"],
        directories=c["directories"],
        symlinks=c["symlinks"],
        hardlinks=c["hardlinks"],
        devices=c["devices"],
        whiteouts=c["whiteouts"],
        bytes_written=c["bytes"],
        skipped=c["skipped"],
        tar_size=reader.offset,
        diff_id=reader.digest,
        skipped_reasons=tuple(applier.reasons),
    )


def unpack_layer_for_overlay(
    blob: BinaryIO, target: Path, *, options: ApplyOptions | None = None
) -> AppliedLayer:
    """Unpack a layer blob (any compression, detected) into ``target`` as an overlayfs lower layer.

    Shorthand for ``apply_layer(open_uncompressed(blob), target, options=replace(options,
    mode="overlay"))``; ``target`` should be a fresh directory.
    """
    opts = replace(options if options is not None else ApplyOptions(), mode="overlay")
    with open_uncompressed(blob) as tar:
        return apply_layer(tar, target, options=opts)
