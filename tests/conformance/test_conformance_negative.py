"""The BuildKit negative parser cases: each must fail with a located DockerfileSyntaxError."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance_vectors import negative_cases

from forklift.dockerfile.syntax import parse
from forklift.errors import DockerfileSyntaxError

EXPECTED_MESSAGES = {
    "empty_dockerfile": "file with no instructions",
    "only_comments": "file with no instructions",
    "env_no_value": "ENV must have two arguments",
    "shykes-nested-json": "arrays must be comprised of strings only",
}


@pytest.mark.parametrize("case", negative_cases())
def test_negative_case_is_a_syntax_error(shared_dir: Path, case: str) -> None:
    path = shared_dir / "conformance" / "parser-negative" / case / "Dockerfile"
    with pytest.raises(DockerfileSyntaxError) as info:
        parse(path.read_text(encoding="utf-8"), file=str(path))
    assert EXPECTED_MESSAGES[case] in info.value.message
    assert info.value.location is not None and info.value.location.file == str(path)
    assert info.value.location.line >= 1
