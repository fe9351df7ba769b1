"""Cache export/import: spec parsing, the cache document and manifest, key recording, and a local
layout round trip between two stores (no runtime needed: the entries are written directly)."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from forklift.errors import ForkliftError, ImageError
from forklift.execute.cache import (
    CACHE_ARTIFACT_TYPE,
    CACHE_CONFIG_TYPE,
    DIFF_ID_ANNOTATION,
    BuildCache,
    CacheDestination,
    CacheDocument,
    CacheEntry,
    CacheRecord,
    CacheSource,
    LayerRef,
    RecordingBuildCache,
    StageCacheKeys,
    StepInputs,
    StepPosition,
    cache_manifest,
    export_cache,
    import_cache,
    parse_cache_from,
    parse_cache_spec,
    parse_cache_to,
    read_cache_manifest,
    select_keys,
)
from forklift.oci.model import Descriptor, Digest, Manifest, MediaType
from forklift.oci.store import Store

# ---- specs ---------------------------------------------------------------------------------------


def test_cache_to_registry_and_local_specs() -> None:
    assert parse_cache_to("type=registry,ref=reg.example:5000/app:cache,mode=max") == CacheDestination(
        type="registry", ref="reg.example:5000/app:cache", mode="max"
    )
    local = parse_cache_to("type=local,dest=/tmp/c")
    assert local == CacheDestination(type="local", dest=Path("/tmp/c"), mode="min", tag="cache")
    assert parse_cache_to("type=local,dest=d,compression=uncompressed,tag=t1,ignore-error=true") == (
        CacheDestination(type="local", dest=Path("d"), compression="none", tag="t1", ignore_error=True)
    )
    # buildx attributes forklift has no use for are accepted.
    assert parse_cache_to("type=registry,ref=a/b:c,oci-mediatypes=true,image-manifest=true").ref == "a/b:c"


def test_cache_from_specs() -> None:
    assert parse_cache_from("type=registry,ref=a/b:c") == CacheSource(type="registry", ref="a/b:c")
    assert parse_cache_from("user/app:cache") == CacheSource(type="registry", ref="user/app:cache")
    assert parse_cache_from("type=local,src=/x") == CacheSource(type="local", src=Path("/x"))
    digest = "sha256:" + "a" * 64
    assert parse_cache_from(f"type=local,src=/x,digest={digest}").digest == digest
    assert isinstance(parse_cache_spec("type=local,src=/x", export=False), CacheSource)
    assert isinstance(parse_cache_spec("type=local,dest=/x", export=True), CacheDestination)


@pytest.mark.parametrize(
    ("text", "export", "message"),
    [
        ("", True, "empty spec"),
        ("ref=a/b", True, "type= is missing"),
        ("type=s3,bucket=x", True, "unsupported --cache-to type 's3'"),
        ("type=gha", False, "unsupported --cache-from type 'gha'"),
        ("type=registry", True, "type=registry needs ref=REF"),
        ("type=registry,mode=max", False, "type=registry needs ref=REF"),
        ("type=local", True, "type=local needs dest=DIR"),
        ("type=local,dest=/x", False, "type=local needs src=DIR"),
        ("type=registry,ref=a/b,mode=all", True, "mode='all'"),
        ("type=registry,ref=a/b,compression=lz4", True, "compression='lz4'"),
        ("type=registry,ref=a/b,colour=red", True, "unknown attribute colour"),
        ("type=registry,ref=a/b,mode=max", False, "unknown attribute mode"),
        ("type=registry,ref=a/b,ref=c/d", True, "ref is given twice"),
        ("type=registry,ref=a/b,junk", True, "'junk' is not key=value"),
        ("type=registry,ref=UPPER/Case", True, "ref='UPPER/Case'"),
        ("type=local,dest=/x,tag=bad tag", True, "tag='bad tag'"),
        ("type=local,src=/x,digest=nope", False, "digest='nope'"),
        ("type=registry,ref=a/b,ignore-error=maybe", True, "not true or false"),
    ],
)
def test_bad_specs_are_clear_errors(text: str, export: bool, message: str) -> None:
    with pytest.raises(ForkliftError) as err:
        parse_cache_spec(text, export=export)
    assert message in err.value.message


# ---- which keys, and the document ------------------------------------------------------------------


def test_select_keys_min_is_the_final_stages_and_max_is_every_stage_in_order() -> None:
    stages = [
        StageCacheKeys("builder", ("k1", "k2")),
        StageCacheKeys("tools", ("k3", "k1")),
        StageCacheKeys("app", ("k4", "k2"), final=True),
    ]
    assert select_keys(stages, "min") == ["k4", "k2"]
    assert select_keys(stages, "max") == ["k1", "k2", "k3", "k4"]


def _entry(instruction: str, layer: LayerRef | None = None) -> CacheEntry:
    inputs = StepInputs(parent="sha256:" + "1" * 64, instruction=instruction, env=(("A", "1"),))
    return CacheEntry(CacheRecord(inputs.key(), "2024-01-01T00:00:00Z", layer, {"x": "y"}), inputs)


def test_cache_document_round_trips_and_refuses_tampered_entries() -> None:
    layer = LayerRef("sha256:" + "2" * 64, "sha256:" + "2" * 64, 10, MediaType.OCI_LAYER)
    doc = CacheDocument(
        "max", (StageCacheKeys("s", ("k",), True),), (_entry("RUN a", layer), _entry("ENV b"))
    )
    raw = doc.to_bytes()
    assert CacheDocument.from_bytes(raw) == doc
    assert doc.to_bytes() == raw  # deterministic
    parsed = json.loads(raw)
    assert parsed["entries"][0]["layer"]["diff_id"] == layer.diff_id
    assert parsed["entries"][1]["layer"] is None
    parsed["entries"][0]["inputs"]["instruction"] = "RUN something else"
    with pytest.raises(ImageError, match="does not match its inputs"):
        CacheDocument.from_bytes(json.dumps(parsed).encode())
    with pytest.raises(ImageError, match="not a forklift cache document"):
        CacheDocument.from_bytes(b'{"architecture": "amd64"}')
    with pytest.raises(ImageError, match="not JSON"):
        CacheDocument.from_bytes(b"\x00")


def test_cache_manifest_is_an_oci_artifact_and_images_are_refused() -> None:
    config = CacheDocument("min", (), ()).to_bytes()
    layer = Descriptor(MediaType.OCI_LAYER_GZIP, Digest.of(b"x"), 1, annotations={DIFF_ID_ANNOTATION: "d"})
    manifest = cache_manifest(config, [layer])
    raw = json.loads(manifest.to_bytes())
    assert raw["mediaType"] == MediaType.OCI_MANIFEST
    assert raw["artifactType"] == CACHE_ARTIFACT_TYPE
    assert raw["config"]["mediaType"] == CACHE_CONFIG_TYPE
    assert raw["config"]["digest"] == str(Digest.of(config))
    assert read_cache_manifest(manifest.to_bytes(), "here") == manifest
    image = Manifest(config=Descriptor.of(MediaType.OCI_CONFIG, b"{}"))
    with pytest.raises(ForkliftError, match="here is not a forklift build cache"):
        read_cache_manifest(image.to_bytes(), "here")
    with pytest.raises(ForkliftError, match="not a forklift build cache"):
        read_cache_manifest(b'{"schemaVersion": 2, "manifests": []}', "here")


# ---- recording which keys each stage used ------------------------------------------------------------


def test_recording_cache_ties_keys_to_stages_across_threads(tmp_path: Path) -> None:
    cache = RecordingBuildCache(tmp_path)

    def stage(name: str, steps: int, *, no_cache: bool = False) -> None:
        for i in range(steps):
            inputs = StepInputs(parent=name, instruction=f"RUN {i}")
            key = inputs.key()
            # The engine's order: get (unless --no-cache), last_inputs, put on a miss.
            if not no_cache:
                cache.get(key)
            cache.last_inputs(StepPosition("scope", name, i))
            cache.put(CacheRecord(key, "t"), inputs)

    threads = [
        threading.Thread(target=stage, args=("a", 20)),
        threading.Thread(target=stage, args=("b", 20)),
        threading.Thread(target=stage, args=("c", 3), kwargs={"no_cache": True}),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    used = cache.used_keys()
    for name, steps in (("a", 20), ("b", 20), ("c", 3)):
        assert used[name] == tuple(
            StepInputs(parent=name, instruction=f"RUN {i}").key() for i in range(steps)
        )
    stages = {s.stage: s for s in cache.stage_keys({"b"})}
    assert stages["b"].final and not stages["a"].final


# ---- a local round trip between two stores --------------------------------------------------------------


def _layer_tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _seed(root: Path) -> tuple[Store, list[CacheEntry]]:
    """A store with two layered steps and one metadata step in its cache."""
    store = Store(root)
    cache = BuildCache(root)
    entries = []
    parent = "sha256:" + "0" * 64
    for i, payload in enumerate([b"one" * 1000, None, b"three" * 1000]):
        layer = None
        if payload is not None:
            blob = _layer_tar(f"f{i}", payload)
            digest = store.put_bytes(blob)
            layer = LayerRef(str(digest), str(digest), len(blob), MediaType.OCI_LAYER)
        inputs = StepInputs(parent=parent, instruction=f"STEP {i}")
        record = CacheRecord(inputs.key(), f"2024-01-0{i + 1}T00:00:00Z", layer)
        cache.put(record, inputs)
        entries.append(CacheEntry(record, inputs))
        parent = inputs.key()
    return store, entries


@pytest.mark.parametrize(
    ("spec", "media_type"),
    [
        ("", MediaType.OCI_LAYER_GZIP),
        (",compression=zstd", MediaType.OCI_LAYER_ZSTD),
        (",compression=uncompressed", MediaType.OCI_LAYER),
    ],
)
def test_local_round_trip_restores_records_and_uncompressed_layers(
    tmp_path: Path, spec: str, media_type: str
) -> None:
    store, entries = _seed(tmp_path / "a")
    keys = tuple(e.record.key for e in entries)
    dest = tmp_path / "layout"
    result = export_cache(
        store,
        [StageCacheKeys("s", (*keys, "sha256:" + "f" * 64), True)],
        parse_cache_to(f"type=local,dest={dest}{spec}"),
    )
    assert (result.entries, result.layers, result.skipped) == (3, 2, 1)
    assert result.digest is not None
    manifest = Manifest.from_bytes((dest / "blobs" / "sha256" / result.digest.hex).read_bytes())
    assert [d.media_type for d in manifest.layers] == [media_type, media_type]
    assert [d.annotations[DIFF_ID_ANNOTATION] for d in manifest.layers] == [
        e.record.layer.diff_id for e in entries if e.record.layer is not None
    ]

    fresh = Store(tmp_path / "b")
    imported = import_cache(fresh, parse_cache_from(f"type=local,src={dest}"))
    assert imported.found and imported.entries == 3
    cache = BuildCache(fresh.root)
    for entry in entries:
        assert cache.get(entry.record.key) == entry.record
        if entry.record.layer is not None:
            # The very blob the first store had (decompressed from the gzip transport form).
            assert fresh.has(Digest.parse(entry.record.layer.digest))
    assert fresh.get_roots("cache") == {
        Digest.parse(e.record.layer.digest) for e in entries if e.record.layer
    }


@pytest.mark.parametrize("compression", ["uncompressed", "gzip"])
def test_import_of_a_corrupt_layer_writes_no_entry(tmp_path: Path, compression: str) -> None:
    store, entries = _seed(tmp_path / "a")
    dest = tmp_path / "layout"
    stages = [StageCacheKeys("s", tuple(e.record.key for e in entries), True)]
    result = export_cache(store, stages, parse_cache_to(f"type=local,dest={dest},compression={compression}"))
    assert result.digest is not None
    manifest = Manifest.from_bytes((dest / "blobs" / "sha256" / result.digest.hex).read_bytes())
    victim = dest / "blobs" / "sha256" / manifest.layers[-1].digest.hex
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    fresh = Store(tmp_path / "b")
    with pytest.raises(ForkliftError, match="of the cache export is corrupt"):
        import_cache(fresh, parse_cache_from(f"type=local,src={dest}"))
    assert all(BuildCache(fresh.root).get(e.record.key) is None for e in entries)


def test_missing_local_cache_is_not_found_or_an_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    assert not import_cache(store, parse_cache_from(f"type=local,src={tmp_path / 'none'}")).found
    with pytest.raises(ForkliftError, match=r"no index\.json"):
        import_cache(store, parse_cache_from(f"type=local,src={tmp_path / 'none'}"), missing_ok=False)
    _, entries = _seed(tmp_path / "a")
    dest = tmp_path / "layout"
    export_cache(
        Store(tmp_path / "a"),
        [StageCacheKeys("s", (entries[0].record.key,), True)],
        parse_cache_to(f"type=local,dest={dest},tag=v1"),
    )
    assert not import_cache(store, parse_cache_from(f"type=local,src={dest}")).found  # tag "cache"
    assert import_cache(store, parse_cache_from(f"type=local,src={dest},tag=v1")).entries == 1


def test_a_layer_kept_only_as_a_snapshot_is_written_for_the_export(tmp_path: Path) -> None:
    from forklift.execute.snapshots import SnapshotCache
    from forklift.snapshot.diff import DirectorySource, LayerOptions, write_layer

    store = Store(tmp_path / "a")
    staged = tmp_path / "staged"
    (staged / "app").mkdir(parents=True)
    (staged / "app" / "f.txt").write_text("lazy")
    blob = io.BytesIO()
    digests = write_layer(DirectorySource(staged), blob, LayerOptions(clamp_mtime=1700000000))
    SnapshotCache(store.root).adopt(digests.diff_id, staged)  # the engine's lazy layer: no blob
    layer = LayerRef(digests.digest, digests.diff_id, digests.size, MediaType.OCI_LAYER)
    inputs = StepInputs(
        parent="p", instruction="COPY f.txt /app/", metadata=(("source_date_epoch", "1700000000"),)
    )
    record = CacheRecord(inputs.key(), "t", layer, {"layer_source": "dir"})
    BuildCache(store.root).put(record, inputs)
    assert not store.has(Digest.parse(layer.digest))

    dest = tmp_path / "layout"
    result = export_cache(
        store, [StageCacheKeys("s", (record.key,), True)], parse_cache_to(f"type=local,dest={dest}")
    )
    assert (result.entries, result.layers, result.skipped) == (1, 1, 0)
    assert store.blob_path(Digest.parse(layer.digest)).read_bytes() == blob.getvalue()
    fresh = Store(tmp_path / "b")
    import_cache(fresh, parse_cache_from(f"type=local,src={dest}"))
    assert fresh.read_blob(Digest.parse(layer.digest)) == blob.getvalue()
    assert BuildCache(fresh.root).get(record.key) == record


def test_import_keeps_usable_local_records_and_replaces_broken_ones(tmp_path: Path) -> None:
    store, entries = _seed(tmp_path / "a")
    dest = tmp_path / "layout"
    export_cache(
        store,
        [StageCacheKeys("s", tuple(e.record.key for e in entries), True)],
        parse_cache_to(f"type=local,dest={dest}"),
    )

    other, _ = _seed(tmp_path / "b")  # the same steps, built in this store too
    cache = BuildCache(other.root)
    mine = [cache.get(e.record.key) for e in entries]
    local = CacheRecord(entries[0].record.key, "2030-01-01T00:00:00Z", entries[0].record.layer)
    cache.put(local, entries[0].inputs)
    broken_layer = entries[2].record.layer
    assert broken_layer is not None
    other.blob_path(Digest.parse(broken_layer.digest)).unlink()  # pruned: that record is a miss now

    result = import_cache(other, parse_cache_from(f"type=local,src={dest}"))
    assert (result.entries, result.kept) == (1, 2)
    assert cache.get(entries[0].record.key) == local
    assert cache.get(entries[1].record.key) == mine[1]
    assert other.has(Digest.parse(broken_layer.digest))


def test_an_export_without_entries_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "a")
    dest = tmp_path / "layout"
    # No keys recorded (a build answered from the memo), or only keys whose records are gone.
    for stages in ([], [StageCacheKeys("s", ("sha256:" + "e" * 64,), True)]):
        result = export_cache(store, stages, parse_cache_to(f"type=local,dest={dest}"))
        assert not result.written and result.digest is None
    assert not dest.exists()
