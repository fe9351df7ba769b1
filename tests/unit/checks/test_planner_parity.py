"""The checks compute which stages a build needs on their own (dockerfile/ must not import plan/).
These tests hold them to the planner's answer on every golden file and a few tricky shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from forklift.dockerfile.checks.facts import collect_facts
from forklift.dockerfile.instructions import parse_dockerfile
from forklift.dockerfile.syntax import parse
from forklift.plan.graph import PlanOptions, plan_build

GOLDEN = Path(__file__).parent / "golden"
# Bad examples the planner rightly refuses (their FROM expands to an invalid reference).
NOT_BUILDABLE = {"InvalidDefaultArgInFrom/bad", "UndefinedArgInFrom/bad"}

SHAPES = {
    "duplicate names, the latest wins": (
        "FROM alpine:3.20 AS a\nRUN echo 1\nFROM alpine:3.20 AS a\nRUN echo 2\n"
        "FROM alpine:3.20\nCOPY --from=a /x /x\n"
    ),
    "index reference and mount": (
        "FROM alpine:3.20\nRUN echo 0\nFROM alpine:3.20 AS m\nRUN echo m\n"
        "FROM alpine:3.20\nCOPY --from=0 /x /x\nRUN --mount=type=bind,from=m,target=/m true\n"
    ),
    "base stage through an ARG": (
        "ARG BASE=builder\nFROM alpine:3.20 AS builder\nRUN echo b\nFROM alpine:3.20 AS other\nFROM ${BASE}\n"
    ),
}


def cases() -> list[tuple[str, str, tuple[str, ...]]]:
    found = [(name, text, ()) for name, text in SHAPES.items()]
    found.append(("skipped default", SHAPES["duplicate names, the latest wins"], ("a",)))
    for directory in sorted(GOLDEN.iterdir()):
        for which in ("bad", "good"):
            if f"{directory.name}/{which}" in NOT_BUILDABLE:
                continue
            found.append((f"{directory.name}/{which}", (directory / f"{which}.Dockerfile").read_text(), ()))
    return found


@pytest.mark.parametrize(("name", "text", "targets"), cases(), ids=[c[0] for c in cases()])
def test_built_stages_match_the_planner(name: str, text: str, targets: tuple[str, ...]) -> None:
    parsed = parse(text, file="Dockerfile")
    graph = plan_build(parse_dockerfile(parsed), PlanOptions(targets=targets))
    facts = collect_facts(parsed, build_args={}, targets=targets)
    assert facts.built == {s.index for s in graph.stages if s.built}
    assert facts.targets == graph.targets
