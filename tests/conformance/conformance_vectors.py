"""Readers for the BuildKit conformance vectors in ../shared/conformance (formats: its README.md).

Parameters are generated at collection time from the files; when ../shared is absent, each family
yields a single placeholder case that skips (or fails in CI) through the ``shared_dir`` fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
ABSENT = "shared-absent"

# envVarTest's fixed environment (README section 4).
ENV_VAR_TEST_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def available() -> bool:
    return CONFORMANCE.is_dir()


def parser_cases() -> list[str]:
    """Names of the positive parser cases (directories under parser/)."""
    if not available():
        return [ABSENT]
    return sorted(p.name for p in (CONFORMANCE / "parser").iterdir() if p.is_dir())


def negative_cases() -> list[str]:
    if not available():
        return [ABSENT]
    return sorted(p.name for p in (CONFORMANCE / "parser-negative").iterdir() if p.is_dir())


@dataclass(frozen=True)
class EnvVarVector:
    line: int
    platform: str
    input: str
    expected: str  # "error" means processing must fail

    @property
    def id(self) -> str:
        return f"L{self.line}:{self.input}"


def env_var_vectors() -> list[EnvVarVector]:
    """The envVarTest vectors for platforms A and U (W vectors are Windows-only and left out)."""
    if not available():
        return [EnvVarVector(0, "A", ABSENT, "")]  # a placeholder that skips via shared_dir
    vectors = []
    text = (CONFORMANCE / "shell" / "envVarTest").read_text(encoding="utf-8")
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith("#") or line.strip() == "":
            continue
        fields = line.split("|")
        if len(fields) != 3:
            vectors.append(EnvVarVector(number, "<bad>", line, f"<{len(fields)} fields>"))
            continue
        platform, source, expected = (f.strip() for f in fields)
        if platform == "W":
            continue
        vectors.append(EnvVarVector(number, platform, source, expected))
    return vectors


@dataclass(frozen=True)
class WordsVector:
    line: int
    input: str
    expected: tuple[str, ...]  # ("error",) means the call must fail
    env: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        return f"L{self.line}:{self.input}"


def words_vectors() -> list[WordsVector]:
    """The wordsTest vectors, each with the ENV definitions accumulated above it."""
    if not available():
        return [WordsVector(0, ABSENT, (), ())]  # a placeholder that skips via shared_dir
    env: dict[str, str] = {}
    vectors = []
    text = (CONFORMANCE / "shell" / "wordsTest").read_text(encoding="utf-8")
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith("#") or line == "":
            continue
        if line.startswith("ENV "):
            name, _, value = line[len("ENV") :].lstrip(" ").partition("=")
            env[name] = value
            continue
        fields = line.split("|")
        if len(fields) != 2:
            vectors.append(WordsVector(number, line, (f"<{len(fields)} fields>",), ()))
            continue
        source, expected = fields[0].strip(), fields[1].lstrip(" ")
        vectors.append(WordsVector(number, source, tuple(expected.split(",")), tuple(env.items())))
    return vectors
