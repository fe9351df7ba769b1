"""Layer compression: round trips through real tools, determinism, digests from one pass."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard

from forklift.errors import ImageError
from forklift.oci.compression import (
    COMPRESSIONS,
    CompressingWriter,
    Compression,
    compress_file,
    detect_compression,
    open_uncompressed,
)

PAYLOAD = os.urandom(300_000) + b"forklift " * 200_000 + bytes(1 << 20)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_compress_file_reports_digests_of_both_sides(compression: Compression) -> None:
    out = io.BytesIO()
    result = compress_file(io.BytesIO(PAYLOAD), out, compression)
    blob = out.getvalue()
    assert result.diff_id == _sha(PAYLOAD)
    assert result.uncompressed_size == len(PAYLOAD)
    assert result.digest == _sha(blob)
    assert result.size == len(blob)
    if compression == "none":
        assert blob == PAYLOAD
    else:
        assert len(blob) < len(PAYLOAD)
    assert open_uncompressed(io.BytesIO(blob)).read() == PAYLOAD


def test_gzip_is_readable_by_python_gzip_and_deterministic() -> None:
    first, second = io.BytesIO(), io.BytesIO()
    compress_file(io.BytesIO(PAYLOAD), first, "gzip")
    compress_file(io.BytesIO(PAYLOAD), second, "gzip")
    assert first.getvalue() == second.getvalue()
    blob = first.getvalue()
    assert gzip.decompress(blob) == PAYLOAD
    # mtime 0, no FNAME flag, OS unknown: nothing about the machine or the moment leaks in.
    assert blob[3] == 0 and blob[4:8] == b"\0\0\0\0" and blob[9] == 0xFF


def test_gzip_is_readable_by_the_gzip_tool(tmp_path: Path) -> None:
    tool = shutil.which("gzip")
    if tool is None:
        pytest.skip("gzip is not installed")
    blob = tmp_path / "x.gz"
    with blob.open("wb") as f:
        compress_file(io.BytesIO(PAYLOAD), f, "gzip", level=1)
    assert subprocess.run([tool, "-t", str(blob)], check=False).returncode == 0
    assert subprocess.run([tool, "-dc", str(blob)], check=True, capture_output=True).stdout == PAYLOAD


def test_zstd_is_readable_by_the_zstd_tool(tmp_path: Path) -> None:
    tool = shutil.which("zstd")
    if tool is None:
        pytest.skip("zstd is not installed")
    blob = tmp_path / "x.zst"
    with blob.open("wb") as f:
        compress_file(io.BytesIO(PAYLOAD), f, "zstd")
    assert subprocess.run([tool, "-dc", str(blob)], check=True, capture_output=True).stdout == PAYLOAD


@pytest.mark.parametrize("level", [0, 1, 5, 9])
def test_every_gzip_level_round_trips(level: int) -> None:
    out = io.BytesIO()
    compress_file(io.BytesIO(PAYLOAD), out, "gzip", level=level)
    assert gzip.decompress(out.getvalue()) == PAYLOAD


def test_writer_accepts_many_small_writes_and_empty_input() -> None:
    out = io.BytesIO()
    writer = CompressingWriter(out, "gzip")
    for i in range(0, len(PAYLOAD), 4097):
        writer.write(PAYLOAD[i : i + 4097])
    assert writer.finish().diff_id == _sha(PAYLOAD)
    assert gzip.decompress(out.getvalue()) == PAYLOAD
    empty = io.BytesIO()
    result = compress_file(io.BytesIO(b""), empty, "zstd")
    assert result.diff_id == _sha(b"") and result.uncompressed_size == 0
    assert open_uncompressed(io.BytesIO(empty.getvalue())).read() == b""


def test_unknown_compression_is_an_image_error() -> None:
    with pytest.raises(ImageError, match="unknown compression"):
        compress_file(io.BytesIO(b"x"), io.BytesIO(), "lz4")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("blob", "kind"),
    [
        (gzip.compress(PAYLOAD), "gzip"),
        (zstandard.ZstdCompressor().compress(PAYLOAD), "zstd"),
        (bz2.compress(PAYLOAD), "bzip2"),
        (lzma.compress(PAYLOAD), "xz"),
        (PAYLOAD, "none"),
    ],
)
def test_open_uncompressed_detects_every_format(blob: bytes, kind: str) -> None:
    assert detect_compression(blob[:6]) == kind
    # A non-seekable source: only read() is available.
    reader = io.BufferedReader(io.BytesIO(blob))  # type: ignore[arg-type]
    assert open_uncompressed(reader).read() == PAYLOAD


def test_open_uncompressed_reads_multi_member_gzip_and_multi_frame_zstd() -> None:
    assert open_uncompressed(io.BytesIO(gzip.compress(b"ab") + gzip.compress(b"cd"))).read() == b"abcd"
    z = zstandard.ZstdCompressor()
    assert open_uncompressed(io.BytesIO(z.compress(b"ab") + z.compress(b"cd"))).read() == b"abcd"


def test_open_uncompressed_passes_short_plain_input_through() -> None:
    assert open_uncompressed(io.BytesIO(b"")).read() == b""
    assert open_uncompressed(io.BytesIO(b"ab")).read() == b"ab"


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_truncated_or_corrupt_stream_is_an_image_error(compression: Compression) -> None:
    out = io.BytesIO()
    compress_file(io.BytesIO(PAYLOAD), out, compression)
    blob = out.getvalue()
    with pytest.raises(ImageError, match=f"corrupt {compression}"):
        open_uncompressed(io.BytesIO(blob[: len(blob) // 2])).read()
    mangled = blob[:10] + bytes(b ^ 0x5A for b in blob[10:200]) + blob[200:]
    with pytest.raises(ImageError, match=f"corrupt {compression}"):
        open_uncompressed(io.BytesIO(mangled)).read()
