"""An uncompressed stream into a store blob writer is hashed once (the writer's hash is the diff_id)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from forklift.errors import ImageError
from forklift.oci.compression import CompressingWriter, compress_file
from forklift.oci.model import Digest
from forklift.oci.store import Store

DATA = os.urandom(3 << 20) + b"tail"


def test_blob_writer_digest_is_the_diff_id(store_root: Path) -> None:
    store = Store(store_root)
    expected = "sha256:" + hashlib.sha256(DATA).hexdigest()
    with store.writer() as w:
        result = compress_file(io.BytesIO(DATA), w, "none")
        digest, size = w.commit(Digest.parse(result.digest))
    assert result.diff_id == result.digest == expected == str(digest)
    assert result.size == result.uncompressed_size == size == len(DATA)
    assert store.blob_path(digest).read_bytes() == DATA


def test_a_writer_that_already_holds_bytes_is_not_trusted(store_root: Path) -> None:
    with Store(store_root).writer() as w:
        w.write(b"prefix")
        result = compress_file(io.BytesIO(DATA), w, "none")
    assert result.diff_id == "sha256:" + hashlib.sha256(DATA).hexdigest()


def test_writes_around_the_compressing_writer_are_refused(store_root: Path) -> None:
    with Store(store_root).writer() as w:
        cw = CompressingWriter(w, "none")
        cw.write(b"layer bytes")
        w.write(b"sneaked in")
        with pytest.raises(ImageError):
            cw.finish()


def test_compressed_output_still_hashes_both_sides(store_root: Path) -> None:
    with Store(store_root).writer() as w:
        result = compress_file(io.BytesIO(DATA), w, "gzip")
        digest, _ = w.commit(Digest.parse(result.digest))
    assert result.diff_id == "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert str(digest) == result.digest != result.diff_id
