"""Unit tests for dockerfile/syntax.py: directives, continuations, heredocs, shaping, error locations.

Heredoc cases restate the facts of BuildKit's parser_heredoc_test.go (names, bodies, expand, chomp,
fd); the bodies of ``<<-`` heredocs are stored with their leading tabs already stripped.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forklift.dockerfile.syntax import (
    Heredoc,
    Node,
    ParseWarning,
    dump,
    extract_flags,
    parse,
    parse_heredoc_marker,
    parse_words,
)
from forklift.errors import DockerfileSyntaxError


def dumps(text: str) -> list[str]:
    return [dump(node) for node in parse(text).nodes]


def syntax_error(text: str) -> DockerfileSyntaxError:
    with pytest.raises(DockerfileSyntaxError) as info:
        parse(text, file="ctx/Dockerfile")
    return info.value


# -- directives ----------------------------------------------------------------------------------


def test_directives_are_read_from_the_leading_block_with_any_key_case() -> None:
    parsed = parse("# SyNtAx = docker/dockerfile:1\n#\tcheck=skip=all;error=true\n# Escape=`\nFROM a\n")
    d = parsed.directives
    assert (d.syntax, d.check, d.escape) == ("docker/dockerfile:1", "skip=all;error=true", "`")
    assert d.lines == {"syntax": 1, "check": 2, "escape": 3}


def test_directive_after_a_plain_comment_or_blank_line_is_a_comment() -> None:
    assert parse("# hello\n# escape=`\nFROM a\n").directives.escape == "\\"
    assert parse("\n# escape=`\nFROM a\n").directives.escape == "\\"
    assert parse("FROM a\n# escape=`\nRUN x\n").directives.escape == "\\"


def test_unknown_directive_ends_the_block() -> None:
    parsed = parse("# foo=bar\n# escape=`\nFROM a\n")
    assert parsed.directives.escape == "\\" and parsed.directives.lines == {}


def test_repeated_directive_is_an_error_at_its_line() -> None:
    err = syntax_error("# escape=\\\n# ESCAPE=`\nFROM a\n")
    assert "only one escape parser directive" in err.message
    assert err.location is not None and (err.location.file, err.location.line) == ("ctx/Dockerfile", 2)
    assert err.location.text == "# ESCAPE=`"


def test_bad_escape_value_is_an_error() -> None:
    err = syntax_error("# escape=x\nFROM a\n")
    assert "invalid escape token" in err.message
    assert err.location is not None and err.location.line == 1


def test_backtick_escape_changes_continuation_and_word_escapes() -> None:
    parsed = parse("# escape=`\nFROM a\nRUN dir c:\\ `\n  && echo hi\nENV x=a`=b\n")
    assert [dump(n) for n in parsed.nodes][1:] == ['(run "dir c:\\\\   && echo hi")', '(env "x" "a`=b" "=")']


def test_bom_is_stripped() -> None:
    parsed = parse("\ufeff# escape=`\nFROM a\n")
    assert parsed.directives.escape == "`"
    assert parsed.source_lines[0] == "# escape=`"


# -- lines, comments, continuations --------------------------------------------------------------


def test_continuation_keeps_indentation_and_drops_comments_and_empty_lines() -> None:
    parsed = parse("FROM a\nRUN echo a \\\n# comment\n\n    b \\\n  # indented comment\n c\n")
    assert dump(parsed.nodes[1]) == '(run "echo a     b  c")'
    assert (parsed.nodes[1].start_line, parsed.nodes[1].end_line) == (2, 7)
    assert parsed.warnings == (ParseWarning("Empty continuation line found in: RUN echo a     b  c", 4, 7),)


def test_empty_continuation_warning_is_at_the_last_line() -> None:
    # BuildKit's NoEmptyContinuation test: reported on line 6.
    parsed = parse(
        "\nFROM scratch\n# warning: empty continuation line\nCOPY Dockerfile \\\n\n.\nCOPY Dockerfile \\\n.\n"
    )
    assert [(w.line, w.end_line) for w in parsed.warnings] == [(5, 6)]


def test_doubled_escape_at_end_of_line_is_not_a_continuation() -> None:
    assert dumps("FROM a\nRUN echo \\\\\nRUN b\n") == ['(from "a")', '(run "echo \\\\\\\\")', '(run "b")']


def test_continuation_at_end_of_file_and_crlf() -> None:
    parsed = parse("FROM a\r\nRUN a \\\r\n  b\r\nRUN c \\")
    assert [dump(n) for n in parsed.nodes] == ['(from "a")', '(run "a   b")', '(run "c")']
    assert parsed.source_lines == ("FROM a", "RUN a \\", "  b", "RUN c \\")


def test_hash_inside_an_instruction_is_literal_and_leading_whitespace_is_ignored() -> None:
    assert dumps("   FROM a # not a comment\n\t# comment\n") == ['(from "a" "#" "not" "a" "comment")']


def test_keyword_case_is_kept_in_keyword_text() -> None:
    node = parse("from a\nRuN x\n").nodes[1]
    assert (node.keyword, node.keyword_text, node.original) == ("run", "RuN", "RuN x")


def test_line_over_64_kib_is_an_error() -> None:
    parse("FROM a\nRUN " + "x" * 65000 + "\n")  # under the limit
    err = syntax_error("FROM a\nRUN " + "x" * 65536 + "\n")
    assert "max allowed size" in err.message
    assert err.location is not None and err.location.line == 2


def test_file_with_no_instructions() -> None:
    for text in ("", "\n\n", "# just a comment\n", "# syntax=x\n"):
        assert syntax_error(text).message == "file with no instructions"


# -- argument shaping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM a AS b", '(from "a" "AS" "b")'),
        ("EXPOSE 80  443/udp", '(expose "80" "443/udp")'),
        ('COPY ["a b", "c"]', '(copy "a b" "c")'),
        ("COPY [a, b]", '(copy "[a," "b]")'),
        ('RUN ["echo", "x"] trailing', '(run "[\\"echo\\", \\"x\\"] trailing")'),
        ("RUN   echo   'a  b'  ", "(run \"echo   'a  b'\")"),
        ("CMD []", "(cmd)"),
        ('SHELL ["/bin/bash", "-c"]', '(shell "/bin/bash" "-c")'),
        ("HEALTHCHECK NONE", '(healthcheck "NONE")'),
        ('ENV a=1 b="x y"', '(env "a" "1" "=" "b" "\\"x y\\"" "=")'),
        ("LABEL a b c", '(label "a" "b c" "")'),
        ('ARG a b="c d"', '(arg "a" "b=\\"c d\\"")'),
        ("USER  app:app ", '(user "app:app")'),
        ("WORKDIR /a b", '(workdir "/a b")'),
        ("STOPSIGNAL SIGKILL", '(stopsignal "SIGKILL")'),
        ("MAINTAINER me <me@x>", '(maintainer "me <me@x>")'),
        ("FOO bar", '(foo "")'),
        ("ONBUILD", "(onbuild)"),
        (
            "ONBUILD RUN --mount=type=cache,target=/x make",
            '(onbuild (run ["--mount=type=cache,target=/x"] "make"))',
        ),
        ('COPY --from="a b" --chmod=755 -- --x /y', '(copy ["--from=a b" "--chmod=755"] "--x" "/y")'),
    ],
)
def test_argument_shaping(text: str, expected: str) -> None:
    assert dump(parse(text).nodes[0]) == expected


def test_json_form_attribute() -> None:
    nodes = parse('CMD ["a"]\nCMD a\nHEALTHCHECK CMD ["x"]\nVOLUME /v\n').nodes
    assert [n.json_form for n in nodes] == [True, False, True, False]


def test_onbuild_inner_node() -> None:
    node = parse("ONBUILD copy --chown=1 . /\n").nodes[0]
    assert node.inner == Node(
        keyword="copy",
        keyword_text="copy",
        args=(".", "/"),
        flags=("--chown=1",),
        original="copy --chown=1 . /",
    )


def test_json_with_non_string_element_is_an_error_with_location() -> None:
    err = syntax_error('FROM a\n\n  CMD ["a", 1]\n')
    assert "comprised of strings only" in err.message
    assert err.location is not None
    assert (err.location.line, err.location.column, err.location.text) == (3, 7, '  CMD ["a", 1]')
    assert err.hint is not None


def test_env_errors() -> None:
    err = syntax_error("FROM a\nENV \\\n  PATH\n")
    assert "ENV must have two arguments" in err.message
    assert err.location is not None and (err.location.line, err.location.end_line) == (2, 3)
    assert err.location.column == 1  # PATH is not on the first line: the caret goes under ENV
    err = syntax_error("FROM a\n ENV  PATH\n")
    assert err.location is not None and err.location.column == 7
    err = syntax_error("FROM a\nENV a=b c\n")
    assert "can't find =" in err.message
    assert err.location is not None and err.location.column == 9


def test_parse_words_keeps_quotes_and_escapes() -> None:
    assert parse_words("a=\"b c\" d\\ e 'f g'", "\\") == ['a="b c"', "d\\ e", "'f g'"]
    assert parse_words('x="" ""', "\\") == ['x=""', '""']


def test_extract_flags() -> None:
    assert extract_flags("--a=1 --b 'c d'") == ("'c d'", ("--a=1", "--b"))
    assert extract_flags("--a=1 -- --b") == ("--b", ("--a=1",))
    assert extract_flags("--x='a b'\\ c") == ("", ("--x=a b c",))
    assert extract_flags("-x y") == ("-x y", ())


# -- heredocs ------------------------------------------------------------------------------------

HEREDOC_FILE = """
FROM alpine:3.6

ENV NAME=me

RUN ls

USER <<INVALID
INVALID

RUN <<EMPTY
EMPTY

RUN 3<<EMPTY2
EMPTY2

RUN "<<NOHEREDOC"

RUN <<INDENT
\tfoo
\tbar
INDENT

RUN <<-UNINDENT
\tbaz
\tquux
UNINDENT

RUN <<-UNINDENT2
\tbaz
\tquux
\tUNINDENT2

RUN <<-EXPAND
\texpand $NAME
EXPAND

RUN <<-'NOEXPAND'
\tdon't expand $NAME
NOEXPAND

RUN <<COPY
echo hello world
echo foo bar
COPY

RUN <<COMMENT
# internal comment
echo hello world
echo foo bar # trailing comment
COMMENT

RUN --mount=type=cache,target=/foo <<MOUNT
echo hello
MOUNT

COPY <<FILE1 <<FILE2 /dest
content 1
FILE1
content 2
FILE2

COPY <<X <<Y /dest
Y
X
X
Y
\t"""


def test_heredocs_extracted_like_buildkit() -> None:
    nodes = parse(HEREDOC_FILE).nodes
    expected: list[tuple[Heredoc, ...]] = [
        (),  # FROM
        (),  # ENV
        (),  # RUN ls
        (),  # USER <<INVALID: not a heredoc instruction
        (),  # INVALID (an unknown instruction)
        (Heredoc("EMPTY", "", True, False),),
        (Heredoc("EMPTY2", "", True, False, fd=3),),
        (),  # RUN "<<NOHEREDOC"
        (Heredoc("INDENT", "\tfoo\n\tbar\n", True, False),),
        (Heredoc("UNINDENT", "baz\nquux\n", True, True),),
        (Heredoc("UNINDENT2", "baz\nquux\n", True, True),),
        (Heredoc("EXPAND", "expand $NAME\n", True, True),),
        (Heredoc("NOEXPAND", "don't expand $NAME\n", False, True),),
        (Heredoc("COPY", "echo hello world\necho foo bar\n", True, False),),
        (
            Heredoc(
                "COMMENT",
                "# internal comment\necho hello world\necho foo bar # trailing comment\n",
                True,
                False,
            ),
        ),
        (Heredoc("MOUNT", "echo hello\n", True, False),),
        (Heredoc("FILE1", "content 1\n", True, False), Heredoc("FILE2", "content 2\n", True, False)),
        (Heredoc("X", "Y\n", True, False), Heredoc("Y", "X\n", True, False)),
    ]
    assert [n.heredocs for n in nodes] == expected
    # end_line includes the bodies and terminators.
    assert [(n.start_line, n.end_line) for n in nodes][-3:] == [(53, 55), (57, 61), (63, 67)]
    assert dump(nodes[-2]) == '(copy "<<FILE1" "<<FILE2" "/dest")'


def test_json_form_has_no_heredocs() -> None:
    nodes = parse('FROM alpine\nRUN ["whoami"]\nRUN ["<<EOF"]\nRUN ["<<\'EOF\'"]\n').nodes
    assert all(n.heredocs == () for n in nodes)


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ("RUN <<EOF", ["EOF"]),
        ("RUN <<-EOF", ["EOF"]),
        ("RUN <<'EOF'", ["EOF"]),
        ('RUN <<"EOF"', ["EOF"]),
        ("RUN 4<<EOF", ["EOF"]),
        ("RUN <<EOF <<EOF2", ["EOF", "EOF2"]),
        ("RUN <<  EOF", ["EOF"]),
        ("RUN << -EOF", ["-EOF"]),
        ("RUN <<- EOF", []),
        ("RUN '<<EOF'", []),
        ('RUN "<<EOF"', []),
        ("RUN <<<EOF", []),
        ("RUN <<", []),
        ("RUN cat <<EOF | sh", ["EOF"]),
        ("ADD <<EOF /x", ["EOF"]),
    ],
)
def test_heredoc_markers_on_a_line(line: str, names: list[str]) -> None:
    text = "\n".join([line, *names, ""])
    assert [h.name for h in parse(text).nodes[0].heredocs] == names


@pytest.mark.parametrize(
    ("marker", "name", "expand"),
    [
        ("<<EOF", "EOF", True),
        ("<<'EOF'", "EOF", False),
        ('<<"EOF"', "EOF", False),
        ("<<E'O'F", "EOF", False),
        ("<<eo\\'f", "eo'f", True),
        ("<<$EOF", "$EOF", True),
    ],
)
def test_quoted_delimiter_disables_expansion(marker: str, name: str, expand: bool) -> None:
    heredoc = parse(f"RUN {marker}\n{name}\n").nodes[0].heredocs[0]
    assert (heredoc.name, heredoc.expand) == (name, expand)


def test_heredoc_in_onbuild_is_attached_to_both_nodes() -> None:
    node = parse("ONBUILD RUN <<EOF\necho hi\nEOF\nFROM a\n").nodes[0]
    assert node.heredocs == (Heredoc("EOF", "echo hi\n", True, False),)
    assert node.inner is not None and node.inner.heredocs == node.heredocs
    assert (node.start_line, node.end_line) == (1, 3)


def test_heredoc_after_a_continued_line_and_crlf_body() -> None:
    node = parse("RUN --network=none \\\n  <<EOF\r\necho a\r\nEOF\r\n").nodes[0]
    assert node.heredocs == (Heredoc("EOF", "echo a\r\n", True, False),)
    assert (node.start_line, node.end_line) == (1, 4)


def test_unterminated_heredoc_is_an_error() -> None:
    err = syntax_error("FROM a\nRUN <<EOF\necho hi\nEO\n")
    assert "unterminated heredoc" in err.message
    assert err.location is not None and (err.location.line, err.location.end_line) == (2, 4)


def test_terminator_must_be_the_whole_line() -> None:
    node = parse("RUN <<EOF\n EOF\nEOF \nEOF\n").nodes[0]
    assert node.heredocs[0].content == " EOF\nEOF \n"


# -- robustness ------------------------------------------------------------------------------------

_PIECES = [
    "FROM a",
    "RUN x",
    "RUN <<EOF",
    "EOF",
    "COPY <<'A' <<-B /d",
    "\tB",
    "ENV a=b",
    "ENV a",
    "LABEL x y",
    'CMD ["a", 1]',
    'CMD ["a"',
    "ONBUILD",
    "ONBUILD RUN <<X",
    "# escape=`",
    "# syntax=x",
    "#",
    "",
    "  ",
    "\\",
    "`",
    "--x",
    "HEALTHCHECK --interval=1s CMD [",
    "ARG a='b",
    '"',
    "${",
]


@given(
    st.lists(st.sampled_from(_PIECES) | st.text(max_size=12), max_size=12), st.sampled_from(["\n", "\r\n"])
)
@settings(max_examples=300, deadline=None)
def test_random_dockerfiles_raise_only_syntax_errors(lines: list[str], newline: str) -> None:
    try:
        parsed = parse(newline.join(lines))
    except DockerfileSyntaxError as exc:
        assert exc.location is not None and exc.location.line >= 1
        return
    for node in parsed.nodes:
        assert 1 <= node.start_line <= node.end_line <= max(len(parsed.source_lines), 1)
        dump(node)


def test_deeply_nested_json_is_shell_form() -> None:
    node = parse("CMD " + "[" * 5000 + "]" * 5000).nodes[0]
    assert not node.json_form and len(node.args) == 1


def test_parse_heredoc_marker() -> None:
    assert parse_heredoc_marker("<<-'EOF'") == Heredoc("EOF", "", False, True)
    assert parse_heredoc_marker("2<<X") == Heredoc("X", "", True, False, fd=2)
    for word in ("EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<'EOF", '<<EOF"'):
        assert parse_heredoc_marker(word) is None, word
