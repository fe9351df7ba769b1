""".dockerignore: which context paths the build never sees.

Pure: no I/O. Semantics follow Docker (moby/patternmatcher + its ignorefile reader):

* one pattern per line; lines starting with ``#`` are comments; blanks around a pattern are trimmed;
* a pattern is cleaned like Go's ``filepath.Clean`` (``./a//b/`` -> ``a/b``) and a leading ``/``
  is dropped, so patterns are relative to the context root;
* ``*`` matches within one path component, ``?`` one character, ``[...]`` a character class,
  ``\\`` escapes; ``**`` matches any number of components (``**/x``, ``a/**``, ``a/**/b``);
* ``!pattern`` re-includes what an earlier pattern excluded; the last matching pattern wins;
* a pattern that matches a parent directory also matches everything under it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from enum import Enum

from forklift.errors import DockerfileSyntaxError, SourceLocation
from forklift.records import record

_REGEX_SPECIALS = frozenset(".+()|{}$^")  # escaped outside character classes


def clean_path(path: str) -> str:
    """Go's ``filepath.Clean`` for '/'-separated paths: '' -> '.', no '.', '..' resolved, no trailing '/'."""
    cleaned = posixpath.normpath(path) if path else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


class _Kind(Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    REGEX = "regex"


@record
class IgnorePattern:
    """One cleaned pattern line."""

    pattern: str  # cleaned, without the leading '!'
    exclusion: bool  # True for '!pattern' (re-includes)
    line: int  # 1-based line in .dockerignore
    kind: _Kind
    regex: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        """Whether this pattern matches exactly ``path`` (no parent-directory logic)."""
        if self.kind is _Kind.EXACT:
            return path == self.pattern
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.pattern[:-2])
        if self.kind is _Kind.SUFFIX:
            # Docker compares "**<rest>" (a plain rest) as a string suffix: "**/name" matches
            # "name" and ".../name", while "**name" also matches "xname". Kept for compatibility.
            suffix = self.pattern[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None

    def could_match_below(self, directory: str) -> bool:
        """Whether this pattern might match some path strictly inside ``directory`` (conservative)."""
        if "**" in self.pattern or "[" in self.pattern or "\\" in self.pattern:
            return True
        parts = self.pattern.split("/")
        dir_parts = directory.split("/")
        if len(parts) <= len(dir_parts):
            return False  # '*' and '?' never cross '/', so the pattern stops at or above the directory
        return all(_component_regex(p).fullmatch(d) for p, d in zip(parts, dir_parts, strict=False))


def _component_regex(component: str) -> re.Pattern[str]:
    out = []
    for ch in component:
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _compile(pattern: str) -> tuple[_Kind, re.Pattern[str] | None]:
    """Translate one cleaned pattern the way Docker does, remembering Docker's fast-path kinds."""
    regex = ["^"]
    kind = _Kind.EXACT
    in_class = False
    i = 0
    n = len(pattern)
    index = 0  # position counter of Docker's scanner loop (``**`` at 0 -> suffix match)
    while i < n:
        ch = pattern[i]
        i += 1
        if in_class:
            if ch == "]":
                in_class = False
                regex.append("]")
            elif ch == "\\" and i < n:
                regex.append(re.escape(pattern[i]))
                i += 1
            elif ch == "[":
                regex.append("\\[")
            else:
                regex.append(ch)
        elif ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1  # "**/" is treated as "**"
                if i == n:
                    if kind is _Kind.EXACT:
                        kind = _Kind.PREFIX
                    else:
                        regex.append(".*")
                        kind = _Kind.REGEX
                else:
                    regex.append("(.*/)?")
                    kind = _Kind.REGEX
                if index == 0:
                    kind = _Kind.SUFFIX
            else:
                regex.append("[^/]*")
                kind = _Kind.REGEX
        elif ch == "?":
            regex.append("[^/]")
            kind = _Kind.REGEX
        elif ch == "\\":
            if i < n:
                regex.append(re.escape(pattern[i]))
                i += 1
                kind = _Kind.REGEX
            else:
                raise ValueError("trailing backslash")
        elif ch == "[":
            in_class = True
            kind = _Kind.REGEX
            regex.append("[")
            if i < n and pattern[i] == "^":
                regex.append("^")  # negated class, as in filepath.Match
                i += 1
        elif ch == "]":
            regex.append("\\]")
            kind = _Kind.REGEX
        elif ch in _REGEX_SPECIALS:
            regex.append("\\" + ch)
        else:
            regex.append(re.escape(ch))
        index += 1
    if in_class:
        raise ValueError("unterminated character class")
    if kind is not _Kind.REGEX:
        return kind, None
    regex.append("$")
    return kind, re.compile("".join(regex))


@record
class DockerIgnore:
    """The parsed ``.dockerignore`` of a build context."""

    patterns: tuple[IgnorePattern, ...] = ()

    @property
    def has_exceptions(self) -> bool:
        """Whether any ``!`` pattern exists (then excluded directories may still hold included files)."""
        return any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """True when ``path`` (relative to the context, '/'-separated) is excluded from the context."""
        path = clean_path(path).lstrip("/")
        if path in ("", "."):
            return False  # the context root itself is never excluded
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        ancestors = ["/".join(parents[: i + 1]) for i in range(len(parents))]
        matched = False
        for pattern in self.patterns:
            # An include pattern can only change an unmatched path, an exception only a matched one.
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path) or any(pattern.match(a) for a in ancestors)
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_skip_dir(self, path: str) -> bool:
        """True when directory ``path`` is excluded and nothing under it can be re-included.

        A walker may then prune the whole directory. (If the directory is excluded, every path
        below it is excluded too unless some ``!`` pattern can match below it.)
        """
        if not self.matches(path):
            return False
        directory = clean_path(path).lstrip("/")
        return not any(p.exclusion and p.could_match_below(directory) for p in self.patterns)


def compile_patterns(patterns: Iterable[str]) -> DockerIgnore:
    """A matcher for a list of patterns, as moby/patternmatcher ``New`` builds one.

    Used for ``COPY/ADD --exclude`` and the ``COPY --parents`` source pattern, with the same
    semantics as ``.dockerignore`` (one matcher for all three): ``**`` spans any number of
    components (zero included), ``*`` and ``?`` stay inside one, ``[...]`` classes, a pattern that
    matches a directory matches everything below it, ``!`` re-includes. Patterns are cleaned and
    a leading ``/`` is dropped (paths are relative to the copy's source root). Blank patterns are
    skipped. A malformed pattern raises ValueError naming it.
    """
    compiled: list[IgnorePattern] = []
    for number, raw in enumerate(patterns, start=1):
        pattern = _pattern(raw, number)
        if pattern is not None:
            compiled.append(pattern)
    return DockerIgnore(tuple(compiled))


def _pattern(raw: str, number: int) -> IgnorePattern | None:
    """One pattern, cleaned (a leading ``/`` dropped) and compiled; None when blank.

    Raises ValueError for ``!`` alone or a malformed pattern (an unclosed ``[``).
    """
    line = raw.strip()
    if not line:
        return None
    exclusion = line.startswith("!")
    if exclusion:
        line = line[1:].strip()
        if not line:
            raise ValueError('illegal exclusion pattern: "!"')
    line = clean_path(line)
    if len(line) > 1 and line.startswith("/"):
        line = line[1:]
    try:
        kind, regex = _compile(line)
    except (ValueError, re.error) as exc:
        raise ValueError(f"invalid pattern {line!r}: {exc}") from None
    return IgnorePattern(line, exclusion, number, kind, regex)


def parse_dockerignore(text: str, *, file: str = ".dockerignore") -> DockerIgnore:
    """Parse ``.dockerignore`` text. A bad pattern (``!`` alone, an unclosed ``[``) is an error."""
    if text.startswith("\ufeff"):
        text = text[1:]
    patterns: list[IgnorePattern] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        if raw.startswith("#"):
            continue
        try:
            pattern = _pattern(raw, number)
        except ValueError as exc:
            location = SourceLocation(file, number, 1, text=raw.rstrip("\r"))
            raise DockerfileSyntaxError(str(exc), location=location) from None
        if pattern is not None:
            patterns.append(pattern)
    return DockerIgnore(tuple(patterns))
