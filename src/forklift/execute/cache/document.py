"""The format of a build cache export: one OCI image manifest, as any registry stores it.

Its ``artifactType`` is ``application/vnd.forklift.cache.v1+json``; its config blob is a JSON document
(``CacheDocument``) listing cache entries (key -> the step result exactly as the step cache records it,
``format.entry_json``, plus the key) and which stages used which keys; its layers are the layer blobs
those entries use, compressed for transport, each descriptor carrying the layer's diff_id as an
annotation. ``DOCUMENT_SCHEMA`` and ``CACHE_VERSION`` name the format: a change of either is a new one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from forklift.errors import ForkliftError, ImageError
from forklift.execute.cache.format import CACHE_VERSION, CacheRecord, StepInputs, entry_json, record_from_json
from forklift.execute.cache.recording import StageCacheKeys
from forklift.execute.cache.specs import CacheMode
from forklift.execute.cache.steps import BuildCache
from forklift.oci.model import Descriptor, Manifest, canonical_json
from forklift.records import record

CACHE_ARTIFACT_TYPE = "application/vnd.forklift.cache.v1+json"
CACHE_CONFIG_TYPE = "application/vnd.forklift.cache.config.v1+json"
DIFF_ID_ANNOTATION = "vnd.forklift.cache.diff_id"
DOCUMENT_SCHEMA = "forklift-cache-export-v1"


@record
class CacheEntry:
    """One exported step result: the record and the inputs that made its key."""

    record: CacheRecord
    inputs: StepInputs

    def to_json(self) -> dict[str, Any]:
        """The entry as the cache document holds it (``format.entry_json`` plus the key)."""
        return {"key": self.record.key, **entry_json(self.record, self.inputs)}

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> CacheEntry:
        """The inverse of ``to_json``; ImageError for a malformed entry."""
        try:
            inputs = StepInputs.from_json(doc["inputs"])
            record = record_from_json(str(doc["key"]), doc)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ImageError(f"the cache export holds a malformed entry ({err!r})") from None
        if inputs.key() != record.key:
            # The key is a digest of the inputs: an entry whose inputs do not make its key is not
            # trusted (and would never be looked up by a build anyway).
            raise ImageError(f"the cache export's entry {record.key} does not match its inputs")
        return CacheEntry(record, inputs)


@record
class CacheDocument:
    """The config blob of a cache export: which stages, and their entries."""

    mode: CacheMode
    stages: tuple[StageCacheKeys, ...]
    entries: tuple[CacheEntry, ...]

    def to_bytes(self) -> bytes:
        """Canonical JSON (deterministic: the same cache exports the same blob)."""
        return canonical_json(
            {
                "schema": DOCUMENT_SCHEMA,
                "cache_version": CACHE_VERSION,
                "mode": self.mode,
                "stages": [{"name": s.stage, "final": s.final, "keys": list(s.keys)} for s in self.stages],
                "entries": [e.to_json() for e in self.entries],
            }
        )

    @staticmethod
    def from_bytes(raw: bytes) -> CacheDocument:
        """Parse a cache document; ImageError when it is not one forklift can read."""
        try:
            doc = json.loads(raw)
        except ValueError as err:
            raise ImageError(f"the cache export's config is not JSON: {err}") from None
        if not isinstance(doc, dict) or doc.get("schema") != DOCUMENT_SCHEMA:
            raise ImageError("the cache export's config is not a forklift cache document")
        try:
            mode: CacheMode = "max" if doc.get("mode") == "max" else "min"
            stages = tuple(
                StageCacheKeys(str(s["name"]), tuple(str(k) for k in s["keys"]), bool(s.get("final")))
                for s in doc.get("stages", [])
            )
            entries_raw = doc.get("entries", [])
            if not isinstance(entries_raw, list):
                raise TypeError("entries is not a list")
        except (KeyError, TypeError) as err:
            raise ImageError(f"the cache document is malformed ({err!r})") from None
        return CacheDocument(mode, stages, tuple(CacheEntry.from_json(e) for e in entries_raw))


def cache_manifest(config: bytes, layers: Sequence[Descriptor]) -> Manifest:
    """The OCI manifest of a cache export: the document as config, the layer blobs as layers."""
    return Manifest(
        config=Descriptor.of(CACHE_CONFIG_TYPE, config),
        layers=tuple(layers),
        artifact_type=CACHE_ARTIFACT_TYPE,
    )


def read_cache_manifest(raw: bytes, where: str) -> Manifest:
    """Parse a manifest and check it is a forklift cache export; ForkliftError otherwise."""
    try:
        manifest = Manifest.from_bytes(raw)
    except ImageError as err:
        raise ForkliftError(f"{where} is not a forklift build cache: {err.message}") from None
    if manifest.config.media_type != CACHE_CONFIG_TYPE:
        raise ForkliftError(
            f"{where} is not a forklift build cache (its config is {manifest.config.media_type})",
            hint="--cache-from reads what forklift's --cache-to wrote",
        )
    return manifest


def read_entry(cache: BuildCache, key: str) -> CacheEntry | None:
    """The record and inputs stored under ``key`` (``BuildCache.get_entry``), or None."""
    found = cache.get_entry(key)
    return None if found is None else CacheEntry(*found)
