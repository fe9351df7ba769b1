"""The check framework: findings, rules as plain data, the ``# check=`` directive, and running rules.

A rule is a name, a one-line description, a flag saying whether it is experimental, and a pure
function from a ``CheckInput`` to ``Hit``s (line + message). The runner turns hits into ``Finding``s
with the rule name, the file, the severity chosen by the check configuration and the doc page.

The configuration follows BuildKit: ``# check=skip=A,B;error=true;experimental=C`` (or the
``BUILDKIT_DOCKERFILE_CHECK`` build argument, which replaces the directive). ``skip=all`` skips every
rule that is not experimental; experimental rules run only when named in ``experimental=`` (or
``experimental=all``). ``error=true`` turns every finding into an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import field
from typing import Literal, Protocol

from forklift.dockerfile.checks.facts import DockerfileFacts
from forklift.dockerfile.syntax import ParsedDockerfile
from forklift.errors import DockerfileSyntaxError, SourceLocation
from forklift.records import record

Severity = Literal["warning", "error"]

# The build argument that replaces the ``# check=`` directive (as in BuildKit).
CHECK_BUILD_ARG = "BUILDKIT_DOCKERFILE_CHECK"


@record
class Finding:
    """One problem a rule found: what, where, how bad, and where to read about it."""

    rule: str  # PascalCase rule name, e.g. "FromAsCasing"
    message: str  # one line
    file: str
    line: int  # 1-based
    severity: Severity
    doc: str  # path of the rule's page, e.g. "docs/checks/FromAsCasing.md"

    def render(self) -> str:
        """``file:line: severity: Rule: message (see doc)``, the text output of ``forklift check``."""
        return f"{self.file}:{self.line}: {self.severity}: {self.rule}: {self.message} (see {self.doc})"

    def to_json(self) -> dict[str, str | int]:
        """The finding as a JSON object (``rule``, ``message``, ``line``, ``severity``, ``file``, ``doc``)."""
        return {
            "rule": self.rule,
            "message": self.message,
            "line": self.line,
            "severity": self.severity,
            "file": self.file,
            "doc": self.doc,
        }


@record
class Hit:
    """What a rule function yields: the line and the message; the runner adds the rest."""

    line: int
    message: str


class IgnoreMatcher(Protocol):
    """What CopyIgnoredFile needs from a parsed ``.dockerignore`` (``dockerfile.ignore.DockerIgnore``)."""

    def matches(self, path: str) -> bool: ...


@record(kw_only=True)
class CheckOptions:
    """Everything the checks may know besides the Dockerfile. No build, no network: plain values."""

    build_args: Mapping[str, str] = field(default_factory=dict)  # --build-arg K=V
    targets: tuple[str, ...] = ()  # --target names; empty means the last stage
    dockerignore: IgnoreMatcher | None = None  # the context's .dockerignore, for CopyIgnoredFile
    # For InvalidBaseImagePlatform: the platform each base image was resolved with ("linux/arm64"),
    # keyed by the image reference as written after ARG expansion, and the build's target platform.
    base_image_platforms: Mapping[str, str] = field(default_factory=dict)
    target_platform: str | None = None


@record
class CheckInput:
    """What every rule function receives: the parsed file, derived stage facts, and the options."""

    parsed: ParsedDockerfile
    facts: DockerfileFacts
    options: CheckOptions


RuleCheck = Callable[[CheckInput], Iterable[Hit]]


@record
class Rule:
    """A build check as plain data."""

    name: str
    description: str  # one line: what the rule means
    check: RuleCheck
    experimental: bool = False  # runs only when enabled with ``experimental=<name>|all``

    @property
    def doc(self) -> str:
        """The path of the rule's documentation page."""
        return f"docs/checks/{self.name}.md"


@record
class CheckConfig:
    """The parsed ``# check=`` value."""

    skip_all: bool = False
    skip: frozenset[str] = frozenset()
    error: bool = False
    experimental_all: bool = False
    experimental: frozenset[str] = frozenset()

    def enabled(self, rule: Rule) -> bool:
        """Whether ``rule`` runs under this configuration (BuildKit's rules for skip/experimental)."""
        if rule.experimental:
            return self.experimental_all or rule.name in self.experimental
        return not (self.skip_all or rule.name in self.skip)


def _parse_bool(value: str) -> bool | None:
    # Go's strconv.ParseBool spellings, which BuildKit accepts.
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _names(value: str) -> tuple[bool, frozenset[str]]:
    names = frozenset(n.strip() for n in value.split(",") if n.strip())
    return ("all" in names, names - {"all"})


def parse_check_config(value: str | None, *, location: SourceLocation | None = None) -> CheckConfig:
    """Parse ``skip=A,B;error=true;experimental=C``. An unknown key or a bad boolean is an error.

    Keys ignore case, as BuildKit's do; rule names do not (they are case-sensitive PascalCase).
    """
    if value is None or not value.strip():
        return CheckConfig()
    skip_all, skip, error = False, frozenset[str](), False
    exp_all, exp = False, frozenset[str]()
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        key, val = key.strip().lower(), val.strip()
        if not sep:
            raise DockerfileSyntaxError(
                f"invalid check option {part!r}: expected key=value", location=location
            )
        if key == "skip":
            skip_all, skip = _names(val)
        elif key == "error":
            parsed = _parse_bool(val)
            if parsed is None:
                raise DockerfileSyntaxError(
                    f"invalid check option error={val!r}: expected true or false", location=location
                )
            error = parsed
        elif key == "experimental":
            exp_all, exp = _names(val)
        else:
            raise DockerfileSyntaxError(
                f"invalid check option {key!r}",
                location=location,
                hint="the keys are skip, error and experimental, separated by ';'",
            )
    return CheckConfig(skip_all=skip_all, skip=skip, error=error, experimental_all=exp_all, experimental=exp)


def check_config_for(parsed: ParsedDockerfile, options: CheckOptions) -> CheckConfig:
    """The configuration in effect: the ``BUILDKIT_DOCKERFILE_CHECK`` build arg, else the directive."""
    override = options.build_args.get(CHECK_BUILD_ARG)
    if override is not None:
        return parse_check_config(override)
    raw = parsed.directives.check
    line = parsed.directives.lines.get("check", 1)
    location = SourceLocation(parsed.file, line, text=parsed.line_text(line))
    return parse_check_config(raw, location=location)


def run_rules(rules: Iterable[Rule], data: CheckInput, config: CheckConfig) -> tuple[Finding, ...]:
    """Run the enabled ``rules`` and return their findings sorted by line, then rule name."""
    severity: Severity = "error" if config.error else "warning"
    found: list[Finding] = []
    for rule in rules:
        if not config.enabled(rule):
            continue
        found.extend(
            Finding(
                rule=rule.name,
                message=hit.message,
                file=data.parsed.file,
                line=hit.line,
                severity=severity,
                doc=rule.doc,
            )
            for hit in _dedupe(rule.check(data))
        )
    found.sort(key=lambda f: (f.line, f.rule, f.message))
    return tuple(found)


def _dedupe(hits: Iterable[Hit]) -> Iterator[Hit]:
    # A rule may reach the same instruction twice (a stage shared by two targets); report it once.
    seen: set[Hit] = set()
    for hit in hits:
        if hit not in seen:
            seen.add(hit)
            yield hit
