"""BuildKit's line-number case: instruction ranges exclude blank and trailing lines."""

from __future__ import annotations

from pathlib import Path

from forklift.dockerfile.syntax import parse


def test_parser_lines_ranges(shared_dir: Path) -> None:
    text = (shared_dir / "conformance" / "parser-lines" / "Dockerfile").read_text(encoding="utf-8")
    parsed = parse(text)
    assert [(n.start_line, n.end_line) for n in parsed.nodes] == [(5, 5), (11, 12), (17, 31)]
    # The root range: from the first instruction's start to the last one's end.
    assert (parsed.nodes[0].start_line, parsed.nodes[-1].end_line) == (5, 31)
    # ``# ESCAPE=\`` on line 1 is a directive: keys ignore case.
    assert parsed.directives.escape == "\\"
    assert parsed.directives.lines == {"escape": 1}
