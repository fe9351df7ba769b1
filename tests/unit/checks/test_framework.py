"""The check framework: the ``# check=`` directive, severities, targets, and the rule registry."""

from __future__ import annotations

import pytest

from forklift.dockerfile.checks import RULES, CheckOptions, parse_check_config, run_checks
from forklift.dockerfile.checks.framework import CheckConfig
from forklift.dockerfile.syntax import parse
from forklift.errors import DockerfileSyntaxError, PlanError

TWO_PROBLEMS = """\
FROM alpine:3.20 as base
MAINTAINER someone
"""


def rules_found(text: str, **options: object) -> list[str]:
    report = run_checks(parse(text, file="Dockerfile"), CheckOptions(**options))  # type: ignore[arg-type]
    return [f.rule for f in report.findings]


def test_config_parses_skip_error_and_experimental() -> None:
    config = parse_check_config("skip=A,B ; error=true;experimental=C")
    assert config == CheckConfig(
        skip=frozenset({"A", "B"}), error=True, experimental=frozenset({"C"}), experimental_all=False
    )
    assert parse_check_config("SKIP=all").skip_all
    assert parse_check_config("error=false") == CheckConfig()
    assert parse_check_config(None) == CheckConfig()


@pytest.mark.parametrize("value", ["error=maybe", "colour=blue", "skip"])
def test_config_rejects_bad_values(value: str) -> None:
    with pytest.raises(DockerfileSyntaxError):
        parse_check_config(value)


def test_bad_directive_is_reported_at_its_line() -> None:
    with pytest.raises(DockerfileSyntaxError) as err:
        rules_found("# check=error=sometimes\nFROM alpine:3.20\n")
    assert err.value.location is not None and err.value.location.line == 1


def test_without_directive_findings_are_warnings() -> None:
    report = run_checks(parse(TWO_PROBLEMS, file="Dockerfile"))
    assert [(f.rule, f.severity) for f in report.findings] == [
        ("FromAsCasing", "warning"),
        ("MaintainerDeprecated", "warning"),
    ]
    assert not report.failed


def test_error_true_makes_every_finding_an_error() -> None:
    report = run_checks(parse("# check=error=true\n" + TWO_PROBLEMS, file="Dockerfile"))
    assert {f.severity for f in report.findings} == {"error"}
    assert report.failed


def test_skip_names_rules_case_sensitively() -> None:
    assert rules_found("# check=skip=FromAsCasing\n" + TWO_PROBLEMS) == ["MaintainerDeprecated"]
    both = ["FromAsCasing", "MaintainerDeprecated"]
    assert rules_found("# check=skip=fromascasing\n" + TWO_PROBLEMS) == both


def test_skip_all_skips_everything_but_enabled_experimental_rules() -> None:
    text = "# check=skip=all;experimental=InvalidDefinitionDescription\n\n# wrong words\nARG NAME=x\n"
    assert rules_found("# check=skip=all\n" + TWO_PROBLEMS) == []
    assert rules_found(text) == ["InvalidDefinitionDescription"]
    assert rules_found(text.replace("ARG NAME=x", "ARG NAME=x\nFROM alpine:3.20")) == [
        "InvalidDefinitionDescription"
    ]


def test_experimental_rules_are_off_by_default() -> None:
    assert rules_found("# wrong words\nARG NAME=x\nFROM alpine:3.20\n") == []
    assert rules_found("# check=experimental=all\n\n# wrong words\nARG NAME=x\nFROM alpine:3.20\n") == [
        "InvalidDefinitionDescription"
    ]


def test_build_arg_replaces_the_directive() -> None:
    text = "# check=skip=FromAsCasing\n" + TWO_PROBLEMS
    found = rules_found(text, build_args={"BUILDKIT_DOCKERFILE_CHECK": "skip=MaintainerDeprecated"})
    assert found == ["FromAsCasing"]


def test_unknown_target_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(PlanError) as err:
        rules_found("FROM alpine:3.20 AS builder\n", targets=("buidler",))
    assert err.value.hint == "did you mean builder?"


def test_findings_are_sorted_by_line_not_by_rule() -> None:
    report = run_checks(parse("FROM alpine:3.20\nMAINTAINER x\nFROM alpine:3.20 as b\n", file="Dockerfile"))
    assert [(f.line, f.rule) for f in report.findings] == [
        (1, "UnreachableStage"),
        (2, "MaintainerDeprecated"),
        (3, "FromAsCasing"),
    ]


def test_registry_has_the_22_buildkit_rules_and_unique_names() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    buildkit = {
        "StageNameCasing", "FromAsCasing", "DuplicateStageName", "ReservedStageName", "JSONArgsRecommended",
        "MaintainerDeprecated", "UndefinedArgInFrom", "UndefinedVar", "WorkdirRelativePath",
        "MultipleInstructionsDisallowed", "LegacyKeyValueFormat", "InvalidDefaultArgInFrom",
        "FromPlatformFlagConstDisallowed", "CopyIgnoredFile", "RedundantTargetPlatform",
        "SecretsUsedInArgOrEnv", "InvalidDefinitionDescription", "ExposeProtoCasing", "ExposeInvalidFormat",
        "ConsistentInstructionCasing", "NoEmptyContinuation", "InvalidBaseImagePlatform",
    }  # fmt: skip
    assert len(buildkit) == 22
    assert buildkit <= set(names)
    assert [r.name for r in RULES if r.experimental] == ["InvalidDefinitionDescription"]


def test_finding_json_has_the_documented_keys() -> None:
    finding = run_checks(parse(TWO_PROBLEMS, file="Dockerfile")).findings[0]
    assert finding.to_json() == {
        "rule": "FromAsCasing",
        "message": "'as' and 'FROM' keywords' casing do not match",
        "line": 1,
        "severity": "warning",
        "file": "Dockerfile",
        "doc": "docs/checks/FromAsCasing.md",
    }
