"""RegistryClient against the real docker-registry: blobs and manifests, auth flows, faults."""

from __future__ import annotations

import gzip
import io
import json
import random
import subprocess
import tarfile
from pathlib import Path

import pytest
from registry_fixtures import (
    PASSWORD,
    USER,
    FaultProxy,
    RegistryServer,
    TokenRegistry,
    require_tool,
)

from forklift.oci.model import Descriptor, Digest, ImageConfig, Manifest, MediaType
from forklift.oci.registry.auth import Credentials
from forklift.oci.registry.client import RegistryClient, RegistryOptions
from forklift.oci.registry.errors import RegistryAuthError, RegistryContentMismatch, RegistryNotFound

pytestmark = pytest.mark.e2e

FAST = RegistryOptions(backoff=0.01)


def tiny_layer(text: str, size: int = 0) -> bytes:
    """A gzip layer with one file (``size`` extra random-ish bytes make it big enough to cut)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = text.encode() + random.Random(size).randbytes(size)  # incompressible, so gzip keeps the size
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def tiny_image(text: str, size: int = 0) -> tuple[bytes, bytes, bytes]:
    """(layer, config, manifest) bytes of a one-layer linux/amd64 image."""
    layer = tiny_layer(text, size)
    diff_id = Digest.of(gzip.decompress(layer))
    config = ImageConfig(architecture="amd64", os="linux", diff_ids=(diff_id,)).to_bytes()
    manifest = Manifest(
        config=Descriptor(MediaType.OCI_CONFIG, Digest.of(config), len(config)),
        layers=(Descriptor(MediaType.OCI_LAYER_GZIP, Digest.of(layer), len(layer)),),
    ).to_bytes()
    return layer, config, manifest


def upload_image(
    client: RegistryClient, repository: str, tag: str, image: tuple[bytes, bytes, bytes]
) -> Digest:
    layer, config, manifest = image
    for blob in (layer, config):
        digest = Digest.of(blob)
        if not client.blob_exists(repository, digest):
            client.upload_blob(repository, digest, len(blob), lambda b=blob: io.BytesIO(b))  # type: ignore[misc]
    return client.put_manifest(repository, tag, manifest, MediaType.OCI_MANIFEST)


def test_push_then_skopeo_inspects_it(plain_registry: RegistryServer) -> None:
    skopeo = require_tool("skopeo")
    image = tiny_image("pushed by forklift\n")
    with RegistryClient(plain_registry.host, options=FAST) as client:
        digest = upload_image(client, "forklift/client", "v1", image)
        raw, media_type, got = client.get_manifest("forklift/client", "v1")
    assert (raw, media_type, got) == (image[2], MediaType.OCI_MANIFEST, digest)
    out = subprocess.run(
        [skopeo, "inspect", "--tls-verify=false", f"docker://{plain_registry.host}/forklift/client:v1"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    facts = json.loads(out)
    assert facts["Digest"] == str(digest)
    assert facts["Layers"] == [str(Digest.of(image[0]))]
    assert (facts["Os"], facts["Architecture"]) == ("linux", "amd64")


def test_chunked_upload_and_fetch_round_trip(plain_registry: RegistryServer, tmp_path: Path) -> None:
    blob = tiny_layer("chunky", size=300_000)
    digest = Digest.of(blob)
    options = RegistryOptions(backoff=0.01, chunk_size=64 * 1024)
    with RegistryClient(plain_registry.host, options=options) as client:
        client.upload_blob("forklift/chunked", digest, len(blob), lambda: io.BytesIO(blob))
        assert client.blob_exists("forklift/chunked", digest)
        client.fetch_blob("forklift/chunked", digest, len(blob), tmp_path / "blob")
    assert (tmp_path / "blob").read_bytes() == blob


def test_cross_repository_mount(plain_registry: RegistryServer) -> None:
    blob = tiny_layer("mount me")
    digest = Digest.of(blob)
    with RegistryClient(plain_registry.host, options=FAST) as client:
        client.upload_blob("forklift/mount-src", digest, len(blob), lambda: io.BytesIO(blob))
        assert not client.blob_exists("forklift/mount-dst", digest)
        assert client.mount_blob("forklift/mount-dst", digest, "forklift/mount-src") is None
        assert client.blob_exists("forklift/mount-dst", digest)
        # Not held anywhere: the registry opens an upload session instead of mounting.
        other = Digest.of(b"not there")
        session = client.mount_blob("forklift/mount-dst", other, "forklift/mount-src")
        assert session is not None and "/blobs/uploads/" in session
        client.upload_blob("forklift/mount-dst", other, 9, lambda: io.BytesIO(b"not there"), location=session)
        assert client.blob_exists("forklift/mount-dst", other)


def test_unknown_tag_is_not_found(plain_registry: RegistryServer) -> None:
    with RegistryClient(plain_registry.host, options=FAST) as client:
        with pytest.raises(RegistryNotFound, match="not found"):
            client.get_manifest("forklift/nothing", "latest")
        assert client.manifest_digest("forklift/nothing", "latest") is None


def test_basic_auth(basic_registry: RegistryServer) -> None:
    image = tiny_image("basic\n")
    anonymous = RegistryClient(basic_registry.host, options=FAST)
    with anonymous, pytest.raises(RegistryAuthError, match="authentication required"):
        anonymous.get_manifest("forklift/basic", "v1")
    creds = Credentials(USER, PASSWORD)
    with RegistryClient(basic_registry.host, credentials=creds, options=FAST) as client:
        digest = upload_image(client, "forklift/basic", "v1", image)
        assert client.get_manifest("forklift/basic", "v1")[2] == digest
    bad = RegistryClient(basic_registry.host, credentials=Credentials(USER, "wrong"), options=FAST)
    with bad, pytest.raises(RegistryAuthError):
        bad.check()


def test_bearer_token_flow(token_registry: TokenRegistry, tmp_path: Path) -> None:
    image = tiny_image("bearer\n", size=100_000)
    creds = Credentials(USER, PASSWORD)
    with RegistryClient(token_registry.host, credentials=creds, options=FAST) as client:
        digest = upload_image(client, "forklift/bearer", "v1", image)
        fetched_for_push = client.auth.tokens_fetched
        assert fetched_for_push >= 1
        layer = Digest.of(image[0])
        client.fetch_blob("forklift/bearer", layer, len(image[0]), tmp_path / "layer")
        assert (tmp_path / "layer").read_bytes() == image[0]
    # The registry names the actions in either order (pull,push or push,pull).
    assert ("repository:forklift/bearer", frozenset({"pull", "push"})) in token_registry.tokens.granted(USER)
    # The token server grants anonymous users pull only: reading works, pushing is refused.
    with RegistryClient(token_registry.host, options=FAST) as anonymous:
        assert anonymous.get_manifest("forklift/bearer", "v1")[2] == digest
        with pytest.raises(RegistryAuthError):
            anonymous.put_manifest("forklift/bearer", "v2", image[2], MediaType.OCI_MANIFEST)
    bad = RegistryClient(token_registry.host, credentials=Credentials(USER, "bad"), options=FAST)
    with bad, pytest.raises(RegistryAuthError, match="token server"):
        bad.get_manifest("forklift/bearer", "v1")


def test_dropped_connection_resumes_with_range(
    plain_registry: RegistryServer, drop_proxy: FaultProxy, tmp_path: Path
) -> None:
    blob = tiny_layer("dropped", size=200_000)
    digest = Digest.of(blob)
    with RegistryClient(plain_registry.host, options=FAST) as client:
        client.upload_blob("forklift/drop", digest, len(blob), lambda: io.BytesIO(blob))
    with RegistryClient(drop_proxy.host, options=FAST) as client:
        client.fetch_blob("forklift/drop", digest, len(blob), tmp_path / "blob")
    assert (tmp_path / "blob").read_bytes() == blob
    ranges = [r for _, r in drop_proxy.blob_gets]
    assert ranges[0] == "" and len(ranges) == 2
    assert ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"


def test_flipped_byte_is_refused_and_nothing_kept(
    plain_registry: RegistryServer, flip_proxy: FaultProxy, tmp_path: Path
) -> None:
    blob = tiny_layer("flipped", size=10_000)
    digest = Digest.of(blob)
    with RegistryClient(plain_registry.host, options=FAST) as client:
        client.upload_blob("forklift/flip", digest, len(blob), lambda: io.BytesIO(blob))
    proxied = RegistryClient(flip_proxy.host, options=FAST)
    with proxied, pytest.raises(RegistryContentMismatch, match="digest is sha256:"):
        proxied.fetch_blob("forklift/flip", digest, len(blob), tmp_path / "blob")
    assert not (tmp_path / "blob").exists()
    assert len(flip_proxy.blob_gets) == 1  # a mismatch is not retried into acceptance
