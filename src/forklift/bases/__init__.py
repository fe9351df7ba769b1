"""Base images made from distribution packages, for machines without a registry in reach.

The public API:

- ``DebianBase`` (frozen dataclass): what to bootstrap (suite, variant, slim, extra packages,
  mirrors, architecture).
- ``mmdebstrap_argv(base, output) -> list[str]``: the mmdebstrap command line for ``base``.
- ``bootstrap_debian(store, name, base, *, force=False, on_output=None, mmdebstrap=None)
  -> BootstrapResult``: build the root filesystem with mmdebstrap and import it into ``store`` as
  the one-layer image ``name`` (idempotent: an existing name is kept unless ``force``).

Running external tools is this package's business; the image library (``forklift.oci``) only
receives the finished tarball.
"""

from __future__ import annotations

from forklift.bases.debian import (
    DEFAULT_MIRROR,
    DEFAULT_SECURITY_MIRROR,
    BootstrapResult,
    DebianBase,
    bootstrap_debian,
    debian_architecture,
    image_config_for,
    mmdebstrap_argv,
)

__all__ = [
    "DEFAULT_MIRROR",
    "DEFAULT_SECURITY_MIRROR",
    "BootstrapResult",
    "DebianBase",
    "bootstrap_debian",
    "debian_architecture",
    "image_config_for",
    "mmdebstrap_argv",
]
