"""``forklift prune`` orchestration (execute.prune) and snapshot leases (execute.snapshots)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from forklift.execute.cache import BuildCache, CacheRecord, LayerRef, StepInputs
from forklift.execute.prune import prune_store, referenced_diff_ids
from forklift.execute.snapshots import SnapshotCache, leased_snapshots
from forklift.oci.image import image_config, load_image
from forklift.oci.store import Store

ORPHAN = "sha256:" + "1" * 64
CACHED = "sha256:" + "2" * 64


def _fill(content: bytes) -> Callable[[Path], None]:
    def fill(target: Path) -> None:
        (target / "f").write_bytes(content)

    return fill


def test_a_live_lease_keeps_a_snapshot_until_released(tmp_path: Path) -> None:
    user = SnapshotCache(tmp_path)
    user.ensure(ORPHAN, _fill(b"x" * 100))
    pruner = SnapshotCache(tmp_path)
    assert pruner.remove_except(set()) == (0, 0)
    assert user.has(ORPHAN)
    user.release()
    assert pruner.remove_except(set()) == (1, 100)
    assert not pruner.path(ORPHAN).exists()


def test_a_lease_of_another_process_is_respected_and_a_dead_one_is_not(tmp_path: Path) -> None:
    SnapshotCache(tmp_path).ensure(ORPHAN, _fill(b"y"))
    holder = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from forklift.execute.snapshots import SnapshotCache
        cache = SnapshotCache(Path({str(tmp_path)!r}))
        assert cache.has({ORPHAN!r})
        print("ready", flush=True)
        sys.stdin.readline()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        leases = tmp_path / "leases" / "snapshots"
        assert leased_snapshots(leases) == {"sha256-" + "1" * 64}
        assert SnapshotCache(tmp_path).remove_except(set()) == (0, 0)
    finally:
        proc.kill()  # dies without releasing: its lease file stays, unlocked
        proc.wait()
    assert len(list(leases.iterdir())) == 1
    assert leased_snapshots(leases, remove_dead=True) == set()
    assert list(leases.iterdir()) == []
    assert SnapshotCache(tmp_path).remove_except(set())[0] == 1


def _setup(store_root: Path, busybox_image: Callable[[Path], str]) -> str:
    """A store with busybox named, its snapshot, an orphan snapshot, a cache record with its
    (lazy) snapshot, a cache mount, a stale build record and a stale registry note."""
    name = busybox_image(store_root)
    store = Store(store_root)
    (diff_id,) = image_config(load_image(store, name)).diff_ids
    snaps = SnapshotCache(store_root)
    snaps.ensure(str(diff_id), _fill(b"b" * 10))
    snaps.ensure(ORPHAN, _fill(b"o" * 1000))
    snaps.ensure(CACHED, _fill(b"c" * 300))
    snaps.release()
    BuildCache(store_root).put(
        CacheRecord("sha256:" + "3" * 64, "2024-01-01T00:00:00Z", LayerRef(CACHED, CACHED, 1, "x")),
        StepInputs(parent="p", instruction="RUN x"),
    )
    mount = store_root / "cache" / "mounts" / ("a" * 32)
    mount.mkdir(parents=True)
    (mount / "pkg").write_bytes(b"m" * 50)
    (store_root / "buildinfo").mkdir()
    (store_root / "buildinfo" / ("4" * 64 + ".json")).write_text("{}")
    note = store_root / "registry" / "sources" / ("sha256-" + "5" * 64)
    note.parent.mkdir(parents=True)
    note.write_text("example.com/x\n")
    return name


def test_prune_keeps_what_refs_and_cache_need_and_says_what_it_freed(
    store_root: Path, busybox_image: Callable[[Path], str]
) -> None:
    name = _setup(store_root, busybox_image)
    store = Store(store_root)
    blobs_before = set(store.list_blobs())
    assert len(referenced_diff_ids(store)) == 1
    report = prune_store(store_root)
    assert (report.get("snapshots").count, report.get("snapshots").freed_bytes) == (1, 1000)
    assert report.get("blobs").count == 0 and set(store.list_blobs()) == blobs_before
    assert report.get("build records").count == 1 and report.get("registry notes").count == 1
    assert report.get("build cache").count == 0 and report.get("cache mounts").count == 0
    assert report.freed_bytes == 1000 + 2 + len("example.com/x\n")
    snaps = SnapshotCache(store_root)
    assert snaps.has(CACHED) and not snaps.has(ORPHAN)
    assert (store_root / "cache" / "mounts" / ("a" * 32)).is_dir()
    assert list((store_root / "buildinfo").glob("*.json")) == []

    # --cache: the record and its lazy snapshot go; the image and its snapshot stay.
    snaps.release()
    report = prune_store(store_root, cache=True)
    assert report.get("build cache").count == 1 and report.get("snapshots").count == 1
    assert not SnapshotCache(store_root).has(CACHED)
    assert set(store.list_blobs()) == blobs_before and load_image(store, name)
    assert (store_root / "cache" / "mounts" / ("a" * 32)).is_dir()

    # rmi + prune: the image's blobs and snapshot go too.
    store.delete_ref(name)
    report = prune_store(store_root)
    assert report.get("blobs").count == len(blobs_before) and list(store.list_blobs()) == []
    assert report.get("snapshots").count == 1
    assert [p for p in (store_root / "snapshots").iterdir() if not p.name.startswith(".")] == []


def test_prune_all_drops_idle_cache_mounts_only(store_root: Path) -> None:
    mounts = store_root / "cache" / "mounts"
    for ident in ("busy", "idle"):
        (mounts / ident).mkdir(parents=True)
        (mounts / ident / "data").write_bytes(b"z" * 70)
    fd = os.open(mounts / "busy.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a running step using it (as RUN --mount=type=cache does)
        report = prune_store(store_root, cache=True, cache_mounts=True)
    finally:
        os.close(fd)
    assert (report.get("cache mounts").count, report.get("cache mounts").freed_bytes) == (1, 70)
    assert (mounts / "busy").is_dir() and not (mounts / "idle").exists()


def test_prune_cache_keeps_records_of_a_running_build_as_roots(store_root: Path) -> None:
    store = Store(store_root)
    layer = store.put_bytes(b"layer")
    BuildCache(store_root).put(
        CacheRecord("sha256:" + "6" * 64, "t", LayerRef(str(layer), str(layer), 5, "x")),
        StepInputs(parent="p", instruction="RUN y"),
    )
    report = prune_store(store_root)
    assert store.has(layer) and report.get("blobs").count == 0
    report = prune_store(store_root, cache=True)
    assert not store.has(layer) and report.get("blobs").count == 1
    assert json.loads(json.dumps([k.kind for k in report.kinds]))[0] == "build cache"


def test_freed_bytes_count_a_shared_file_once_when_its_last_link_goes(tmp_path: Path) -> None:
    OTHER = "sha256:" + "3" * 64
    cache = SnapshotCache(tmp_path)
    first = cache.ensure(ORPHAN, _fill(b"x" * 1000))

    def linked(target: Path) -> None:  # what a re-run COPY does with an unchanged file
        os.link(first / "f", target / "f")
        os.link(first / "f", target / "g")

    cache.ensure(OTHER, linked)
    cache.release()
    # Three links, two of them in the second snapshot: the bytes come back once, when both go.
    assert SnapshotCache(tmp_path).remove_except(set()) == (2, 1000)
