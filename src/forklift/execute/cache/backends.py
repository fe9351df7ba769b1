"""Where a build cache export lives: an OCI layout directory (``type=local``) or a registry
repository (``type=registry``).

Writing goes through the image library: ``oci.layout.add_to_layout`` adds the export's manifest to a
layout under its tag (other tags and blobs of the directory stay), and
``oci.registry.transfer.push_manifest`` pushes it (a layer the registry lacks is mounted from a
repository known to hold it, else uploaded). Reading is a ``BlobSource``: the layout's files, or the
registry's blobs fetched into the store.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from forklift.errors import ForkliftError, ImageError
from forklift.execute.cache.document import CACHE_ARTIFACT_TYPE
from forklift.execute.cache.specs import CacheSource
from forklift.oci.layout import (
    REF_NAME,
    BlobOpener,
    DirSource,
    add_to_layout,
    blob_name,
    read_layout_index,
)
from forklift.oci.model import Descriptor, Digest, Manifest, MediaType
from forklift.oci.store import Lease, Store

if TYPE_CHECKING:
    from forklift.oci.registry.auth import Credentials
    from forklift.oci.registry.client import RegistryClient, RegistryOptions
    from forklift.oci.registry.reference import Reference


# ---- writing -----------------------------------------------------------------------------------------


def write_local(store: Store, dest: Path, tag: str, config: bytes, manifest: Manifest, raw: bytes) -> None:
    """Blobs (those already present are kept), ``oci-layout``, and ``index.json`` with the manifest
    under ``tag`` (other tags of an existing layout stay)."""
    if dest.exists() and not dest.is_dir():
        raise ForkliftError(f"--cache-to: {dest} exists and is not a directory")
    entry = Descriptor(MediaType.OCI_MANIFEST, Digest.of(raw), len(raw), artifact_type=CACHE_ARTIFACT_TYPE)
    blobs = [(desc, _store_blob(store, desc)) for desc in manifest.layers]
    blobs.append((manifest.config, _bytes(config)))
    try:
        add_to_layout(dest, entry, raw, blobs, tag=tag)
    except OSError as err:
        raise ForkliftError(f"--cache-to: cannot write {dest}: {err.strerror or err}") from None


def push(
    store: Store,
    ref: str,
    config: bytes,
    manifest: Manifest,
    raw: bytes,
    *,
    options: RegistryOptions | None,
    credentials: Credentials | None,
    docker_config: Path | None,
) -> tuple[str, dict[str, int]]:
    """Push the export to ``ref``; returns where it went and how its layers got there ("uploaded",
    "mounted" from another repository, "existing")."""
    from forklift.oci.registry.reference import parse_reference
    from forklift.oci.registry.transfer import push_manifest

    if parse_reference(ref).digest is not None:
        raise ForkliftError(f"--cache-to: push the cache to a tag, not a digest ({ref})")
    result = push_manifest(
        store, ref, raw, blobs={manifest.config.digest: config},
        options=options, credentials=credentials, docker_config=docker_config,
    )  # fmt: skip
    sent = {"uploaded": result.uploaded, "mounted": result.mounted, "existing": result.existing}
    return result.name, sent


def _store_blob(store: Store, desc: Descriptor) -> BlobOpener:
    return lambda: store.open_blob(desc.digest, size=desc.size)


def _bytes(data: bytes) -> BlobOpener:
    return lambda: io.BytesIO(data)


# ---- reading -----------------------------------------------------------------------------------------


@contextmanager
def registry(
    ref: str, options: RegistryOptions | None, credentials: Credentials | None, docker_config: Path | None
) -> Iterator[tuple[RegistryClient, Reference]]:
    """A client of ``ref``'s registry (with the stored credentials unless given) and the parsed ref."""
    from forklift.oci.registry.client import RegistryClient
    from forklift.oci.registry.reference import parse_reference
    from forklift.oci.registry.transfer import credentials_for

    name = parse_reference(ref)
    creds = credentials if credentials is not None else credentials_for(name.domain, docker_config)
    with RegistryClient(name.domain, credentials=creds, options=options) as client:
        yield client, name


class BlobSource:
    """Where an import reads blobs from (a layout directory or a registry repository)."""

    def store_blob(self, store: Store, desc: Descriptor, lease: Lease) -> None:  # pragma: no cover
        """Put the blob into ``store`` (verified against its digest), kept alive by ``lease``."""
        raise NotImplementedError

    def open_blob(self, store: Store, desc: Descriptor, lease: Lease) -> BinaryIO:
        """The blob's bytes (unverified here: the layer made of them is checked on commit)."""
        self.store_blob(store, desc, lease)
        return store.open_blob(desc.digest, size=desc.size)


@dataclass
class LayoutBlobs(BlobSource):
    """The blobs of an OCI layout directory."""

    root: Path

    def store_blob(self, store: Store, desc: Descriptor, lease: Lease) -> None:
        """Copy the layout's blob into the store."""
        with self.open_blob(store, desc, lease) as fh:
            store.put_stream(fh, desc.digest, lease=lease)

    def open_blob(self, store: Store, desc: Descriptor, lease: Lease) -> BinaryIO:
        """The layout's file itself (decompressed from there: only the layer the entries name is stored)."""
        try:
            return DirSource(self.root).open(blob_name(desc.digest))  # the caller closes it
        except ImageError:
            raise ForkliftError(f"--cache-from: {self.root} lacks blob {desc.digest}") from None


@dataclass
class RegistryBlobs(BlobSource):
    """The blobs of a registry repository, fetched into the store (``fetched`` counts downloads)."""

    client: RegistryClient
    repository: str
    fetched: list[Digest] = field(default_factory=list)

    def store_blob(self, store: Store, desc: Descriptor, lease: Lease) -> None:
        """Fetch the blob unless the store has it."""
        if store.has(desc.digest):
            lease.add(desc.digest)
            return
        sink = self.client.fetch_blob_into(
            self.repository, desc.digest, desc.size, lambda: store.writer(desc.digest.algorithm),
            hash_content=False,
        )  # fmt: skip
        sink.commit(desc.digest, size=desc.size, lease=lease)
        self.fetched.append(desc.digest)


def local_manifest(source: CacheSource, missing_ok: bool) -> bytes | None:
    """The manifest a ``type=local`` source names (by digest, else by tag), checked against its
    digest; None when the layout or the tag is missing and ``missing_ok``."""
    assert source.src is not None
    root = source.src
    if not (root / "index.json").is_file():
        if missing_ok:
            return None
        raise ForkliftError(f"--cache-from: {root} is not an OCI layout (no index.json)")
    entries = read_layout_index(root)
    if source.digest is not None:
        chosen = [d for d in entries if str(d.digest) == source.digest]
    else:
        chosen = [d for d in entries if d.annotations.get(REF_NAME) == source.tag]
    if not chosen:
        if missing_ok:
            return None
        raise ForkliftError(f"--cache-from: {root} has no cache tagged {source.digest or source.tag}")
    desc = chosen[-1]
    try:
        raw = (root / blob_name(desc.digest)).read_bytes()
    except FileNotFoundError:
        raise ForkliftError(f"--cache-from: {root} lacks its manifest {desc.digest}") from None
    if Digest.of(raw, desc.digest.algorithm) != desc.digest:
        raise ForkliftError(f"--cache-from: {root}: manifest {desc.digest} is corrupt")
    return raw
