"""Build options the engine shares with ``forklift.build``: light to import (the warm path needs them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from forklift.errors import BuildError, ForkliftError, did_you_mean
from forklift.records import record

if TYPE_CHECKING:
    from forklift.oci.compression import Compression

OUTPUT_TYPES = ("oci", "docker", "local", "tar", "image", "registry")
ENTITLEMENTS = ("network.host", "security.insecure", "device")
_COMPRESSIONS: Mapping[str, Compression] = {"gzip": "gzip", "zstd": "zstd", "uncompressed": "none"}


@record(kw_only=True)
class SecretSource:
    """A ``--secret``: its value comes from a file or an environment variable (read when used)."""

    id: str
    file: Path | None = None
    env: str | None = None


@record(kw_only=True)
class NamedContext:
    """A ``--build-context NAME=...``: a local directory, or an image (``docker-image://REF``,
    ``oci-layout://PATH[:TAG]``) that replaces the stage or image of that name."""

    name: str
    directory: Path | None = None
    image: str | None = None  # docker-image://REF
    layout: Path | None = None  # oci-layout://PATH
    layout_tag: str | None = None

    @staticmethod
    def parse(name: str, value: str) -> NamedContext:
        """``DIR``, ``docker-image://REF`` or ``oci-layout://PATH[:TAG]``."""
        if value.startswith("docker-image://"):
            return NamedContext(name=name.lower(), image=value.removeprefix("docker-image://"))
        if value.startswith("oci-layout://"):
            rest = value.removeprefix("oci-layout://")
            path, _, tag = rest.rpartition(":") if ":" in rest.rsplit("/", 1)[-1] else (rest, "", "")
            return NamedContext(name=name.lower(), layout=Path(path), layout_tag=tag or None)
        if "://" in value:
            raise BuildError(
                f"--build-context {name}={value}: unsupported source (a directory, "
                "docker-image:// or oci-layout://)"
            )
        return NamedContext(name=name.lower(), directory=Path(value))


@record(kw_only=True)
class OutputSpec:
    """One ``--output``: ``type`` (oci, docker, local, tar, image, registry) and its attributes.

    ``type=registry,name=REF`` (and ``type=image,name=REF,push=true``, and ``--push``) stores the
    image under each name and pushes it there; without ``name`` the ``-t`` tags are pushed. A push
    takes buildx's ``compression=gzip|zstd|uncompressed``, ``oci-mediatypes=true|false`` and
    ``registry.insecure=true`` (plain HTTP to that registry).
    """

    type: str
    dest: Path | None = None
    tar: bool = True  # oci: a tar file (False: a layout directory)
    name: str | None = None
    compression: Compression = "gzip"  # registry: for the layers the store keeps uncompressed
    oci_mediatypes: bool | None = None  # registry: True OCI, False Docker, None as stored
    insecure: bool = False  # registry: plain HTTP to the registries of ``name``

    @staticmethod
    def parse(text: str) -> OutputSpec:
        """``type=oci,dest=out.tar[,tar=false]``; a bare path means ``type=local,dest=PATH``."""
        if "=" not in text:
            return OutputSpec(type="local", dest=Path(text))
        fields: dict[str, str] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise ForkliftError(f"invalid --output {text!r}: {part!r} is not key=value")
            fields[key.strip().lower()] = value.strip()
        kind = fields.pop("type", "local")
        push = fields.pop("push", "false").lower() in ("true", "1", "yes")
        if kind == "image" and push:
            kind = "registry"
        if kind not in OUTPUT_TYPES:
            raise ForkliftError(f"invalid --output type {kind!r}", hint="one of " + ", ".join(OUTPUT_TYPES))
        dest = fields.pop("dest", None)
        if kind not in ("image", "registry") and not dest:
            raise ForkliftError(f"--output type={kind} needs dest=PATH")
        if dest == "-":
            raise ForkliftError("--output dest=- (standard output) is not supported")
        tar = fields.pop("tar", "true").lower() not in ("false", "0", "no")
        name = fields.pop("name", None)
        compression_name = fields.pop("compression", "gzip").lower()
        compression = _COMPRESSIONS.get(compression_name)
        if compression is None:
            raise ForkliftError(
                f"invalid --output compression={compression_name!r} (gzip, zstd or uncompressed)"
            )
        oci = fields.pop("oci-mediatypes", None)
        insecure = fields.pop("registry.insecure", "false")
        return OutputSpec(
            type=kind,
            dest=Path(dest) if dest else None,
            tar=tar,
            name=name,
            compression=compression,
            oci_mediatypes=None if oci is None else _flag(oci, "oci-mediatypes"),
            insecure=_flag(insecure, "registry.insecure"),
        )


def _flag(value: str, key: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes", ""):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ForkliftError(f"invalid --output {key}={value!r} (true or false)")


@record(kw_only=True)
class Entitlements:
    """What ``--allow`` grants (buildx's entitlements): ``security.insecure`` lets ``RUN
    --security=insecure`` run privileged; ``device`` lets ``RUN --device`` use every CDI device,
    ``device=NAME`` only that one (``device=NAME,alias=OTHER``: ``RUN --device=OTHER`` means NAME).
    ``network.host`` is accepted but not needed: RUN shares the host network by default."""

    network_host: bool = False
    security_insecure: bool = False
    all_devices: bool = False
    devices: Mapping[str, str] = field(default_factory=dict)  # name or alias -> device name

    @staticmethod
    def parse(values: Iterable[str]) -> Entitlements:
        """``--allow`` values: ``network.host``, ``security.insecure``, ``device[=NAME[,alias=A]]``."""
        network_host = security_insecure = all_devices = False
        devices: dict[str, str] = {}
        for value in values:
            for item in _entitlement_items(value):
                key, _, rest = item.partition("=")
                if key == "device":
                    if not rest:
                        all_devices = True
                        continue
                    name, *extra = rest.split(",")
                    alias = ""
                    for part in extra:
                        k, sep, v = part.partition("=")
                        if k.strip() != "alias" or not sep:
                            raise ForkliftError(
                                f"--allow {value}: unknown device config {part!r}",
                                hint="device=NAME[,alias=A]",
                            )
                        alias = v.strip()
                    devices[alias or name.strip()] = name.strip()
                elif item == "network.host":
                    network_host = True
                elif item == "security.insecure":
                    security_insecure = True
                else:
                    raise ForkliftError(
                        f"unknown entitlement {item}",
                        hint=did_you_mean(item, ENTITLEMENTS) or "one of " + ", ".join(ENTITLEMENTS),
                    )
        return Entitlements(
            network_host=network_host,
            security_insecure=security_insecure,
            all_devices=all_devices,
            devices=devices,
        )

    def device_allowed(self, requested: str, resolved: Iterable[str] = ()) -> bool:
        """Whether ``RUN --device=requested`` (resolving to the ``resolved`` devices) may run."""
        if self.all_devices or requested in self.devices:
            return True
        names = set(self.devices.values())
        found = list(resolved)
        return bool(found) and all(n in names for n in found)

    def device_name(self, requested: str) -> str:
        """The device an alias stands for (the name itself when it is no alias)."""
        return self.devices.get(requested, requested)

    def flags(self) -> tuple[str, ...]:
        """The ``--allow`` values that give these entitlements back (a stable order: cache and memo keys)."""
        out = [
            e
            for e, on in (("network.host", self.network_host), ("security.insecure", self.security_insecure))
            if on
        ]
        if self.all_devices:
            out.append("device")
        out += [f"device={n}" + (f",alias={a}" if a != n else "") for a, n in sorted(self.devices.items())]
        return tuple(out)


def _entitlement_items(value: str) -> list[str]:
    """One ``--allow`` value: a ``device=...`` config whole, else a comma-separated list (buildx)."""
    value = value.strip()
    if value.startswith("device="):
        return [value]
    return [v.strip() for v in value.split(",") if v.strip()]
