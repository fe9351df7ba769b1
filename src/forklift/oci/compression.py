"""Layer compression: none, gzip and zstd, with digest and diff_id computed in the same pass.

gzip goes through isal (Intel ISA-L, several times faster than zlib with the same format) when it is
importable, and through zlib otherwise; zstd goes through ``zstandard``. Output is deterministic:
the gzip header carries mtime 0, no file name and OS "unknown", so the same input at the same level
with the same library gives the same bytes (isal and zlib produce different, equally valid, streams).

Reading detects the format by its magic bytes: gzip, zstd, bzip2, xz or plain (an uncompressed tar).
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO, Literal, Protocol, cast, get_args

from forklift.errors import ImageError
from forklift.records import record

Compression = Literal["none", "gzip", "zstd"]
"""A layer's compression as forklift writes it."""

COMPRESSIONS: tuple[Compression, ...] = get_args(Compression)

DetectedCompression = Literal["none", "gzip", "zstd", "bzip2", "xz"]
"""A stream's compression as forklift can read it (ADD also unpacks bzip2 and xz archives)."""

_CHUNK = 1 << 20  # 1 MiB: large enough that per-call overhead vanishes, small enough for the cache

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"
# Header of a gzip member: magic, deflate, no flags, mtime 0, no extra flags, OS 255 (unknown).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

DEFAULT_GZIP_LEVEL = 6
DEFAULT_ZSTD_LEVEL = 3

_isal_zlib: Any
try:  # isal is a declared dependency, but a platform without a wheel still works through zlib.
    from isal import isal_zlib as _isal_zlib

    HAVE_ISAL = True
except ImportError:  # pragma: no cover - exercised only where isal is not installed
    _isal_zlib = None
    HAVE_ISAL = False


class ByteSink(Protocol):
    """Anything bytes can be written to: a binary file, a store's blob writer, a socket wrapper.

    ``write`` must take all of ``data`` and keep no reference to it: writers reuse their buffers.
    """

    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


class DigestingSink(ByteSink, Protocol):
    """A sink that hashes with sha256 what is written to it anyway (a store's blob writer).

    An uncompressed stream written into one is not hashed a second time: the writer asks the sink.
    """

    def written_sha256(self) -> tuple[str, int] | None:
        """(hex sha256, byte count) of everything written so far; None when it hashes otherwise."""
        ...


@record
class CompressResult:
    """What compressing a stream produced.

    ``digest``/``size`` describe the compressed bytes (the blob); ``diff_id``/``uncompressed_size``
    the uncompressed ones (the tar). With compression "none" both pairs are equal.
    """

    digest: str
    size: int
    diff_id: str
    uncompressed_size: int


def _isal_level(level: int) -> int:
    """Map gzip's 1..9 scale onto ISA-L's 0..3 (0 stays 0: ISA-L's fastest)."""
    if level <= 0:
        return 0
    if level <= 3:
        return 1
    if level <= 6:
        return 2
    return 3


def _raw_deflater(level: int) -> Any:
    """A raw-deflate compressobj (no zlib/gzip framing: forklift writes the gzip frame itself)."""
    if _isal_zlib is not None:
        return _isal_zlib.compressobj(_isal_level(level), _isal_zlib.DEFLATED, -15)
    return zlib.compressobj(level, zlib.DEFLATED, -15)


def _crc32(data: bytes | bytearray | memoryview, value: int) -> int:
    if _isal_zlib is not None:
        return int(_isal_zlib.crc32(data, value))
    return zlib.crc32(data, value)


class CompressingWriter:
    """A write-only sink that compresses into ``dst`` while hashing both sides.

    Write the uncompressed bytes with :meth:`write`, then call :meth:`finish` once for the
    :class:`CompressResult`. ``dst`` is not closed. This is what :func:`compress_file` and the layer
    writer use, so a layer is read, hashed, compressed and written in one pass.
    """

    def __init__(self, dst: ByteSink, compression: Compression, *, level: int | None = None) -> None:
        if compression not in COMPRESSIONS:
            raise ImageError(
                f"unknown compression {compression!r} (expected one of {', '.join(COMPRESSIONS)})"
            )
        self._dst = dst
        self._compression = compression
        self._raw_hash = hashlib.sha256()
        self._raw_size = 0
        self._out_hash = hashlib.sha256()
        self._out_size = 0
        self._crc = 0
        self._finished = False
        # Uncompressed into a sink that hashes with sha256 itself (the store's blob writer): its
        # hash is the diff_id, so the bytes are hashed once instead of twice (a layer is hundreds
        # of MB; sha256 runs at about 0.5-1 GB/s here).
        self._sink_digest: Callable[[], tuple[str, int] | None] | None = None
        if compression == "none":
            asked = getattr(dst, "written_sha256", None)
            if callable(asked) and (answer := asked()) is not None and answer[1] == 0:
                self._sink_digest = asked
        self._compress: Callable[[bytes | bytearray | memoryview], bytes] | None = None
        self._flush: Callable[[], bytes] | None = None
        if compression == "gzip":
            deflater = _raw_deflater(DEFAULT_GZIP_LEVEL if level is None else level)
            self._compress = deflater.compress
            self._flush = deflater.flush
            self._emit(_GZIP_HEADER)
        elif compression == "zstd":
            import zstandard

            zobj = zstandard.ZstdCompressor(
                level=DEFAULT_ZSTD_LEVEL if level is None else level, write_checksum=True
            ).compressobj()
            self._compress = zobj.compress
            self._flush = zobj.flush

    def _emit(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._out_hash.update(data)
            self._out_size += len(data)
            self._dst.write(data)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Take uncompressed bytes; returns how many (always all of them)."""
        if self._finished:
            raise ValueError("write after finish")
        # No memoryview of a bytearray here: callers reuse (clear) their buffer after this returns.
        view = data
        n = len(view)
        if not n:
            return 0
        self._raw_size += n
        if self._compress is None:
            # Uncompressed: the blob is the tar, so one hash serves as both digest and diff_id.
            if self._sink_digest is None:
                self._raw_hash.update(view)
            self._dst.write(view)
        else:
            self._raw_hash.update(view)
            if self._compression == "gzip":
                self._crc = _crc32(view, self._crc)
            self._emit(self._compress(view))
        return n

    def finish(self) -> CompressResult:
        """Flush the compressor, write the trailer and return the digests and sizes."""
        if self._finished:
            raise ValueError("finish called twice")
        self._finished = True
        if self._flush is not None:
            self._emit(self._flush())
        if self._compression == "gzip":
            self._emit(struct.pack("<II", self._crc & 0xFFFFFFFF, self._raw_size & 0xFFFFFFFF))
        if self._sink_digest is not None:
            answer = self._sink_digest()
            if answer is None or answer[1] != self._raw_size:
                raise ImageError("the layer's sink was written to outside its compressing writer")
            diff_id = "sha256:" + answer[0]
        else:
            diff_id = "sha256:" + self._raw_hash.hexdigest()
        digest = diff_id if self._compressed_is_raw else "sha256:" + self._out_hash.hexdigest()
        size = self._raw_size if self._compressed_is_raw else self._out_size
        return CompressResult(digest=digest, size=size, diff_id=diff_id, uncompressed_size=self._raw_size)

    @property
    def _compressed_is_raw(self) -> bool:
        return self._compression == "none"

    @property
    def uncompressed_size(self) -> int:
        """Bytes written so far (before compression)."""
        return self._raw_size


def compress_file(
    src: BinaryIO, dst: ByteSink, compression: Compression, *, level: int | None = None
) -> CompressResult:
    """Copy ``src`` (uncompressed) to ``dst`` compressed, returning digest and diff_id from one pass.

    ``level`` is on gzip's 1..9 scale for gzip (mapped onto ISA-L's 0..3 when isal is used; default
    6) and zstd's 1..22 for zstd (default 3); ignored for "none". Neither file is closed.
    """
    writer = CompressingWriter(dst, compression, level=level)
    readinto = getattr(src, "readinto", None)
    if readinto is not None:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = readinto(buf)
            if not n:
                break
            writer.write(view[:n])
    else:
        while chunk := src.read(_CHUNK):
            writer.write(chunk)
    return writer.finish()


def detect_compression(head: bytes) -> DetectedCompression:
    """The compression of a stream from its first bytes (6 are enough): gzip, zstd, bzip2, xz or none."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if head.startswith(_BZIP2_MAGIC):
        return "bzip2"
    if head.startswith(_XZ_MAGIC):
        return "xz"
    return "none"


class _PrefixedReader(io.RawIOBase):
    """Replays bytes already read from a stream, then reads on from the stream itself."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._pos = 0
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos < len(self._head):
            n = min(len(view), len(self._head) - self._pos)
            view[:n] = self._head[self._pos : self._pos + n]
            self._pos += n
            return n
        rest_readinto = getattr(self._rest, "readinto", None)
        if rest_readinto is not None:
            return int(rest_readinto(view) or 0)
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def _read_head(fileobj: BinaryIO, n: int) -> bytes:
    head = b""
    while len(head) < n:
        chunk = fileobj.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _buffered(raw: io.RawIOBase) -> BinaryIO:
    return cast(BinaryIO, io.BufferedReader(raw, buffer_size=_CHUNK))


def open_uncompressed(fileobj: BinaryIO) -> BinaryIO:
    """A readable stream of ``fileobj``'s uncompressed bytes, whatever its compression.

    The format is detected from the magic bytes (gzip, zstd, bzip2, xz, or plain data which is
    passed through). Reads from ``fileobj`` sequentially (it need not be seekable); closing the
    returned stream does not close ``fileobj``. Corrupt compressed data raises ImageError on read.
    """
    head = _read_head(fileobj, 6)
    kind = detect_compression(head)
    raw: BinaryIO = cast(BinaryIO, io.BufferedReader(_PrefixedReader(head, fileobj), buffer_size=_CHUNK))
    if kind == "none":
        return raw
    if kind == "gzip":
        try:
            from isal import igzip

            gz: Any = igzip.IGzipFile  # isal ships partial stubs; the constructor is untyped
            return _buffered(_ErrorMappingReader(gz(fileobj=raw, mode="rb"), kind))
        except ImportError:  # pragma: no cover - only without isal
            import gzip

            return _buffered(_ErrorMappingReader(gzip.GzipFile(fileobj=raw, mode="rb"), kind))
    if kind == "zstd":
        return _buffered(_ErrorMappingReader(_ZstdFramesReader(raw), kind))
    if kind == "bzip2":
        import bz2

        return _buffered(_ErrorMappingReader(bz2.BZ2File(raw, mode="rb"), kind))
    import lzma

    return _buffered(_ErrorMappingReader(lzma.LZMAFile(raw, mode="rb"), kind))


class _ZstdFramesReader(io.RawIOBase):
    """Decompresses consecutive zstd frames; a stream that ends inside a frame is an error.

    (zstandard's own stream_reader treats a truncated frame as a clean end of data.)
    """

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        import zstandard

        self._dctx = zstandard.ZstdDecompressor()
        self._raw = raw
        self._obj: Any = self._dctx.decompressobj()
        self._pending = b""
        self._in_frame = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            chunk = self._raw.read(_CHUNK)
            if not chunk:
                if self._in_frame:
                    raise ImageError("corrupt zstd stream: it ends inside a frame")
                return 0
            out: list[bytes] = []
            while chunk:
                self._in_frame = True
                out.append(self._obj.decompress(chunk))
                if not self._obj.eof:
                    break
                # A frame ended: whatever follows starts the next frame.
                chunk = self._obj.unused_data
                self._obj = self._dctx.decompressobj()
                self._in_frame = False
            self._pending = b"".join(out)
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]  # BufferedReader asks for _CHUNK at a time: cheap
        return n


class _ErrorMappingReader(io.RawIOBase):
    """Wraps a decompressing reader so corrupt or truncated data raises ImageError, not a zoo of types."""

    def __init__(self, inner: Any, kind: str) -> None:
        super().__init__()
        self._inner = inner
        self._kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            readinto = getattr(self._inner, "readinto", None)
            if readinto is not None:
                return int(readinto(view) or 0)
            data = self._inner.read(len(view))
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            raise ImageError(f"corrupt {self._kind} stream: {exc}") from exc
        except Exception as exc:  # zstandard.ZstdError, isal's IsalError: not OSError subclasses
            if type(exc).__name__ in {"ZstdError", "IsalError", "error"}:
                raise ImageError(f"corrupt {self._kind} stream: {exc}") from exc
            raise
        view[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            chunks = []
            while chunk := self.read(_CHUNK):
                chunks.append(chunk)
            return b"".join(chunks)
        buf = bytearray(size)
        n = self.readinto(buf)
        return bytes(buf[:n])

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()
