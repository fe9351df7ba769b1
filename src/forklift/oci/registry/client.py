"""The distribution protocol for one registry host: manifests and blobs, up and down, over httpx.

``RegistryClient`` knows HTTP and the distribution API (``/v2/<name>/manifests|blobs/...``) and
nothing about the local store: it fetches blobs into files, verifying their digest as they stream,
and uploads blobs from files. ``transfer.py`` builds image pull and push on it.

Robustness: connection faults, 429 and 5xx answers are retried with exponential backoff; a blob
download that breaks off resumes with a ``Range`` request where the registry allows it. Content that
does not match its digest is never retried into acceptance: it raises ``RegistryContentMismatch``.

Plain HTTP is used for ``localhost``, ``127.0.0.0/8``, ``::1`` and hosts the caller names insecure;
HTTPS (verified) for everything else. The HTTP transport is injectable (``httpx.BaseTransport``).
"""

from __future__ import annotations

import hashlib
import os
import random
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Generic, Protocol, TypeVar

import httpx

from forklift.oci.model import Digest, MediaType
from forklift.oci.registry.auth import Credentials, RegistryAuth
from forklift.oci.registry.errors import (
    RegistryContentMismatch,
    RegistryProtocolError,
    RegistryUnavailable,
    error_for_response,
)
from forklift.records import record

# Docker Hub's names for itself, and the host its API really lives on.
DOCKER_HUB_DOMAIN = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"

# Everything we can read, most specific first (the registry picks what it has).
MANIFEST_ACCEPT = ", ".join(
    (
        MediaType.OCI_INDEX,
        MediaType.DOCKER_MANIFEST_LIST,
        MediaType.OCI_MANIFEST,
        MediaType.DOCKER_MANIFEST,
    )
)
# Manifests are small; anything bigger than this is not a manifest (the spec suggests 4 MiB).
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
_READ_CHUNK = 1024 * 1024
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_T = TypeVar("_T")


@record(kw_only=True)
class RegistryOptions:
    """How to talk to registries: everything a caller may want to set, with sensible defaults."""

    insecure_registries: frozenset[str] = frozenset()  # hosts spoken to over plain HTTP
    transport: httpx.BaseTransport | None = None  # injectable HTTP transport (tests, proxies)
    retries: int = 5  # attempts after the first, for connection faults and 429/5xx
    backoff: float = 0.25  # seconds before the first retry; doubles each time (capped at 8 s)
    timeout: float = 60.0  # seconds of silence before a request counts as failed
    max_workers: int = 4  # concurrent blob transfers per image
    chunk_size: int | None = None  # None: monolithic uploads; else PATCH chunks of this many bytes
    user_agent: str = "forklift"


def endpoint_host(domain: str) -> str:
    """The host a registry domain's API is served from (``docker.io`` -> ``registry-1.docker.io``)."""
    return DOCKER_HUB_ENDPOINT if domain in (DOCKER_HUB_DOMAIN, "index.docker.io") else domain


def is_plain_http(host: str, insecure_registries: Collection[str] = ()) -> bool:
    """Whether ``host`` (``name[:port]``) is spoken to over plain HTTP: loopback, or named insecure
    (with or without its port)."""
    if host.startswith("["):
        name = host[1 : host.find("]")]
    elif host.count(":") == 1:
        name = host.split(":")[0]
    else:
        name = host
    if host in insecure_registries or name in insecure_registries:
        return True
    return name in ("localhost", "::1") or name.startswith("127.")


class _Retryable(Exception):
    """A response worth trying again (429/5xx); carries it for the final error message."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class RegistryClient:
    """The distribution API of one registry host. Thread-safe; close it (or use ``with``) when done."""

    def __init__(
        self, host: str, *, credentials: Credentials | None = None, options: RegistryOptions | None = None
    ) -> None:
        self.options = options or RegistryOptions()
        self.host = endpoint_host(host)
        scheme = "http" if is_plain_http(self.host, self.options.insecure_registries) else "https"
        self.base_url = f"{scheme}://{self.host}"
        self.auth = RegistryAuth(credentials)
        self.http = httpx.Client(
            auth=self.auth,
            transport=self.options.transport,
            timeout=httpx.Timeout(self.options.timeout, connect=min(self.options.timeout, 15.0)),
            follow_redirects=True,  # blobs are often served from a CDN or object store
            # Loading the CA bundle costs ~0.2 s; a plain-HTTP registry never needs it.
            verify=scheme == "https",
            headers={"User-Agent": self.options.user_agent},
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self.http.close()

    # --- plumbing --------------------------------------------------------------------------------

    def url(self, repository: str, *parts: str) -> str:
        """``/v2/<repository>/<parts...>`` on this registry."""
        return "/".join([self.base_url, "v2", repository, *parts])

    def _absolute(self, location: str) -> str:
        # Upload Locations may be relative to the registry (the spec allows both).
        return urllib.parse.urljoin(self.base_url + "/", location)

    def _sleep_before_retry(self, attempt: int, response: httpx.Response | None = None) -> None:
        delay = min(self.options.backoff * (2**attempt), 8.0)
        if response is not None and (after := response.headers.get("Retry-After", "")).isdigit():
            delay = min(float(after), 30.0)
        # Jitter spreads concurrent layer retries so they do not hit a struggling registry together.
        time.sleep(delay * (0.5 + random.random() / 2))

    def _with_retries(self, what: str, attempt_once: Callable[[], _T]) -> _T:
        """Run ``attempt_once``, retrying connection faults and 429/5xx answers with backoff."""
        last: str = ""
        for attempt in range(self.options.retries + 1):
            try:
                return attempt_once()
            except httpx.TransportError as err:
                last = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                response = None
            except _Retryable as retry:
                response = retry.response
                last = f"HTTP {response.status_code}"
            if attempt < self.options.retries:
                self._sleep_before_retry(attempt, response)
        raise RegistryUnavailable(
            f"{what}: {self.host} kept failing ({last}) after {self.options.retries + 1} attempts",
            hint="check the registry address and network; plain-HTTP registries need --insecure-registry",
        )

    def request(
        self, method: str, url: str, *, what: str, ok: Collection[int], **kwargs: object
    ) -> httpx.Response:
        """One small request (body read), retried; an answer outside ``ok`` raises a RegistryError."""

        def once() -> httpx.Response:
            response = self.http.request(method, url, **kwargs)  # type: ignore[arg-type]
            if response.status_code in _RETRY_STATUS:
                raise _Retryable(response)
            return response

        response = self._with_retries(what, once)
        if response.status_code not in ok:
            raise error_for_response(response, what)
        return response

    # --- ping ------------------------------------------------------------------------------------

    def check(self) -> None:
        """Check that the registry answers and that our credentials are accepted (``/v2/``)."""
        self.request("GET", f"{self.base_url}/v2/", what=f"registry {self.host}", ok=(200,))

    # --- manifests -------------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, Digest]:
        """The raw bytes, media type and digest of a manifest or index, by tag or digest.

        The digest is computed from the bytes; when ``reference`` is a digest the bytes must match it
        (``RegistryContentMismatch`` otherwise), as must a ``Docker-Content-Digest`` header.
        """
        what = f"manifest {repository}:{reference}" if ":" not in reference else f"{repository}@{reference}"
        response = self.request(
            "GET", self.url(repository, "manifests", reference), what=what, ok=(200,),
            headers={"Accept": MANIFEST_ACCEPT},
        )  # fmt: skip
        raw = response.content
        if len(raw) > MAX_MANIFEST_SIZE:
            raise RegistryProtocolError(f"{what}: manifest of {len(raw)} bytes is too large")
        expected = None
        if reference.startswith(("sha256:", "sha512:")):
            expected = Digest.parse(reference)
        elif header := response.headers.get("Docker-Content-Digest"):
            expected = Digest.parse(header)
        algorithm = expected.algorithm if expected is not None else "sha256"
        digest = Digest(algorithm, hashlib.new(algorithm, raw).hexdigest())
        if expected is not None and digest != expected:
            raise RegistryContentMismatch(
                f"{what}: {self.host} served a manifest whose digest is {digest}, not {expected}"
            )
        media_type = _manifest_media_type(raw, response.headers.get("Content-Type", ""))
        return raw, media_type, digest

    def manifest_digest(self, repository: str, reference: str) -> Digest | None:
        """The digest a tag points to (HEAD), or None when the registry does not have it."""
        response = self.request(
            "HEAD", self.url(repository, "manifests", reference), what=f"manifest {repository}:{reference}",
            ok=(200, 404), headers={"Accept": MANIFEST_ACCEPT},
        )  # fmt: skip
        if response.status_code == 404:
            return None
        header = response.headers.get("Docker-Content-Digest")
        if header:
            return Digest.parse(header)
        return self.get_manifest(repository, reference)[2]

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> Digest:
        """Upload a manifest or index under a tag (or its digest); returns its digest."""
        digest = Digest.of(raw)
        self.request(
            "PUT", self.url(repository, "manifests", reference), what=f"manifest {repository}:{reference}",
            ok=(200, 201, 202), content=raw, headers={"Content-Type": media_type},
        )  # fmt: skip
        return digest

    # --- blobs: download -------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: Digest) -> bool:
        """Whether the repository has the blob (HEAD)."""
        response = self.request(
            "HEAD", self.url(repository, "blobs", str(digest)), what=f"blob {digest.short} in {repository}",
            ok=(200, 404),
        )  # fmt: skip
        return response.status_code == 200

    def fetch_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        dest: Path,
        *,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """Download a blob into the file ``dest``, verified (see ``fetch_blob_into``); on error
        ``dest`` does not exist."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        sink = self.fetch_blob_into(repository, digest, size, lambda: _FileSink(dest), on_bytes=on_bytes)
        sink.close()

    def fetch_blob_into(
        self,
        repository: str,
        digest: Digest,
        size: int,
        new_sink: Callable[[], _Sink],
        *,
        on_bytes: Callable[[int], None] | None = None,
        hash_content: bool = True,
    ) -> _Sink:
        """Stream a blob into a sink from ``new_sink``, checking size and digest as it arrives.

        A broken download resumes with ``Range: bytes=N-`` into the same sink; if the registry
        ignores the range, the sink is aborted and a fresh one started. Returns the sink holding
        exactly the verified content (the caller commits it). On a digest or size mismatch the
        sink is aborted and ``RegistryContentMismatch`` raised; a mismatch is never retried.
        ``hash_content=False`` leaves the digest check to a sink that hashes anyway (the store's
        BlobWriter checks it on commit), so the content is hashed once; the size is still checked.
        """
        what = f"blob {digest} of {repository}"
        url = self.url(repository, "blobs", str(digest))
        state: _Download[_Sink] = _Download(digest, size, new_sink, hash_content=hash_content)
        try:
            self._with_retries(what, lambda: self._fetch_once(url, what, state, on_bytes))
            state.finish(what, self.host)
        except BaseException:
            state.sink.abort()
            raise
        return state.sink

    def _fetch_once(
        self, url: str, what: str, state: _Download[_Sink], on_bytes: Callable[[int], None] | None
    ) -> None:
        if state.offset and state.offset == state.size:
            return  # the cut came after the last byte: nothing left to ask for (a Range would be 416)
        headers = {"Range": f"bytes={state.offset}-"} if state.offset else {}
        with self.http.stream("GET", url, headers=headers) as response:
            if response.status_code in _RETRY_STATUS:
                response.read()
                raise _Retryable(response)
            if response.status_code == 206 and state.offset:
                start = _content_range_start(response.headers.get("Content-Range", ""))
                if start != state.offset:
                    state.restart()  # not the range we asked for: start over rather than guess
                    raise httpx.RemoteProtocolError("unexpected Content-Range", request=response.request)
            elif response.status_code == 200:
                if state.offset:
                    state.restart()
            else:
                response.read()
                raise error_for_response(response, what)
            for chunk in response.iter_bytes():  # as received, so a cut keeps what arrived
                state.write(chunk, what, self.host)
                if on_bytes is not None:
                    on_bytes(len(chunk))

    # --- blobs: upload ---------------------------------------------------------------------------

    def mount_blob(self, repository: str, digest: Digest, source_repository: str) -> str | None:
        """Ask the registry to mount a blob from another repository it holds.

        Returns None when mounted (201); otherwise the upload URL of the session the registry opened
        instead (202), so the caller uploads there.
        """
        query = urllib.parse.urlencode({"mount": str(digest), "from": source_repository})
        response = self.request(
            "POST", self.url(repository, "blobs", "uploads/") + "?" + query,
            what=f"mount blob {digest.short} into {repository}", ok=(201, 202),
        )  # fmt: skip
        if response.status_code == 201:
            return None
        return self._upload_location(response, repository)

    def start_upload(self, repository: str) -> str:
        """Open an upload session; returns its URL."""
        response = self.request(
            "POST", self.url(repository, "blobs", "uploads/"), what=f"upload to {repository}", ok=(202,)
        )
        return self._upload_location(response, repository)

    def _upload_location(self, response: httpx.Response, repository: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryProtocolError(f"upload to {repository}: the registry gave no upload Location")
        return self._absolute(location)

    def upload_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        open_blob: Callable[[], BinaryIO],
        *,
        location: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """Upload a blob (monolithic PUT, or PATCH chunks when ``options.chunk_size`` is set).

        ``open_blob`` opens the content from its start; a failed attempt starts a fresh session.
        """
        what = f"upload blob {digest.short} to {repository}"
        # The first attempt may use a session the caller opened (a refused mount); retries open their own.
        given = [location] if location else []

        def once() -> None:
            session = given.pop() if given else self.start_upload(repository)
            with open_blob() as blob:
                if self.options.chunk_size:
                    self._upload_chunked(session, blob, digest, size, what, on_bytes)
                else:
                    self._upload_monolithic(session, blob, digest, size, what, on_bytes)

        self._with_retries(what, once)

    def _put_query(self, session: str, digest: Digest) -> str:
        separator = "&" if urllib.parse.urlsplit(session).query else "?"
        return f"{session}{separator}digest={urllib.parse.quote(str(digest))}"

    def _send_upload(
        self, method: str, url: str, what: str, ok: Collection[int], **kwargs: object
    ) -> httpx.Response:
        response = self.http.request(method, url, **kwargs)  # type: ignore[arg-type]
        if response.status_code in _RETRY_STATUS:
            raise _Retryable(response)
        if response.status_code == 401 and "Authorization" not in response.request.headers:
            # A streamed body cannot be replayed by the auth flow; it cached the token, so retry.
            raise _Retryable(response)
        if response.status_code not in ok:
            raise error_for_response(response, what)
        return response

    def _upload_monolithic(
        self,
        session: str,
        blob: BinaryIO,
        digest: Digest,
        size: int,
        what: str,
        on_bytes: Callable[[int], None] | None,
    ) -> None:
        self._send_upload(
            "PUT", self._put_query(session, digest), what, (201,),
            content=_read_stream(blob, size, on_bytes),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )  # fmt: skip

    def _upload_chunked(
        self,
        session: str,
        blob: BinaryIO,
        digest: Digest,
        size: int,
        what: str,
        on_bytes: Callable[[int], None] | None,
    ) -> None:
        chunk_size = self.options.chunk_size or size
        offset = 0
        while offset < size:
            length = min(chunk_size, size - offset)
            response = self._send_upload(
                "PATCH", session, what, (202,),
                content=_read_stream(blob, length, on_bytes),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
            )  # fmt: skip
            session = self._upload_location(response, what)
            offset += length
        self._send_upload("PUT", self._put_query(session, digest), what, (201,), content=b"")


def _read_stream(blob: BinaryIO, length: int, on_bytes: Callable[[int], None] | None) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        chunk = blob.read(min(_READ_CHUNK, remaining))
        if not chunk:
            raise RegistryProtocolError(f"the blob being uploaded ended {remaining} bytes early")
        remaining -= len(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
        yield chunk


def _content_range_start(header: str) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(header.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _manifest_media_type(raw: bytes, content_type: str) -> str:
    """The media type from the body's own mediaType field, else the Content-Type header."""
    import json

    try:
        value = json.loads(raw)
    except ValueError as err:
        raise RegistryProtocolError(f"the registry served a manifest that is not JSON: {err}") from err
    declared = value.get("mediaType") if isinstance(value, dict) else None
    if isinstance(declared, str) and declared:
        return declared
    header = content_type.split(";")[0].strip()
    if header in MediaType.MANIFESTS or header in MediaType.INDEXES:
        return header
    if isinstance(value, dict) and "manifests" in value:
        return MediaType.OCI_INDEX
    return MediaType.OCI_MANIFEST


class BlobSink(Protocol):
    """Where a download goes: written in order, aborted to throw it away (e.g. a store BlobWriter)."""

    def write(self, data: bytes) -> int: ...

    def abort(self) -> None: ...


_Sink = TypeVar("_Sink", bound=BlobSink)


class _FileSink:
    """A BlobSink writing a plain file, removed on abort."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: BinaryIO = path.open("wb")

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def abort(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class _Download(Generic[_Sink]):
    """A blob arriving in a sink: bytes so far and their running hash, so a retry can resume."""

    def __init__(
        self, digest: Digest, size: int, new_sink: Callable[[], _Sink], *, hash_content: bool = True
    ) -> None:
        self.digest, self.size, self.new_sink = digest, size, new_sink
        self.hash_content = hash_content
        self.hasher = digest.hasher()
        self.offset = 0
        self.sink = new_sink()

    def restart(self) -> None:
        self.sink.abort()
        self.sink = self.new_sink()
        self.hasher = self.digest.hasher()
        self.offset = 0

    def write(self, chunk: bytes, what: str, host: str) -> None:
        if self.offset + len(chunk) > self.size >= 0:
            raise RegistryContentMismatch(f"{what}: {host} sent more than the {self.size} bytes promised")
        self.sink.write(chunk)
        if self.hash_content:
            self.hasher.update(chunk)
        self.offset += len(chunk)

    def finish(self, what: str, host: str) -> None:
        if self.size >= 0 and self.offset != self.size:
            raise RegistryContentMismatch(
                f"{what}: {host} sent {self.offset} bytes, the manifest promised {self.size}"
            )
        actual = Digest(self.digest.algorithm, self.hasher.hexdigest())
        if self.hash_content and actual != self.digest:
            raise RegistryContentMismatch(
                f"{what}: {host} served content whose digest is {actual}",
                hint="the registry (or something between it and you) corrupted the blob; nothing was stored",
            )


@contextmanager
def connect(
    host: str, *, credentials: Credentials | None = None, options: RegistryOptions | None = None
) -> Iterator[RegistryClient]:
    """A ``RegistryClient`` for ``host`` that is closed afterwards."""
    client = RegistryClient(host, credentials=credentials, options=options)
    try:
        yield client
    finally:
        client.close()
