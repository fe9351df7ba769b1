"""Every wordsTest vector: multi-word expansion (shell field splitting)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance_vectors import WordsVector, words_vectors

from forklift.dockerfile.words import expand_words
from forklift.errors import ExpansionError

VECTORS = words_vectors()


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_words_vector(shared_dir: Path, vector: WordsVector) -> None:
    env = dict(vector.env)
    if vector.expected == ("error",):
        with pytest.raises(ExpansionError):
            expand_words(vector.input, env)
    else:
        assert expand_words(vector.input, env) == list(vector.expected)


def test_words_vectors_are_present(shared_dir: Path) -> None:
    assert len(VECTORS) == 24
