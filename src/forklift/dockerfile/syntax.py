"""Dockerfile text -> ``Node``s: directives, continuations, comments, heredocs, JSON vs shell form.

Pure: no I/O. Arguments are shaped exactly as BuildKit's parser shapes them (see
../shared/conformance/README.md), so ``dump`` reproduces BuildKit's AST dump.
"""

from __future__ import annotations

import json
import re
from dataclasses import field, replace

from forklift.dockerfile.words import GO_SPACES, heredoc_words, split_raw_words
from forklift.errors import DockerfileSyntaxError, ExpansionError, SourceLocation
from forklift.records import record


@record
class Heredoc:
    """One heredoc body attached to an instruction (``<<EOF`` ... ``EOF``)."""

    name: str  # the delimiter word, quotes removed
    content: str  # the body, ending with a newline when the source had one
    expand: bool  # False when the delimiter was quoted ('EOF' or "EOF"): no variable expansion
    chomp: bool  # True for ``<<-``: leading tabs were stripped from the body
    fd: int = 0  # the file descriptor of ``N<<EOF`` (0 when not given)


@record
class Node:
    """One instruction as written, before typing."""

    keyword: str  # lower-cased instruction keyword: "run", "from", ...
    keyword_text: str  # the keyword as written (for the casing checks)
    args: tuple[str, ...]  # arguments shaped as BuildKit's AST (ENV/LABEL: key, value, sep triples)
    flags: tuple[str, ...] = ()  # raw leading ``--name=value`` tokens
    json_form: bool = False  # the arguments came from a JSON array (exec form)
    heredocs: tuple[Heredoc, ...] = ()
    inner: Node | None = None  # the nested instruction of ONBUILD
    start_line: int = 0  # 1-based, first line of the instruction
    end_line: int = 0  # 1-based, last line (heredoc bodies included)
    original: str = ""  # the instruction's text with continuations joined (for history and errors)


@record
class Directives:
    """The parser directives from the leading comment block."""

    escape: str = "\\"
    syntax: str | None = None
    check: str | None = None  # raw value of ``# check=...``
    lines: dict[str, int] = field(default_factory=dict)  # directive name -> line it was on


@record
class ParseWarning:
    """A non-fatal finding of the parser (an empty continuation line)."""

    message: str
    line: int  # the (first) offending line: for an empty continuation, the first empty line
    end_line: int = 0  # the last line of the instruction (where BuildKit reports its warning)


@record
class ParsedDockerfile:
    """The whole file: its nodes, directives, warnings, and its source lines for error display."""

    file: str
    nodes: tuple[Node, ...]
    directives: Directives
    warnings: tuple[ParseWarning, ...]
    source_lines: tuple[str, ...]  # physical lines, BOM removed, without line endings

    def line_text(self, line: int) -> str | None:
        """The physical source line ``line`` (1-based), or None when out of range."""
        return self.source_lines[line - 1] if 0 < line <= len(self.source_lines) else None


MAX_LINE_BYTES = 65535  # BuildKit reads lines with a 64 KiB scanner buffer
VALID_DIRECTIVES = ("syntax", "escape", "check")
HEREDOC_KEYWORDS = frozenset({"run", "copy", "add"})

_DIRECTIVE_RE = re.compile(r"^#[ \t\n\f\r]*([a-zA-Z][a-zA-Z0-9]*)[ \t\n\f\r]*=[ \t\n\f\r]*(.+?)[ \t\n\f\r]*$")
_WHITESPACE_RE = re.compile(r"[\t\v\f\r ]+")  # Go's reWhitespace: argument and keyword separator
_HEREDOC_RE = re.compile(r"^([0-9]*)<<(-?)[ \t\n\f\r]*([^<]*)$")
_NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"


def _lstrip_space(text: str) -> str:
    i = 0
    while i < len(text) and text[i] in GO_SPACES:
        i += 1
    return text[i:]


def _strip_space(text: str) -> str:
    end = len(text)
    while end > 0 and text[end - 1] in GO_SPACES:
        end -= 1
    return _lstrip_space(text[:end])


def _continuation_re(escape: str) -> re.Pattern[str]:
    # The escape char as the last non-blank character continues the line, unless it is itself
    # escaped (a doubled escape); a line holding only the escape char also continues.
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*$|^{e}[ \t]*$")


class _Directives:
    """Mutable directive state while reading the leading block."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.escape = "\\"
        self.values: dict[str, str] = {}
        self.lines: dict[str, int] = {}
        self.done = False
        self.continuation = _continuation_re(self.escape)

    def consider(self, line: str, lineno: int, raw: str) -> None:
        """Record ``line`` if it is a directive of the leading block; otherwise end the block."""
        if self.done:
            return
        match = _DIRECTIVE_RE.match(line)
        if match is None:
            self.done = True
            return
        key = match.group(1).lower()
        if key not in VALID_DIRECTIVES:
            self.done = True
            return
        value = match.group(2)
        location = SourceLocation(self.file, lineno, 1, text=raw)
        if key in self.values:
            raise DockerfileSyntaxError(
                f"only one {key} parser directive can be used",
                location=location,
                hint=f"the first one is on line {self.lines[key]}",
            )
        if key == "escape":
            if value not in ("\\", "`"):
                raise DockerfileSyntaxError(
                    f"invalid escape token '{value}' does not match ` or \\", location=location
                )
            self.escape = value
            self.continuation = _continuation_re(value)
        self.values[key] = value
        self.lines[key] = lineno

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """``line`` without its continuation char, and whether the instruction ends here."""
        if self.continuation.search(line):
            return self.continuation.sub(r"\1", line, count=1), False
        return line, True

    def freeze(self) -> Directives:
        return Directives(
            escape=self.escape,
            syntax=self.values.get("syntax"),
            check=self.values.get("check"),
            lines=dict(self.lines),
        )


@record
class _Shaped:
    """The arguments of one instruction as the dispatch table shapes them."""

    args: tuple[str, ...]
    json_form: bool = False
    inner: Node | None = None


class _LineError(Exception):
    """A parse error inside one instruction; the caller attaches the location."""

    def __init__(self, message: str, hint: str | None = None, needle: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.needle = needle  # text to point the caret at, when it is on the first line


def _split_whitespace(rest: str) -> tuple[str, ...]:
    if rest == "":
        return ()
    return tuple(_WHITESPACE_RE.split(rest))


def _parse_json_array(rest: str) -> tuple[str, ...] | None:
    """The strings of a JSON array, or None when ``rest`` is not a JSON array (shell form)."""
    rest = _lstrip_space(rest)
    if not rest.startswith("["):
        return None

    def reject_constant(name: str) -> object:
        raise ValueError(name)  # NaN / Infinity are not JSON in Go

    try:
        value = json.loads(rest, parse_constant=reject_constant)
    except (ValueError, RecursionError):
        return None  # not JSON (Go also refuses nesting this deep): shell form
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise _LineError(_NOT_STRING_ARRAY, hint='write every element as a "string"', needle="[")
    return tuple(value)


def _parse_maybe_json(rest: str) -> _Shaped:
    if rest == "":
        return _Shaped(())
    items = _parse_json_array(rest)
    if items is not None:
        return _Shaped(items, json_form=True)
    return _Shaped((rest,))


def _parse_maybe_json_to_list(rest: str) -> _Shaped:
    items = _parse_json_array(rest)
    if items is not None:
        return _Shaped(items, json_form=True)
    return _Shaped(_split_whitespace(rest))


def _parse_health(rest: str) -> _Shaped:
    sep = 0
    while sep < len(rest) and rest[sep] not in GO_SPACES:
        sep += 1
    if sep == 0:
        return _Shaped(())
    following = sep
    while following < len(rest) and rest[following] in GO_SPACES:
        following += 1
    command = _parse_maybe_json(rest[following:])
    return _Shaped((rest[:sep], *command.args), json_form=command.json_form)


def parse_words(rest: str, escape: str) -> list[str]:
    """BuildKit's quote-aware word splitter for ENV/LABEL/ARG: quotes and escapes stay in the word."""
    words: list[str] = []
    word = ""
    in_word = False  # else between words
    quote = ""
    blank_ok = False
    i = 0
    n = len(rest)
    while True:
        if not in_word and not quote:
            while i < n and rest[i] in GO_SPACES:
                i += 1
            if i == n:
                break
            in_word = True
        if i == n:
            if blank_ok or word:
                words.append(word)
            break
        ch = rest[i]
        if not quote:
            if ch in GO_SPACES:
                if blank_ok or word:
                    words.append(word)
                word, blank_ok, in_word = "", False, False
                i += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
            elif ch == escape:
                if i + 1 == n:
                    i += 1  # an escape at the end of the line is dropped
                    continue
                word += ch
                i += 1
                ch = rest[i]
            word += ch
            i += 1
            continue
        # inside quotes
        if ch == quote:
            quote = ""
            in_word = True
        elif ch == escape and quote != "'":
            if i + 1 == n:
                quote = ""
                in_word = True
                i += 1
                continue
            word += ch
            i += 1
            ch = rest[i]
        word += ch
        i += 1
    return words


def _parse_name_val(rest: str, keyword: str, escape: str) -> _Shaped:
    words = parse_words(rest, escape)
    if not words:
        return _Shaped(())
    if "=" not in words[0]:
        # Legacy form ``ENV key value``: the value is the raw rest of the line.
        parts = _WHITESPACE_RE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _LineError(
                f"{keyword} must have two arguments",
                hint=f"write {keyword} {parts[0]}=<value>",
                needle=parts[0],
            )
        return _Shaped((parts[0], parts[1], ""))
    args: list[str] = []
    for word in words:
        if "=" not in word:
            raise _LineError(
                f"Syntax error - can't find = in {word!r}. Must be of the form: name=value",
                needle=word,
            )
        key, value = word.split("=", 1)
        args.extend((key, value, "="))
    return _Shaped(tuple(args))


def _parse_name_or_name_val(rest: str, escape: str) -> _Shaped:
    return _Shaped(tuple(parse_words(rest, escape)))


def _parse_string(rest: str) -> _Shaped:
    return _Shaped((rest,) if rest else ())


def extract_flags(line: str) -> tuple[str, tuple[str, ...]]:
    """Split the leading ``--flag`` words off ``line``: (the rest, the flags with quotes removed).

    A bare ``--`` ends the flags and is dropped. Quotes and backslash escapes inside flag words
    are processed, so ``--from="a b"`` gives ``--from=a b``.
    """
    flags: list[str] = []
    i = 0
    n = len(line)
    while True:
        while i < n and line[i] in GO_SPACES:
            i += 1
        if i == n:
            return "", tuple(flags)
        if not line.startswith("--", i):
            return line[i:], tuple(flags)
        word = ""
        quote = ""
        blank_ok = False
        while i < n:
            ch = line[i]
            if quote:
                if ch == quote:
                    quote = ""
                    i += 1
                    continue
                if ch == "\\":
                    if i + 1 == n:
                        quote = ""
                        i += 1
                        continue
                    i += 1
                    ch = line[i]
                word += ch
                i += 1
                continue
            if ch in GO_SPACES:
                break
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                i += 1
                continue
            if ch == "\\":
                if i + 1 == n:
                    i += 1
                    continue
                i += 1
                ch = line[i]
            word += ch
            i += 1
        if word == "--":
            return _lstrip_space(line[i:]), tuple(flags)
        if blank_ok or word:
            flags.append(word)


def _shape(keyword: str, rest: str, escape: str) -> _Shaped:
    if keyword in ("from", "expose"):
        return _Shaped(_split_whitespace(rest))
    if keyword in ("add", "copy", "volume"):
        return _parse_maybe_json_to_list(rest)
    if keyword in ("run", "cmd", "entrypoint", "shell"):
        return _parse_maybe_json(rest)
    if keyword == "healthcheck":
        return _parse_health(rest)
    if keyword in ("env", "label"):
        return _parse_name_val(rest, keyword.upper(), escape)
    if keyword == "arg":
        return _parse_name_or_name_val(rest, escape)
    if keyword in ("maintainer", "user", "workdir", "stopsignal"):
        return _parse_string(rest)
    if keyword == "onbuild":
        if rest == "":
            return _Shaped(())
        return _Shaped((), inner=_node_from_line(rest, escape))
    return _Shaped(("",))  # unknown keyword: kept, rejected by the typed layer


def _node_from_line(line: str, escape: str) -> Node:
    """One logical line (continuations joined) -> its Node, without line numbers."""
    parts = _WHITESPACE_RE.split(_strip_space(line), maxsplit=1)
    keyword_text = parts[0]
    keyword = keyword_text.lower()
    rest, flags = extract_flags(parts[1]) if len(parts) == 2 else ("", ())
    shaped = _shape(keyword, _strip_space(rest), escape)
    return Node(
        keyword=keyword,
        keyword_text=keyword_text,
        args=shaped.args,
        flags=flags,
        json_form=shaped.json_form,
        inner=shaped.inner,
        original=line,
    )


def _can_contain_heredoc(node: Node) -> bool:
    target = node.inner if node.keyword == "onbuild" and node.inner is not None else node
    return target.keyword in HEREDOC_KEYWORDS and not target.json_form


def _heredoc_from_word(word: str) -> tuple[str, int, bool, bool] | None:
    """(name, fd, expand, chomp) when ``word`` is a heredoc marker like ``<<EOF`` or ``3<<-'EOF'``."""
    match = _HEREDOC_RE.match(word)
    if match is None or match.group(3) == "":
        return None
    fd = int(match.group(1)) if match.group(1) else 0
    chomp = match.group(2) == "-"
    try:
        plain, raw = heredoc_words(match.group(3))
    except ExpansionError as exc:
        raise _LineError(f"invalid heredoc delimiter {word!r}: {exc.message}") from None
    if len(plain) != 1:
        return None
    if len(raw) != 1:
        raise _LineError(f"internal lexing of heredoc produced inconsistent results: {word}")

    # Quoting any part of the delimiter turns expansion off: the quote counts then differ.
    def quotes(text: str) -> int:
        return text.count("'") + text.count('"')

    return plain[0], fd, quotes(plain[0]) == quotes(raw[0]), chomp


def parse_heredoc_marker(word: str) -> Heredoc | None:
    """The heredoc a word like ``<<EOF``, ``<<-'EOF'`` or ``3<<EOF`` introduces (empty content), else None.

    For the typed layer: which COPY/ADD sources are heredocs (BuildKit's MustParseHeredoc).
    """
    try:
        marker = _heredoc_from_word(word)
    except _LineError:
        return None
    if marker is None:
        return None
    name, fd, expand, chomp = marker
    return Heredoc(name=name, content="", expand=expand, chomp=chomp, fd=fd)


def _heredoc_markers(line: str) -> list[tuple[str, int, bool, bool]]:
    try:
        words = split_raw_words(line)
    except ExpansionError:
        return []  # BuildKit ignores lexing errors here: the line simply has no heredocs
    markers = []
    for word in words:
        marker = _heredoc_from_word(word)
        if marker is not None:
            markers.append(marker)
    return markers


def _chomp(text: str) -> str:
    return re.sub(r"(?m)^\t+", "", text)


def parse(text: str, *, file: str = "Dockerfile") -> ParsedDockerfile:
    """Parse Dockerfile ``text`` into nodes, the way BuildKit's parser does.

    Raises DockerfileSyntaxError (with a SourceLocation into ``file``) for a bad directive, a
    JSON array with a non-string element, ``ENV`` without a value, an unterminated heredoc, a
    line over 64 KiB, or a file with no instructions.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    # Physical lines with their endings, split on "\n" only (like Go's scanner).
    raw_lines = text.split("\n")
    physical = [line + "\n" for line in raw_lines[:-1]]
    if raw_lines[-1]:
        physical.append(raw_lines[-1])
    source_lines = tuple(line.rstrip("\r\n") for line in physical)

    def location(lineno: int, end: int | None = None, needle: str | None = None) -> SourceLocation:
        # The caret goes under ``needle`` when the first line holds it, else under the keyword.
        line_text = source_lines[lineno - 1] if 0 < lineno <= len(source_lines) else None
        column = 1
        if line_text is not None:
            column = len(line_text) - len(_lstrip_space(line_text)) + 1
            if needle and needle in line_text[column - 1 :]:
                column = line_text.index(needle, column - 1) + 1
        return SourceLocation(file, lineno, column, end_line=end, text=line_text)

    for number, line in enumerate(source_lines, start=1):
        if len(line) > MAX_LINE_BYTES // 4 and len(line.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
            raise DockerfileSyntaxError(
                f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES}",
                location=SourceLocation(file, number, 1, text=line[:200]),
            )

    directives = _Directives(file)
    nodes: list[Node] = []
    warnings: list[ParseWarning] = []
    total = len(physical)
    index = 0  # next physical line to read (0-based); after reading, ``index`` is its 1-based number
    while index < total:
        content = source_lines[index]
        token = _lstrip_space(content)
        directives.consider(token, index + 1, content)
        if token.startswith("#"):
            token = ""
        index += 1
        start_line = index
        line, end_of_line = directives.trim_continuation(token)
        if end_of_line and line == "":
            continue
        empty_continuation: int | None = None  # the first empty line inside the continuation
        while not end_of_line and index < total:
            content = source_lines[index]
            directives.consider(content, index + 1, content)
            index += 1
            if _lstrip_space(content).startswith("#"):
                continue  # comments inside a continuation are dropped
            if _lstrip_space(content) == "":
                # Dropped, with a warning (BuildKit: this will become an error).
                if empty_continuation is None:
                    empty_continuation = index
                continue
            piece, end_of_line = directives.trim_continuation(content)
            line += piece
        if empty_continuation is not None:
            # BuildKit's message; BuildKit (and its NoEmptyContinuation check) reports it at the
            # instruction's last line, kept as end_line.
            warnings.append(
                ParseWarning(f"Empty continuation line found in: {line}", empty_continuation, index)
            )
        try:
            node = _node_from_line(line, directives.escape)
        except _LineError as exc:
            raise DockerfileSyntaxError(
                exc.message, location=location(start_line, index, exc.needle), hint=exc.hint
            ) from None

        if _can_contain_heredoc(node):
            try:
                markers = _heredoc_markers(line)
            except _LineError as exc:
                raise DockerfileSyntaxError(
                    exc.message, location=location(start_line, index, exc.needle), hint=exc.hint
                ) from None
            heredocs: list[Heredoc] = []
            for name, fd, expand, chomp in markers:
                body: list[str] = []
                terminated = False
                while index < total:
                    raw = physical[index]
                    index += 1
                    candidate = raw.rstrip("\r\n")
                    if chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == name:
                        terminated = True
                        break
                    body.append(raw)
                if not terminated:
                    raise DockerfileSyntaxError(
                        f"unterminated heredoc {name!r}: no line holds only {name!r}",
                        location=location(start_line, end=index),
                    )
                content_text = "".join(body)
                if chomp:
                    content_text = _chomp(content_text)
                heredocs.append(Heredoc(name=name, content=content_text, expand=expand, chomp=chomp, fd=fd))
            if heredocs:
                inner = node.inner
                if inner is not None:
                    inner = replace(inner, heredocs=tuple(heredocs))
                node = replace(node, heredocs=tuple(heredocs), inner=inner)
        nodes.append(replace(node, start_line=start_line, end_line=index))

    if not nodes:
        raise DockerfileSyntaxError(
            "file with no instructions",
            location=SourceLocation(file, max(index, 1), 1, text=source_lines[-1] if source_lines else ""),
            hint="a Dockerfile needs at least a FROM instruction",
        )
    return ParsedDockerfile(
        file=file,
        nodes=tuple(nodes),
        directives=directives.freeze(),
        warnings=tuple(warnings),
        source_lines=source_lines,
    )


def _go_quote(text: str) -> str:
    """Go's strconv.Quote: double quotes, C escapes, \\xNN / \\uNNNN for non-printables."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x7F:
            out.append(ch)
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")  # Go strings cannot hold lone surrogates
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif code > 0xFFFF:
            out.append(f"\\U{code:08x}")
        else:
            out.append(f"\\u{code:04x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def dump(node: Node) -> str:
    """One node in BuildKit's AST dump format, e.g. ``(copy ["--from=a"] "x" "/y")``.

    The keyword is lower-cased, flags are printed like Go's ``%q`` of a string slice, arguments
    are Go-quoted, and ONBUILD nests its instruction.
    """
    parts = [node.keyword.lower()]
    if node.flags:
        parts.append("[" + " ".join(_go_quote(flag) for flag in node.flags) + "]")
    if node.inner is not None:
        parts.append(dump(node.inner))
    parts.extend(_go_quote(arg) for arg in node.args)
    return "(" + " ".join(parts) + ")"
