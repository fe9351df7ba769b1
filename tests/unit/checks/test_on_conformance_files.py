"""The checks on BuildKit's parser test files (../shared/conformance): no crash, every finding on a
real line, and the known real-world findings."""

from __future__ import annotations

from pathlib import Path

from forklift.dockerfile.checks import run_checks
from forklift.dockerfile.syntax import parse
from forklift.errors import ForkliftError


def test_every_parsable_conformance_file_checks_cleanly(shared_dir: Path) -> None:
    files = sorted((shared_dir / "conformance" / "parser").glob("*/Dockerfile"))
    assert len(files) > 20
    checked = 0
    for path in files:
        try:
            parsed = parse(path.read_text(), file=str(path))
        except ForkliftError:
            continue
        for finding in run_checks(parsed).findings:
            assert 1 <= finding.line <= len(parsed.source_lines), finding.render()
            assert finding.severity == "warning"
        checked += 1
    assert checked > 20


def test_known_findings_in_conformance_files(shared_dir: Path) -> None:
    def rules_at(case: str) -> set[tuple[str, int]]:
        path = shared_dir / "conformance" / "parser" / case / "Dockerfile"
        return {(f.rule, f.line) for f in run_checks(parse(path.read_text(), file=case)).findings}

    # ADD etc /etc/nginx, then RUN chown -R root:root /etc/nginx on the next line.
    assert ("RecursiveChownAfterCopy", 7) in rules_at("nginx")
    assert ("LegacyKeyValueFormat", 2) in rules_at("nginx")
