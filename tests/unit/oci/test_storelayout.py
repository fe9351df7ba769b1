"""The store's on-disk layout is a format: existing stores must keep working, so the paths are pinned."""

from __future__ import annotations

from pathlib import Path

from forklift.oci.model import Digest
from forklift.oci.store import Store
from forklift.oci.storelayout import StoreLayout


def test_paths_are_the_ones_existing_stores_use(tmp_path: Path) -> None:
    layout = StoreLayout(tmp_path)
    rel = {
        name: str(getattr(layout, name).relative_to(tmp_path))
        for name in (
            "blobs", "tmp", "refs", "refs_lock", "gc_lock", "roots", "leases", "snapshot_leases",
            "compressed", "registry_sources", "registry_compressed", "cache", "cache_steps",
            "cache_positions", "build_memo", "copy_memo", "context_stat", "cache_mounts", "snapshots",
            "buildinfo", "layer_stats", "exports", "bundles", "runtime_record",
        )
    }  # fmt: skip
    assert rel == {
        "blobs": "blobs",
        "tmp": "tmp",
        "refs": "refs.json",
        "refs_lock": "refs.lock",
        "gc_lock": "gc.lock",
        "roots": "roots",
        "leases": "leases",
        "snapshot_leases": "leases/snapshots",
        "compressed": "compressed",
        "registry_sources": "registry/sources",
        "registry_compressed": "registry/compressed",
        "cache": "cache",
        "cache_steps": "cache/steps",
        "cache_positions": "cache/positions",
        "build_memo": "cache/memo",
        "copy_memo": "cache/from",
        "context_stat": "cache/context-stat",
        "cache_mounts": "cache/mounts",
        "snapshots": "snapshots",
        "buildinfo": "buildinfo",
        "layer_stats": "buildinfo/layers",
        "exports": "exports",
        "bundles": "bundles",
        "runtime_record": "runtime.json",
    }
    assert layout.blob("sha256", "ab") == tmp_path / "blobs" / "sha256" / "ab"
    assert not any(tmp_path.iterdir())  # naming a path creates nothing


def test_the_store_writes_where_its_layout_says(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.layout == StoreLayout(tmp_path)
    digest = store.put_bytes(b"content")
    store.set_ref("x", digest)
    store.set_roots("cache", [digest])
    store.record_compressed(Digest.of(b"plain"), "gzip", digest, 7)
    assert store.layout.blob(digest.algorithm, digest.hex).read_bytes() == b"content"
    assert str(digest) in store.layout.refs.read_text()
    assert (store.layout.roots / "cache").read_text() == f"{digest}\n"
    assert (store.layout.compressed / "gzip").is_dir()
    for directory in (store.layout.tmp, store.layout.leases, store.layout.cache, store.layout.snapshots):
        assert directory.is_dir()
