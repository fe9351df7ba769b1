"""Images between the local store and a registry: ``pull_image`` and ``push_image``.

Pull: the manifest or index by tag or digest; from an index, the manifest for the wanted platform;
then the config and layers the store does not hold yet, fetched concurrently, each verified while it
streams into a store ``BlobWriter`` and committed only when its digest and size match, so nothing of
a bad blob enters the store. The manifest is stored last and the name pointed at it, under a lease so
a concurrent prune cannot remove the new blobs in between.

Push: every blob the manifest names is checked with HEAD, mounted from another repository of the same
registry when the caller names candidates (``mount_from``), or uploaded; then the manifest by tag.
Manifests go up in the family they are stored in, or converted to Docker or OCI media types on request
(a conversion changes the manifest digest, not the blobs). ``push_manifest`` pushes one manifest that
is not a stored image (an artifact such as a build cache export) the same way.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, Literal

from forklift.errors import DigestMismatch, ImageError
from forklift.fsatomic import atomic_write
from forklift.oci.compression import Compression, compress_file
from forklift.oci.model import (
    Descriptor,
    Digest,
    Index,
    Manifest,
    MediaType,
    Platform,
    parse_manifest_or_index,
)
from forklift.oci.registry.auth import Credentials, default_docker_config, lookup_credentials
from forklift.oci.registry.client import RegistryClient, RegistryOptions
from forklift.oci.registry.errors import RegistryContentMismatch, RegistryProtocolError
from forklift.oci.registry.reference import Reference, parse_reference
from forklift.oci.store import Lease, Store
from forklift.records import record

MediaFamily = Literal["oci", "docker"]


@record
class PullResult:
    """What a pull stored: the name it set, the manifest (and index) digests, and the config digest."""

    name: str  # the store reference that now points at the manifest (docker's full form)
    manifest_digest: Digest
    config_digest: Digest
    index_digest: Digest | None  # when the reference named an index and a platform was chosen
    blobs_fetched: int  # blobs downloaded (the rest were already in the store)


@record
class PushResult:
    """What a push sent: the destination, the digest the registry now has under the tag, blob counts."""

    name: str
    digest: Digest
    uploaded: int
    mounted: int
    existing: int


def credentials_for(domain: str, docker_config: Path | None) -> Credentials | None:
    """Stored credentials for a registry domain (docker's config file, or the one given)."""
    return lookup_credentials(domain, config_path=docker_config or default_docker_config())


def pull_image(
    store: Store,
    reference: str,
    *,
    platform: Platform | None = None,
    options: RegistryOptions | None = None,
    credentials: Credentials | None = None,
    docker_config: Path | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> PullResult:
    """Pull ``reference`` (``busybox``, ``host:5000/a/b:tag``, ``name@sha256:...``) into ``store``.

    ``platform`` (default ``linux/amd64`` on this machine: ``Platform.host()``) picks the manifest
    from an index. Credentials default to those stored for the registry in docker's config.
    ``progress(digest, nbytes)`` is called as bytes of each blob arrive (from worker threads).
    Returns what was stored; the store's reference ``PullResult.name`` points at the manifest.
    """
    name = parse_reference(reference)
    wanted = platform or Platform.host()
    creds = credentials if credentials is not None else credentials_for(name.domain, docker_config)
    options = options or RegistryOptions()
    with RegistryClient(name.domain, credentials=creds, options=options) as client, store.lease() as lease:
        raw, media_type, digest = client.get_manifest(name.path, name.manifest_ref)
        index_digest = None
        if MediaType.is_index(media_type):
            index_digest = digest
            store.put_bytes(raw, digest, lease=lease)
            child = Index.from_bytes(raw).select(wanted)
            raw, media_type, digest = client.get_manifest(name.path, str(child.digest))
            if digest != child.digest:
                raise RegistryProtocolError(f"{name}: the index names {child.digest}, got {digest}")
        if not MediaType.is_manifest(media_type):
            raise ImageError(f"{name} is a {media_type}, not an image manifest")
        manifest = Manifest.from_bytes(raw)
        blobs = [manifest.config, *manifest.layers]
        missing = _unique([d for d in blobs if not store.has(d.digest)])
        for desc in blobs:
            if store.has(desc.digest):
                lease.add(desc.digest)

        def fetch(desc: Descriptor) -> None:
            on_bytes = None if progress is None else (lambda n, d=str(desc.digest): progress(d, n))
            new_writer = lambda: store.writer(desc.digest.algorithm)  # noqa: E731
            # The store's writer hashes what it is given and checks the digest on commit: one hash.
            sink = client.fetch_blob_into(
                name.path, desc.digest, desc.size, new_writer, on_bytes=on_bytes, hash_content=False
            )
            try:
                sink.commit(desc.digest, size=desc.size, lease=lease)
            except DigestMismatch as err:
                raise RegistryContentMismatch(
                    f"blob {desc.digest} of {name.path}: {client.host} served content that does not match "
                    f"its digest ({err.message})",
                    hint="the registry, or something on the way, corrupted the blob; nothing was kept",
                ) from None
            remember_source(store, desc.digest, name.repository)

        _run_concurrently(fetch, missing, options.max_workers)
        store.put_bytes(raw, digest, lease=lease)
        store.set_ref(str(name), digest)
    return PullResult(
        name=str(name),
        manifest_digest=digest,
        config_digest=manifest.config.digest,
        index_digest=index_digest,
        blobs_fetched=len(missing),
    )


def ensure_image(
    store: Store,
    reference: str,
    *,
    platform: Platform | None = None,
    pull: bool = False,
    options: RegistryOptions | None = None,
    credentials: Credentials | None = None,
    docker_config: Path | None = None,
) -> Digest:
    """The digest the store's name for ``reference`` points at, pulling it first when the store does
    not have it, or always when ``pull`` (``--pull``: check the registry; only new blobs are fetched).

    This is what a build's FROM and ``COPY --from=<image>`` call.
    """
    name = str(parse_reference(reference))
    if not pull and (digest := store.get_ref(name)) is not None:
        return digest
    result = pull_image(
        store, reference, platform=platform, options=options, credentials=credentials,
        docker_config=docker_config,
    )  # fmt: skip
    return result.manifest_digest


def push_image(
    store: Store,
    source: str,
    destination: str | None = None,
    *,
    media_types: MediaFamily | None = None,
    compression: Compression = "gzip",
    mount_from: Sequence[str] = (),
    options: RegistryOptions | None = None,
    credentials: Credentials | None = None,
    docker_config: Path | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> PushResult:
    """Push the stored image named ``source`` to ``destination`` (default: ``source`` itself).

    ``media_types`` converts the manifest to the OCI or Docker family (None keeps it as stored).
    ``compression`` (gzip, zstd or none) is applied to layers the store keeps uncompressed (the
    build's own layers); the compressed form is stored and remembered, so it is made only once.
    Layers already compressed go up as they are.
    ``mount_from`` names repositories on the destination registry that may hold the blobs already
    (e.g. the base image's); the registry mounts them instead of receiving an upload. Repositories
    a blob was pulled from or pushed to before are tried too (remembered under
    ``<store>/registry/sources``), as docker does.
    Returns the digest of the manifest (or index) the tag now points at.
    """
    src = parse_reference(source)
    dest = parse_reference(destination or source)
    if dest.digest is not None:
        raise ImageError(f"cannot push to {destination}: push to a tag, not a digest")
    top = store.get_ref(str(src))
    if top is None:
        raise ImageError(f"no image named {source} in the store", hint="see 'forklift images'")
    creds = credentials if credentials is not None else credentials_for(dest.domain, docker_config)
    options = options or RegistryOptions()
    given = [parse_reference(m, default_tag=None).repository for m in mount_from]

    with RegistryClient(dest.domain, credentials=creds, options=options) as client, store.lease() as lease:
        pusher = _BlobPusher(client, store, dest, given, progress)
        push_blob = pusher.push

        def send_manifest(digest: Digest, reference: str | None) -> tuple[Digest, str, bytes]:
            raw = store.read_blob(digest)
            parsed = parse_manifest_or_index(raw)
            if isinstance(parsed, Index):
                children = [send_manifest(d.digest, None) for d in parsed.manifests]
                converted = _convert_index(parsed, children, media_types)
                out, media_type = converted.to_bytes(), converted.media_type
                if converted == parsed:
                    out = raw
            else:
                compressed = _compress_layers(store, parsed, compression, options.max_workers, lease)
                _run_concurrently(
                    push_blob, _unique([compressed.config, *compressed.layers]), options.max_workers
                )
                converted_manifest = _convert(compressed, media_types)
                out, media_type = converted_manifest.to_bytes(), converted_manifest.media_type
                if converted_manifest == parsed:
                    out = raw  # keep the stored bytes (and so the digest) exactly
            pushed = client.put_manifest(dest.path, reference or str(Digest.of(out)), out, media_type)
            return pushed, media_type, out

        digest, _, _ = send_manifest(top, dest.tag or "latest")
    return PushResult(name=str(dest), digest=digest, **pusher.counts)


def push_manifest(
    store: Store,
    destination: str,
    raw: bytes,
    *,
    blobs: Mapping[Digest, bytes] | None = None,
    options: RegistryOptions | None = None,
    credentials: Credentials | None = None,
    docker_config: Path | None = None,
) -> PushResult:
    """Push the manifest ``raw`` (not a stored image: an artifact such as a cache export) by tag.

    Its blobs are read from the store, except those given in ``blobs`` (digest -> bytes, such as
    an artifact's config made for this push), which are uploaded unless the registry has them.
    Store blobs go up as ``push_image`` sends them (HEAD, then a mount from a repository that holds
    them, then an upload), and the result counts those. The manifest goes up as it is.
    """
    dest = parse_reference(destination)
    if dest.digest is not None:
        raise ImageError(f"cannot push to {destination}: push to a tag, not a digest")
    manifest = Manifest.from_bytes(raw)
    given = blobs or {}
    creds = credentials if credentials is not None else credentials_for(dest.domain, docker_config)
    with RegistryClient(dest.domain, credentials=creds, options=options) as client:
        pusher = _BlobPusher(client, store, dest, [], None)
        for desc in _unique([manifest.config, *manifest.layers]):
            data = given.get(desc.digest)
            if data is None:
                pusher.push(desc)
            elif not client.blob_exists(dest.path, desc.digest):
                client.upload_blob(dest.path, desc.digest, len(data), _bytes_opener(data))
        digest = client.put_manifest(dest.path, dest.tag or "latest", raw, manifest.media_type)
    return PushResult(name=str(dest), digest=digest, **pusher.counts)


def _bytes_opener(data: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(data)


class _BlobPusher:
    """Sends blobs of the store to one repository: HEAD, else a mount from a repository of the same
    registry that may hold the blob, else an upload; counts each kind and remembers where blobs went."""

    def __init__(
        self,
        client: RegistryClient,
        store: Store,
        dest: Reference,
        mount_from: Sequence[str],
        progress: Callable[[str, int], None] | None,
    ) -> None:
        self._client = client
        self._store = store
        self._dest = dest
        self._given = list(mount_from)
        self._progress = progress
        self._lock = threading.Lock()
        self.counts = {"uploaded": 0, "mounted": 0, "existing": 0}

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def mount_sources(self, digest: Digest) -> list[str]:
        """Repositories of the destination registry that may hold ``digest``: the caller's
        candidates, then those the blob was pulled from or pushed to before (at most three)."""
        out: list[str] = []
        for repository in [*self._given, *known_sources(self._store, digest)]:
            domain, _, path = repository.partition("/")
            if domain == self._dest.domain and path != self._dest.path and path not in out:
                out.append(path)
        return out[:3]

    def push(self, desc: Descriptor) -> None:
        """Make sure the destination repository holds ``desc``'s blob."""
        client, store, dest, progress = self._client, self._store, self._dest, self._progress
        if client.blob_exists(dest.path, desc.digest):
            self._count("existing")
            return
        session = None
        for repo in self.mount_sources(desc.digest):
            session = client.mount_blob(dest.path, desc.digest, repo)
            if session is None:
                self._count("mounted")
                remember_source(store, desc.digest, dest.repository)
                return
        on_bytes = None if progress is None else (lambda n, d=str(desc.digest): progress(d, n))
        client.upload_blob(
            dest.path, desc.digest, desc.size,
            lambda: _open_for_upload(store, desc), location=session, on_bytes=on_bytes,
        )  # fmt: skip
        self._count("uploaded")
        remember_source(store, desc.digest, dest.repository)


def _sources_file(store: Store, digest: Digest) -> Path:
    return store.layout.registry_sources / f"{digest.algorithm}-{digest.hex}"


def remember_source(store: Store, digest: Digest, repository: str) -> None:
    """Note that ``repository`` (``domain/path``) holds the blob, for cross-repository mounts later.

    One line per repository, appended (a short O_APPEND write is atomic between processes).
    """
    if repository in known_sources(store, digest):
        return
    path = _sources_file(store, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{repository}\n".encode())
    finally:
        os.close(fd)


def known_sources(store: Store, digest: Digest) -> list[str]:
    """Repositories (``domain/path``) known to hold the blob, most recent first."""
    try:
        lines = _sources_file(store, digest).read_text().splitlines()
    except FileNotFoundError:
        return []
    return list(dict.fromkeys(line for line in reversed(lines) if line.strip()))


def _compress_layers(
    store: Store, manifest: Manifest, compression: Compression, workers: int, lease: Lease
) -> Manifest:
    """``manifest`` with its uncompressed layers replaced by their ``compression`` form (made once)."""
    if compression == "none":
        return manifest
    layers = list(manifest.layers)
    todo = [
        d
        for d in layers
        if MediaType.is_layer(d.media_type) and MediaType.compression(d.media_type) == "none"
    ]
    if not todo:
        return manifest
    done: dict[Digest, Descriptor] = {}
    done_lock = threading.Lock()

    def compress(desc: Descriptor) -> None:
        compressed = _compressed_layer(store, desc, compression, docker=manifest.is_docker, lease=lease)
        with done_lock:
            done[desc.digest] = compressed

    _run_concurrently(compress, _unique(todo), workers)
    return replace(manifest, layers=tuple(done.get(d.digest, d) for d in layers))


def _compressed_layer(
    store: Store, desc: Descriptor, compression: Compression, *, docker: bool, lease: Lease
) -> Descriptor:
    """The descriptor of ``desc``'s layer compressed with ``compression``, from a remembered earlier
    compression when its blob is still stored, else compressed now into the store and remembered.

    Memo files live in ``<store>/registry/compressed/<algorithm>-<hex>.<compression>`` and hold the
    compressed digest; a memo whose blob was pruned is simply redone.
    """
    memo = store.layout.registry_compressed / f"{desc.digest.algorithm}-{desc.digest.hex}.{compression}"
    media_type = MediaType.layer(compression, docker=docker)
    try:
        known = Digest.parse(memo.read_text().strip())
        if store.has(known):
            lease.add(known)
            return replace(desc, media_type=media_type, digest=known, size=store.blob_size(known))
    except (FileNotFoundError, ImageError):
        pass
    with store.open_blob(desc.digest, size=desc.size) as src, store.writer() as writer:
        result = compress_file(src, writer, compression)
        digest, size = writer.commit(Digest.parse(result.digest), lease=lease)
    # Atomic: a concurrent reader sees the old memo or the new one.
    atomic_write(memo, f"{digest}\n", durable=False, parents=True)
    return replace(desc, media_type=media_type, digest=digest, size=size)


def _open_for_upload(store: Store, desc: Descriptor) -> BinaryIO:
    """The stored blob, read without hashing it again: the registry checks the digest on the final
    PUT (``?digest=``) and refuses a corrupt blob, so a second hash here would only cost time."""
    try:
        return store.blob_path(desc.digest).open("rb")
    except FileNotFoundError:
        raise ImageError(f"blob {desc.digest} is not in the store") from None


def _convert(manifest: Manifest, family: MediaFamily | None) -> Manifest:
    if family == "docker" and not manifest.is_docker:
        return manifest.to_docker()
    if family == "oci" and manifest.is_docker:
        return manifest.to_oci()
    return manifest


def _convert_index(
    index: Index, children: list[tuple[Digest, str, bytes]], family: MediaFamily | None
) -> Index:
    manifests = tuple(
        replace(desc, digest=digest, media_type=media_type, size=len(raw))
        for desc, (digest, media_type, raw) in zip(index.manifests, children, strict=True)
    )
    result = replace(index, manifests=manifests)
    if family == "docker":
        return replace(result.to_docker(), manifests=manifests)
    if family == "oci":
        return replace(result, media_type=MediaType.OCI_INDEX)
    return result


def _unique(descs: list[Descriptor]) -> list[Descriptor]:
    seen: set[Digest] = set()
    out = []
    for desc in descs:
        if desc.digest not in seen:
            seen.add(desc.digest)
            out.append(desc)
    return out


def _run_concurrently(work: Callable[[Descriptor], None], items: list[Descriptor], workers: int) -> None:
    """Run ``work`` on each item in threads; on the first error the rest not yet started are
    cancelled, the running ones finish, and that error is raised."""
    if len(items) <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        futures = [pool.submit(work, item) for item in items]
        _done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
    for future in futures:
        if not future.cancelled() and (error := future.exception()) is not None:
            raise error
