"""Build options the engine shares with ``forklift.build``: light to import (the warm path needs them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from forklift.errors import BuildError


@dataclass(frozen=True, kw_only=True)
class SecretSource:
    """A ``--secret``: its value comes from a file or an environment variable (read when used)."""

    id: str
    file: Path | None = None
    env: str | None = None


@dataclass(frozen=True, kw_only=True)
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
