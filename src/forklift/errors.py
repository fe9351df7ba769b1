"""The error root of forklift, and where an error happened.

Every error a user can cause is a ``ForkliftError``. The CLI renders it (location, the offending
line with a caret, and a hint) and exits with status 1; anything else is a bug and may show a
traceback.
"""

from __future__ import annotations

from forklift.records import record


@record
class SourceLocation:
    """A place in a source file. ``line`` and ``column`` are 1-based; ``end_line`` is inclusive."""

    file: str
    line: int
    column: int = 1
    end_line: int | None = None
    text: str | None = None  # the offending source line, shown under the message

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class ForkliftError(Exception):
    """A user-facing error: a message, optionally a location and a hint."""

    def __init__(
        self, message: str, *, location: SourceLocation | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def render(self) -> str:
        """The error as a person reads it: ``file:line:col: error: msg``, the line, a caret, a hint."""
        head = f"{self.location}: error: {self.message}" if self.location else f"error: {self.message}"
        parts = [head]
        loc = self.location
        if loc is not None and loc.text is not None:
            gutter = f"{loc.line:>5} | "
            parts.append(gutter + loc.text)
            parts.append(" " * (len(gutter) + max(loc.column - 1, 0)) + "^")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.render()


class DockerfileSyntaxError(ForkliftError):
    """The Dockerfile text cannot be read (bad directive, bad JSON, bad heredoc, ...)."""


class InstructionError(ForkliftError):
    """An instruction is well-formed text but invalid: unknown flag, bad value, bad arguments."""


class ExpansionError(ForkliftError):
    """Variable expansion failed (``${X:?msg}``, bad substitution, unterminated quote)."""


class PlanError(ForkliftError):
    """The stage graph is invalid: unknown stage, forward reference, cycle, bad target."""


class ImageError(ForkliftError):
    """An image, reference, layout or archive is missing or malformed."""


class DigestMismatch(ImageError):
    """Content does not match the digest (or size) it was promised under."""


class BuildError(ForkliftError):
    """A build step failed (a RUN exited non-zero, a COPY source is missing, ...)."""


class RuntimeNotFound(ForkliftError):
    """No working OCI runtime (runc or crun) was found."""


class RegistryError(ForkliftError):
    """A registry refused a request or served bad content."""


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """A ``did you mean X?`` hint for ``word`` among ``choices``, or None when nothing is close."""
    import difflib

    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean {lowered[match[0]]}?" if match else None
