"""The OCI image data model: digests, media types, descriptors, platforms, configs, manifests, indexes.

Everything here is a frozen dataclass: plain data, no I/O. Both media-type families are read (OCI and
Docker v2 schema 2); OCI is written by default and Docker types on request (``to_docker()``).

Serialisation is deterministic and follows what Go's ``encoding/json`` emits for the OCI and Docker
structs (as BuildKit and go-containerregistry write them): fields in struct declaration order, empty
optional fields omitted, no whitespace, ``<``, ``>`` and ``&`` escaped. The raw bytes are what is
stored and digested; a value read from bytes keeps unknown fields in ``extra`` so rewriting it loses
nothing.

Mapping-valued fields (annotations, labels, extra) are excluded from hashing so the dataclasses stay
hashable; they still take part in equality.
"""

from __future__ import annotations

import hashlib
import json
import platform as _host_platform
import re
from collections.abc import Mapping
from dataclasses import field, replace
from typing import Any, ClassVar

from forklift.errors import ImageError
from forklift.records import record

_HEX = {"sha256": 64, "sha512": 128}
_HEX_RE = re.compile(r"^[a-f0-9]+$")


# ----------------------------------------------------------------------------------------------------
# JSON


def _go_escape(text: str) -> str:
    # Go's encoding/json escapes these for HTML safety; matching it keeps digests equal to Go's output.
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def canonical_json(value: Any) -> bytes:
    """``value`` as compact JSON the way Go writes it: key order as given, no spaces, UTF-8, HTML-escaped.

    A lone surrogate (possible after reading ``"\\ud800"``) becomes U+FFFD, as Go writes it.
    """
    text = _go_escape(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def _load_json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ImageError(f"{what} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ImageError(f"{what} is not a JSON object")
    return value


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ImageError(f"{what} must be an object of strings")
    return dict(value)


def _str_tuple(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"{what} must be a list of strings")
    return tuple(value)


def _opt_str_tuple(value: Any, what: str) -> tuple[str, ...] | None:
    return None if value is None else _str_tuple(value, what)


def _opt_str(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ImageError(f"{what} must be a string")
    return value


def _set_keys(value: Any, what: str) -> tuple[str, ...]:
    # ExposedPorts and Volumes are JSON objects whose values are empty objects ({"80/tcp": {}}).
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ImageError(f"{what} must be an object")
    return tuple(value)


# ----------------------------------------------------------------------------------------------------
# Digest


@record(order=True)
class Digest:
    """A content digest such as ``sha256:ab12...``: the algorithm and its lowercase hex encoding."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        want = _HEX.get(self.algorithm)
        if want is None:
            raise ImageError(f"unsupported digest algorithm {self.algorithm!r} (sha256 or sha512)")
        if len(self.hex) != want or not _HEX_RE.match(self.hex):
            raise ImageError(f"invalid {self.algorithm} digest: {self.hex!r}")

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:hex``; raises ImageError on anything else."""
        algorithm, sep, hexpart = text.partition(":")
        if not sep:
            raise ImageError(f"invalid digest {text!r}: expected algorithm:hex, e.g. sha256:...")
        return cls(algorithm, hexpart)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> Any:
        """A fresh hashlib object for this digest's algorithm."""
        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        """The first 12 hex characters, as Docker shows image IDs."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


# ----------------------------------------------------------------------------------------------------
# Media types


class MediaType:
    """Media type strings of the OCI and Docker v2 schema 2 families, and what they mean."""

    OCI_MANIFEST: ClassVar[str] = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX: ClassVar[str] = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG: ClassVar[str] = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER: ClassVar[str] = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP: ClassVar[str] = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD: ClassVar[str] = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_NONDIST: ClassVar[str] = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_LAYER_NONDIST_GZIP: ClassVar[str] = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_LAYER_NONDIST_ZSTD: ClassVar[str] = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    OCI_EMPTY: ClassVar[str] = "application/vnd.oci.empty.v1+json"

    DOCKER_MANIFEST: ClassVar[str] = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_MANIFEST_LIST: ClassVar[str] = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_CONFIG: ClassVar[str] = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER: ClassVar[str] = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_LAYER_GZIP: ClassVar[str] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_LAYER_ZSTD: ClassVar[str] = "application/vnd.docker.image.rootfs.diff.tar.zstd"
    DOCKER_FOREIGN_LAYER: ClassVar[str] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    DOCKER_MANIFEST_V1: ClassVar[str] = "application/vnd.docker.distribution.manifest.v1+json"
    DOCKER_MANIFEST_V1_SIGNED: ClassVar[str] = "application/vnd.docker.distribution.manifest.v1+prettyjws"

    MANIFESTS: ClassVar[frozenset[str]] = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
    INDEXES: ClassVar[frozenset[str]] = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
    CONFIGS: ClassVar[frozenset[str]] = frozenset({OCI_CONFIG, DOCKER_CONFIG})
    _COMPRESSION: ClassVar[dict[str, str]] = {
        OCI_LAYER: "none",
        OCI_LAYER_GZIP: "gzip",
        OCI_LAYER_ZSTD: "zstd",
        OCI_LAYER_NONDIST: "none",
        OCI_LAYER_NONDIST_GZIP: "gzip",
        OCI_LAYER_NONDIST_ZSTD: "zstd",
        DOCKER_LAYER: "none",
        DOCKER_LAYER_GZIP: "gzip",
        DOCKER_LAYER_ZSTD: "zstd",
        DOCKER_FOREIGN_LAYER: "gzip",
    }
    LAYERS: ClassVar[frozenset[str]] = frozenset(_COMPRESSION)
    _TO_DOCKER: ClassVar[dict[str, str]] = {
        OCI_MANIFEST: DOCKER_MANIFEST,
        OCI_INDEX: DOCKER_MANIFEST_LIST,
        OCI_CONFIG: DOCKER_CONFIG,
        OCI_LAYER: DOCKER_LAYER,
        OCI_LAYER_GZIP: DOCKER_LAYER_GZIP,
        # Docker has no registered zstd type; BuildKit keeps the OCI one inside Docker manifests.
        OCI_LAYER_NONDIST_GZIP: DOCKER_FOREIGN_LAYER,
    }
    _TO_OCI: ClassVar[dict[str, str]] = {
        DOCKER_MANIFEST: OCI_MANIFEST,
        DOCKER_MANIFEST_LIST: OCI_INDEX,
        DOCKER_CONFIG: OCI_CONFIG,
        DOCKER_LAYER: OCI_LAYER,
        DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
        DOCKER_LAYER_ZSTD: OCI_LAYER_ZSTD,
        DOCKER_FOREIGN_LAYER: OCI_LAYER_NONDIST_GZIP,
    }

    @staticmethod
    def is_manifest(media_type: str) -> bool:
        """An image manifest of either family."""
        return media_type in MediaType.MANIFESTS

    @staticmethod
    def is_index(media_type: str) -> bool:
        """An OCI image index or a Docker manifest list."""
        return media_type in MediaType.INDEXES

    @staticmethod
    def is_config(media_type: str) -> bool:
        """An image config of either family."""
        return media_type in MediaType.CONFIGS

    @staticmethod
    def is_layer(media_type: str) -> bool:
        """A layer (filesystem changeset) of either family."""
        return media_type in MediaType.LAYERS

    @staticmethod
    def is_docker(media_type: str) -> bool:
        """A Docker-family media type."""
        return media_type.startswith("application/vnd.docker.")

    @staticmethod
    def compression(media_type: str) -> str:
        """``"gzip"``, ``"zstd"`` or ``"none"`` for a layer media type; ImageError for anything else."""
        try:
            return MediaType._COMPRESSION[media_type]
        except KeyError:
            raise ImageError(f"not a layer media type: {media_type}") from None

    @staticmethod
    def layer(compression: str, *, docker: bool = False) -> str:
        """The layer media type for ``compression`` (gzip, zstd, none) in the OCI or Docker family."""
        oci = {
            "gzip": MediaType.OCI_LAYER_GZIP,
            "zstd": MediaType.OCI_LAYER_ZSTD,
            "none": MediaType.OCI_LAYER,
        }
        if compression not in oci:
            raise ImageError(f"unknown compression {compression!r} (gzip, zstd or none)")
        return MediaType.to_docker(oci[compression]) if docker else oci[compression]

    @staticmethod
    def to_docker(media_type: str) -> str:
        """The Docker-family equivalent (unchanged when there is none)."""
        return MediaType._TO_DOCKER.get(media_type, media_type)

    @staticmethod
    def to_oci(media_type: str) -> str:
        """The OCI-family equivalent (unchanged when there is none)."""
        return MediaType._TO_OCI.get(media_type, media_type)


# ----------------------------------------------------------------------------------------------------
# Platform

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm"}


@record
class Platform:
    """An OS/architecture pair, with optional variant, OS version and OS features."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` (``linux/amd64``, ``linux/arm64/v8``), normalising arch aliases."""
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ImageError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64")
        arch = _ARCH_ALIASES.get(parts[1], parts[1])
        variant = parts[2] if len(parts) == 3 else None
        if arch == "arm64" and variant == "v8":
            variant = None  # linux/arm64/v8 is the default arm64 variant
        return cls(os=parts[0], architecture=arch, variant=variant)

    @classmethod
    def host(cls) -> Platform:
        """The platform of this machine (``linux/amd64`` on x86-64)."""
        machine = _host_platform.machine().lower()
        return cls(os="linux", architecture=_ARCH_ALIASES.get(machine, machine))

    def matches(self, other: Platform) -> bool:
        """Same OS and architecture, and same variant when both name one."""
        return (
            self.os == other.os
            and self.architecture == other.architecture
            and (self.variant is None or other.variant is None or self.variant == other.variant)
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object (OCI field order)."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, value: Any) -> Platform:
        """Read a platform object."""
        if not isinstance(value, dict):
            raise ImageError("platform must be an object")
        return cls(
            os=_opt_str(value.get("os"), "platform os") or "",
            architecture=_opt_str(value.get("architecture"), "platform architecture") or "",
            variant=_opt_str(value.get("variant"), "platform variant"),
            os_version=_opt_str(value.get("os.version"), "platform os.version"),
            os_features=_str_tuple(value.get("os.features"), "platform os.features"),
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


# ----------------------------------------------------------------------------------------------------
# Descriptor


@record
class Descriptor:
    """A typed, sized pointer to content: what every manifest and index is made of."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object (OCI field order)."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def from_json(cls, value: Any) -> Descriptor:
        """Read a descriptor object; raises ImageError when a required field is missing or wrong."""
        if not isinstance(value, dict):
            raise ImageError("descriptor must be an object")
        media_type = value.get("mediaType")
        digest = value.get("digest")
        size = value.get("size")
        if not isinstance(media_type, str) or not isinstance(digest, str):
            raise ImageError("descriptor needs a mediaType and a digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ImageError(f"descriptor {digest} has an invalid size: {size!r}")
        plat = value.get("platform")
        return cls(
            media_type=media_type,
            digest=Digest.parse(digest),
            size=size,
            annotations=_str_map(value.get("annotations"), "descriptor annotations"),
            platform=Platform.from_json(plat) if plat is not None else None,
            urls=_str_tuple(value.get("urls"), "descriptor urls"),
            artifact_type=_opt_str(value.get("artifactType"), "descriptor artifactType"),
        )

    @classmethod
    def of(cls, media_type: str, data: bytes, **kwargs: Any) -> Descriptor:
        """A descriptor for ``data`` (sha256)."""
        return cls(media_type=media_type, digest=Digest.of(data), size=len(data), **kwargs)


# ----------------------------------------------------------------------------------------------------
# Image config


@record
class HealthConfig:
    """HEALTHCHECK: ``test`` is ``["NONE"]``, ``["CMD", ...]`` or ``["CMD-SHELL", cmd]``; durations in ns."""

    test: tuple[str, ...] = ()
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object (Docker field order, zero values omitted)."""
        out: dict[str, Any] = {}
        if self.test:
            out["Test"] = list(self.test)
        for key, val in (
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("StartInterval", self.start_interval),
            ("Retries", self.retries),
        ):
            if val:
                out[key] = val
        return out

    @classmethod
    def from_json(cls, value: Any) -> HealthConfig:
        """Read a Healthcheck object."""
        if not isinstance(value, dict):
            raise ImageError("Healthcheck must be an object")

        def num(key: str) -> int:
            v = value.get(key) or 0
            if not isinstance(v, int):
                raise ImageError(f"Healthcheck {key} must be an integer")
            return v

        return cls(
            test=_str_tuple(value.get("Test"), "Healthcheck Test"),
            interval=num("Interval"),
            timeout=num("Timeout"),
            start_period=num("StartPeriod"),
            start_interval=num("StartInterval"),
            retries=num("Retries"),
        )


_CONTAINER_KEYS = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
)


@record
class ContainerConfig:
    """The ``config`` part of an image config: how a container from the image runs.

    ``cmd``/``entrypoint``/``shell`` are None when unset (inherit), which differs from set-but-empty.
    """

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: HealthConfig | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def env_map(self) -> dict[str, str]:
        """Env as an ordered mapping (later entries win)."""
        out: dict[str, str] = {}
        for item in self.env:
            key, _, val = item.partition("=")
            out[key] = val
        return out

    def with_env(self, key: str, value: str) -> ContainerConfig:
        """A copy with ``key`` set to ``value`` (replacing in place, else appended)."""
        items = list(self.env)
        for i, item in enumerate(items):
            if item.partition("=")[0] == key:
                items[i] = f"{key}={value}"
                break
        else:
            items.append(f"{key}={value}")
        return replace(self, env=tuple(items))

    def to_json(self) -> dict[str, Any]:
        """The JSON object: OCI ImageConfig order then Docker's extensions, empty fields omitted."""
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.args_escaped:
            out["ArgsEscaped"] = True
        if self.healthcheck is not None:
            out["Healthcheck"] = self.healthcheck.to_json()
        if self.on_build:
            out["OnBuild"] = list(self.on_build)
        if self.shell is not None:
            out["Shell"] = list(self.shell)
        for key, val in self.extra.items():
            out.setdefault(key, val)
        return out

    @classmethod
    def from_json(cls, value: Any) -> ContainerConfig:
        """Read a ``config`` object (null reads as the empty config)."""
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise ImageError("image config 'config' must be an object")
        health = value.get("Healthcheck")
        return cls(
            user=_opt_str(value.get("User"), "User") or "",
            exposed_ports=_set_keys(value.get("ExposedPorts"), "ExposedPorts"),
            env=_str_tuple(value.get("Env"), "Env"),
            entrypoint=_opt_str_tuple(value.get("Entrypoint"), "Entrypoint"),
            cmd=_opt_str_tuple(value.get("Cmd"), "Cmd"),
            volumes=_set_keys(value.get("Volumes"), "Volumes"),
            working_dir=_opt_str(value.get("WorkingDir"), "WorkingDir") or "",
            labels=_str_map(value.get("Labels"), "Labels"),
            stop_signal=_opt_str(value.get("StopSignal"), "StopSignal") or "",
            args_escaped=bool(value.get("ArgsEscaped")),
            healthcheck=HealthConfig.from_json(health) if health is not None else None,
            on_build=_str_tuple(value.get("OnBuild"), "OnBuild"),
            shell=_opt_str_tuple(value.get("Shell"), "Shell"),
            extra={k: v for k, v in value.items() if k not in _CONTAINER_KEYS},
        )


@record
class HistoryEntry:
    """One history entry; ``empty_layer`` entries (ENV, CMD, ...) have no layer."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    def to_json(self) -> dict[str, Any]:
        """The JSON object (OCI field order, empty fields omitted)."""
        out: dict[str, Any] = {}
        for key, val in (
            ("created", self.created),
            ("created_by", self.created_by),
            ("author", self.author),
            ("comment", self.comment),
        ):
            if val:
                out[key] = val
        if self.empty_layer:
            out["empty_layer"] = True
        return out

    @classmethod
    def from_json(cls, value: Any) -> HistoryEntry:
        """Read a history object."""
        if not isinstance(value, dict):
            raise ImageError("history entry must be an object")
        return cls(
            created=_opt_str(value.get("created"), "history created"),
            created_by=_opt_str(value.get("created_by"), "history created_by"),
            author=_opt_str(value.get("author"), "history author"),
            comment=_opt_str(value.get("comment"), "history comment"),
            empty_layer=bool(value.get("empty_layer")),
        )


_IMAGE_KEYS = (
    "created",
    "author",
    "architecture",
    "variant",
    "os",
    "os.version",
    "os.features",
    "config",
    "rootfs",
    "history",
)


@record
class ImageConfig:
    """The image config blob: platform, run config, layer diff_ids and history.

    ``created`` is kept as the RFC 3339 string it was read as, so rewriting keeps it byte-identical.
    ``extra`` holds top-level fields this model does not know (``container_config``, ``docker_version``).
    """

    architecture: str = ""
    os: str = ""
    created: str | None = None
    author: str | None = None
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def platform(self) -> Platform:
        """The platform this config declares."""
        return Platform(
            os=self.os,
            architecture=self.architecture,
            variant=self.variant,
            os_version=self.os_version,
            os_features=self.os_features,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object with top-level keys sorted, as BuildKit writes configs (it re-marshals them
        through a map); nested objects keep Go struct order. ``config`` is always present."""
        out: dict[str, Any] = {}
        if self.created:
            out["created"] = self.created
        if self.author:
            out["author"] = self.author
        out["architecture"] = self.architecture
        if self.variant:
            out["variant"] = self.variant
        out["os"] = self.os
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        out["config"] = self.config.to_json()
        out["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in self.diff_ids]}
        if self.history:
            out["history"] = [h.to_json() for h in self.history]
        for key, val in self.extra.items():
            out.setdefault(key, val)
        return dict(sorted(out.items()))

    def to_bytes(self) -> bytes:
        """Deterministic JSON bytes (what is stored and digested)."""
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, value: Any) -> ImageConfig:
        """Read a config object."""
        if not isinstance(value, dict):
            raise ImageError("image config must be an object")
        rootfs = value.get("rootfs") or {}
        if not isinstance(rootfs, dict):
            raise ImageError("image config rootfs must be an object")
        diff_ids = rootfs.get("diff_ids") or []
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
            raise ImageError("image config rootfs.diff_ids must be a list of digests")
        history = value.get("history") or []
        if not isinstance(history, list):
            raise ImageError("image config history must be a list")
        return cls(
            architecture=_opt_str(value.get("architecture"), "architecture") or "",
            os=_opt_str(value.get("os"), "os") or "",
            created=_opt_str(value.get("created"), "created"),
            author=_opt_str(value.get("author"), "author"),
            variant=_opt_str(value.get("variant"), "variant"),
            os_version=_opt_str(value.get("os.version"), "os.version"),
            os_features=_str_tuple(value.get("os.features"), "os.features"),
            config=ContainerConfig.from_json(value.get("config")),
            diff_ids=tuple(Digest.parse(d) for d in diff_ids),
            history=tuple(HistoryEntry.from_json(h) for h in history),
            extra={k: v for k, v in value.items() if k not in _IMAGE_KEYS},
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> ImageConfig:
        """Parse config bytes; raises ImageError when they are not a config."""
        return cls.from_json(_load_json(raw, "image config"))


# ----------------------------------------------------------------------------------------------------
# Manifest and index


@record
class Manifest:
    """An image manifest (OCI or Docker v2 schema 2): a config and an ordered list of layers."""

    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    media_type: str = MediaType.OCI_MANIFEST
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object in OCI field order."""
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_json()
        out["layers"] = [layer.to_json() for layer in self.layers]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        """Deterministic JSON bytes (what is stored and digested)."""
        return canonical_json(self.to_json())

    def descriptor(self, **kwargs: Any) -> Descriptor:
        """A descriptor of this manifest's canonical bytes."""
        return Descriptor.of(self.media_type, self.to_bytes(), **kwargs)

    @property
    def is_docker(self) -> bool:
        """Whether this manifest uses the Docker media types."""
        return self.media_type == MediaType.DOCKER_MANIFEST

    def to_docker(self) -> Manifest:
        """The same manifest with Docker v2 schema 2 media types (digests unchanged)."""
        return self._convert(MediaType.to_docker)

    def to_oci(self) -> Manifest:
        """The same manifest with OCI media types (digests unchanged)."""
        return self._convert(MediaType.to_oci)

    def _convert(self, conv: Any) -> Manifest:
        return replace(
            self,
            media_type=conv(self.media_type),
            config=replace(self.config, media_type=conv(self.config.media_type)),
            layers=tuple(replace(d, media_type=conv(d.media_type)) for d in self.layers),
        )

    @classmethod
    def from_json(cls, value: Any) -> Manifest:
        """Read a manifest object (mediaType may be absent in OCI manifests)."""
        if not isinstance(value, dict):
            raise ImageError("manifest must be an object")
        _check_schema(value)
        media_type = value.get("mediaType") or MediaType.OCI_MANIFEST
        if not MediaType.is_manifest(media_type):
            raise ImageError(f"not an image manifest: {media_type}")
        if "config" not in value:
            raise ImageError("manifest has no config")
        layers = value.get("layers") or []
        if not isinstance(layers, list):
            raise ImageError("manifest layers must be a list")
        subject = value.get("subject")
        return cls(
            config=Descriptor.from_json(value["config"]),
            layers=tuple(Descriptor.from_json(d) for d in layers),
            media_type=media_type,
            annotations=_str_map(value.get("annotations"), "manifest annotations"),
            subject=Descriptor.from_json(subject) if subject is not None else None,
            artifact_type=_opt_str(value.get("artifactType"), "manifest artifactType"),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        """Parse manifest bytes; raises ImageError when they are not an image manifest."""
        return cls.from_json(_load_json(raw, "manifest"))


@record
class Index:
    """An OCI image index or Docker manifest list: manifests, usually one per platform."""

    manifests: tuple[Descriptor, ...] = ()
    media_type: str = MediaType.OCI_INDEX
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object in OCI field order."""
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["manifests"] = [d.to_json() for d in self.manifests]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        """Deterministic JSON bytes."""
        return canonical_json(self.to_json())

    def to_docker(self) -> Index:
        """The same index as a Docker manifest list (child media types converted too)."""
        return replace(
            self,
            media_type=MediaType.DOCKER_MANIFEST_LIST,
            manifests=tuple(replace(d, media_type=MediaType.to_docker(d.media_type)) for d in self.manifests),
        )

    def select(self, platform: Platform) -> Descriptor:
        """The first manifest for ``platform``; ImageError naming the platforms on offer otherwise."""
        for desc in self.manifests:
            if desc.platform is not None and platform.matches(desc.platform):
                return desc
        offered = ", ".join(str(d.platform) for d in self.manifests if d.platform is not None) or "none"
        raise ImageError(f"no image for platform {platform} (the index offers: {offered})")

    @classmethod
    def from_json(cls, value: Any) -> Index:
        """Read an index object (mediaType may be absent in OCI indexes)."""
        if not isinstance(value, dict):
            raise ImageError("index must be an object")
        _check_schema(value)
        media_type = value.get("mediaType") or MediaType.OCI_INDEX
        if not MediaType.is_index(media_type):
            raise ImageError(f"not an image index: {media_type}")
        manifests = value.get("manifests") or []
        if not isinstance(manifests, list):
            raise ImageError("index manifests must be a list")
        subject = value.get("subject")
        return cls(
            manifests=tuple(Descriptor.from_json(d) for d in manifests),
            media_type=media_type,
            annotations=_str_map(value.get("annotations"), "index annotations"),
            subject=Descriptor.from_json(subject) if subject is not None else None,
            artifact_type=_opt_str(value.get("artifactType"), "index artifactType"),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Index:
        """Parse index bytes."""
        return cls.from_json(_load_json(raw, "index"))


def _check_schema(value: dict[str, Any]) -> None:
    version = value.get("schemaVersion")
    media_type = value.get("mediaType")
    if version == 1 or media_type in (MediaType.DOCKER_MANIFEST_V1, MediaType.DOCKER_MANIFEST_V1_SIGNED):
        raise ImageError("Docker schema 1 manifests are not supported (deprecated since 2017)")
    if version != 2:
        raise ImageError(f"unsupported manifest schemaVersion {version!r} (expected 2)")


def parse_manifest_or_index(raw: bytes) -> Manifest | Index:
    """Parse bytes that are either an image manifest or an index, telling them apart by mediaType
    (or, when absent as OCI allows, by whether ``manifests`` or ``layers``/``config`` is present)."""
    value = _load_json(raw, "manifest")
    media_type = value.get("mediaType")
    if media_type is not None and MediaType.is_index(media_type):
        return Index.from_json(value)
    if media_type is None and "manifests" in value and "config" not in value:
        return Index.from_json(value)
    return Manifest.from_json(value)


def child_descriptors(raw: bytes) -> tuple[Descriptor, ...]:
    """Descriptors a manifest or index blob points at (config + layers, or manifests); () otherwise.

    Used to walk the content graph (prune, copy) without knowing in advance what a blob is.
    """
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return ()
    if not isinstance(value, dict) or value.get("schemaVersion") != 2:
        return ()
    out: list[Any] = []
    if isinstance(value.get("config"), dict):
        out.append(value["config"])
    for key in ("layers", "manifests"):
        if isinstance(value.get(key), list):
            out.extend(value[key])
    if isinstance(value.get("subject"), dict):
        out.append(value["subject"])
    descs: list[Descriptor] = []
    for item in out:
        try:
            descs.append(Descriptor.from_json(item))
        except ImageError:
            continue
    return tuple(descs)
