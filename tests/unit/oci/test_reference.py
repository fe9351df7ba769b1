"""Reference normalisation matches Docker's (docker/distribution reference rules)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from forklift.errors import ImageError
from forklift.oci.model import Digest
from forklift.oci.registry.reference import familiar_name, parse_reference

D = "sha256:" + "c" * 64


@pytest.mark.parametrize(
    ("text", "canonical", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("rust:1.76", "docker.io/library/rust:1.76", "rust:1.76"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("docker.io/library/busybox:1", "docker.io/library/busybox:1", "busybox:1"),
        ("index.docker.io/library/alpine", "docker.io/library/alpine:latest", "alpine:latest"),
        ("localhost:5000/x:y", "localhost:5000/x:y", "localhost:5000/x:y"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("ghcr.io/o/r/deep:v1.2-rc", "ghcr.io/o/r/deep:v1.2-rc", "ghcr.io/o/r/deep:v1.2-rc"),
        ("127.0.0.1:5000/a", "127.0.0.1:5000/a:latest", "127.0.0.1:5000/a:latest"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}"),
        (f"busybox:1.36@{D}", f"docker.io/library/busybox:1.36@{D}", f"busybox:1.36@{D}"),
        ("Example.com/a_b/c__d/e--f", "Example.com/a_b/c__d/e--f:latest", "Example.com/a_b/c__d/e--f:latest"),
        ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
        ("docker.io/my.org/app", "docker.io/my.org/app:latest", "docker.io/my.org/app:latest"),
    ],
)
def test_normalisation(text: str, canonical: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == canonical
    assert ref.familiar() == familiar
    assert parse_reference(canonical) == ref and parse_reference(familiar) == ref


def test_parts_and_endpoint() -> None:
    ref = parse_reference("rust:1.76")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("docker.io", "library/rust", "1.76", None)
    assert ref.api_host == "registry-1.docker.io" and ref.manifest_ref == "1.76"
    assert ref.repository == "docker.io/library/rust" and ref.familiar_repository == "rust"
    local = parse_reference("localhost:5000/ns/app")
    assert local.api_host == "localhost:5000" and local.path == "ns/app"
    pinned = parse_reference(f"app:1@{D}")
    assert pinned.manifest_ref == D and pinned.digest == Digest.parse(D)
    assert str(pinned.with_tag("2")) == "docker.io/library/app:2"
    assert parse_reference("app", default_tag=None).tag is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        " busybox",
        "Busybox",
        "busybox:",
        "busybox:-bad",
        "bad//path",
        "a" * 64,
        "busybox@sha256:abc",
        "busybox@",
        "-lead/x",
        "ex ample/x",
        "x/" + "a" * 300,
        ":tag",
        "host:port:x/y",
    ],
)
def test_rejects_what_docker_rejects(text: str) -> None:
    with pytest.raises(ImageError):
        parse_reference(text)


def test_familiar_name_of_stored_names() -> None:
    assert familiar_name("docker.io/library/busybox:latest") == "busybox:latest"
    assert familiar_name("localhost:5000/x:y") == "localhost:5000/x:y"
    assert familiar_name("not a name") == "not a name"


_component = st.from_regex(r"[a-z0-9]{1,5}(?:(?:[._]|__|-{1,2})[a-z0-9]{1,5}){0,2}", fullmatch=True)
_domain = st.sampled_from(["", "docker.io/", "localhost/", "localhost:5000/", "ghcr.io/", "a-b.example:443/"])
_tag = st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(domain=_domain, path=st.lists(_component, min_size=1, max_size=3), tag=_tag, pinned=st.booleans())
def test_canonical_and_familiar_forms_parse_back(
    domain: str, path: list[str], tag: str | None, pinned: bool
) -> None:
    # Without a domain, a first component with a "." would itself be read as a registry.
    assume(domain or len(path) == 1 or "." not in path[0])
    text = domain + "/".join(path) + (f":{tag}" if tag else "") + (f"@{D}" if pinned else "")
    ref = parse_reference(text)
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar()) == ref
    assert str(ref).startswith(ref.domain + "/") and (ref.tag is not None or pinned)
