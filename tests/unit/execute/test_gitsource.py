"""Which ADD sources are git repositories (BuildKit's ParseGitRef rules) and how fragments split."""

from __future__ import annotations

import pytest

from forklift.errors import BuildError
from forklift.execute.ops.gitsource import GitRef, check_commit_checksum, parse_git_ref, resolve_commit

CASES: list[tuple[str, GitRef | None]] = [
    ("https://example.com/foo.git", GitRef("https://example.com/foo.git")),
    ("https://example.com/foo.git#deadbeef", GitRef("https://example.com/foo.git", "deadbeef")),
    ("https://example.com/foo.git#release/1.2", GitRef("https://example.com/foo.git", "release/1.2")),
    ("https://example.com/foo.git#main:sub/dir", GitRef("https://example.com/foo.git", "main", "sub/dir")),
    ("https://example.com/foo.git#:docs", GitRef("https://example.com/foo.git", "", "docs")),
    (
        "https://example.com/foo.git##ref=release/1.2,subdir=/subdir",
        GitRef("https://example.com/foo.git", "release/1.2", "/subdir"),
    ),
    (
        "https://example.com/foo.git##commit=abc123,subdir=d",
        GitRef("https://example.com/foo.git", "abc123", "d", "abc123"),
    ),
    ("https://user:pw@github.com/moby/buildkit.git", GitRef("https://user:pw@github.com/moby/buildkit.git")),
    ("https://example.com/foo", None),  # plain downloads: no .git suffix
    ("https://example.com/foo.git/", None),
    ("https://example.com/foo.git.bar", None),
    ("https://example.com/archive.tar.gz", None),
    ("git://example.com/foo", GitRef("git://example.com/foo")),
    ("git://example.com/foo#v1.0", GitRef("git://example.com/foo", "v1.0")),
    ("ssh://git@example.com/foo.git#main", GitRef("ssh://git@example.com/foo.git", "main")),
    ("git@github.com:moby/buildkit", GitRef("git@github.com:moby/buildkit")),
    ("git@github.com:moby/b.git#v0.12:docs", GitRef("git@github.com:moby/b.git", "v0.12", "docs")),
    ("ftp://example.com/foo.git", None),
    ("./.git", None),
    (".git", None),
    ("src/app.git", None),
    ("a:b", None),  # a local file name with a colon stays local
]


@pytest.mark.parametrize(("src", "expected"), CASES)
def test_git_source_detection(src: str, expected: GitRef | None) -> None:
    assert parse_git_ref(src) == expected


def test_bad_csv_fragment() -> None:
    with pytest.raises(ValueError, match="supported keys"):
        parse_git_ref("https://example.com/foo.git##branch=main")


def test_a_full_commit_id_resolves_without_the_network() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert resolve_commit(GitRef("git://203.0.113.1/nothing", sha)) == sha


def test_a_csv_commit_must_match_what_the_ref_resolves_to() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert resolve_commit(GitRef("git://203.0.113.1/x", sha, commit="0123")) == sha
    with pytest.raises(BuildError, match="expected ffff"):
        resolve_commit(GitRef("git://203.0.113.1/x", sha, commit="ffff"))


def test_checksum_is_the_commit_or_a_prefix() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    check_commit_checksum(sha, sha)
    check_commit_checksum(sha, "01234567")
    for wrong in ("0123456f", "sha256:" + "0" * 64, "01"):
        with pytest.raises(BuildError, match="checksum mismatch"):
            check_commit_checksum(sha, wrong)
