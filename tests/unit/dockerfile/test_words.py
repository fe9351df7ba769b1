"""Unit tests for dockerfile/words.py beyond the conformance vectors: the ${} operator and pattern
forms (facts from BuildKit's lex_test.go TestProcessWithMatches), tracking, words mode, raw modes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forklift.dockerfile.words import (
    Expansion,
    expand_heredoc,
    expand_heredoc_tracked,
    expand_word,
    expand_word_tracked,
    expand_words,
    remove_quotes,
    split_raw_words,
)
from forklift.errors import ExpansionError

SET = {"FOO": "xxx", "BAR": ""}


@pytest.mark.parametrize(
    ("text", "env", "expected", "used", "unset"),
    [
        ("x", {"DUMMY": "dummy"}, "x", set(), set()),
        ("x ${UNUSED}", {}, "x ", {"UNUSED"}, {"UNUSED"}),
        ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", SET, "xxx  ccc", {"FOO", "BAR", "BAZ"}, {"BAZ"}),
        ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", SET, "xxx bbb ccc", {"FOO", "BAR", "BAZ"}, {"BAZ"}),
        ("${FOO:-}", SET, "xxx", {"FOO"}, set()),
        ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", SET, "aaa bbb ", {"FOO", "BAR", "BAZ"}, {"BAZ"}),
        ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", SET, "aaa  ", {"FOO", "BAR", "BAZ"}, {"BAZ"}),
        ("${FOO?aaa}", SET, "xxx", {"FOO"}, set()),
        ("${BAR?bbb}", SET, "", {"BAR"}, set()),
        ("${FOO:?aaa}", SET, "xxx", {"FOO"}, set()),
        ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x", {"FOO"}, set()),
        ("${FOO%%\\**}", {"FOO": "xx**"}, "xx", {"FOO"}, set()),
        ("${FOO#*x*y}", {"FOO": "xxyy"}, "y", {"FOO"}, set()),
        ("${FOO#*}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
        ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy", {"FOO", "BAR"}, set()),
        ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy", {"FOO", "BAR"}, set()),
        ("${FOO#}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
        ("${FOO##*x}", {"FOO": "xxyy"}, "yy", {"FOO"}, set()),
        ("${FOO##}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
        ("${FOO#?\\?}", {"FOO": "???y"}, "?y", {"FOO"}, set()),
        ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy.", {"FOO", "ABC"}, {"ABC"}),
        ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a", {"FOO"}, set()),
        ("${FOO%y*}", {"FOO": "xyxy"}, "xyx", {"FOO"}, set()),
        ("${FOO%%y*}", {"FOO": "xyxy"}, "x", {"FOO"}, set()),
        ("${FOO%}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
        ("${FOO%%$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy", {"FOO", "BAR"}, set()),
        (
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
            "/foo.*/*.txt - /foo..*.txt",
            {"FOO", "NEEDLE"},
            set(),
        ),
        (
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
            "/tmp/bar.txt - /bar.txt",
            {"FOO", "NEEDLE"},
            set(),
        ),
        (
            "${FOO/$N/$R} - ${FOO//$N/$R}",
            {"FOO": "/a/foo/b/c.txt", "N": "/?/", "R": "/"},
            "/foo/b/c.txt - /foo/c.txt",
            {"FOO", "N", "R"},
            set(),
        ),
        (
            "${FOO/$N/$R}",
            {"FOO": "http://google.de", "N": "http://", "R": "https://"},
            "https://google.de",
            {"FOO", "N", "R"},
            set(),
        ),
        ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt", {"FOO"}, set()),
        ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy", {"FOO", "BAR"}, set()),
        ("${FOO///}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
        ("${FOO///}", {}, "", {"FOO"}, {"FOO"}),
        ("${FOO/x?/[$]}", {"FOO": "axyaxy"}, "a[$]axy", {"FOO"}, set()),
        (
            "s-${V}.${OS}-${ARCH}${VARIANT:+-${VARIANT}}.tgz",
            {"V": "v1", "OS": "linux", "ARCH": "arm", "VARIANT": "v7"},
            "s-v1.linux-arm-v7.tgz",
            {"V", "OS", "ARCH", "VARIANT"},
            set(),
        ),
        ("s${VARIANT:+-${VARIANT}}", {"VARIANT": ""}, "s", {"VARIANT"}, set()),
        (
            "$@ $* $# $? $- $$ $! $0 $12x",
            {},
            "        x",
            {"@", "*", "#", "?", "-", "$", "!", "0", "12"},
            {"@", "*", "#", "?", "-", "$", "!", "0", "12"},
        ),
    ],
)
def test_operator_forms(
    text: str, env: dict[str, str], expected: str, used: set[str], unset: set[str]
) -> None:
    assert expand_word_tracked(text, env) == Expansion(expected, frozenset(used), frozenset(unset))
    assert expand_word(text, env) == expected


@pytest.mark.parametrize(
    "text",
    [
        "${BAZ?ccc}",
        "${BAR:?bbb}",
        "${BAZ:?ccc}",
        "${BAZ:?}",
        "${FOO=aaa}",
        "${FOO=:aaa}",
        "${FOO=}",
        "${FOO:=x}",
        "${FOO:#}",
        "${FOO:##}",
        "${FOO:%}",
        "${FOO:%%}",
        "${FOO//ww}",
        "${FOO//}",
        "${FOO:1}",
        "${FOO:1:2}",
        "${FOO",
        "${FOO:-x",
        "${}",
        "${:}",
        "${{x}",
        "${FOO#\\x}",
        "'unterminated",
        '"unterminated',
    ],
)
def test_errors(text: str) -> None:
    with pytest.raises(ExpansionError):
        expand_word(text, SET)


def test_error_messages_name_the_variable() -> None:
    with pytest.raises(ExpansionError, match="BAZ: is not allowed to be unset"):
        expand_word("${BAZ?}", SET)
    with pytest.raises(ExpansionError, match="BAR: is not allowed to be empty"):
        expand_word("${BAR:?}", SET)
    with pytest.raises(ExpansionError, match="BAZ: set it with --build-arg"):
        expand_word("${BAZ:?set it with --build-arg}", SET)


def test_backtick_escape() -> None:
    assert expand_word("a`$FOO b\\c", SET, escape="`") == "a$FOO b\\c"
    assert expand_word('"`"x`""', SET, escape="`") == '"x"'
    with pytest.raises(ValueError):
        expand_word("x", SET, escape="!")


def test_words_mode() -> None:
    env = {"PORTS": "80  443/udp", "EMPTY": ""}
    assert expand_words("$PORTS 8080", env) == ["80", "443/udp", "8080"]
    assert expand_words('"$PORTS" x', env) == ["80  443/udp", "x"]
    assert expand_words('a "" $EMPTY b', env) == ["a", "b"]
    assert expand_words("  ", env) == []
    assert expand_words("a\\ b 'c d'", env) == ["a b", "c d"]


def test_remove_quotes_leaves_dollar_alone() -> None:
    assert remove_quotes("'a b'\"$X\"\\$Y ${Z:-w}") == "a b$X$Y ${Z:-w}"
    with pytest.raises(ExpansionError):
        remove_quotes("'open")


def test_split_raw_words_keeps_everything() -> None:
    assert split_raw_words("RUN \"a b\" 'c' d\\ e $UNSET ${X:-y} <<  EOF") == [
        "RUN",
        '"a b"',
        "'c'",
        "d\\ e",
        "$UNSET",
        "${X:-y}",
        "<<  EOF",
    ]


@given(st.text(alphabet="$\\{}:-+?#%/*'\"`ab \t=.0", max_size=30))
@settings(max_examples=500, deadline=None)
def test_random_words_raise_only_expansion_errors(text: str) -> None:
    env = {"a": "x y", "b": ""}
    calls: list[Callable[[str], object]] = [
        lambda escape: expand_word(text, env, escape=escape),
        lambda escape: expand_words(text, env, escape=escape),
        lambda escape: remove_quotes(text, escape=escape),
        lambda escape: split_raw_words(text, escape=escape),
    ]
    for escape in ("\\", "`"):
        for call in calls:
            with contextlib.suppress(ExpansionError):
                call(escape)


def test_deep_nesting_is_an_expansion_error() -> None:
    with pytest.raises(ExpansionError, match="nested too deeply"):
        expand_word("${a:-" * 3000 + "}" * 3000, {})


def test_expand_heredoc_keeps_quotes() -> None:
    result = expand_heredoc_tracked("echo \"$A\" '$B' \\$C ${D:-d}\n", {"A": "1"})
    assert result == Expansion("echo \"1\" '' $C d\n", frozenset({"A", "B", "D"}), frozenset({"B", "D"}))
    assert expand_heredoc("x=${A}", {"A": "'q'"}) == "x='q'"
