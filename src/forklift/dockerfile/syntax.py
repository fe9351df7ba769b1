"""Dockerfile text -> ``Node``s: directives, continuations, comments, heredocs, JSON vs shell form.

Pure: no I/O. Arguments are shaped exactly as BuildKit's parser shapes them (see
../shared/conformance/README.md), so ``dump`` reproduces BuildKit's AST dump.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heredoc:
    """One heredoc body attached to an instruction (``<<EOF`` ... ``EOF``)."""

    name: str  # the delimiter word, quotes removed
    content: str  # the body, ending with a newline when the source had one
    expand: bool  # False when the delimiter was quoted ('EOF' or "EOF"): no variable expansion
    chomp: bool  # True for ``<<-``: leading tabs were stripped from the body


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Directives:
    """The parser directives from the leading comment block."""

    escape: str = "\\"
    syntax: str | None = None
    check: str | None = None  # raw value of ``# check=...``
    lines: dict[str, int] = field(default_factory=dict)  # directive name -> line it was on


@dataclass(frozen=True)
class ParseWarning:
    """A non-fatal finding of the parser (an empty continuation line)."""

    message: str
    line: int


@dataclass(frozen=True)
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
