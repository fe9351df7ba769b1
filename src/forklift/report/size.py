"""Where an image's bytes go: per layer (with the step that made it), per file, and per build stage.

The reason multi-stage builds exist is that builder stages are heavy and the final image is not.
This module measures both sides:

- ``analyze_image`` reads an image in the store: its size uncompressed and compressed, each layer
  with the history entry (``created_by``) that made it, and each layer's largest files (read from the
  layer tar through the store). What a layer's tar says never changes, so the measurement is cached
  by layer digest under ``<store root>/buildinfo/layers/``.
- ``BuildRecord`` is what the build engine writes after building an image: what each stage
  weighed, with ``summarize``, the paragraph ``forklift build`` prints. They live in
  ``report.buildrecord`` (a build needs nothing else of this module) and are re-exported here.
- ``render_text`` and ``size_json`` are ``forklift size``'s outputs; ``check_max_size`` is
  ``forklift build --max-size``.

Sizes are shown in decimal units, as docker shows them; ``parse_size`` reads sizes as docker does
(kB/MB/GB decimal, KiB/MiB/GiB binary, plain bytes).
"""

from __future__ import annotations

import contextlib
import heapq
import io
import json
import re
from collections.abc import Iterator, Sequence
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
from forklift.records import record

# The build record lives in report.buildrecord (a build needs only that); its names stay importable here.
from forklift.report.buildrecord import (
    _LAYER_CACHE_VERSION,
    BuildRecord,
    StageWeight,
    _atomic_write,
    _layer_cache_path,
    build_record_json,
    build_record_path,
    human_bytes,
    make_build_record,
    read_build_record,
    stage_weight,
    summarize,
    write_build_record,
)

__all__ = [
    "DEFAULT_TOP_FILES",
    "BuildRecord",
    "FileSize",
    "ImageSize",
    "LayerSize",
    "LayerStats",
    "StageWeight",
    "analyze_image",
    "build_record_json",
    "build_record_path",
    "cached_layer_stats",
    "check_max_size",
    "describe_step",
    "enforce_max_size",
    "human_bytes",
    "make_build_record",
    "measure_layer",
    "measure_layer_stream",
    "parse_size",
    "read_build_record",
    "render_text",
    "size_json",
    "stage_weight",
    "summarize",
    "write_build_record",
]

DEFAULT_TOP_FILES = 5
"""How many of a layer's largest files are listed unless asked otherwise."""

_CACHED_TOP_FILES = 20  # what the layer cache keeps, so most requests are served from it
_CHUNK = 1 << 20


# ---- plain data ---------------------------------------------------------------------------------------


@record
class FileSize:
    """A regular file in a layer and its size in bytes."""

    path: str  # absolute, as it appears in the container: /usr/lib/libc.so.6
    size: int


@record(kw_only=True)
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


@record(kw_only=True)
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


@record(kw_only=True)
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


@record
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


# ---- outputs -------------------------------------------------------------------------------------------


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
