"""Issue 8's acceptance test: a classic multi-stage Dockerfile with three mistakes gives exactly
those three findings, each on its line."""

from __future__ import annotations

from forklift.dockerfile.checks import run_checks
from forklift.dockerfile.syntax import parse

CLASSIC = """\
# Build the service, then copy it into a small runtime image.
FROM rust:1.80 as builder
WORKDIR /usr/src/app
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build

FROM fedora:40
RUN dnf install -y openssl-devel && dnf clean all
COPY --from=builder /usr/src/app/target/debug/app /usr/local/bin/app
EXPOSE 8080
CMD ["app"]
"""


def test_classic_multistage_mistakes_give_exactly_three_findings() -> None:
    report = run_checks(parse(CLASSIC, file="Dockerfile"))
    got = [(f.rule, f.line, f.severity, f.file) for f in report.findings]
    assert got == [
        ("FromAsCasing", 2, "warning", "Dockerfile"),
        ("ToolchainInFinalStage", 9, "warning", "Dockerfile"),
        ("DebugArtifactInFinalStage", 10, "warning", "Dockerfile"),
    ]
    assert not report.failed
    by_rule = {f.rule: f for f in report.findings}
    assert "openssl-devel" in by_rule["ToolchainInFinalStage"].message
    assert "target/debug/app" in by_rule["DebugArtifactInFinalStage"].message
    assert by_rule["FromAsCasing"].doc == "docs/checks/FromAsCasing.md"


def test_the_same_file_fixed_is_clean() -> None:
    fixed = (
        CLASSIC.replace(" as builder", " AS builder")
        .replace("openssl-devel", "openssl-libs")
        .replace("cargo build", "cargo build --release")
        .replace("target/debug", "target/release")
    )
    assert run_checks(parse(fixed, file="Dockerfile")).findings == ()
