"""``forklift prune``: remove what no image name, cache entry or running build needs, per kind.

What a store holds and what keeps each kind alive:

- blobs (``blobs/``): reachable from a reference, a roots file (the build cache's layers), a live
  store lease (a running build, pull or load) -- ``Store.prune`` decides.
- snapshots (``snapshots/<diff_id>``): the diff_ids of every image a reference names (its config's
  ``rootfs.diff_ids``), the layers cache records name (a lazy layer exists only as its snapshot),
  and whatever a live snapshot lease names (a running build's or ``forklift run``'s lowers; see
  ``execute.snapshots``). Scratch directories of killed builds go too.
- the build cache (``cache/`` but ``cache/mounts``): kept by default, as docker's ``image prune``
  keeps BuildKit's cache; ``cache=True`` drops it (docker's ``builder prune``), and with it what
  only it kept.
- cache mounts (``cache/mounts``, ``RUN --mount=type=cache``): dropped only with ``cache_mounts=True``
  and never while a running step holds one (its lock).
- build records and layer measurements (``buildinfo/``) and registry notes (``registry/``): side
  files keyed by a blob digest; they go when their blob went.

Order matters: the cache is dropped first (so what only it kept becomes garbage), then blobs, then
snapshots (whose keep set reads the references as they are now), then the side files of the blobs
that are gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from forklift.errors import ImageError
from forklift.execute.cache import BuildCache
from forklift.execute.snapshots import SnapshotCache, leased_snapshots, snapshots_in_use
from forklift.oci.model import Digest, MediaType, child_descriptors
from forklift.oci.store import Store
from forklift.oci.storelayout import StoreLayout
from forklift.records import record

_MAX_JSON = 16 << 20  # manifests and configs are small; a bigger blob is a layer


@record
class PrunedKind:
    """What prune removed of one kind: how many items and how many bytes they took."""

    kind: str  # "blobs", "snapshots", "build cache", "cache mounts", "build records", ...
    count: int
    freed_bytes: int


@record
class PruneReport:
    """Per kind, what ``prune_store`` removed (every kind listed, zero or not)."""

    kinds: tuple[PrunedKind, ...]

    @property
    def freed_bytes(self) -> int:
        """Bytes freed in total."""
        return sum(k.freed_bytes for k in self.kinds)

    def get(self, kind: str) -> PrunedKind:
        """The entry for ``kind`` (zero when it is not listed)."""
        return next((k for k in self.kinds if k.kind == kind), PrunedKind(kind, 0, 0))


def prune_store(root: Path, *, cache: bool = False, cache_mounts: bool = False) -> PruneReport:
    """Remove from the store at ``root`` everything nothing needs (see the module docstring).

    ``cache`` also drops the build cache; ``cache_mounts`` also drops idle cache mounts.
    Safe to run while builds run: they hold store leases, snapshot leases and mount locks.
    """
    store = Store(root)
    build_cache = BuildCache(store.root)
    kinds: list[PrunedKind] = []

    if cache:
        kinds.append(_drop_build_cache(store.layout.cache))
        # What the remaining records (written by builds running meanwhile) need stays a root.
        store.set_roots("cache", _parse_digests(build_cache.layer_digests()))
    else:
        kinds.append(PrunedKind("build cache", 0, 0))
    kinds.append(
        _drop_cache_mounts(store.layout.cache_mounts) if cache_mounts else PrunedKind("cache mounts", 0, 0)
    )

    blobs = store.prune(keep=_parse_digests(build_cache.layer_digests()))
    kinds.append(PrunedKind("blobs", blobs.removed, blobs.freed_bytes))

    snapshots = SnapshotCache(store.root)
    leased_snapshots(snapshots.leases_dir, remove_dead=True)  # lease files of processes that died
    keep = referenced_diff_ids(store) | snapshots_in_use(store.root)
    count, freed = snapshots.remove_except(keep)
    scratch = snapshots.clean_scratch()
    kinds.append(PrunedKind("snapshots", count + scratch, freed))

    kinds.append(_drop_orphans("build records", _build_record_files(store.root), store))
    kinds.append(_drop_orphans("registry notes", _registry_note_files(store.root), store))
    return PruneReport(tuple(kinds))


def referenced_diff_ids(store: Store) -> set[str]:
    """The layer diff_ids of every image a reference names (indexes followed to each manifest)."""
    out: set[str] = set()
    seen: set[Digest] = set()
    todo = list(store.list_refs().values())
    while todo:
        digest = todo.pop()
        if digest in seen or not store.has(digest) or store.blob_size(digest) > _MAX_JSON:
            continue
        seen.add(digest)
        try:
            raw = store.read_blob(digest)
        except ImageError:
            continue  # corrupt: nothing to follow
        for desc in child_descriptors(raw):
            if MediaType.is_config(desc.media_type):
                out.update(_config_diff_ids(store, desc.digest))
            elif MediaType.is_manifest(desc.media_type) or MediaType.is_index(desc.media_type):
                todo.append(desc.digest)
    return out


def _config_diff_ids(store: Store, digest: Digest) -> list[str]:
    try:
        doc = json.loads(store.read_blob(digest))
        return [str(d) for d in doc["rootfs"]["diff_ids"]]
    except (ImageError, ValueError, KeyError, TypeError):
        return []


def _parse_digests(texts: Iterable[str]) -> set[Digest]:
    out: set[Digest] = set()
    for text in texts:
        with contextlib.suppress(ImageError):
            out.add(Digest.parse(text))
    return out


def _tree_size(path: Path) -> int:
    """Bytes of the files under ``path`` (or of ``path`` itself), as lstat counts them."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
        return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())
    except OSError:
        return 0


def _drop_build_cache(cache_dir: Path) -> PrunedKind:
    """Remove every cache record (steps, memos, positions, stat caches); mounts are separate."""
    count = freed = 0
    if not cache_dir.is_dir():
        return PrunedKind("build cache", 0, 0)
    for part in sorted(cache_dir.iterdir()):
        if part.name == "mounts" or not part.is_dir():
            continue
        for entry in list(part.iterdir()):
            if entry.name.startswith("."):
                continue  # a record being written right now (temp name, renamed in)
            size = _tree_size(entry)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            count += part.name == "steps"  # what a user calls a cache entry is a step result
            freed += size
    return PrunedKind("build cache", count, freed)


def _drop_cache_mounts(mounts_dir: Path) -> PrunedKind:
    """Remove every cache mount no running step holds (a step holds ``<mount>.lock`` while it runs)."""
    count = freed = 0
    if not mounts_dir.is_dir():
        return PrunedKind("cache mounts", 0, 0)
    for entry in sorted(mounts_dir.iterdir()):
        if entry.name.startswith(".") or entry.name.endswith(".lock") or not entry.is_dir():
            continue
        fd = os.open(str(entry) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # in use by a running step
            size = _tree_size(entry)
            shutil.rmtree(entry, ignore_errors=True)
            count += 1
            freed += size
        finally:
            os.close(fd)  # the lock file stays: a waiter may hold it open
    return PrunedKind("cache mounts", count, freed)


def _build_record_files(root: Path) -> list[tuple[Path, Digest]]:
    """``buildinfo/<hex>.json`` (by manifest digest) and ``buildinfo/layers/<algo>-<hex>.json``."""
    out: list[tuple[Path, Digest]] = []
    base = StoreLayout(root).buildinfo
    for path in base.glob("*.json"):
        with contextlib.suppress(ImageError):
            out.append((path, Digest.parse("sha256:" + path.stem)))
    for path in StoreLayout(root).layer_stats.glob("*.json"):
        algo, _, hexpart = path.stem.partition("-")
        with contextlib.suppress(ImageError):
            out.append((path, Digest.parse(f"{algo}:{hexpart}")))
    return out


def _registry_note_files(root: Path) -> list[tuple[Path, Digest]]:
    """``registry/sources/<algo>-<hex>`` and ``registry/compressed/<algo>-<hex>.<compression>``
    (a compression memo also goes when the compressed blob it names went)."""
    out: list[tuple[Path, Digest]] = []
    for path in StoreLayout(root).registry_sources.glob("*"):
        algo, _, hexpart = path.name.partition("-")
        with contextlib.suppress(ImageError):
            out.append((path, Digest.parse(f"{algo}:{hexpart}")))
    for path in StoreLayout(root).registry_compressed.glob("*.*"):
        algo, _, rest = path.name.partition("-")
        with contextlib.suppress(ImageError):
            out.append((path, Digest.parse(f"{algo}:{rest.split('.')[0]}")))
        with contextlib.suppress(OSError, ImageError):
            out.append((path, Digest.parse(path.read_text().strip())))
    return out


def _drop_orphans(kind: str, files: list[tuple[Path, Digest]], store: Store) -> PrunedKind:
    """Remove each side file whose blob is no longer stored."""
    count = freed = 0
    for path, digest in files:
        if path.name.startswith(".") or store.has(digest):
            continue
        with contextlib.suppress(FileNotFoundError):
            size = path.lstat().st_size
            path.unlink()
            count += 1
            freed += size
    return PrunedKind(kind, count, freed)
