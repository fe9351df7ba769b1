"""Images between the store and a real registry: forklift push/pull, judged by skopeo and umoci.

Pushes are verified with ``skopeo inspect``; images skopeo pushed (from an OCI layout umoci made) are
pulled; logins go through the htpasswd and Bearer token registries; the fault proxies prove that a
dropped connection is resumed and a corrupted blob leaves nothing in the store.
"""

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

from forklift.cli.main import main
from forklift.oci.model import Descriptor, Digest, ImageConfig, Index, Manifest, MediaType, Platform
from forklift.oci.registry.client import RegistryOptions
from forklift.oci.registry.errors import RegistryAuthError, RegistryContentMismatch, RegistryUnavailable
from forklift.oci.registry.reference import parse_reference
from forklift.oci.registry.transfer import ensure_image, pull_image, push_image
from forklift.oci.store import Store

pytestmark = pytest.mark.e2e

FAST = RegistryOptions(backoff=0.01)


def put_image(store: Store, name: str, text: str, *, size: int = 0, arch: str = "amd64") -> Manifest:
    """A one-layer image in the store under ``name``; returns its manifest."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = text.encode() + random.Random(size).randbytes(size)
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(buf.getvalue(), mtime=0)
    config = ImageConfig(architecture=arch, os="linux", diff_ids=(Digest.of(buf.getvalue()),)).to_bytes()
    manifest = Manifest(
        config=Descriptor(MediaType.OCI_CONFIG, store.put_bytes(config), len(config)),
        layers=(Descriptor(MediaType.OCI_LAYER_GZIP, store.put_bytes(layer), len(layer)),),
    )
    digest = store.put_bytes(manifest.to_bytes())
    store.set_ref(str(parse_reference(name)), digest)
    return manifest


def put_uncompressed_image(store: Store, name: str, text: str) -> Manifest:
    """A one-layer image whose layer is an uncompressed tar, as the build stores its own layers."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = (text * 1000).encode()
        info = tarfile.TarInfo("built.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = buf.getvalue()
    config = ImageConfig(architecture="amd64", os="linux", diff_ids=(Digest.of(layer),)).to_bytes()
    manifest = Manifest(
        config=Descriptor(MediaType.OCI_CONFIG, store.put_bytes(config), len(config)),
        layers=(Descriptor(MediaType.OCI_LAYER, store.put_bytes(layer), len(layer)),),
    )
    store.set_ref(str(parse_reference(name)), store.put_bytes(manifest.to_bytes()))
    return manifest


def skopeo_inspect(ref: str, *, raw: bool = False, creds: str | None = None) -> dict[str, object]:
    skopeo = require_tool("skopeo")
    args = [skopeo, "inspect", "--tls-verify=false", *(["--raw"] if raw else [])]
    args += ["--creds", creds] if creds else []
    out = subprocess.run([*args, f"docker://{ref}"], check=True, capture_output=True, text=True).stdout
    result: dict[str, object] = json.loads(out)
    return result


def forklift(root: Path, *args: str) -> None:
    """Run the forklift CLI in-process; fail the test on a non-zero exit."""
    try:
        main(["--root", str(root), *args])
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"forklift {' '.join(args)} exited {exit_.code}"


def test_cli_push_is_what_skopeo_sees(plain_registry: RegistryServer, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    manifest = put_image(store, "forklift-test/app:v1", "app\n")
    dest = f"{plain_registry.host}/forklift/app:v1"
    forklift(store.root, "push", "forklift-test/app:v1", dest)
    facts = skopeo_inspect(dest)
    assert facts["Digest"] == str(Digest.of(manifest.to_bytes()))
    assert facts["Layers"] == [str(manifest.layers[0].digest)]
    # Docker media types on request: a different manifest, the same blobs.
    forklift(store.root, "push", "--format", "docker", "forklift-test/app:v1", f"{dest}-docker")
    raw = skopeo_inspect(f"{dest}-docker", raw=True)
    assert raw["mediaType"] == MediaType.DOCKER_MANIFEST
    assert raw["layers"][0]["mediaType"] == MediaType.DOCKER_LAYER_GZIP  # type: ignore[index]
    assert raw["layers"][0]["digest"] == str(manifest.layers[0].digest)  # type: ignore[index]


def test_push_mounts_blobs_from_another_repository(plain_registry: RegistryServer, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    put_image(store, "forklift-test/base:v1", "base\n")
    host = plain_registry.host
    first = push_image(store, "forklift-test/base:v1", f"{host}/forklift/base:v1", options=FAST)
    assert (first.uploaded, first.mounted) == (2, 0)
    again = push_image(store, "forklift-test/base:v1", f"{host}/forklift/base:v2", options=FAST)
    assert (again.uploaded, again.existing) == (0, 2)
    mounted = push_image(
        store, "forklift-test/base:v1", f"{host}/forklift/derived:v1",
        mount_from=[f"{host}/forklift/base"], options=FAST,
    )  # fmt: skip
    assert (mounted.uploaded, mounted.mounted) == (0, 2)
    assert skopeo_inspect(f"{host}/forklift/derived:v1")["Digest"] == str(first.digest)
    # Without being told: the store remembers where each blob was pushed (or pulled) from.
    remembered = push_image(store, "forklift-test/base:v1", f"{host}/forklift/other:v1", options=FAST)
    assert (remembered.uploaded, remembered.mounted) == (0, 2)
    fresh = Store(tmp_path / "fresh")
    pull_image(fresh, f"{host}/forklift/other:v1", options=FAST)
    fresh.set_ref(str(parse_reference("forklift-test/pulled:v1")), first.digest)
    from_pull = push_image(fresh, "forklift-test/pulled:v1", f"{host}/forklift/third:v1", options=FAST)
    assert (from_pull.uploaded, from_pull.mounted) == (0, 2)


@pytest.mark.parametrize(
    ("compression", "media_type", "magic"),
    [
        ("gzip", MediaType.OCI_LAYER_GZIP, b"\x1f\x8b"),
        ("zstd", MediaType.OCI_LAYER_ZSTD, b"\x28\xb5\x2f\xfd"),
    ],
)
def test_push_compresses_uncompressed_layers_once(
    plain_registry: RegistryServer, tmp_path: Path, compression: str, media_type: str, magic: bytes
) -> None:
    store = Store(tmp_path / "store")
    built = put_uncompressed_image(store, "forklift-test/built:v1", f"built with {compression}\n")
    dest = f"{plain_registry.host}/forklift/built-{compression}:v1"
    forklift(store.root, "push", "--compression", compression, "forklift-test/built:v1", dest)
    raw = skopeo_inspect(dest, raw=True)
    layer = raw["layers"][0]  # type: ignore[index]
    assert layer["mediaType"] == media_type
    assert layer["digest"] != str(built.layers[0].digest)
    assert layer["size"] < built.layers[0].size
    # The compressed form is kept: it is in the store, and a second push makes no new blob.
    compressed = Digest.parse(layer["digest"])
    assert store.read_blob(compressed).startswith(magic)
    blobs_before = set(store.list_blobs())
    again = push_image(
        store, "forklift-test/built:v1", f"{dest}-again",
        compression="zstd" if compression == "zstd" else "gzip", options=FAST,
    )  # fmt: skip
    assert set(store.list_blobs()) == blobs_before
    assert (again.uploaded, again.existing) == (0, 2)
    # Pulled back, the layer unpacks to the same tar (its diff_id).
    fresh = Store(tmp_path / "fresh")
    result = pull_image(fresh, dest, options=FAST)
    config = ImageConfig.from_bytes(fresh.read_blob(result.config_digest))
    assert config.diff_ids == (built.layers[0].digest,)


def umoci_layout(tmp_path: Path) -> Path:
    """An OCI layout made by umoci with one file, tagged ``v1``."""
    umoci = require_tool("umoci")
    layout = tmp_path / "layout"
    bundle = tmp_path / "bundle"
    subprocess.run([umoci, "init", "--layout", str(layout)], check=True)
    subprocess.run([umoci, "new", "--image", f"{layout}:v1"], check=True)
    subprocess.run([umoci, "unpack", "--image", f"{layout}:v1", str(bundle)], check=True, capture_output=True)
    (bundle / "rootfs" / "hello.txt").write_text("made by umoci\n")
    subprocess.run([umoci, "repack", "--image", f"{layout}:v1", str(bundle)], check=True, capture_output=True)
    subprocess.run(
        [umoci, "config", "--image", f"{layout}:v1", "--os", "linux", "--architecture", "amd64"], check=True
    )
    return layout


def test_pull_what_skopeo_pushed(plain_registry: RegistryServer, tmp_path: Path) -> None:
    skopeo = require_tool("skopeo")
    layout = umoci_layout(tmp_path)
    dest = f"{plain_registry.host}/forklift/from-skopeo:v1"
    subprocess.run(
        [skopeo, "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{dest}"],
        check=True,
    )
    facts = skopeo_inspect(dest)
    store = Store(tmp_path / "store")
    forklift(store.root, "pull", dest)
    digest = store.get_ref(str(parse_reference(dest)))
    assert digest is not None and str(digest) == facts["Digest"]
    manifest = Manifest.from_bytes(store.read_blob(digest))
    assert [str(d.digest) for d in manifest.layers] == facts["Layers"]
    for desc in (manifest.config, *manifest.layers):
        store.verify(desc.digest)
    layer = io.BytesIO(store.read_blob(manifest.layers[-1].digest))
    with tarfile.open(fileobj=layer, mode="r:*") as tar:
        files = {m.name.lstrip("./"): tar.extractfile(m) for m in tar.getmembers() if m.isfile()}
        content = {name: f.read() for name, f in files.items() if f is not None}
    assert content == {"hello.txt": b"made by umoci\n"}


def test_pull_chooses_the_platform_from_an_index(plain_registry: RegistryServer, tmp_path: Path) -> None:
    source = Store(tmp_path / "source")
    amd64 = put_image(source, "forklift-test/multi:amd64", "amd64\n", arch="amd64")
    arm64 = put_image(source, "forklift-test/multi:arm64", "arm64\n", arch="arm64")
    index = Index(
        manifests=tuple(
            Descriptor.of(MediaType.OCI_MANIFEST, m.to_bytes(), platform=Platform("linux", arch))
            for m, arch in ((arm64, "arm64"), (amd64, "amd64"))
        )
    )
    source.set_ref("docker.io/forklift-test/multi:all", source.put_bytes(index.to_bytes()))
    dest = f"{plain_registry.host}/forklift/multi:v1"
    pushed = push_image(source, "forklift-test/multi:all", dest, options=FAST)
    assert pushed.digest == Digest.of(index.to_bytes())
    assert skopeo_inspect(dest, raw=True)["mediaType"] == MediaType.OCI_INDEX

    store = Store(tmp_path / "store")
    result = pull_image(store, dest, platform=Platform("linux", "amd64"), options=FAST)
    assert result.manifest_digest == Digest.of(amd64.to_bytes())
    assert result.index_digest == pushed.digest
    assert not store.has(arm64.layers[0].digest)
    result = pull_image(store, dest, platform=Platform.parse("linux/arm64"), options=FAST)
    assert result.manifest_digest == Digest.of(arm64.to_bytes())
    assert store.has(arm64.layers[0].digest)
    # By digest (the index's), and by tag plus digest: the digest wins, the name keeps both.
    by_digest = f"{plain_registry.host}/forklift/multi@{pushed.digest}"
    result = pull_image(Store(tmp_path / "d"), by_digest, options=FAST)
    assert (result.index_digest, result.manifest_digest) == (pushed.digest, Digest.of(amd64.to_bytes()))
    assert result.name == by_digest
    pinned = pull_image(Store(tmp_path / "td"), f"{plain_registry.host}/forklift/multi:gone@{pushed.digest}")
    assert pinned.manifest_digest == Digest.of(amd64.to_bytes())


def test_cli_pull_of_a_missing_image_is_a_clear_error(
    plain_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--root", str(tmp_path / "store"), "pull", f"{plain_registry.host}/forklift/absent:v1"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: manifest forklift/absent:v1") and "not found" in err
    assert "Traceback" not in err


def test_login_push_pull_logout_with_basic_auth(
    basic_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    store = Store(tmp_path / "store")
    put_image(store, "forklift-test/secret:v1", "secret\n")
    dest = f"{basic_registry.host}/forklift/secret:v1"
    with pytest.raises(RegistryAuthError, match="authentication required"):
        push_image(store, "forklift-test/secret:v1", dest, options=FAST)
    with pytest.raises(SystemExit):
        main(["--root", str(store.root), "login", basic_registry.host, "-u", USER, "-p", "wrong"])
    assert not (tmp_path / "docker" / "config.json").exists()
    forklift(store.root, "login", basic_registry.host, "-u", USER, "-p", PASSWORD)
    config = json.loads((tmp_path / "docker" / "config.json").read_text())
    assert basic_registry.host in config["auths"]
    forklift(store.root, "push", "forklift-test/secret:v1", dest)
    assert skopeo_inspect(dest, creds=f"{USER}:{PASSWORD}")["Digest"]
    fresh = Store(tmp_path / "fresh")
    forklift(fresh.root, "pull", dest)
    assert fresh.get_ref(str(parse_reference(dest))) is not None
    forklift(store.root, "logout", basic_registry.host)
    with pytest.raises(RegistryAuthError):
        pull_image(Store(tmp_path / "again"), dest, options=FAST)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    forklift(store.root, "login", basic_registry.host, "-u", USER, "--password-stdin")
    assert pull_image(Store(tmp_path / "stdin"), dest, options=FAST).manifest_digest


def test_push_and_pull_through_the_bearer_token_flow(
    token_registry: TokenRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    store = Store(tmp_path / "store")
    manifest = put_image(store, "forklift-test/tokened:v1", "tokened\n", size=50_000)
    dest = f"{token_registry.host}/forklift/tokened:v1"
    with pytest.raises(RegistryAuthError):
        push_image(store, "forklift-test/tokened:v1", dest, options=FAST)  # anonymous: pull only
    forklift(store.root, "login", token_registry.host, "-u", USER, "-p", PASSWORD)
    pushed = push_image(store, "forklift-test/tokened:v1", dest, options=FAST)
    # The registry names the actions in either order (pull,push or push,pull).
    assert ("repository:forklift/tokened", frozenset({"pull", "push"})) in token_registry.tokens.granted(USER)
    fresh = Store(tmp_path / "fresh")
    before = len(token_registry.tokens.issued)
    result = pull_image(fresh, dest, options=FAST)
    assert result.manifest_digest == pushed.digest
    fresh.verify(manifest.layers[0].digest)
    # One token for the pull: the manifest's challenge; the blob downloads reuse it.
    assert len(token_registry.tokens.issued) == before + 1


def test_pull_survives_a_dropped_connection(
    plain_registry: RegistryServer, drop_proxy: FaultProxy, tmp_path: Path
) -> None:
    source = Store(tmp_path / "source")
    manifest = put_image(source, "forklift-test/drop:v1", "drop\n", size=300_000)
    push_image(source, "forklift-test/drop:v1", f"{plain_registry.host}/forklift/drop:v1", options=FAST)
    store = Store(tmp_path / "store")
    pull_image(store, f"{drop_proxy.host}/forklift/drop:v1", options=FAST)
    store.verify(manifest.layers[0].digest)
    layer_gets = [r for p, r in drop_proxy.blob_gets if str(manifest.layers[0].digest) in p]
    assert len(layer_gets) == 2 and layer_gets[1].startswith("bytes=")  # resumed, not restarted


def test_pull_refuses_a_corrupted_blob_and_stores_nothing(
    plain_registry: RegistryServer, flip_proxy: FaultProxy, tmp_path: Path
) -> None:
    source = Store(tmp_path / "source")
    manifest = put_image(source, "forklift-test/flip:v1", "flip\n", size=20_000)
    push_image(source, "forklift-test/flip:v1", f"{plain_registry.host}/forklift/flip:v1", options=FAST)
    store = Store(tmp_path / "store")
    ref = f"{flip_proxy.host}/forklift/flip:v1"
    with pytest.raises(RegistryContentMismatch, match="does not match its digest") as caught:
        pull_image(store, ref, options=FAST)
    assert any(str(d.digest) in str(caught.value) for d in (manifest.config, *manifest.layers))
    assert not store.has(manifest.layers[0].digest)
    assert not store.has(manifest.config.digest)
    assert store.get_ref(str(parse_reference(ref))) is None
    assert list((store.root / "tmp").iterdir()) == []


def test_pull_retries_a_registry_that_answers_503(
    plain_registry: RegistryServer, unavailable_proxy: FaultProxy, tmp_path: Path
) -> None:
    source = Store(tmp_path / "source")
    manifest = put_image(source, "forklift-test/busy:v1", "busy\n")
    push_image(source, "forklift-test/busy:v1", f"{plain_registry.host}/forklift/busy:v1", options=FAST)
    store = Store(tmp_path / "store")
    pull_image(store, f"{unavailable_proxy.host}/forklift/busy:v1", options=FAST)
    store.verify(manifest.layers[0].digest)
    layer_gets = [r for p, r in unavailable_proxy.blob_gets if str(manifest.layers[0].digest) in p]
    assert layer_gets == ["answered 503", ""]


def test_ensure_image_uses_the_store_first_and_pulls_when_asked(
    plain_registry: RegistryServer, tmp_path: Path
) -> None:
    source = Store(tmp_path / "source")
    manifest = put_image(source, "forklift-test/base:v9", "ensure\n", size=5_000)
    ref = f"{plain_registry.host}/forklift/ensure:v1"
    push_image(source, "forklift-test/base:v9", ref, options=FAST)
    store = Store(tmp_path / "store")
    arrived: dict[str, int] = {}

    def progress(digest: str, nbytes: int) -> None:
        arrived[digest] = arrived.get(digest, 0) + nbytes

    pulled = pull_image(store, ref, options=FAST, progress=progress)
    assert arrived == {str(d.digest): d.size for d in (manifest.config, *manifest.layers)}
    assert ensure_image(store, ref, options=FAST) == pulled.manifest_digest
    # In the store: no network at all (a name the store holds on a registry that is not there).
    store.set_ref("127.0.0.1:9/forklift/offline:v1", pulled.manifest_digest)
    offline = RegistryOptions(retries=0)
    assert ensure_image(store, "127.0.0.1:9/forklift/offline:v1", options=offline) == pulled.manifest_digest
    with pytest.raises(RegistryUnavailable, match="kept failing"):
        ensure_image(store, "127.0.0.1:9/forklift/offline:v1", pull=True, options=offline)
