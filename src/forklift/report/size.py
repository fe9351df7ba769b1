"""Where an image's bytes go: per layer (with the step that made it), per file, and per build stage.

The reason multi-stage builds exist is that builder stages are heavy and the final image is not.
This module measures both sides:

- ``analyze_image`` reads an image in the store: its size uncompressed and compressed, each layer
  with the history entry (``created_by``) that made it, and each layer's largest files (read from the
  layer tar through the store). What a layer's tar says never changes, so the measurement is cached
  by layer digest under ``<store root>/buildinfo/layers/``.
- ``BuildRecord`` is what the build engine writes after building an image: what each stage
  weighed. It is a side file in the store keyed by the image's manifest digest,
  ``<store root>/buildinfo/<manifest hex>.json`` (``write_build_record`` / ``read_build_record``).
- ``summarize`` is the one paragraph ``forklift build`` prints; ``render_text`` and ``size_json``
  are ``forklift size``'s outputs; ``check_max_size`` is ``forklift build --max-size``.

Sizes are shown in decimal units, as docker shows them; ``parse_size`` reads sizes as docker does
(kB/MB/GB decimal, KiB/MiB/GiB binary, plain bytes).
"""

from __future__ import annotations

import contextlib
import heapq
import io
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from forklift.errors import BuildError, ForkliftError, ImageError
from forklift.oci.compression import CompressingWriter, open_uncompressed
from forklift.oci.image import (
    Image,
    history_with_layers,
    image_digest,
    image_id,
    image_manifest,
)
from forklift.oci.model import Descriptor, Digest, HistoryEntry, MediaType
from forklift.oci.store import Store

DEFAULT_TOP_FILES = 5
"""How many of a layer's largest files are listed unless asked otherwise."""

_CACHED_TOP_FILES = 20  # what the layer cache keeps, so most requests are served from it
_RECORD_VERSION = 1
_LAYER_CACHE_VERSION = 1
_CHUNK = 1 << 20


# ---- plain data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSize:
    """A regular file in a layer and its size in bytes."""

    path: str  # absolute, as it appears in the container: /usr/lib/libc.so.6
    size: int


@dataclass(frozen=True, kw_only=True)
class LayerStats:
    """What reading a layer's tar tells; a function of the layer's digest only (so it is cached)."""

    uncompressed: int  # bytes of the tar stream
    compressed: int  # bytes as stored when stored compressed; else a gzip estimate
    compressed_estimated: bool  # True: the layer is stored uncompressed and ``compressed`` is gzip's
    entries: int  # tar entries (files, directories, links, whiteouts)
    content: int  # bytes of regular files
    whiteouts: int  # paths this layer deletes from the layers below
    largest: tuple[FileSize, ...]  # largest regular files, largest first
    top: int  # how many largest files were asked for when this was measured


@dataclass(frozen=True, kw_only=True)
class LayerSize:
    """One layer of an image with the step that made it."""

    index: int  # 1 = the bottom (base) layer
    digest: str
    media_type: str
    stored: int  # bytes as stored in the store (the descriptor's size)
    uncompressed: int
    compressed: int | None  # None only when not measured and the layer is stored uncompressed
    compressed_estimated: bool = False
    created_by: str = ""
    created: str | None = None
    comment: str | None = None
    entries: int | None = None
    whiteouts: int | None = None
    largest: tuple[FileSize, ...] = ()

    @property
    def size(self) -> int:
        """The uncompressed size (what ranking and budgets use)."""
        return self.uncompressed

    @property
    def step(self) -> str:
        """``created_by`` as a person reads it (see ``describe_step``)."""
        return describe_step(self.created_by)


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
class ImageSize:
    """An image's size, layer by layer, and (for images forklift built) stage by stage."""

    name: str  # what the user called it (a name, or the digest)
    digest: str  # manifest digest
    image_id: str  # config digest
    config_bytes: int
    layers: tuple[LayerSize, ...]  # base first
    empty_steps: int = 0  # history entries that made no layer (ENV, CMD, ...)
    build: BuildRecord | None = None

    @property
    def uncompressed(self) -> int:
        """Bytes of all layers uncompressed (what ``docker images`` calls SIZE)."""
        return sum(layer.size for layer in self.layers)

    @property
    def compressed(self) -> int | None:
        """Bytes a registry holds: config plus compressed layers (None when a layer was not measured)."""
        parts = [layer.compressed for layer in self.layers]
        if any(p is None for p in parts):
            return None
        return self.config_bytes + sum(p for p in parts if p is not None)

    @property
    def compressed_estimated(self) -> bool:
        """Whether some layer's compressed size is a gzip estimate (it is stored uncompressed)."""
        return any(layer.compressed_estimated for layer in self.layers)

    def largest_layers(self, count: int = 3) -> tuple[LayerSize, ...]:
        """The ``count`` largest layers, largest first (ties: the lower layer first)."""
        return tuple(sorted(self.layers, key=lambda layer: (-layer.size, layer.index))[:count])


# ---- sizes as text ---------------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_size(text: str) -> int:
    """Bytes in a size such as ``50MB``, ``1.5GiB``, ``512k`` or ``1048576``, as docker reads them.

    Decimal units (k/kB, M/MB, G/GB, T/TB, P/PB) are powers of 1000; binary units (KiB, MiB, GiB,
    TiB, PiB; ``Ki`` etc.) powers of 1024; case does not matter. Raises ForkliftError otherwise.
    """
    match = _SIZE_RE.match(text)
    if match is None or (match.group(3) and not match.group(2)):
        raise ForkliftError(
            f"invalid size {text!r}",
            hint="a number of bytes, optionally with a unit: 50MB, 1.5GB (decimal), 512MiB, 1GiB (binary)",
        )
    number, prefix, binary, _ = match.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** _POWERS[prefix.lower()])


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


def describe_step(created_by: str) -> str:
    """A history ``created_by`` as a person reads it.

    ``RUN /bin/sh -c make # buildkit`` becomes ``RUN make``; docker's classic
    ``/bin/sh -c #(nop)  CMD ["sh"]`` becomes ``CMD ["sh"]`` and ``/bin/sh -c make`` becomes ``RUN make``.
    """
    text = " ".join(created_by.split())
    text = text.removesuffix(" # buildkit").removesuffix("# buildkit").strip()
    if text.startswith("/bin/sh -c #(nop)"):
        return text.removeprefix("/bin/sh -c #(nop)").strip()
    for shell_prefix in ("/bin/sh -c ", "RUN /bin/sh -c "):
        if text.startswith(shell_prefix):
            return "RUN " + text.removeprefix(shell_prefix)
    return text


# ---- measuring layers ----------------------------------------------------------------------------------


class _Tee(io.RawIOBase):
    """Reads ``src`` and hands every byte to ``sink`` too (counting them; compressing when asked)."""

    def __init__(self, src: BinaryIO, sink: CompressingWriter | None) -> None:
        self._src = src
        self._sink = sink
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._src.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        if self._sink is not None and n:
            self._sink.write(data)
        return n

    def drain(self) -> None:
        """Read to the end (tar's trailing zero blocks and any padding count as layer bytes)."""
        buf = bytearray(_CHUNK)
        while self.readinto(buf):
            pass


class _NullSink:
    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        return len(data)


_BLOCK = 512
_NO_DATA = frozenset(b"123456")  # hard link, symlink, char/block device, directory, fifo: no data follows
_REGULAR = frozenset(b"07\0")


@dataclass(frozen=True)
class _TarEntry:
    path: str  # absolute
    size: int
    regular: bool


def _read_exact(reader: BinaryIO, n: int) -> bytes:
    data = reader.read(n)
    if len(data) != n:
        raise ImageError("the layer tar is truncated")
    return data


def _skip(reader: BinaryIO, n: int) -> None:
    while n > 0:
        chunk = reader.read(min(n, _CHUNK))
        if not chunk:
            raise ImageError("the layer tar is truncated")
        n -= len(chunk)


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _number(field: bytes) -> int:
    """A numeric header field: octal text, or GNU's base-256 (high bit set) for large values."""
    if field and field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ImageError(f"the layer is not a tar archive (bad number field {text!r})") from None


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """``%d key=value\\n`` records of a PAX extended header."""
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ImageError("the layer tar has a malformed PAX header") from None
        if length <= 0:
            raise ImageError("the layer tar has a malformed PAX header")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        out[key] = value
        pos += length
    return out


def _tar_entries(reader: BinaryIO) -> Iterator[_TarEntry]:
    """The entries of a tar stream, up to its end-of-archive block (ustar, PAX and GNU long names).

    Much faster than ``tarfile``'s stream mode for what is needed here: names, types and sizes.
    """
    long_name: bytes | None = None
    pax: dict[bytes, bytes] = {}
    pax_global: dict[bytes, bytes] = {}
    while True:
        header = reader.read(_BLOCK)
        if not header or header == bytes(_BLOCK):
            return  # end of archive (or a stream that simply stops, as some writers do)
        if len(header) != _BLOCK:
            raise ImageError("the layer tar is truncated")
        stored_sum = _number(header[148:156])
        unsigned = sum(header) - sum(header[148:156]) + 8 * 0x20
        # Some old writers summed signed bytes; accept both, as tar readers do.
        if stored_sum != unsigned and stored_sum != unsigned - 256 * sum(b >= 0x80 for b in header):
            raise ImageError("the layer is not a tar archive (bad header checksum)")
        kind = header[156]
        size = _number(header[124:136])
        if kind in (ord("x"), ord("g"), ord("L"), ord("K")):
            data = _read_exact(reader, _padded(size))[:size]
            if kind == ord("x"):
                pax = _pax_records(data)
            elif kind == ord("g"):
                pax_global.update(_pax_records(data))
            elif kind == ord("L"):
                long_name = data.rstrip(b"\0")
            continue
        name = header[0:100].split(b"\0", 1)[0]
        if header[257:262] == b"ustar":
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        if long_name is not None:
            name = long_name
        merged = {**pax_global, **pax}
        if b"path" in merged:
            name = merged[b"path"]
        if b"size" in merged:
            size = int(merged[b"size"])
        long_name, pax = None, {}
        path = "/" + name.decode("utf-8", "replace").removeprefix("./").strip("/")
        yield _TarEntry(path, size, kind in _REGULAR)
        if kind not in _NO_DATA and size:
            _skip(reader, _padded(size))


def measure_layer_stream(raw: BinaryIO, *, media_type: str, stored: int, top: int) -> LayerStats:
    """Measure one layer blob (as stored): its uncompressed size, gzip estimate, largest files."""
    compression = MediaType.compression(media_type) if MediaType.is_layer(media_type) else "none"
    estimator = CompressingWriter(_NullSink(), "gzip") if compression == "none" else None
    heap: list[tuple[int, str]] = []  # the ``top`` largest (size, path), smallest on top
    entries = content = whiteouts = 0
    try:
        with open_uncompressed(raw) as plain:
            tee = _Tee(plain, estimator)
            reader = io.BufferedReader(tee, buffer_size=_CHUNK)
            for entry in _tar_entries(reader):
                entries += 1
                if entry.path.rsplit("/", 1)[-1].startswith(".wh."):
                    whiteouts += 1
                    continue
                if not entry.regular:
                    continue
                content += entry.size
                item = (entry.size, entry.path)
                if len(heap) < top:
                    heapq.heappush(heap, item)
                elif top and item > heap[0]:
                    heapq.heapreplace(heap, item)
            tee.drain()
    except (EOFError, OSError) as err:
        raise ImageError(f"cannot read the layer tar: {err}") from err
    largest = tuple(FileSize(path, size) for size, path in sorted(heap, key=lambda it: (-it[0], it[1])))
    if estimator is not None:
        compressed, estimated = estimator.finish().size, True
    else:
        compressed, estimated = stored, False
    return LayerStats(
        uncompressed=tee.count,
        compressed=compressed,
        compressed_estimated=estimated,
        entries=entries,
        content=content,
        whiteouts=whiteouts,
        largest=largest,
        top=top,
    )


def _layer_cache_path(root: Path, digest: Digest) -> Path:
    return root / "buildinfo" / "layers" / f"{digest.algorithm}-{digest.hex}.json"


def _stats_to_json(stats: LayerStats) -> dict[str, Any]:
    return {
        "version": _LAYER_CACHE_VERSION,
        "uncompressed": stats.uncompressed,
        "compressed": stats.compressed,
        "compressed_estimated": stats.compressed_estimated,
        "entries": stats.entries,
        "content": stats.content,
        "whiteouts": stats.whiteouts,
        "largest": [[f.path, f.size] for f in stats.largest],
        "top": stats.top,
    }


def _stats_from_json(doc: Any) -> LayerStats | None:
    try:
        if doc["version"] != _LAYER_CACHE_VERSION:
            return None
        return LayerStats(
            uncompressed=int(doc["uncompressed"]),
            compressed=int(doc["compressed"]),
            compressed_estimated=bool(doc["compressed_estimated"]),
            entries=int(doc["entries"]),
            content=int(doc["content"]),
            whiteouts=int(doc["whiteouts"]),
            largest=tuple(FileSize(str(p), int(s)) for p, s in doc["largest"]),
            top=int(doc["top"]),
        )
    except (KeyError, TypeError, ValueError):
        return None  # a damaged cache entry is measured again


def cached_layer_stats(root: Path, digest: Digest) -> LayerStats | None:
    """The measurement of layer ``digest`` cached under ``root`` (the store root), if any."""
    try:
        doc = json.loads(_layer_cache_path(root, digest).read_text())
    except (OSError, ValueError):
        return None
    return _stats_from_json(doc)


def measure_layer(store: Store, layer: Descriptor, *, top: int = DEFAULT_TOP_FILES) -> LayerStats:
    """Measure a stored layer (read through the store, so verified), from the cache when measured before."""
    cached = cached_layer_stats(store.root, layer.digest)
    if cached is not None and (cached.top >= top or len(cached.largest) < cached.top):
        return _trimmed(cached, top)
    with store.open_blob(layer.digest, size=layer.size) as blob:
        stats = measure_layer_stream(
            blob, media_type=layer.media_type, stored=layer.size, top=max(top, _CACHED_TOP_FILES)
        )
    # A read-only store still answers; the measurement is just not remembered.
    with contextlib.suppress(OSError):
        _atomic_write(_layer_cache_path(store.root, layer.digest), json.dumps(_stats_to_json(stats)))
    return _trimmed(stats, top)


def _trimmed(stats: LayerStats, top: int) -> LayerStats:
    if len(stats.largest) <= top:
        return stats
    return LayerStats(
        uncompressed=stats.uncompressed,
        compressed=stats.compressed,
        compressed_estimated=stats.compressed_estimated,
        entries=stats.entries,
        content=stats.content,
        whiteouts=stats.whiteouts,
        largest=stats.largest[:top],
        top=top,
    )


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# ---- images --------------------------------------------------------------------------------------------


def analyze_image(
    store: Store, img: Image, *, name: str = "", measure: bool = True, top: int = DEFAULT_TOP_FILES
) -> ImageSize:
    """The size of ``img`` (an image whose layers are in ``store``), layer by layer.

    With ``measure`` every layer is read (once: the result is cached by layer digest) for its largest
    files and its missing size (uncompressed, or compressed: a gzip estimate for a layer stored
    uncompressed). Without it a layer stored uncompressed (every layer forklift makes) is not read
    and its compressed size stays unknown unless cached; a compressed layer (a pulled base) is still
    measured once for its uncompressed size. That is cheap, and enough for ``check_max_size``.
    """
    layers: list[LayerSize] = []
    empty_steps = 0
    steps = history_with_layers(img)
    # A config whose history names fewer layers than the manifest holds still has those layers.
    described = sum(1 for _, d in steps if d is not None)
    steps += [(HistoryEntry(), d) for d in image_manifest(img).layers[described:]]
    for entry, desc in steps:
        if desc is None:
            empty_steps += 1
            continue
        plain = MediaType.is_layer(desc.media_type) and MediaType.compression(desc.media_type) == "none"
        stats = cached_layer_stats(store.root, desc.digest) if plain and not measure else None
        if stats is None and (measure or not plain):
            stats = measure_layer(store, desc, top=top)
        layers.append(
            LayerSize(
                index=len(layers) + 1,
                digest=str(desc.digest),
                media_type=desc.media_type,
                stored=desc.size,
                uncompressed=stats.uncompressed if stats else desc.size,
                compressed=stats.compressed if stats else None,
                compressed_estimated=bool(stats and stats.compressed_estimated),
                created_by=entry.created_by or "",
                created=entry.created,
                comment=entry.comment,
                entries=stats.entries if stats else None,
                whiteouts=stats.whiteouts if stats else None,
                largest=_trimmed(stats, top).largest if stats else (),
            )
        )
    digest = image_digest(img)
    return ImageSize(
        name=name or str(digest),
        digest=str(digest),
        image_id=str(image_id(img)),
        config_bytes=image_manifest(img).config.size,
        layers=tuple(layers),
        empty_steps=empty_steps,
        build=read_build_record(store.root, str(digest)),
    )


def check_max_size(size: ImageSize, limit: str | int) -> None:
    """``--max-size``: raise BuildError naming the largest layers when the image is over ``limit``.

    The image's uncompressed size is compared (what ``docker images`` shows); ``limit`` is bytes or a
    size such as ``50MB`` or ``1GiB`` (see ``parse_size``).
    """
    budget = limit if isinstance(limit, int) else parse_size(limit)
    total = size.uncompressed
    if total <= budget:
        return
    shown = f"{limit} = {human_bytes(budget)}" if isinstance(limit, str) else human_bytes(budget)
    largest = "; ".join(
        f"layer {layer.index} {human_bytes(layer.size)}: {_shorten(layer.step or '(no history)', 60)}"
        for layer in size.largest_layers(3)
    )
    raise BuildError(
        f"image {size.name} is {human_bytes(total)}, over the --max-size budget of {shown} "
        f"by {human_bytes(total - budget)}",
        hint=f"largest layers: {largest}" if largest else None,
    )


def enforce_max_size(store: Store, img: Image, limit: str | int, *, name: str = "") -> None:
    """``forklift build --max-size``: ``check_max_size`` on ``img`` measured cheaply (built layers are
    not read; see ``analyze_image`` with ``measure=False``)."""
    check_max_size(analyze_image(store, img, name=name, measure=False), limit)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


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
        stats = cached_layer_stats(store.root, desc.digest)
        if kind != "none" and stats is None:
            stats = measure_layer(store, desc)
        plain = stats.uncompressed if stats is not None else desc.size
        uncompressed += plain
        sizes.append(plain)
        if compressed is not None:
            if stats is not None:
                compressed += stats.compressed
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
    return root / "buildinfo" / f"{Digest.parse(manifest_digest).hex}.json"


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


# ---- outputs -------------------------------------------------------------------------------------------


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


def size_json(size: ImageSize) -> dict[str, Any]:
    """``forklift size --format json``: every number in bytes, layers base first."""
    return {
        "name": size.name,
        "digest": size.digest,
        "image_id": size.image_id,
        "uncompressed_bytes": size.uncompressed,
        "compressed_bytes": size.compressed,
        "compressed_estimated": size.compressed_estimated,
        "config_bytes": size.config_bytes,
        "empty_steps": size.empty_steps,
        "layers": [
            {
                "index": layer.index,
                "digest": layer.digest,
                "media_type": layer.media_type,
                "stored_bytes": layer.stored,
                "uncompressed_bytes": layer.uncompressed,
                "compressed_bytes": layer.compressed,
                "compressed_estimated": layer.compressed_estimated,
                "created_by": layer.created_by,
                "step": layer.step,
                "created": layer.created,
                "comment": layer.comment,
                "entries": layer.entries,
                "whiteouts": layer.whiteouts,
                "largest_files": [{"path": f.path, "bytes": f.size} for f in layer.largest],
            }
            for layer in size.layers
        ],
        "build": None if size.build is None else build_record_json(size.build),
        "summary": summarize(size.build, size) if size.build is not None else None,
    }


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int]) -> list[str]:
    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def _bar(part: int, whole: int, width: int = 20) -> str:
    if whole <= 0:
        return ""
    filled = round(width * part / whole)
    return "█" * filled + "·" * (width - filled)


def render_text(size: ImageSize, *, width: int = 100) -> str:
    """``forklift size``: totals, stages (for images forklift built), layers, largest files."""
    out: list[str] = [f"{size.name}", f"  digest {size.digest}", f"  ID     {size.image_id}"]
    total = f"size: {human_bytes(size.uncompressed)} uncompressed"
    if size.compressed is not None:
        total += f", {human_bytes(size.compressed)} compressed"
        if size.compressed_estimated:
            total += " (gzip estimate: forklift keeps built layers uncompressed)"
    n = size.empty_steps
    steps = f", plus {n} step{'' if n == 1 else 's'} that made no layer" if n else ""
    out += ["", total, f"{len(size.layers)} layer" + ("" if len(size.layers) == 1 else "s") + steps]
    record = size.build
    if record is not None and record.stages:
        out += ["", "stages (as forklift built them):"]
        heaviest = max((s.size for s in record.stages), default=0)
        rows = [
            [
                str(s.index),
                s.name,
                "-" if s.layers is None else str(s.layers),
                human_bytes(s.size) if s.built else "-",
                _bar(s.size, heaviest) if s.built else "",
                record.role(s),
            ]
            for s in sorted(record.stages, key=lambda s: s.index)
        ]
        out += [
            "  " + r for r in _table(["#", "STAGE", "LAYERS", "SIZE", "", ""], rows, frozenset({0, 2, 3}))
        ]
        out += ["", summarize(record, size)]
    if size.layers:
        out += ["", "layers (base first):"]
        step_width = max(20, width - 44)
        rows = [
            [
                str(layer.index),
                human_bytes(layer.size),
                "-"
                if layer.compressed is None
                else human_bytes(layer.compressed) + ("*" if layer.compressed_estimated else ""),
                _bar(layer.size, max(size.uncompressed, 1), 10),
                _shorten(layer.step or "(no history)", step_width),
            ]
            for layer in size.layers
        ]
        headers = ["#", "SIZE", "COMPRESSED", "", "CREATED BY"]
        out += ["  " + r for r in _table(headers, rows, frozenset({0, 1, 2}))]
        if size.compressed_estimated:
            out.append("  * gzip estimate")
    listed = [layer for layer in size.layers if layer.largest or layer.whiteouts]
    if listed:
        out += ["", "largest files per layer:"]
        for layer in listed:
            out.append(f"  layer {layer.index}: {_shorten(layer.step or '(no history)', width - 12)}")
            for f in layer.largest:
                out.append(f"    {human_bytes(f.size):>9}  {f.path}")
            if layer.whiteouts:
                n = layer.whiteouts
                out.append(f"    deletes {n} path{'' if n == 1 else 's'} (still stored in the layers below)")
    return "\n".join(out) + "\n"
