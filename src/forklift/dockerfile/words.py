"""BuildKit's shell-word lexer: quotes, escapes, ``$VAR`` / ``${VAR...}`` expansion, word splitting.

Pure: no I/O. The behaviour follows BuildKit's ``frontend/dockerfile/shell`` lexer as pinned down by
the ``envVarTest`` and ``wordsTest`` vectors in ../shared/conformance:

* ``'...'`` is literal; in ``"..."`` the escape character escapes only ``"``, ``$`` and itself;
  outside quotes it escapes any character, and a lone trailing escape is dropped.
* ``$name`` / ``${name}`` expand (unset -> empty); positional and special parameters (``$0``-``$9...``,
  ``$@ $* $# $? $- $$ $!``) are recognised and expand to empty (they are never set).
* ``${v-w} ${v:-w} ${v+w} ${v:+w} ${v?m} ${v:?m}`` with a nested, expanded ``w``;
  ``${v#p} ${v##p} ${v%p} ${v%%p} ${v/p/r} ${v//p/r}`` with ``*`` and ``?`` globs.
* Everything else inside ``${...}`` is an error (``${}``, ``${v:=w}``, ``${v:1}``, ``${v:#p}``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from forklift.errors import ExpansionError
from forklift.records import record

# Go's unicode.IsSpace: what BuildKit's word splitter treats as blanks.
GO_SPACES = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


@record
class Expansion:
    """The result of expanding one word, with the variable names it referenced."""

    value: str
    used: frozenset[str]  # every name referenced ($X, ${X...}), set or not
    unset: frozenset[str]  # the referenced names that were not set in the environment


class _Words:
    """Accumulates the fields of multi-word mode (shell field splitting)."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.buf = ""
        self.in_word = False

    def add_char(self, ch: str) -> None:
        # An unquoted blank ends the current word; other characters extend it.
        if ch in GO_SPACES:
            if self.in_word and self.buf:
                self.words.append(self.buf)
                self.buf = ""
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.buf += ch
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        # A quoted empty string ("") marks a word as started but adds no text: like BuildKit,
        # it does not produce an empty word on its own.
        self.buf += text
        self.in_word = True

    def finish(self) -> list[str]:
        if self.buf:
            self.words.append(self.buf)
        self.buf = ""
        self.in_word = False
        return self.words


class _Lexer:
    """One pass over one input string. Options mirror BuildKit's Lex flags."""

    def __init__(
        self,
        text: str,
        env: Mapping[str, str],
        *,
        escape: str,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset: bool = False,
        expand: bool = True,
        heredoc_markers: bool = False,
        process_quotes: bool = True,
    ) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.expand = expand
        self.heredoc_markers = heredoc_markers
        self.process_quotes = process_quotes
        self.used: set[str] = set()
        self.unset: set[str] = set()

    # -- scanner ---------------------------------------------------------------------------------
    def peek(self) -> str:
        """The next character, or '' at the end."""
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        """Consume and return the next character, or '' at the end."""
        if self.pos >= len(self.text):
            return ""
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def fail(self, message: str) -> ExpansionError:
        return ExpansionError(f"failed to process {self.text!r}: {message}")

    # -- grammar ---------------------------------------------------------------------------------
    def run(self) -> tuple[str, list[str]]:
        try:
            return self.process_until("", self.raw_escapes)
        except RecursionError:
            raise self.fail("substitutions are nested too deeply") from None

    def process_until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Process up to (and consuming) ``stop``; ``stop == ''`` means the end of the input."""
        saved_raw = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            result: list[str] = []
            words = _Words()
            while self.pos < len(self.text):
                ch = self.peek()
                if stop and ch == stop:
                    self.next()
                    return "".join(result), words.finish()
                if ch == "$" and self.expand:
                    value = self.process_dollar()
                    result.append(value)
                    words.add_string(value)
                    continue
                if ch == "<" and self.heredoc_markers:
                    value = self.process_possible_heredoc()
                    result.append(value)
                    words.add_raw_string(value)
                    continue
                if ch == "'" and self.process_quotes:
                    value = self.process_single_quote()
                    result.append(value)
                    words.add_raw_string(value)
                    continue
                if ch == '"' and self.process_quotes:
                    value = self.process_double_quote()
                    result.append(value)
                    words.add_raw_string(value)
                    continue
                ch = self.next()
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        result.append(ch)
                    ch = self.next()
                    if ch == "":
                        break  # a lone trailing escape is dropped
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
            if stop:
                raise self.fail(f"unexpected end of statement while looking for matching {stop}")
            return "".join(result), words.finish()
        finally:
            self.raw_escapes = saved_raw

    def process_possible_heredoc(self) -> str:
        # ``<<`` swallows the blanks after it, so ``<<  EOF`` stays one word (a heredoc marker).
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        start = self.pos
        while self.peek() and self.peek() in GO_SPACES:
            self.pos += 1
        return "<<" + self.text[start : self.pos]

    def process_single_quote(self) -> str:
        result: list[str] = []
        opening = self.next()
        if self.raw_quotes:
            result.append(opening)
        while True:
            ch = self.next()
            if ch == "":
                raise self.fail("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.raw_quotes:
                    result.append(ch)
                return "".join(result)
            result.append(ch)

    def process_double_quote(self) -> str:
        result: list[str] = []
        opening = self.next()
        if self.raw_quotes:
            result.append(opening)
        while True:
            ch = self.peek()
            if ch == "":
                raise self.fail("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.raw_quotes:
                    result.append(ch)
                return "".join(result)
            if ch == "$" and self.expand:
                result.append(self.process_dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    result.append(ch)
                following = self.peek()
                if following == "":
                    continue  # an escape at the very end is ignored (the quote error follows)
                if following in ('"', "$", self.escape):
                    ch = self.next()
            result.append(ch)

    def lookup(self, name: str) -> str | None:
        self.used.add(name)
        value = self.env.get(name)
        if value is None:
            self.unset.add(name)
        return value

    def process_name(self) -> str:
        """A variable name: letters, digits and ``_``; or all-digits; or one special parameter."""
        start = self.pos
        first = self.peek()
        if first and first.isdecimal():
            while self.peek() and self.peek().isdecimal():
                self.pos += 1
            return self.text[start : self.pos]
        if first in _SPECIAL_PARAMS and first:
            self.pos += 1
            return first
        while True:
            ch = self.peek()
            if not ch or not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            self.pos += 1
        return self.text[start : self.pos]

    def process_dollar(self) -> str:
        self.next()  # the '$'
        if self.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if self.skip_unset else ""
            return value
        self.next()  # the '{'
        first = self.peek()
        if first == "":
            raise self.fail("syntax error: missing '}'")
        if first in "{}:":
            raise self.fail("syntax error: bad substitution")
        name = self.process_name()
        ch = self.next()
        if ch == "}":
            value = self.lookup(name)
            if value is None:
                return f"${{{name}}}" if self.skip_unset else ""
            return value
        if ch in ("+", "-", "?", "#", "%", ":"):
            return self.process_modifier(name, ch)
        if ch == "/":
            return self.process_replace(name)
        raise self.fail(f"unsupported modifier ({ch}) in substitution" if ch else "syntax error: missing '}'")

    def process_modifier(self, name: str, ch: str) -> str:
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            modifier += ch
        pattern_mode = ch in ("#", "%")
        if null_is_unset and pattern_mode:
            raise self.fail(f"unsupported modifier ({modifier}) in substitution")
        word = self.process_nested("}", raw_escapes=pattern_mode, missing="syntax error: missing '}'")
        value = self.lookup(name)
        if value is None and self.skip_unset:
            return f"${{{name}{modifier}{word}}}"
        if ch == "-":
            return word if value is None or (null_is_unset and value == "") else value
        if ch == "+":
            return "" if value is None or (null_is_unset and value == "") else word
        if ch == "?":
            if value is None:
                raise self.fail(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise self.fail(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if ch in ("#", "%"):
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            if ch == "%":
                return self.trim_suffix(word, value or "", greedy)
            return self.trim_prefix(word, value or "", greedy)
        raise self.fail(f"unsupported modifier ({modifier}) in substitution")

    def process_nested(self, stop: str, *, raw_escapes: bool, missing: str) -> str:
        try:
            word, _ = self.process_until(stop, raw_escapes)
        except ExpansionError:
            if self.pos >= len(self.text):
                raise self.fail(missing) from None
            raise
        return word

    def process_replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        pattern = self.process_nested("/", raw_escapes=True, missing="syntax error: missing '/' in ${}")
        replacement = self.process_nested("}", raw_escapes=True, missing="syntax error: missing '}'")
        value = self.lookup(name)
        if value is None and self.skip_unset:
            return f"${{{name}/{pattern}/{replacement}}}"
        regex = self.pattern_regex(pattern, greedy=True, anchored=False)
        return regex.sub(lambda _m: replacement, value or "", count=0 if replace_all else 1)

    def pattern_regex(self, pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
        """A shell glob (``*``, ``?``, ``\\`` escapes; no brackets) as a regular expression."""
        out = ["^"] if anchored else []
        star = ".*" if greedy else ".*?"
        i = 0
        while i < len(pattern):
            tok = pattern[i]
            i += 1
            if tok == "*":
                out.append(star)
            elif tok == "?":
                out.append(".")
            elif tok == "\\":
                following = pattern[i] if i < len(pattern) else ""
                if following in ("}", "/"):
                    continue  # the escape only protected the ${} syntax; the char follows as a literal
                i += 1
                if following not in ("*", "?", "\\"):
                    raise self.fail(
                        f"invalid pattern ({pattern}) in substitution: invalid escape '\\{following}'"
                    )
                out.append(re.escape(following))
            else:
                out.append(re.escape(tok))
        return re.compile("".join(out))

    def trim_prefix(self, pattern: str, value: str, greedy: bool) -> str:
        match = self.pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
        return value[match.end() :] if match else value

    def trim_suffix(self, pattern: str, value: str, greedy: bool) -> str:
        # The shortest rightmost match is found as the shortest leftmost match of the reversed
        # pattern (escapes kept in front of what they escape) in the reversed value.
        return self.trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def _reverse_pattern(pattern: str) -> str:
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i : i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _check_escape(escape: str) -> None:
    if escape not in ("\\", "`"):
        raise ValueError(f"escape must be '\\' or '`', not {escape!r}")


def expand_word_tracked(text: str, env: Mapping[str, str], *, escape: str = "\\") -> Expansion:
    """Expand ``text`` as one word (no field splitting) and report the variables it referenced."""
    _check_escape(escape)
    lexer = _Lexer(text, env, escape=escape)
    value, _ = lexer.run()
    return Expansion(value=value, used=frozenset(lexer.used), unset=frozenset(lexer.unset))


def expand_word(text: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """Expand ``text`` as one word: quotes removed, escapes applied, variables substituted."""
    return expand_word_tracked(text, env, escape=escape).value


def expand_words(text: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """Expand ``text`` in multi-word mode: like ``expand_word``, then shell field splitting.

    Unquoted blanks separate words, an unquoted expansion is split on blanks, a quoted one is not.
    """
    _check_escape(escape)
    _, words = _Lexer(text, env, escape=escape).run()
    return words


def expand_heredoc_tracked(text: str, env: Mapping[str, str]) -> Expansion:
    """Expand a heredoc body (delimiter unquoted) the way BuildKit does: ``$VAR``/``${...}`` are
    substituted and ``\\`` escapes apply, but quotes are ordinary characters of the script."""
    lexer = _Lexer(text, env, escape="\\", process_quotes=False)
    value, _ = lexer.run()
    return Expansion(value=value, used=frozenset(lexer.used), unset=frozenset(lexer.unset))


def expand_heredoc(text: str, env: Mapping[str, str]) -> str:
    """``expand_heredoc_tracked(text, env).value``."""
    return expand_heredoc_tracked(text, env).value


def remove_quotes(text: str, *, escape: str = "\\") -> str:
    """Quote removal and escape processing only: ``$`` stays literal (heredoc-disabled contexts)."""
    _check_escape(escape)
    value, _ = _Lexer(text, {}, escape=escape, expand=False).run()
    return value


def split_raw_words(text: str, *, escape: str = "\\") -> list[str]:
    """Split ``text`` into shell words keeping quotes, escapes and unset variables as written.

    This is the view BuildKit's parser uses to find heredoc markers (``<<EOF``) on a line.
    Raises ExpansionError on an unterminated quote or a bad ``${``.
    """
    lexer = _Lexer(
        text, {}, escape=escape, raw_quotes=True, raw_escapes=True, skip_unset=True, heredoc_markers=True
    )
    _, words = lexer.run()
    return words


def heredoc_words(text: str) -> tuple[list[str], list[str]]:
    """The words of a heredoc delimiter with quotes removed, and with quotes kept (both unexpanded).

    BuildKit decides whether a heredoc body is expanded by comparing the quote counts of the two.
    """
    _, plain = _Lexer(text, {}, escape="\\", skip_unset=True).run()
    _, raw = _Lexer(text, {}, escape="\\", raw_quotes=True, skip_unset=True).run()
    return plain, raw
