"""Unpacked layers, one directory per diff_id under ``<store root>/snapshots``, shared by every build.

Each layer is unpacked once, in overlayfs' lower format (whiteouts as 0/0 character devices, opaque
directories marked), and then used read-only as an overlay lower by every RUN that needs it, in
this build, concurrent stages, or later builds. A layer that forklift just made from an overlay
upper directory is adopted as is (renamed in), never unpacked again.

Concurrency: a per-diff_id ``flock`` serialises the filling of one snapshot across threads and
processes; a snapshot becomes visible only by an atomic rename of a complete directory.

Leases: every ``SnapshotCache`` that hands out a snapshot (``path``, ``has``, ``ensure``, ``adopt``)
records its diff_id in a lease file ``<store root>/leases/snapshots/<pid>-<random>`` that it holds
an ``flock`` on for as long as the object lives (one object per build or ``forklift run``). Prune
removes a snapshot only under its per-diff_id lock and only when no live lease names it, and a user
records its lease *before* passing through that lock, so a snapshot is never removed between a
build looking it up and mounting it. A dead process's lease is unlocked and ignored (then deleted).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from forklift.oci.storelayout import StoreLayout


def _hex(diff_id: str) -> str:
    algo, _, hexpart = diff_id.partition(":")
    if not hexpart or not hexpart.isalnum() or not algo.isalnum():
        raise ValueError(f"not a digest: {diff_id!r}")
    return f"{algo}-{hexpart}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class SnapshotCache:
    """diff_id -> unpacked directory (overlay lower format) under ``<store root>/snapshots``."""

    def __init__(self, store_root: Path) -> None:
        self.root = StoreLayout(store_root).snapshots
        self.root.mkdir(parents=True, exist_ok=True)
        self.leases_dir = StoreLayout(store_root).snapshot_leases
        self._lease_lock = threading.Lock()
        self._lease: IO[str] | None = None  # created on first use: prune's own instance holds none
        self._held: set[str] = set()
        self._lease_path = self.leases_dir / ".none"

    def _hold(self, diff_id: str) -> None:
        """Record ``diff_id`` in this object's lease, then wait out any removal of it in progress."""
        name = _hex(diff_id)
        with self._lease_lock:
            if name in self._held:
                return
            if self._lease is None:
                self.leases_dir.mkdir(parents=True, exist_ok=True)
                name_ = f"{os.getpid()}-{uuid.uuid4().hex[:16]}"
                tmp = self.leases_dir / f".{name_}.tmp"
                fh = open(tmp, "a")  # noqa: SIM115 - held for the object's lifetime (see release)
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                # Visible only once locked, so prune never takes it for a dead process's lease.
                self._lease_path = self.leases_dir / name_
                os.rename(tmp, self._lease_path)
                self._lease = fh
            self._lease.write(name + "\n")
            self._lease.flush()
            self._held.add(name)
        # A prune that read the leases before our line landed may be removing it right now: its
        # removal holds this lock, so after passing through, the snapshot is either whole or gone.
        with _locked(self.root / f".{name}.lock"):
            pass

    def release(self) -> None:
        """Drop this object's lease (prune may then remove what it used). Idempotent."""
        with self._lease_lock:
            if self._lease is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._lease_path.unlink()  # before closing: never a visible unlocked lease
                self._lease.close()
                self._lease = None
            self._held.clear()

    def __del__(self) -> None:
        # A build that never called release() still leaves no lease file behind once collected.
        with contextlib.suppress(Exception):
            self.release()

    def __enter__(self) -> SnapshotCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def path(self, diff_id: str) -> Path:
        """Where the snapshot of ``diff_id`` lives (it may not exist yet); leased from now on."""
        self._hold(diff_id)
        return self.root / _hex(diff_id)

    def has(self, diff_id: str) -> bool:
        """Whether the snapshot is complete and present (and leased from now on)."""
        return self.path(diff_id).is_dir()

    def scratch_dir(self, prefix: str) -> Path:
        """A fresh private directory on the snapshots' filesystem (so adopting it is a rename)."""
        path = self.root / f".{prefix}-{uuid.uuid4().hex[:16]}"
        path.mkdir()
        return path

    def ensure(self, diff_id: str, fill: Callable[[Path], None]) -> Path:
        """The snapshot of ``diff_id``, made with ``fill(empty_dir)`` if missing (once, under a lock)."""
        final = self.path(diff_id)
        if final.is_dir():
            return final
        with _locked(self.root / f".{_hex(diff_id)}.lock"):
            if final.is_dir():
                return final
            tmp = self.scratch_dir("unpack")
            try:
                fill(tmp)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return final

    def clean_scratch(self, *, older_than: float = 6 * 3600) -> int:
        """Remove scratch dirs left by builds that died (older than ``older_than`` seconds and with
        nothing mounted below them); returns how many. Live builds' scratch dirs are young."""
        import time

        try:
            mounts = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return 0
        mounted = [line.split()[4] for line in mounts.splitlines() if len(line.split()) > 4]
        now = time.time()
        removed = 0
        for entry in self.root.iterdir():
            if not entry.name.startswith(".") or entry.name.endswith(".lock") or not entry.is_dir():
                continue
            try:
                if now - entry.lstat().st_mtime < older_than:
                    continue
            except OSError:
                continue
            prefix = str(entry) + "/"
            if any(m.startswith(prefix) or m == str(entry) for m in mounted):
                continue  # an overlay of a killed build is still mounted there: leave it alone
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        return removed

    def remove_except(self, keep: set[str]) -> tuple[int, int]:
        """Remove every snapshot whose diff_id is not in ``keep`` and that no live lease names;
        returns (count, bytes freed).

        Each removal holds that snapshot's lock and reads the leases under it, so a build filling
        or starting to use it at the same time is not disturbed (see the module docstring).
        """
        removed = freed = 0
        kept_names = {_hex(d) for d in keep}
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or entry.name in kept_names or not entry.is_dir():
                continue
            # The lock file stays: someone may be waiting on it, and a new one would not exclude them.
            with _locked(self.root / f".{entry.name}.lock"):
                if entry.name in leased_snapshots(self.leases_dir):
                    continue
                size = _bytes_freed_by_removing(entry)
                shutil.rmtree(entry, ignore_errors=True)
            removed += 1
            freed += size
        return removed, freed

    def adopt(self, diff_id: str, directory: Path) -> Path:
        """Make ``directory`` (on this filesystem, overlay lower format) the snapshot of ``diff_id``.

        When the snapshot already exists the directory is removed instead (same content).
        """
        final = self.path(diff_id)
        with _locked(self.root / f".{_hex(diff_id)}.lock"):
            if final.is_dir():
                shutil.rmtree(directory, ignore_errors=True)
            else:
                os.rename(directory, final)
        return final


def leased_snapshots(leases_dir: Path, *, remove_dead: bool = False) -> set[str]:
    """Snapshot names (``sha256-<hex>``) that live leases under ``leases_dir`` hold.

    A lease file nobody holds a lock on belongs to a process that ended; with ``remove_dead`` it
    is deleted.
    """
    out: set[str] = set()
    if not leases_dir.is_dir():
        return out
    for path in leases_dir.iterdir():
        if path.name.startswith("."):
            continue  # being created (not locked yet)
        try:
            fh = open(path)  # noqa: SIM115 - closed below
        except (FileNotFoundError, IsADirectoryError):
            continue
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: a live build or run
                out.update(line.strip() for line in fh.read().splitlines() if line.strip())
                continue
        if remove_dead:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return out


def snapshots_in_use(store_root: Path) -> set[str]:
    """diff_ids whose snapshots the build cache still needs: every layer a cache record names.

    (A lazy layer's content exists only as its snapshot.) ``forklift prune`` keeps these and the
    diff_ids of the images it keeps, and may remove the rest with ``SnapshotCache.remove_except``.
    """
    import json

    out: set[str] = set()
    steps = StoreLayout(store_root).cache_steps
    if not steps.is_dir():
        return out
    for record in steps.glob("*.json"):
        try:
            layer = json.loads(record.read_text()).get("layer")
        except (OSError, ValueError):
            continue
        if isinstance(layer, dict) and "diff_id" in layer:
            out.add(str(layer["diff_id"]))
    return out


def _bytes_freed_by_removing(tree: Path) -> int:
    """What deleting ``tree`` gives back: a file also linked from outside it (COPY re-runs hard-link
    the unchanged files of the previous snapshot) frees nothing until its last link goes."""
    freed = 0
    links: dict[int, list[int]] = {}  # inode -> [links seen in tree, st_nlink, size]
    for path in tree.rglob("*"):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            seen = links.setdefault(st.st_ino, [0, st.st_nlink, st.st_size])
            seen[0] += 1
        else:
            freed += st.st_size
    return freed + sum(size for count, nlink, size in links.values() if count == nlink)
