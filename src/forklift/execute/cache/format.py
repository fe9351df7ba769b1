"""The build cache's format: a step's inputs, its key, and the record of its result as JSON.

The key is ``sha256`` over the parent's identity, the expanded instruction, the ARG/ENV values the
step can see, the digests of every source set a COPY/ADD reads, and the metadata that ends up in
the layer (ownership, modes, options). Secret values never enter it. A record holds the layer the
step produced (or none for a metadata-only step), the history timestamp to reuse (so a fully cached
rebuild gives the same image ID), op-specific data, and the inputs that made the key; the same JSON
is a step file of the local cache (``steps``) and an entry of a cache export (``document``).
Changing any of it changes ``CACHE_VERSION``: existing stores and exports would no longer match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from forklift.records import record

CACHE_VERSION = "forklift-cache-v1"


@record
class SourceDigest:
    """The digest of one source set a step reads, with per-entry digests to explain a change."""

    label: str  # e.g. "context src/" or "stage builder /out"
    digest: str
    files: tuple[tuple[str, str], ...] = ()  # (relpath, digest of that entry's line)


@record
class StepInputs:
    """Everything a step's result depends on."""

    parent: str  # identity of the state the step starts from
    instruction: str  # the instruction after expansion, as it is recorded
    env: tuple[tuple[str, str], ...] = ()  # ARG and ENV values visible to the step, sorted
    sources: tuple[SourceDigest, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()  # options that change the result (chown, network, ...)

    def key(self) -> str:
        """The cache key: a sha256 over every input (per-file digests enter through set digests)."""
        doc = {
            "v": CACHE_VERSION,
            "parent": self.parent,
            "instruction": self.instruction,
            "env": [list(p) for p in self.env],
            "sources": [[s.label, s.digest] for s in self.sources],
            "metadata": [list(p) for p in self.metadata],
        }
        return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (for the record files)."""
        return {
            "parent": self.parent,
            "instruction": self.instruction,
            "env": [list(p) for p in self.env],
            "sources": [
                {"label": s.label, "digest": s.digest, "files": [list(f) for f in s.files]}
                for s in self.sources
            ],
            "metadata": [list(p) for p in self.metadata],
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> StepInputs:
        """The inverse of ``to_json``."""
        return StepInputs(
            parent=str(doc["parent"]),
            instruction=str(doc["instruction"]),
            env=tuple((str(k), str(v)) for k, v in doc.get("env", [])),
            sources=tuple(
                SourceDigest(
                    str(s["label"]), str(s["digest"]), tuple((str(a), str(b)) for a, b in s.get("files", []))
                )
                for s in doc.get("sources", [])
            ),
            metadata=tuple((str(k), str(v)) for k, v in doc.get("metadata", [])),
        )


@record
class LayerRef:
    """A layer blob in the store."""

    digest: str
    diff_id: str
    size: int
    media_type: str


@record
class CacheRecord:
    """The result of a step: its layer (or none), its history timestamp, op-specific data."""

    key: str
    created: str
    layer: LayerRef | None = None
    data: Mapping[str, str] = field(default_factory=dict)


@record
class StepPosition:
    """Where a step sits, stable across builds: used only to explain misses."""

    scope: str  # the build's identity: context directory and Dockerfile path
    stage: str
    index: int

    def file_name(self) -> str:
        """The file name of this position's record."""
        raw = f"{self.scope}\0{self.stage}\0{self.index}".encode()
        return hashlib.sha256(raw).hexdigest()[:40] + ".json"


def entry_json(record: CacheRecord, inputs: StepInputs) -> dict[str, Any]:
    """A record and its inputs as a step file (and a cache export's entry, plus its key) holds them."""
    layer = record.layer
    return {
        "created": record.created,
        "layer": None
        if layer is None
        else {
            "digest": layer.digest,
            "diff_id": layer.diff_id,
            "size": layer.size,
            "media_type": layer.media_type,
        },
        "data": dict(record.data),
        "inputs": inputs.to_json(),
    }


def record_from_json(key: str, doc: Mapping[str, Any]) -> CacheRecord:
    """The record ``entry_json`` wrote for ``key`` (KeyError/TypeError/ValueError when malformed)."""
    layer = doc.get("layer")
    ref = None
    if layer:
        ref = LayerRef(
            str(layer["digest"]), str(layer["diff_id"]), int(layer["size"]), str(layer["media_type"])
        )
    return CacheRecord(
        key=key,
        created=str(doc["created"]),
        layer=ref,
        data={str(k): str(v) for k, v in dict(doc.get("data") or {}).items()},
    )
