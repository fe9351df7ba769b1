"""Property test: on any Dockerfile the parser accepts, the checks never crash, every finding points
at a real line, and findings come out sorted and free of duplicates."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forklift.dockerfile.checks import CheckOptions, run_checks
from forklift.dockerfile.syntax import parse
from forklift.errors import ForkliftError

WORDS = st.sampled_from(
    ["a", "b", "builder", "Builder", "/", "/app", "app", "$X", "${Y:-z}", "${", "'q'", '"d d"', "0", "1",
     "--from=builder", "--from=0", "--chown=1:1", "target/debug/x", "node_modules", "gcc", "-R", "x=y"]
)  # fmt: skip
KEYWORDS = st.sampled_from(
    ["FROM", "from", "RUN", "COPY", "ADD", "ENV", "ARG", "LABEL", "WORKDIR", "EXPOSE", "CMD", "ENTRYPOINT",
     "USER", "VOLUME", "SHELL", "HEALTHCHECK", "ONBUILD", "MAINTAINER", "STOPSIGNAL", "Run"]
)  # fmt: skip
RUN_TEXTS = st.sampled_from(
    ["apt-get install -y gcc", "dnf clean all", "chown -R a /app", "rm -rf /var/lib/apt/lists/*",
     "echo $X", "npm ci", "gcc -O0 x.c", 'echo "unterminated', "a && b || c; d | e", "<<EOF\necho $X\nEOF"]
)  # fmt: skip


@st.composite
def dockerfiles(draw: st.DrawFn) -> str:
    lines: list[str] = []
    if draw(st.booleans()):
        directives = ["# check=error=true", "# check=skip=all", "# check=experimental=all"]
        lines.append(draw(st.sampled_from(directives)))
    for _ in range(draw(st.integers(0, 2))):
        lines.append("ARG " + draw(st.sampled_from(["X=1", "Y", "IMG=alpine", "TOKEN=t"])))
    lines.append("FROM alpine AS builder")
    for _ in range(draw(st.integers(1, 12))):
        keyword = draw(KEYWORDS)
        if keyword.upper() == "RUN":
            lines.append(f"{keyword} {draw(RUN_TEXTS)}")
        else:
            words = draw(st.lists(WORDS, min_size=1, max_size=4))
            lines.append(f"{keyword} {' '.join(words)}")
    return "\n".join(lines) + "\n"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=dockerfiles(), targets=st.sampled_from([(), ("builder",)]))
def test_checks_never_crash_and_point_at_real_lines(text: str, targets: tuple[str, ...]) -> None:
    try:
        parsed = parse(text, file="Dockerfile")
    except ForkliftError:
        return
    try:
        report = run_checks(parsed, CheckOptions(targets=targets, build_args={"X": "2"}))
    except ForkliftError:
        return  # a user error (bad check directive, unknown target) is reported, not a crash
    keys = [(f.line, f.rule, f.message) for f in report.findings]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    for finding in report.findings:
        assert 1 <= finding.line <= len(parsed.source_lines), finding.render()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=dockerfiles())
def test_error_true_changes_only_severity_and_skip_all_silences(text: str) -> None:
    try:
        parsed = parse(text, file="Dockerfile")
        plain = run_checks(parsed, CheckOptions(build_args={"BUILDKIT_DOCKERFILE_CHECK": ""}))
    except ForkliftError:
        return
    strict = run_checks(parsed, CheckOptions(build_args={"BUILDKIT_DOCKERFILE_CHECK": "error=true"}))
    silent = run_checks(parsed, CheckOptions(build_args={"BUILDKIT_DOCKERFILE_CHECK": "skip=all"}))
    assert [(f.rule, f.line, f.message) for f in strict.findings] == [
        (f.rule, f.line, f.message) for f in plain.findings
    ]
    assert all(f.severity == "error" for f in strict.findings)
    assert strict.failed == bool(plain.findings)
    assert all(f.severity == "warning" for f in plain.findings)
    assert silent.findings == ()
