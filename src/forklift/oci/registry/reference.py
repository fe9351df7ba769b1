"""Image references as Docker reads and shows them.

``busybox`` means ``docker.io/library/busybox:latest``; ``localhost:5000/app:1`` keeps its registry;
``name@sha256:...`` pins a digest, and ``name:tag@sha256:...`` keeps both (the digest wins when
pulling). The canonical form (``str(ref)``) is what the store keeps; ``familiar()`` is what a person
sees (``busybox:latest``), as ``docker images`` shows it.
"""

from __future__ import annotations

import re
from dataclasses import replace

from forklift.errors import ImageError
from forklift.oci.model import Digest
from forklift.records import record

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = ("index.docker.io",)  # as Docker: registry-1.docker.io stays a name of its own
_OFFICIAL = "library/"

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_ANONYMOUS_ID = re.compile(r"^[a-f0-9]{64}$")
_MAX_NAME = 255


@record
class Reference:
    """A parsed image reference: registry domain, repository path, and an optional tag and digest."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def repository(self) -> str:
        """``domain/path`` (``docker.io/library/busybox``)."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_repository(self) -> str:
        """The repository as Docker shows it (``busybox``, ``user/app``, ``localhost:5000/app``)."""
        if self.domain != DOCKER_HUB:
            return self.repository
        if self.path.startswith(_OFFICIAL) and self.path.count("/") == 1:
            return self.path[len(_OFFICIAL) :]
        first = self.path.split("/", 1)[0]
        if "/" in self.path and ("." in first or first == "localhost"):
            # docker.io/my.org/app: without its domain it would read as registry my.org (Docker
            # shows it short anyway; forklift keeps shown names valid to type back).
            return self.repository
        return self.path

    @property
    def api_host(self) -> str:
        """The host[:port] whose /v2/ API serves this repository (Docker Hub's is registry-1.docker.io)."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def manifest_ref(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag (``latest`` if none)."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        """This repository with ``tag`` (and no digest)."""
        if not _TAG_RE.match(tag):
            raise ImageError(f"invalid tag {tag!r}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: Digest) -> Reference:
        """This repository pinned to ``digest`` (the tag kept)."""
        return replace(self, digest=digest)

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        return out + (f"@{self.digest}" if self.digest is not None else "")

    def familiar(self) -> str:
        """The short form a person types and sees: ``busybox:latest``, ``localhost:5000/a:b``."""
        return self.familiar_repository + self._suffix()

    def __str__(self) -> str:
        return self.repository + self._suffix()


def parse_reference(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse and normalise a reference the way Docker does.

    A first component is a registry only when it has a ``.`` or ``:`` or is ``localhost`` (or has
    upper-case letters); otherwise the image is on Docker Hub, and one-component Hub names get
    ``library/``. ``default_tag`` is added when neither tag nor digest is given (None: leave it out).
    Raises ImageError with the reason for anything Docker would reject.
    """
    original = text
    if not text or text != text.strip():
        raise ImageError(f"invalid reference format: {original!r}")
    name, at, digest_text = text.partition("@")
    digest = None
    if at:
        try:
            digest = Digest.parse(digest_text)
        except ImageError as err:
            raise ImageError(f"invalid reference {original!r}: {err.message}") from None
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise ImageError(f"invalid reference {original!r}: bad tag {tag!r}")
    if not name:
        raise ImageError(f"invalid reference format: {original!r}")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        domain, path = first, rest
        if not _DOMAIN_RE.match(domain):
            raise ImageError(f"invalid reference {original!r}: bad registry {domain!r}")
    else:
        domain, path = DOCKER_HUB, name
    if domain in _HUB_ALIASES:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        if _ANONYMOUS_ID.match(path):
            raise ImageError(
                f"invalid reference {original!r}: a 64-character hex string looks like an image ID",
                hint="use the image ID with sha256: or name the repository",
            )
        path = _OFFICIAL + path
    if path.lower() != path:
        raise ImageError(f"invalid reference {original!r}: repository name must be lowercase")
    if not _PATH_RE.match(path):
        raise ImageError(f"invalid reference format: {original!r}")
    if len(f"{domain}/{path}") > _MAX_NAME:
        raise ImageError(f"invalid reference {original!r}: repository name longer than {_MAX_NAME}")
    if tag is None and digest is None and default_tag is not None:
        tag = default_tag
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def familiar_name(canonical: str) -> str:
    """The Docker short form of a stored canonical name; names that do not parse come back unchanged."""
    try:
        return parse_reference(canonical, default_tag=None).familiar()
    except ImageError:
        return canonical
