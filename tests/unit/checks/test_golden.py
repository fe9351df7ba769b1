"""Golden Dockerfiles: for every rule, bad.Dockerfile must trigger it on the expected lines and
good.Dockerfile must come out clean (no finding of any rule)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from forklift.dockerfile.checks import RULES, CheckOptions, Finding, run_checks
from forklift.dockerfile.ignore import parse_dockerignore
from forklift.dockerfile.syntax import parse

GOLDEN = Path(__file__).parent / "golden"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "checks"
RULE_NAMES = sorted(rule.name for rule in RULES)


def options_for(expected: dict[str, Any]) -> CheckOptions:
    raw = expected.get("options", {})
    return CheckOptions(
        build_args=raw.get("build_args", {}),
        targets=tuple(raw.get("targets", ())),
        dockerignore=parse_dockerignore(raw["dockerignore"]) if "dockerignore" in raw else None,
        base_image_platforms=raw.get("base_image_platforms", {}),
        target_platform=raw.get("target_platform"),
    )


def findings(rule: str, which: str) -> tuple[Finding, ...]:
    directory = GOLDEN / rule
    expected = json.loads((directory / "expected.json").read_text())
    path = directory / f"{which}.Dockerfile"
    parsed = parse(path.read_text(), file=path.name)
    return run_checks(parsed, options_for(expected)).findings


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_bad_example_triggers_the_rule_on_the_expected_lines(rule: str) -> None:
    expected = json.loads((GOLDEN / rule / "expected.json").read_text())
    lines = [f.line for f in findings(rule, "bad") if f.rule == rule]
    assert lines == expected["lines"]


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_good_example_is_clean(rule: str) -> None:
    assert [f.render() for f in findings(rule, "good")] == []


def test_every_rule_has_a_golden_directory_and_nothing_else_does() -> None:
    assert sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()) == RULE_NAMES


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_every_rule_has_a_doc_page_with_its_examples(rule: str) -> None:
    page = (DOCS / f"{rule}.md").read_text()
    assert page.startswith(f"# {rule}\n")
    assert (GOLDEN / rule / "bad.Dockerfile").read_text().strip() in page
    assert (GOLDEN / rule / "good.Dockerfile").read_text().strip() in page
