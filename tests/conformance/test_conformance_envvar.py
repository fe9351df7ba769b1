"""Every envVarTest vector for platforms A and U: single-word expansion."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance_vectors import ENV_VAR_TEST_ENV, EnvVarVector, env_var_vectors

from forklift.dockerfile.words import expand_word
from forklift.errors import ExpansionError

VECTORS = env_var_vectors()


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_env_var_vector(shared_dir: Path, vector: EnvVarVector) -> None:
    assert vector.platform in ("A", "U"), f"line {vector.line}: bad platform or field count"
    if vector.expected == "error":
        with pytest.raises(ExpansionError):
            expand_word(vector.input, ENV_VAR_TEST_ENV)
    else:
        assert expand_word(vector.input, ENV_VAR_TEST_ENV) == vector.expected


def test_env_var_vectors_are_present(shared_dir: Path) -> None:
    # 230 vectors, 2 of them Windows-only (README section "Counts").
    assert len(VECTORS) == 228
