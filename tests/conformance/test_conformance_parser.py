"""All positive BuildKit parser cases: our dump must equal their ``result`` file exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance_vectors import parser_cases

from forklift.dockerfile.syntax import dump, parse


@pytest.mark.parametrize("case", parser_cases())
def test_parser_case_dump_matches_result(shared_dir: Path, case: str) -> None:
    directory = shared_dir / "conformance" / "parser" / case
    source = (directory / "Dockerfile").read_bytes().decode("utf-8")
    expected = (directory / "result").read_bytes().decode("utf-8").replace("\r\n", "\n")
    parsed = parse(source, file=str(directory / "Dockerfile"))
    assert "".join(dump(node) + "\n" for node in parsed.nodes) == expected


def test_all_33_parser_cases_are_present(shared_dir: Path) -> None:
    assert len(parser_cases()) == 33
