"""The build record: what each stage of a build weighed, and the paragraph ``forklift build`` prints.

``BuildRecord`` is what the build engine writes after building an image. It is a side file in the
store keyed by the image's manifest digest, ``<store root>/buildinfo/<manifest hex>.json``
(``make_build_record`` / ``write_build_record`` / ``read_build_record``); ``summarize`` is the
paragraph. Split out of ``report.size`` because every build that runs a step needs this and none
of the image measuring there: that module's imports and dataclasses cost a build tens of ms. The
names stay importable from ``report.size``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forklift.errors import ImageError
from forklift.fsatomic import atomic_write
from forklift.oci.model import Descriptor, Digest, MediaType
from forklift.oci.storelayout import StoreLayout
from forklift.records import record

if TYPE_CHECKING:
    from forklift.oci.store import Store
    from forklift.report.size import ImageSize

_RECORD_VERSION = 1
_LAYER_CACHE_VERSION = 1  # report.size's layer measurement cache, read here for two numbers


# ---- plain data ---------------------------------------------------------------------------------------


@record(kw_only=True)
class StageWeight:
    """What one build stage weighed: its whole image (base layers included), as built."""

    index: int
    name: str  # the stage name, or its index as text for an unnamed stage
    built: bool = True  # False: the plan skipped it (it weighed nothing)
    final: bool = False  # the stage that became the image
    layers: int | None = None  # None in records that did not count them
    stored_bytes: int = 0  # bytes as stored (built layers are stored uncompressed)
    uncompressed_bytes: int | None = None
    compressed_bytes: int | None = None  # known only when every layer is stored compressed (or measured)
    layer_digests: tuple[str, ...] = ()  # to tell which bytes the final image left out
    layer_sizes: tuple[int, ...] = ()  # per layer, as ``size`` counts them, in ``layer_digests`` order

    @property
    def size(self) -> int:
        """The uncompressed size when known, else the stored size."""
        return self.uncompressed_bytes if self.uncompressed_bytes is not None else self.stored_bytes


@record(kw_only=True)
class BuildRecord:
    """What ``forklift build`` recorded about an image it built: each stage's weight."""

    image_digest: str  # the manifest digest the record is keyed by
    image_id: str = ""
    target: str = ""  # the final stage's name
    stages: tuple[StageWeight, ...] = ()

    @property
    def final(self) -> StageWeight | None:
        """The stage that became the image."""
        return next((s for s in self.stages if s.final), None)

    @property
    def left_out(self) -> tuple[StageWeight, ...]:
        """Built stages other than the final one, except those the final image contains whole (a
        stage the final stage is built FROM): what the multi-stage build did not ship."""
        return tuple(s for s in self.stages if self.role(s) == "left out")

    def role(self, stage: StageWeight) -> str:
        """``final image``, ``left out``, ``in the final image`` (its layers all shipped: the final
        stage is built on it) or ``not built``."""
        if not stage.built:
            return "not built"
        if stage.final:
            return "final image"
        final = self.final
        if (
            final is not None
            and stage.layers
            and _has_layer_detail(stage)
            and _has_layer_detail(final)
            and set(stage.layer_digests) <= set(final.layer_digests)
        ):
            return "in the final image"
        return "left out"

    def kept_out_bytes(self) -> int | None:
        """Bytes of layers the other stages made that the final image does not contain (each layer once).

        None when the record has no layer digests (an older record).
        """
        final = self.final
        others = self.left_out
        if final is None or not others or not all(_has_layer_detail(s) for s in (final, *others)):
            return None
        shipped = set(final.layer_digests)
        sizes: dict[str, int] = {}
        for stage in others:
            for digest, size in zip(stage.layer_digests, stage.layer_sizes):
                if digest not in shipped:
                    sizes[digest] = size
        return sum(sizes.values())


def _has_layer_detail(stage: StageWeight) -> bool:
    return stage.layers is not None and len(stage.layer_digests) == len(stage.layer_sizes) == stage.layers


def human_bytes(size: int) -> str:
    """``2.9 MB``, ``812 kB``, ``17 B``: decimal units as docker shows them, at most one decimal."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 999.95 or unit == "TB":
            if unit == "B":
                return f"{size} B"
            return f"{value:.0f} {unit}" if value >= 99.95 else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


# ---- files -------------------------------------------------------------------------------------------


def _layer_cache_path(root: Path, digest: Digest) -> Path:
    return StoreLayout(root).layer_stats / f"{digest.algorithm}-{digest.hex}.json"


def _cached_sizes(root: Path, digest: Digest) -> tuple[int, int] | None:
    """(uncompressed, compressed) bytes of layer ``digest`` from report.size's measurement cache."""
    try:
        doc = json.loads(_layer_cache_path(root, digest).read_text())
        if doc["version"] != _LAYER_CACHE_VERSION:
            return None
        return int(doc["uncompressed"]), int(doc["compressed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half of one."""
    atomic_write(path, text, durable=False, parents=True)


# ---- build records -------------------------------------------------------------------------------------


def stage_weight(
    store: Store,
    *,
    index: int,
    name: str,
    layers: Sequence[Descriptor],
    final: bool,
    built: bool = True,
) -> StageWeight:
    """What a stage weighed, from its layer descriptors (base layers included).

    Layers stored uncompressed (all the layers forklift makes) are not read. A compressed layer (a
    pulled base) is measured once for its uncompressed size; the result is cached by digest.
    """
    uncompressed = 0
    compressed: int | None = 0
    sizes: list[int] = []
    for desc in layers:
        kind = MediaType.compression(desc.media_type) if MediaType.is_layer(desc.media_type) else "none"
        stats = _cached_sizes(store.root, desc.digest)
        if kind != "none" and stats is None:
            from forklift.report.size import measure_layer  # reads the layer tar: rare (a new base)

            measured = measure_layer(store, desc)
            stats = (measured.uncompressed, measured.compressed)
        plain = stats[0] if stats is not None else desc.size
        uncompressed += plain
        sizes.append(plain)
        if compressed is not None:
            if stats is not None:
                compressed += stats[1]
            elif kind != "none":
                compressed += desc.size
            else:
                compressed = None  # not compressed yet: an export or a push will tell
    return StageWeight(
        index=index,
        name=name,
        built=built,
        final=final,
        layers=len(layers),
        stored_bytes=sum(d.size for d in layers),
        uncompressed_bytes=uncompressed,
        compressed_bytes=compressed,
        layer_digests=tuple(str(d.digest) for d in layers),
        layer_sizes=tuple(sizes),
    )


def make_build_record(
    store: Store,
    *,
    image_digest: str,
    image_id: str,
    final_index: int,
    built: Iterable[tuple[int, str, Sequence[Descriptor]]],
    skipped: Iterable[tuple[int, str]] = (),
) -> BuildRecord:
    """The record of one built image: ``built`` holds ``(stage index, stage name, layer descriptors)``
    of every stage the image needed (its own stage, ``final_index``, included); ``skipped`` the
    ``(index, name)`` of stages the plan did not build. Stages come out in index order."""
    stages = [
        stage_weight(store, index=index, name=name, layers=layers, final=index == final_index)
        for index, name, layers in built
    ]
    stages += [StageWeight(index=index, name=name, built=False) for index, name in skipped]
    stages.sort(key=lambda s: s.index)
    final = next((s for s in stages if s.final), None)
    return BuildRecord(
        image_digest=image_digest,
        image_id=image_id,
        target=final.name if final is not None else "",
        stages=tuple(stages),
    )


def build_record_path(root: Path, manifest_digest: str) -> Path:
    """``<store root>/buildinfo/<manifest hex>.json``."""
    return StoreLayout(root).buildinfo / f"{Digest.parse(manifest_digest).hex}.json"


def build_record_json(record: BuildRecord) -> dict[str, Any]:
    """The record as a JSON document (what the side file holds, and ``forklift size --format json`` shows)."""
    return {
        "version": _RECORD_VERSION,
        "image_digest": record.image_digest,
        "image_id": record.image_id,
        "target": record.target,
        "stages": [
            {
                "index": s.index,
                "name": s.name,
                "built": s.built,
                "final": s.final,
                "layers": s.layers,
                "stored_bytes": s.stored_bytes,
                "uncompressed_bytes": s.uncompressed_bytes,
                "compressed_bytes": s.compressed_bytes,
                "layer_digests": list(s.layer_digests),
                "layer_sizes": list(s.layer_sizes),
            }
            for s in record.stages
        ],
    }


def write_build_record(root: Path, manifest_digest: str, record: BuildRecord) -> None:
    """Store ``record`` for the image ``manifest_digest`` under the store ``root`` (atomically).

    An unchanged record is not rewritten (a fully cached rebuild writes nothing).
    """
    path = build_record_path(root, manifest_digest)
    text = json.dumps(build_record_json(record), sort_keys=True, indent=1)
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return
    _atomic_write(path, text)


def read_build_record(root: Path, manifest_digest: str) -> BuildRecord | None:
    """The record ``forklift build`` left for the image ``manifest_digest``; None when there is none
    (or it is damaged, or of another version)."""
    try:
        path = build_record_path(root, manifest_digest)
        doc = json.loads(path.read_text())
    except (ImageError, OSError, ValueError):
        return None
    return _record_from_json(doc, manifest_digest)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _record_from_json(doc: Any, manifest_digest: str) -> BuildRecord | None:
    try:
        if doc.get("version") != _RECORD_VERSION:
            return None
        stages = tuple(
            StageWeight(
                index=int(s["index"]),
                name=str(s["name"]),
                built=bool(s.get("built", True)),
                final=bool(s.get("final", False)),
                layers=_opt_int(s.get("layers")),
                stored_bytes=int(s.get("stored_bytes", 0)),
                uncompressed_bytes=_opt_int(s.get("uncompressed_bytes")),
                compressed_bytes=_opt_int(s.get("compressed_bytes")),
                layer_digests=tuple(str(d) for d in s.get("layer_digests", ())),
                layer_sizes=tuple(int(n) for n in s.get("layer_sizes", ())),
            )
            for s in doc["stages"]
        )
        return BuildRecord(
            image_digest=str(doc.get("image_digest") or manifest_digest),
            image_id=str(doc.get("image_id", "")),
            target=str(doc.get("target", "")),
            stages=stages,
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


# ---- the summary ---------------------------------------------------------------------------------------


def _stage_label(stage: StageWeight) -> str:
    return f"'{stage.name}'" if not stage.name.isdigit() else f"#{stage.name}"


def _layers_phrase(count: int | None) -> str:
    if count is None:
        return ""
    return f" in {count} layer" + ("" if count == 1 else "s")


def summarize(record: BuildRecord, image: ImageSize | None = None) -> str:
    """The paragraph ``forklift build`` prints after a build, e.g. ``final image 2.9 MB (1.2 MB
    compressed) in 2 layers; builder stage 'builder' weighed 212 MB and was left out``.

    ``image`` (when given) supplies the final size and compressed size; else the record's final stage.
    """
    final = record.final
    if image is not None:
        size: int | None = image.uncompressed
        compressed = image.compressed
        count: int | None = len(image.layers)
    elif final is not None:
        size, compressed, count = final.size, final.compressed_bytes, final.layers
    else:
        size, compressed, count = None, None, None
    name = "final image" if record.left_out else "image"
    head = f"{name} {human_bytes(size)}" if size is not None else name
    if compressed is not None and size is not None:
        estimated = " est." if image is not None and image.compressed_estimated else ""
        head += f" ({human_bytes(compressed)}{estimated} compressed)"
    head += _layers_phrase(count)
    others = record.left_out
    if not others:
        return head
    if len(others) == 1:
        stage = others[0]
        tail = f"builder stage {_stage_label(stage)} weighed {human_bytes(stage.size)} and was left out"
    else:
        listed = ", ".join(f"{_stage_label(s)} {human_bytes(s.size)}" for s in others)
        tail = f"builder stages {listed} were left out"
    kept_out = record.kept_out_bytes()
    if kept_out is not None and kept_out > 0:
        whose = "its" if len(others) == 1 else "their"
        tail += f" ({human_bytes(kept_out)} of {whose} layers are not in the final image)"
    return f"{head}; {tail}"
