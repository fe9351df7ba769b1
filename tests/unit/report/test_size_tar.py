"""The layer tar scanner behind ``forklift size``: it must list what ``tarfile`` lists, in every format."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forklift.errors import ImageError
from forklift.oci.model import MediaType
from forklift.report.size import _number, _tar_entries, measure_layer_stream

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}

segment = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters="/\\"),
    min_size=1,
    max_size=40,
)
entry = st.tuples(
    st.lists(segment, min_size=1, max_size=5).map("/".join),
    st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"]),
    st.integers(min_value=0, max_value=3000),
)


def build_tar(entries: list[tuple[str, str, int]], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, kind, size in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = size
                tar.addfile(info, io.BytesIO(b"z" * size))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            info.linkname = "target" if kind in ("symlink", "hardlink") else ""
            tar.addfile(info)
    return buf.getvalue()


def tarfile_view(raw: bytes) -> list[tuple[str, int, bool]]:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return [("/" + m.name.strip("/"), m.size if m.isreg() else 0, m.isreg()) for m in tar]


def scanner_view(raw: bytes) -> list[tuple[str, int, bool]]:
    return [(e.path, e.size if e.regular else 0, e.regular) for e in _tar_entries(io.BytesIO(raw))]


@settings(max_examples=60, deadline=None)
@given(st.lists(entry, max_size=8), st.sampled_from(sorted(FORMATS)))
def test_scanner_matches_tarfile(entries: list[tuple[str, str, int]], fmt: str) -> None:
    try:
        raw = build_tar(entries, FORMATS[fmt])
    except ValueError:
        return  # this format cannot hold that name (ustar: too long or not encodable)
    assert scanner_view(raw) == tarfile_view(raw)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_long_names(fmt: str) -> None:
    name = "/".join(["d" * 60] * 2 + ["file-with-a-long-name.txt"])
    raw = build_tar([(name, "file", 10)], FORMATS[fmt])
    assert scanner_view(raw) == [("/" + name, 10, True)]


def test_base256_sizes() -> None:
    assert _number(b"0000644\0") == 0o644
    assert _number(b"\x80" + (10**10).to_bytes(11, "big")) == 10**10
    assert _number(b"\0" * 12) == 0


def test_pax_size_overrides_the_header() -> None:
    raw = build_tar([("big", "file", 5)], tarfile.PAX_FORMAT)
    # A PAX record wins over the header field (that is how files over 8 GiB are written).
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("big")
        info.size = 5
        info.pax_headers = {"size": "5", "path": "renamed/by/pax"}
        tar.addfile(info, io.BytesIO(b"12345"))
    assert scanner_view(buf.getvalue()) == [("/renamed/by/pax", 5, True)]
    assert scanner_view(raw) == [("/big", 5, True)]


def test_truncated_and_garbage_tars_are_image_errors() -> None:
    raw = build_tar([("a", "file", 2000)], tarfile.PAX_FORMAT)
    with pytest.raises(ImageError, match="truncated"):
        list(_tar_entries(io.BytesIO(raw[:1200])))
    with pytest.raises(ImageError, match="not a tar"):
        list(_tar_entries(io.BytesIO(b"hello world" * 100)))
    with pytest.raises(ImageError):
        measure_layer_stream(io.BytesIO(raw[:700]), media_type=MediaType.OCI_LAYER, stored=700, top=1)


def test_whiteouts_and_opaque_markers_count_as_deletions() -> None:
    raw = build_tar(
        [("etc/.wh.passwd", "file", 0), ("var/cache/.wh..wh..opq", "file", 0), ("etc/hosts", "file", 9)],
        tarfile.PAX_FORMAT,
    )
    stats = measure_layer_stream(io.BytesIO(raw), media_type=MediaType.OCI_LAYER, stored=len(raw), top=5)
    assert stats.whiteouts == 2 and stats.entries == 3
    assert [(f.path, f.size) for f in stats.largest] == [("/etc/hosts", 9)]
    assert stats.uncompressed == len(raw) and stats.content == 9
