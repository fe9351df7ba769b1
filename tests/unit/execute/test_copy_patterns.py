"""The one pattern matcher behind .dockerignore, COPY/ADD --exclude and COPY --parents.

Expected values follow moby/patternmatcher (what BuildKit's copier uses for include and exclude
patterns): ``**`` spans any number of components, zero included; ``*`` and ``?`` stay inside one
component; a pattern that matches a directory matches everything below it.
"""

from __future__ import annotations

import pytest

from forklift.dockerfile.ignore import compile_patterns

CASES = [
    # pattern, path, expected
    ("**/*.go", "a.go", True),
    ("**/*.go", "x/y/a.go", True),
    ("**/*.go", "x/y/a.gox", False),
    ("src/**/*.go", "src/a.go", True),  # ** matches zero components
    ("src/**/*.go", "src/a/b/c.go", True),
    ("src/**/*.go", "srcx/a.go", False),
    ("src/**/*.go", "other/src/a.go", False),
    ("src/**", "src/a/b", True),
    ("src/**", "src", False),
    ("**", "anything/at/all", True),
    ("c/**/e", "c/d/e", True),
    ("c/**/e", "c/d/x/e/f", True),  # below a matched directory
    ("c/**/e", "c/d/ex", False),
    ("**/y", "src/x/y/c.go", True),
    ("*.log", "a.log", True),
    ("*.log", "sub/a.log", False),  # '*' never crosses '/'
    ("*/*.log", "sub/a.log", True),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("[ab]*.txt", "b1.txt", True),
    ("[ab]*.txt", "c1.txt", False),
    ("[^ab]*.txt", "c1.txt", True),
    ("file-[0-9][0-9].png", "file-42.png", True),
    (".[^/]*", ".hidden", True),  # the old regex hack turned this into '.*'
    (".[^/]*", "xhidden", False),
    ("a.b", "axb", False),  # '.' is literal
    ("./docs//api/", "docs/api/x.md", True),  # patterns are cleaned
    ("/docs", "docs/x", True),  # a leading '/' is the source root
    ("dir", "dir/sub/file", True),
    ("dir", "dirx", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), CASES)
def test_pattern_table(pattern: str, path: str, expected: bool) -> None:
    assert compile_patterns([pattern]).matches(path) is expected


def test_several_patterns_and_a_re_include() -> None:
    matcher = compile_patterns(["*.log", "", "**/*.tmp", "!keep.log"])
    assert matcher.matches("a.log") and matcher.matches("x/y/z.tmp")
    assert not matcher.matches("keep.log") and not matcher.matches("a.txt")


def test_bad_patterns_are_refused() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        compile_patterns(["[abc"])
    with pytest.raises(ValueError, match="illegal exclusion"):
        compile_patterns(["!"])
