"""The OCI model: digests, platforms, media types, and byte-stable JSON round trips."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forklift.errors import ImageError
from forklift.oci.model import (
    ContainerConfig,
    Descriptor,
    Digest,
    HealthConfig,
    HistoryEntry,
    ImageConfig,
    Index,
    Manifest,
    MediaType,
    Platform,
    canonical_json,
    child_descriptors,
    parse_manifest_or_index,
)

HEX = "a" * 64


def test_digest_parse_and_str() -> None:
    d = Digest.parse(f"sha256:{HEX}")
    assert (d.algorithm, d.hex, str(d), d.short) == ("sha256", HEX, f"sha256:{HEX}", HEX[:12])
    assert Digest.parse("sha512:" + "b" * 128).algorithm == "sha512"
    assert Digest.of(b"abc") == Digest("sha256", hashlib.sha256(b"abc").hexdigest())


@pytest.mark.parametrize(
    "text", ["sha256:abc", "md5:" + "a" * 32, HEX, "sha256:" + "A" * 64, "sha512:" + "a" * 64, ""]
)
def test_digest_rejects_invalid(text: str) -> None:
    with pytest.raises(ImageError):
        Digest.parse(text)


def test_platform_parse() -> None:
    assert Platform.parse("linux/amd64") == Platform("linux", "amd64")
    assert Platform.parse("linux/arm/v7") == Platform("linux", "arm", "v7")
    assert Platform.parse("linux/arm64/v8") == Platform("linux", "arm64")
    assert Platform.parse("linux/x86_64") == Platform("linux", "amd64")
    assert str(Platform.parse("linux/arm/v7")) == "linux/arm/v7"
    for bad in ("linux", "linux/", "a/b/c/d"):
        with pytest.raises(ImageError):
            Platform.parse(bad)


def test_platform_matches_variant_loosely() -> None:
    assert Platform("linux", "arm").matches(Platform("linux", "arm", "v7"))
    assert not Platform("linux", "arm", "v6").matches(Platform("linux", "arm", "v7"))
    assert not Platform("linux", "amd64").matches(Platform("linux", "arm64"))


def test_media_type_families() -> None:
    assert MediaType.to_docker(MediaType.OCI_MANIFEST) == MediaType.DOCKER_MANIFEST
    assert MediaType.to_oci(MediaType.DOCKER_LAYER_GZIP) == MediaType.OCI_LAYER_GZIP
    assert MediaType.to_docker(MediaType.OCI_LAYER_ZSTD) == MediaType.OCI_LAYER_ZSTD
    assert MediaType.compression(MediaType.DOCKER_FOREIGN_LAYER) == "gzip"
    assert MediaType.compression(MediaType.OCI_LAYER) == "none"
    assert MediaType.layer("zstd") == MediaType.OCI_LAYER_ZSTD
    assert MediaType.layer("gzip", docker=True) == MediaType.DOCKER_LAYER_GZIP
    assert MediaType.is_index(MediaType.DOCKER_MANIFEST_LIST)
    with pytest.raises(ImageError):
        MediaType.compression(MediaType.OCI_CONFIG)


def _config() -> ImageConfig:
    return ImageConfig(
        architecture="amd64",
        os="linux",
        created="2024-01-02T03:04:05.123456789Z",
        config=ContainerConfig(
            user="app",
            env=("PATH=/usr/bin:/bin", "A=<b>&c"),
            cmd=("sh",),
            entrypoint=(),
            exposed_ports=("80/tcp",),
            labels={"k": "v"},
            healthcheck=HealthConfig(test=("CMD", "true"), interval=30_000_000_000),
            shell=("/bin/sh", "-c"),
        ),
        diff_ids=(Digest("sha256", HEX),),
        history=(HistoryEntry(created_by="ADD x /"), HistoryEntry(created_by="ENV A=b", empty_layer=True)),
        extra={"container_config": {"Cmd": ["x"]}},
    )


def test_config_round_trip_is_byte_stable() -> None:
    cfg = _config()
    raw = cfg.to_bytes()
    assert ImageConfig.from_bytes(raw) == cfg
    assert ImageConfig.from_bytes(raw).to_bytes() == raw
    assert b" " not in raw.replace(b"ENV A=b", b"").replace(b"ADD x /", b"")
    assert b"\\u003cb\\u003e\\u0026c" in raw  # Go's HTML escaping
    assert list(json.loads(raw)) == sorted(json.loads(raw))  # top level sorted, as BuildKit writes
    assert raw.startswith(b'{"architecture":"amd64","config":{"User":"app","ExposedPorts":{"80/tcp":{}},')
    assert cfg.config.entrypoint == () and cfg.config.env_map()["PATH"] == "/usr/bin:/bin"


def test_config_reads_docker_written_json_and_keeps_unknown_fields() -> None:
    docker = {
        "architecture": "amd64",
        "config": {"Cmd": None, "Env": None, "Hostname": "", "Image": "sha256:x"},
        "container_config": {"Hostname": "abc"},
        "created": "2023-05-19T20:19:20.935950209Z",
        "docker_version": "20.10.23",
        "history": [{"created": "2023-05-19T20:19:20Z", "created_by": "/bin/sh", "empty_layer": True}],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{HEX}"]},
    }
    cfg = ImageConfig.from_json(docker)
    assert cfg.config.cmd is None and cfg.config.extra == {"Hostname": "", "Image": "sha256:x"}
    assert cfg.extra["docker_version"] == "20.10.23"
    again = json.loads(cfg.to_bytes())
    assert again["container_config"] == {"Hostname": "abc"} and again["config"]["Image"] == "sha256:x"
    assert cfg.history[0].empty_layer


def test_with_env_replaces_in_place() -> None:
    c = ContainerConfig(env=("A=1", "B=2")).with_env("A", "3").with_env("C", "4")
    assert c.env == ("A=3", "B=2", "C=4")


def _manifest() -> Manifest:
    cfg = Descriptor.of(MediaType.OCI_CONFIG, b"{}")
    layer = Descriptor(MediaType.OCI_LAYER_GZIP, Digest("sha256", HEX), 10, annotations={"a": "b"})
    return Manifest(config=cfg, layers=(layer,))


def test_manifest_round_trip_and_docker_conversion() -> None:
    m = _manifest()
    raw = m.to_bytes()
    assert Manifest.from_bytes(raw) == m and Manifest.from_bytes(raw).to_bytes() == raw
    assert raw.startswith(b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"')
    d = m.to_docker()
    assert d.media_type == MediaType.DOCKER_MANIFEST and d.is_docker
    assert d.config.media_type == MediaType.DOCKER_CONFIG
    assert d.layers[0].media_type == MediaType.DOCKER_LAYER_GZIP and d.layers[0].digest == m.layers[0].digest
    assert d.to_oci() == m
    assert hash(m) == hash(Manifest.from_bytes(raw))


def test_manifest_without_media_type_is_oci() -> None:
    value = json.loads(_manifest().to_bytes())
    del value["mediaType"]
    assert Manifest.from_json(value).media_type == MediaType.OCI_MANIFEST
    assert isinstance(parse_manifest_or_index(canonical_json(value)), Manifest)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"schemaVersion":1,"name":"x","fsLayers":[]}',
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}',
        b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:abc","size":1}}',
        b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:' + HEX.encode() + b'","size":-1}}',
    ],
)
def test_bad_manifests_raise_image_error(raw: bytes) -> None:
    with pytest.raises(ImageError):
        Manifest.from_bytes(raw)


def test_index_select_and_children() -> None:
    amd = Descriptor(MediaType.OCI_MANIFEST, Digest("sha256", HEX), 5, platform=Platform("linux", "amd64"))
    arm = Descriptor(
        MediaType.OCI_MANIFEST, Digest("sha256", "b" * 64), 6, platform=Platform("linux", "arm", "v7")
    )
    idx = Index(manifests=(amd, arm))
    raw = idx.to_bytes()
    parsed = parse_manifest_or_index(raw)
    assert isinstance(parsed, Index) and parsed == idx
    assert idx.select(Platform.parse("linux/arm/v7")) == arm
    with pytest.raises(ImageError, match="linux/amd64, linux/arm/v7"):
        idx.select(Platform.parse("linux/s390x"))
    assert child_descriptors(raw) == (amd, arm)
    assert child_descriptors(_manifest().to_bytes()) == (_manifest().config, *_manifest().layers)
    assert child_descriptors(b"\x1f\x8b binary") == ()
    assert idx.to_docker().media_type == MediaType.DOCKER_MANIFEST_LIST


_chars = st.characters(blacklist_categories=("Cs",))  # lone surrogates: see the test below
_text = st.text(_chars, max_size=20)


@settings(max_examples=100, deadline=None)
@given(
    env=st.lists(
        st.tuples(
            st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="="), min_size=1), _text
        )
    ),
    labels=st.dictionaries(_text, _text, max_size=4),
    cmd=st.none() | st.lists(_text, max_size=3).map(tuple),
    created=st.none() | _text.filter(bool),
)
def test_config_serialisation_is_stable_for_any_text(
    env: list[tuple[str, str]], labels: dict[str, str], cmd: tuple[str, ...] | None, created: str | None
) -> None:
    cfg = ImageConfig(
        architecture="arm64",
        os="linux",
        created=created,
        config=ContainerConfig(env=tuple(f"{k}={v}" for k, v in env), labels=labels, cmd=cmd),
    )
    raw = cfg.to_bytes()
    assert json.loads(raw) == cfg.to_json()
    again = ImageConfig.from_bytes(raw)
    assert again == cfg and again.to_bytes() == raw


def test_lone_surrogates_are_written_as_go_does() -> None:
    cfg = ImageConfig.from_bytes(b'{"architecture":"amd64","os":"linux","config":{"Env":["A=\\ud800"]}}')
    assert json.loads(cfg.to_bytes())["config"]["Env"] == ["A=\ufffd"]
