"""A writable root filesystem over read-only layers, whose changes land in an ``upper`` directory.

The fast path is kernel overlayfs: the unpacked parent layers are the lower directories, an empty
``upper`` collects every change, and afterwards ``upper`` *is* the layer diff, in overlayfs'
format: a deleted lower entry is a whiteout (a character device 0/0), a directory that replaced a
lower one is opaque (xattr ``trusted.overlay.opaque="y"``). Nothing walks or copies the root
filesystem.

Where overlayfs cannot be mounted (``overlay_supported`` says so), ``copied_rootfs`` gives the same
result slowly: it merges the lowers into a plain directory, and after the run compares it with
what it was and writes an upper-equivalent directory in the same overlayfs format.

Lowers are given top-most first (overlayfs' ``lowerdir`` order) and are in overlayfs' format too.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from forklift.errors import ForkliftError
from forklift.records import record

# The kernel copies legacy mount(2) data into one page; the terminating NUL must fit as well.
MOUNT_DATA_MAX = os.sysconf("SC_PAGE_SIZE") - 1
# Options that keep the upper directory a plain diff on kernels where they are on by default:
# no redirect xattrs for renamed directories (rename gives EXDEV and tools copy instead), no
# metadata-only copy-ups, no inode index. Dropped if the kernel does not know them.
DIFF_OPTIONS: tuple[str, ...] = ("redirect_dir=off", "index=off", "metacopy=off")
OPAQUE_XATTRS: tuple[str, ...] = ("trusted.overlay.opaque", "user.overlay.opaque")
OVERLAY_XATTR_PREFIXES: tuple[str, ...] = ("trusted.overlay.", "user.overlay.")
# The copy fallback marks the directories it merged, because a directory removed and made again
# by the RUN may get the same inode number back: a directory without the mark is a new one.
LOWER_MARK = "user.forklift.lower"
_SKIPPED_XATTR_PREFIXES = (*OVERLAY_XATTR_PREFIXES, LOWER_MARK)
_MNT_DETACH = 2
# How many lowers one staged (read-only) overlay merges when even short links do not fit.
_STAGE_SIZE = 64


class OverlayError(ForkliftError):
    """Overlayfs could not be mounted or unmounted."""


@functools.cache
def _libc() -> ctypes.CDLL:
    # The interpreter's own symbols include libc's mount(2) and umount2(2); unlike
    # ctypes.util.find_library, this starts no helper process.
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: Path, fstype: str, flags: int, data: str) -> None:
    result = _libc().mount(source.encode(), os.fsencode(target), fstype.encode(), flags, data.encode())
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))


def _umount(target: Path) -> None:
    """Unmount ``target``; a busy mount is retried briefly and then detached lazily."""
    for _ in range(20):
        if _libc().umount2(os.fsencode(target), 0) == 0:
            return
        err = ctypes.get_errno()
        if err != errno.EBUSY:
            raise OSError(err, os.strerror(err), str(target))
        os.sched_yield()
    if _libc().umount2(os.fsencode(target), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))


def _escape(path: Path | str) -> str:
    """A path as an overlayfs option value: ``\\``, ``:`` and ``,`` escaped with a backslash."""
    return str(path).replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def overlay_options(
    lowers: Sequence[Path | str], upper: Path | None, work: Path | None, extra: Sequence[str] = ()
) -> str:
    """The overlayfs mount data for these directories (lowers top-most first)."""
    parts = ["lowerdir=" + ":".join(_escape(p) for p in lowers)]
    if upper is not None and work is not None:
        parts += [f"upperdir={_escape(upper)}", f"workdir={_escape(work)}"]
    parts += list(extra)
    return ",".join(parts)


def _mount_overlay_data(
    target: Path,
    lowers: Sequence[Path | str],
    upper: Path | None,
    work: Path | None,
    *,
    volatile: bool = False,
) -> None:
    """Mount with the diff-keeping (and volatile) options, dropping those this kernel refuses."""
    attempts: list[tuple[str, ...]] = [DIFF_OPTIONS, ()]
    if volatile and upper is not None:
        attempts = [(*DIFF_OPTIONS, "volatile"), ("volatile",), *attempts]
    for index, extra in enumerate(attempts):
        try:
            _mount("overlay", target, "overlay", 0, overlay_options(lowers, upper, work, extra))
            return
        except OSError as err:
            if err.errno != errno.EINVAL or index == len(attempts) - 1:
                raise


def _fits(lowers: Sequence[Path | str], upper: Path, work: Path) -> bool:
    return len(overlay_options(lowers, upper, work, DIFF_OPTIONS).encode()) <= MOUNT_DATA_MAX


def _short_links(lowers: Sequence[Path], stack: ExitStack) -> list[Path]:
    """Short symlinks to each lower (as Docker's overlay2 ``l/`` links do) in a fresh temp dir."""
    link_dir = Path(tempfile.mkdtemp(prefix="fl"))
    stack.callback(shutil.rmtree, link_dir, True)
    links = []
    for index, lower in enumerate(lowers):
        link = link_dir / format(index, "x")
        link.symlink_to(lower.resolve())
        links.append(link)
    return links


def _staged_lowers(lowers: Sequence[Path], stack: ExitStack) -> list[Path]:
    """Lowers that fit one mount: short links, and bottom chunks merged into read-only overlays.

    A staged overlay only ever merges plain directories (never another staged overlay): the
    kernel allows two levels of stacked filesystems.
    """
    raw = _short_links(lowers, stack)
    staged: list[Path] = []  # top-most first, below every raw link
    while True:
        probe = overlay_options([*raw, *staged], Path("/" + "u" * 200), Path("/" + "w" * 200), DIFF_OPTIONS)
        if len(probe.encode()) <= MOUNT_DATA_MAX:
            return [*raw, *staged]
        # Merge the bottom-most raw chunk into one read-only overlay (lowerdir only, no upper).
        chunk, raw = raw[-_STAGE_SIZE:], raw[:-_STAGE_SIZE]
        merged = Path(tempfile.mkdtemp(prefix="fls"))
        stack.callback(shutil.rmtree, merged, True)
        _mount_overlay_data(merged, chunk, None, None)
        stack.callback(_umount, merged)
        staged.insert(0, merged)


def unique_lowers(lowers: Sequence[Path]) -> list[Path]:
    """``lowers`` (top-most first) with repeats dropped, keeping each one's top-most place.

    Overlayfs refuses a directory given twice (an image may hold the same layer twice, e.g. two
    empty RUN layers). Keeping only the top-most copy gives the same merged tree: everything
    the lower copy provides, the upper copy provides again on top.
    """
    seen: set[Path] = set()
    out: list[Path] = []
    for lower in lowers:
        key = Path(os.path.realpath(lower))
        if key not in seen:
            seen.add(key)
            out.append(Path(lower))
    return out


@contextmanager
def mount_overlay(
    lowers: Sequence[Path], upper: Path, work: Path, target: Path, *, volatile: bool = False
) -> Iterator[Path]:
    """Mount overlayfs at ``target`` (lowers top-most first, empty ``upper`` and ``work``); yield it.

    Always unmounts on exit, and then removes ``work`` (overlayfs' private scratch). A lower
    given twice is used once, at its top-most place (``unique_lowers``). Long lower
    lists that do not fit the kernel's one-page mount data are mounted through short symlinks,
    and beyond that through staged read-only overlays. ``upper`` and ``work`` must be empty
    directories on the same filesystem (they are created if missing). With no lowers, an empty
    one is used (FROM scratch). ``volatile`` (kernel >= 5.10) makes fsync a no-op on the mount:
    much faster package installs; the upper dir is then only as durable as the page cache until
    the caller syncs it.
    """
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        lower_paths = unique_lowers(lowers)
        if not lower_paths:
            empty = Path(tempfile.mkdtemp(prefix="forklift-empty-lower-", dir=work.parent))
            stack.callback(shutil.rmtree, empty, True)
            lower_paths = [empty]
        for path in (upper, work, target):
            path.mkdir(parents=True, exist_ok=True)
        mount_lowers: Sequence[Path] = lower_paths
        if not _fits(lower_paths, upper, work):
            mount_lowers = _staged_lowers(lower_paths, stack)
        try:
            _mount_overlay_data(target, mount_lowers, upper, work, volatile=volatile)
        except OSError as err:
            raise OverlayError(
                f"cannot mount overlayfs at {target}: {err.strerror}",
                hint="forklift needs root (or a user namespace) and a kernel with overlayfs; "
                "the copy fallback is used where overlay_supported() is false",
            ) from err
        stack.callback(_umount, target)
        yield target


def overlay_supported(scratch_dir: Path) -> bool:
    """Whether overlayfs mounts under ``scratch_dir`` and records changes in its upper dir."""
    scratch_dir.mkdir(parents=True, exist_ok=True)
    probe = Path(tempfile.mkdtemp(prefix="overlay-probe-", dir=scratch_dir))
    try:
        lower, upper, work, merged = (probe / n for n in ("l", "u", "w", "m"))
        for d in (lower, upper, work, merged):
            d.mkdir()
        (lower / "f").write_text("x")
        # volatile: unmounting a plain overlay syncs the whole upper filesystem (tens of ms).
        with mount_overlay([lower], upper, work, merged, volatile=True):
            if (merged / "f").read_text() != "x":
                return False
            (merged / "g").write_text("y")
            (merged / "f").unlink()
        whiteout = os.lstat(upper / "f")
        return (upper / "g").read_text() == "y" and stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    except (OSError, ForkliftError):
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


# --- the copy fallback ------------------------------------------------------------------------


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) in (b"y", b"x"):
                return True
        except OSError:
            continue
    return False


def _copy_xattrs(src: Path, dst: Path) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith(_SKIPPED_XATTR_PREFIXES):
            continue
        with contextlib.suppress(OSError):
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)


def _copy_entry(src: Path, dst: Path, st: os.stat_result, links: dict[tuple[int, int], Path]) -> None:
    """Copy one entry (not a directory's contents) with owner, mode, times and xattrs."""
    mode = st.st_mode
    if stat.S_ISREG(mode) and st.st_nlink > 1:
        first = links.get((st.st_dev, st.st_ino))
        if first is not None:
            os.link(first, dst)
            return
        links[(st.st_dev, st.st_ino)] = dst
    if stat.S_ISDIR(mode):
        dst.mkdir()
    elif stat.S_ISREG(mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        os.mknod(dst, mode, st.st_rdev)
    else:
        return  # sockets do not belong in a layer
    os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(mode):
        os.chmod(dst, stat.S_IMODE(mode))
    _copy_xattrs(src, dst)
    if not stat.S_ISDIR(mode):  # directories get their times after their contents are written
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def merge_lowers(lowers: Sequence[Path], target: Path) -> None:
    """Merge overlay-format lowers (top-most first) into the empty directory ``target``."""
    dir_times: dict[Path, tuple[int, int]] = {}
    for lower in reversed(lowers):
        links: dict[tuple[int, int], Path] = {}
        for dirpath, dirnames, filenames in os.walk(lower):
            src_dir = Path(dirpath)
            dst_dir = target / src_dir.relative_to(lower)
            keep_dirs = []
            for name in sorted(dirnames) + sorted(filenames):
                src, dst = src_dir / name, dst_dir / name
                st = os.lstat(src)
                if _is_whiteout(st):
                    _remove(dst)
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                if is_dir and os.path.isdir(dst) and not dst.is_symlink() and not _is_opaque(src):
                    # Merge into the existing directory; this layer's metadata wins.
                    os.chmod(dst, stat.S_IMODE(st.st_mode))
                    os.lchown(dst, st.st_uid, st.st_gid)
                else:
                    _remove(dst)
                    _copy_entry(src, dst, st, links)
                if is_dir:
                    dir_times[dst] = (st.st_atime_ns, st.st_mtime_ns)
                    keep_dirs.append(name)
            dirnames[:] = [d for d in dirnames if d in keep_dirs]
    for path, times in sorted(dir_times.items(), key=lambda item: len(item[0].parts), reverse=True):
        if path.is_dir():
            os.utime(path, ns=times, follow_symlinks=False)


@record
class _Seen:
    """What an entry of the merged tree was before the run."""

    ino: int
    ctime_ns: int
    mtime_ns: int
    size: int
    is_dir: bool


def _mark(path: Path) -> bool:
    try:
        os.setxattr(path, LOWER_MARK, b"1", follow_symlinks=False)
    except OSError:
        return False
    return True


def _marked(path: Path) -> bool:
    try:
        return os.getxattr(path, LOWER_MARK, follow_symlinks=False) == b"1"
    except OSError:
        return False


def _record(root: Path) -> tuple[dict[str, _Seen], bool]:
    """What every entry under ``root`` is now; directories get the mark (whether it worked)."""
    seen: dict[str, _Seen] = {}
    marks = True
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            marks = _mark(Path(dirpath, name)) and marks
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            seen[str(path.relative_to(root))] = _Seen(
                st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size, stat.S_ISDIR(st.st_mode)
            )
    return seen, marks


def _set_opaque(path: Path) -> None:
    try:
        os.setxattr(path, OPAQUE_XATTRS[0], b"y", follow_symlinks=False)
    except PermissionError:  # trusted.* needs CAP_SYS_ADMIN; overlayfs' userxattr form then
        os.setxattr(path, OPAQUE_XATTRS[1], b"y", follow_symlinks=False)


def write_upper(merged: Path, before: dict[str, _Seen], upper: Path, *, marks: bool = False) -> None:
    """Write into ``upper`` what overlayfs would have: changed entries, whiteouts, opaque dirs.

    With ``marks``, directories of ``before`` carry ``LOWER_MARK`` and one without it is new.
    """
    links: dict[tuple[int, int], Path] = {}
    dir_times: list[tuple[Path, int, int]] = []
    children: dict[str, list[str]] = {}
    for rel_str in before:
        parent, _, name = rel_str.rpartition("/")
        children.setdefault(parent or ".", []).append(name)

    def ensure_parent(rel: Path) -> None:
        missing = []
        parent = rel.parent
        while parent != Path(".") and not (upper / parent).exists():
            missing.append(parent)
            parent = parent.parent
        for path in reversed(missing):
            st = os.lstat(merged / path)
            _copy_entry(merged / path, upper / path, st, links)
            dir_times.append((upper / path, st.st_atime_ns, st.st_mtime_ns))

    def copy(rel: Path, st: os.stat_result) -> None:
        ensure_parent(rel)
        _copy_entry(merged / rel, upper / rel, st, links)
        if stat.S_ISDIR(st.st_mode):
            dir_times.append((upper / rel, st.st_atime_ns, st.st_mtime_ns))

    def walk(rel_dir: Path, all_new: bool) -> None:
        names = sorted(os.listdir(merged / rel_dir))
        present = set(names)
        for name in names:
            rel = rel_dir / name
            st = os.lstat(merged / rel)
            old = None if all_new else before.get(str(rel))
            is_dir = stat.S_ISDIR(st.st_mode)
            if old is None:
                copy(rel, st)
                if is_dir:
                    walk(rel, True)
                continue
            replaced = old.ino != st.st_ino or old.is_dir != is_dir
            if is_dir and not replaced and marks:
                replaced = not _marked(merged / rel)
            changed = replaced or (old.ctime_ns, old.mtime_ns, old.size) != (
                st.st_ctime_ns,
                st.st_mtime_ns,
                st.st_size,
            )
            if changed:
                copy(rel, st)
                if is_dir and replaced:
                    # A directory created where a lower entry was: overlayfs makes it opaque.
                    _set_opaque(upper / rel)
            if is_dir:
                walk(rel, replaced)
        if all_new:
            return
        for name in sorted(children.get(str(rel_dir), ())):
            if name not in present:
                gone = rel_dir / name
                ensure_parent(gone)
                os.mknod(upper / gone, stat.S_IFCHR | 0o000, 0)

    walk(Path("."), False)
    for path, atime, mtime in reversed(dir_times):
        os.utime(path, ns=(atime, mtime), follow_symlinks=False)


@contextmanager
def copied_rootfs(lowers: Sequence[Path], upper: Path, target: Path) -> Iterator[Path]:
    """The overlay fallback: merge ``lowers`` into ``target``, yield it, then diff into ``upper``.

    On a normal exit ``upper`` holds what overlayfs' upper directory would hold after the same
    changes. ``target`` is emptied afterwards either way. Slow (copies every file): use only where
    ``overlay_supported`` is false.
    """
    upper.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    try:
        merge_lowers(lowers, target)
        before, marks = _record(target)
        yield target
        write_upper(target, before, upper, marks=marks)
    finally:
        for child in list(target.iterdir()):
            _remove(child)


@contextmanager
def writable_rootfs(
    lowers: Sequence[Path],
    upper: Path,
    work: Path,
    target: Path,
    *,
    use_overlay: bool,
    volatile: bool = False,
) -> Iterator[Path]:
    """A writable rootfs at ``target`` whose changes end up in ``upper``: overlayfs or the copy fallback."""
    if use_overlay:
        with mount_overlay(lowers, upper, work, target, volatile=volatile) as root:
            yield root
    else:
        with copied_rootfs(lowers, upper, target) as root:
            yield root
