""".dockerignore matching: facts from moby/patternmatcher's tests and Docker's ignorefile reader."""

from __future__ import annotations

import pytest

from forklift.dockerfile.ignore import DockerIgnore, clean_path, parse_dockerignore
from forklift.errors import DockerfileSyntaxError


def excluded(pattern_text: str, path: str) -> bool:
    return parse_dockerignore(pattern_text).matches(path)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**", "file", True),
        ("**", "dir/file", True),
        ("**/", "dir/file", True),
        ("**/**", "dir/file", True),
        ("dir/**", "dir/file", True),
        ("dir/**", "dir/dir2/file", True),
        ("**/dir", "dir", True),
        ("**/dir", "dir/file", True),
        ("**/dir2/*", "dir/dir2/file", True),
        ("**/dir2/**", "dir/dir2/dir3/file", True),
        ("**file", "file", True),
        ("**file", "dir/file", True),
        ("**/file", "dir/file", True),
        ("**file", "dir/dir/file", True),
        ("**/file", "dir/dir/file", True),
        ("**/file*", "dir/dir/file", True),
        ("**/file*", "dir/dir/file.txt", True),
        ("**/file*txt", "dir/dir/file.txt", True),
        ("**/file*.txt", "dir/dir/file.txt", True),
        ("**/file*.txt*", "dir/dir/file.txt", True),
        ("**/**/*.txt", "dir/dir/file.txt", True),
        ("**/**/*.txt2", "dir/dir/file.txt", False),
        ("**/*.txt", "file.txt", True),
        ("**/**/*.txt", "file.txt", True),
        ("a**/*.txt", "a/file.txt", True),
        ("a**/*.txt", "a/dir/file.txt", True),
        ("a**/*.txt", "a/dir/dir/file.txt", True),
        ("a/*.txt", "a/dir/file.txt", False),
        ("a/*.txt", "a/file.txt", True),
        ("a/*.txt**", "a/file.txt", True),
        ("a[b-d]e", "ae", False),
        ("a[b-d]e", "ace", True),
        ("a[b-d]e", "aae", False),
        ("a[^b-d]e", "aze", True),
        (".*", ".foo", True),
        (".*", "foo", False),
        ("abc.def", "abcdef", False),
        ("abc.def", "abc.def", True),
        ("abc.def", "abcZdef", False),
        ("abc?def", "abcZdef", True),
        ("abc?def", "abcdef", False),
        ("a\\\\", "a\\", True),
        ("**/foo/bar", "foo/bar", True),
        ("**/foo/bar", "dir/foo/bar", True),
        ("**/foo/bar", "dir/dir2/foo/bar", True),
        ("abc/**", "abc", False),
        ("abc/**", "abc/def", True),
        ("abc/**", "abc/def/ghi", True),
        ("**/.foo", ".foo", True),
        ("**/.foo", "bar.foo", False),
        ("a(b)c/def", "a(b)c/def", True),
        ("a(b)c/def", "a(b)c/xyz", False),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
        ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
        ("*", "a/b/c", True),  # the parent "a" matches
        ("a/b", "a/b/c/d", True),
        ("a/b", "a/bc", False),
        ("*.go", "dir/x.go", False),  # '*' stays in one component, from the root
    ],
)
def test_pattern_matches(pattern: str, path: str, expected: bool) -> None:
    assert excluded(pattern, path) is expected


def test_patterns_are_cleaned_and_made_relative() -> None:
    ignore = parse_dockerignore("./a//b/\n/c\n  d/./e  \n!/a/b/keep\n")
    assert [(p.pattern, p.exclusion) for p in ignore.patterns] == [
        ("a/b", False),
        ("c", False),
        ("d/e", False),
        ("a/b/keep", True),
    ]
    assert ignore.matches("a/b/x") and ignore.matches("c") and ignore.matches("d/e/f")
    assert not ignore.matches("a/b/keep") and not ignore.matches("a/b/keep/inner")


def test_comments_blank_lines_bom_and_crlf() -> None:
    ignore = parse_dockerignore("\ufeff# comment\r\n\r\nfoo\r\n #notacomment\r\n")
    assert [p.pattern for p in ignore.patterns] == ["foo", "#notacomment"]
    assert [p.line for p in ignore.patterns] == [3, 4]


def test_last_match_wins() -> None:
    text = "*.md\n!README.md\nREADME*.md\n"
    assert excluded(text, "a.md")
    assert excluded(text, "README.md")  # re-excluded by the last pattern
    assert not excluded("*.md\n!README.md\n", "README.md")


def test_exception_inside_an_excluded_directory() -> None:
    ignore = parse_dockerignore("docs\n!docs/keep.md\n")
    assert ignore.matches("docs") and ignore.matches("docs/other.md")
    assert not ignore.matches("docs/keep.md")
    assert not ignore.may_skip_dir("docs")


def test_may_skip_dir() -> None:
    plain = parse_dockerignore("node_modules\n.git\n")
    assert plain.may_skip_dir("node_modules") and plain.may_skip_dir(".git")
    assert not plain.may_skip_dir("src")  # not excluded at all
    wildcard = parse_dockerignore("build\n!*/keep\n")
    assert wildcard.matches("build/other") and not wildcard.matches("build/keep")
    assert not wildcard.may_skip_dir("build")  # '*/keep' can match below build/
    unrelated = parse_dockerignore("build\n!src/keep\n")
    assert unrelated.may_skip_dir("build")
    deep = parse_dockerignore("a\n!a/b/**\n")
    assert not deep.may_skip_dir("a") and deep.may_skip_dir("a/c") is False
    sibling = parse_dockerignore("a\n!a/b/c\n")
    assert not sibling.may_skip_dir("a") and not sibling.may_skip_dir("a/b")
    assert sibling.may_skip_dir("a/x")


def test_context_root_is_never_excluded() -> None:
    assert not excluded("*\n", ".")
    assert not excluded("**\n", "")


def test_bad_patterns_are_located_errors() -> None:
    for text, line in (("ok\n!\n", 2), ("a[b\n", 1), ("x\\\n", 1)):
        with pytest.raises(DockerfileSyntaxError) as info:
            parse_dockerignore(text)
        assert info.value.location is not None and info.value.location.file == ".dockerignore"
        assert info.value.location.line == line


def test_empty_ignore_excludes_nothing() -> None:
    assert not DockerIgnore().matches("anything")
    assert not parse_dockerignore("").may_skip_dir("x")


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [("", "."), ("./a/", "a"), ("a//b/./c/..", "a/b"), ("//a", "/a"), ("../x", "../x"), ("/..", "/")],
)
def test_clean_path(raw: str, cleaned: str) -> None:
    assert clean_path(raw) == cleaned
