"""BlobPublisher: a commit handed to it is checked at once and lands in the store by wait()."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from forklift.errors import DigestMismatch
from forklift.oci.model import Digest
from forklift.oci.store import BlobPublisher, Store


def test_blob_lands_when_wait_returns(store_root: Path) -> None:
    store = Store(store_root)
    release = threading.Event()
    with BlobPublisher() as publisher:
        publisher.submit(release.wait)  # keeps the worker busy: the commits below queue behind it
        publisher.submit(release.wait)
        with store.writer() as writer:
            writer.write(b"layer bytes")
            digest, size = writer.commit(Digest.of(b"layer bytes"), publisher=publisher)
        assert (digest, size) == (Digest.of(b"layer bytes"), 11)
        assert not store.has(digest)  # handed off, not yet in place
        release.set()
        publisher.wait()
        assert store.has(digest)
        assert store.read_blob(digest) == b"layer bytes"
    assert list(store.tmp_dir.iterdir()) == []


def test_a_wrong_digest_fails_at_commit_and_leaves_nothing(store_root: Path) -> None:
    store = Store(store_root)
    with BlobPublisher() as publisher:
        with store.writer() as writer:
            writer.write(b"abc")
            with pytest.raises(DigestMismatch):
                writer.commit(Digest.of(b"other"), publisher=publisher)
        publisher.wait()
    assert not store.has(Digest.of(b"abc")) and list(store.tmp_dir.iterdir()) == []


def test_a_failing_job_is_raised_by_wait_and_the_context_still_closes(store_root: Path) -> None:
    def broken() -> None:
        raise OSError(28, "No space left on device")

    publisher = BlobPublisher()
    publisher.submit(broken)
    with pytest.raises(OSError, match="No space"):
        publisher.wait()
    publisher.wait()  # reported once
    with pytest.raises(OSError, match="No space"), BlobPublisher() as second:
        second.submit(broken)
    with pytest.raises(KeyError), BlobPublisher() as third:  # an error on its way out wins
        third.submit(broken)
        raise KeyError("first")
