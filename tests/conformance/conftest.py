"""Conformance suite bookkeeping: a per-family pass count in pytest's terminal summary."""

from __future__ import annotations

from collections import Counter

import pytest

# Test module basename -> vector family name shown in the summary.
FAMILIES = {
    "test_conformance_parser": "parser",
    "test_conformance_negative": "negative",
    "test_conformance_lines": "parser-lines",
    "test_conformance_envvar": "envVarTest",
    "test_conformance_words": "wordsTest",
}
_ORDER = list(FAMILIES.values())
_collected: Counter[str] = Counter()
_passed: Counter[str] = Counter()
_vector_ids: set[str] = set()


def _is_vector_case(item: pytest.Item, family: str) -> bool:
    return family == "parser-lines" or hasattr(item, "callspec")


def _family(nodeid: str) -> str | None:
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    return FAMILIES.get(module)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Count the vector cases themselves (parametrized), not the "all vectors present" checks.
    for item in items:
        family = _family(item.nodeid)
        if family is not None and _is_vector_case(item, family):
            _collected[family] += 1
            _vector_ids.add(item.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and report.nodeid in _vector_ids:
        family = _family(report.nodeid)
        if family is not None:
            _passed[family] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _collected:
        return
    counts = ", ".join(f"{f} {_passed[f]}/{_collected[f]}" for f in _ORDER if _collected[f])
    terminalreporter.write_line(f"conformance: {counts}")
