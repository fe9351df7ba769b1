"""Edge cases of single rules, beyond the golden bad/good pairs."""

from __future__ import annotations

import pytest

from forklift.dockerfile.checks import CheckOptions, run_checks
from forklift.dockerfile.syntax import parse


def hits(text: str, rule: str, **options: object) -> list[tuple[int, str]]:
    """(line, message) of every finding of ``rule``; experimental rules are enabled."""
    opts = CheckOptions(**options)  # type: ignore[arg-type]
    report = run_checks(parse(text, file="Dockerfile"), opts)
    return [(f.line, f.message) for f in report.findings if f.rule == rule]


def lines(text: str, rule: str, **options: object) -> list[int]:
    return [line for line, _ in hits(text, rule, **options)]


# --- BuildKit rules ---------------------------------------------------------------------------------


def test_casing_majority_can_be_lowercase() -> None:
    text = "from alpine:3.20\nrun echo a\nRUN echo b\nRun echo c\n"
    assert hits(text, "ConsistentInstructionCasing") == [
        (3, "Command 'RUN' should match the case of the command majority (lowercase)"),
        (4, "Command 'Run' should match the case of the command majority (lowercase)"),
    ]


def test_lowercase_from_with_uppercase_as() -> None:
    assert lines("from alpine:3.20 AS base\nrun true\n", "FromAsCasing") == [1]
    assert lines("From alpine:3.20 as base\nRUN true\n", "FromAsCasing") == []  # mixed FROM: other rule


def test_json_args_not_recommended_after_an_explicit_shell() -> None:
    text = 'FROM alpine:3.20 AS base\nSHELL ["/bin/ash", "-c"]\n\nFROM base\nCMD run-it\nENTRYPOINT exec it\n'
    assert lines(text, "JSONArgsRecommended") == []
    assert lines("FROM alpine:3.20\nENTRYPOINT exec it\n", "JSONArgsRecommended") == [2]


def test_multiple_instructions_reports_all_but_the_last_per_stage() -> None:
    text = (
        'FROM alpine:3.20 AS a\nCMD ["1"]\nCMD ["2"]\nHEALTHCHECK NONE\nHEALTHCHECK NONE\nFROM a\nCMD ["3"]\n'
    )
    assert lines(text, "MultipleInstructionsDisallowed") == [2, 4]


def test_workdir_set_in_the_base_stage_counts() -> None:
    text = (
        "FROM alpine:3.20 AS base\nWORKDIR /app\n\nFROM base\nWORKDIR sub\n\nFROM alpine:3.20\nWORKDIR rel\n"
    )
    assert lines(text, "WorkdirRelativePath") == [8]


def test_undefined_var_suggests_and_knows_stage_scope() -> None:
    text = (
        "FROM alpine:3.20 AS base\nENV APP_DIR=/app\nARG MODE=prod\n\n"
        "FROM base\nCOPY x $APP_DIR/\nLABEL mode=$MODE\nWORKDIR $APP_DRI\n\n"
        "FROM scratch\nCOPY --from=base $APP_DIR /app\nENV PATH=$PATH:/bin\n"
    )
    assert hits(text, "UndefinedVar") == [
        (8, "Usage of undefined variable '$APP_DRI' (did you mean $APP_DIR?)"),
        (11, "Usage of undefined variable '$APP_DIR'"),
    ]


def test_undefined_var_sees_values_before_the_instruction_and_skips_run() -> None:
    text = "FROM alpine:3.20\nENV A=1 B=$A\nRUN echo $NOPE\nCMD echo $NOPE\nARG TARGETARCH\nENV X=$TARGETOS\n"
    assert hits(text, "UndefinedVar") == [(2, "Usage of undefined variable '$A'")]


def test_undefined_arg_in_from() -> None:
    text = "ARG BASE=alpine\nFROM --platform=$BUILDPLATFORM ${BASE}:${TAG}\nFROM ${BASEE}\n"
    assert hits(text, "UndefinedArgInFrom") == [
        (2, "FROM argument 'TAG' is not declared"),
        (3, "FROM argument 'BASEE' is not declared (did you mean BASE?)"),
    ]
    # A --build-arg does not declare a global ARG: FROM still cannot see it.
    assert lines("FROM alpine:${TAG}\n", "UndefinedArgInFrom", build_args={"TAG": "3"}) == [1]


def test_invalid_default_arg_in_from_ignores_build_args_and_accepts_stage_names() -> None:
    text = (
        "ARG IMG\nARG STAGE=base\nFROM alpine:3.20 AS base\nFROM ${IMG}\nFROM ${STAGE}\nFROM ${IMG:-alpine}\n"
    )
    assert lines(text, "InvalidDefaultArgInFrom", build_args={"IMG": "debian"}) == [4]


def test_platform_flags() -> None:
    text = (
        "FROM --platform=linux/arm64 alpine:3.20 AS build-arm64\n"
        "FROM --platform=linux/arm64 alpine:3.20 AS build\n"
        "FROM --platform=${TARGETPLATFORM} alpine:3.20\n"
    )
    assert lines(text, "FromPlatformFlagConstDisallowed") == [2]
    assert hits(text, "RedundantTargetPlatform") == [
        (
            3,
            "Setting platform to predefined ${TARGETPLATFORM} in FROM is redundant as this is the "
            "default behavior",
        )
    ]


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [("API_TOKEN", True), ("DB_PASSWORD", True), ("aws_secret_access_key", True), ("GITHUB_AUTH", True),
     ("PUBLIC_KEY", False), ("KEYBOARD", False), ("TOKENIZER_PATH", False), ("MONKEY", False)],
)  # fmt: skip
def test_secret_names(name: str, sensitive: bool) -> None:
    assert bool(lines(f"FROM alpine:3.20\nENV {name}=x\n", "SecretsUsedInArgOrEnv")) is sensitive


def test_expose_rules_check_each_port() -> None:
    text = "FROM alpine:3.20\nEXPOSE 80/tcp 53/UDP 8080:80\n"
    assert lines(text, "ExposeProtoCasing") == [2]
    assert hits(text, "ExposeInvalidFormat") == [
        (2, "EXPOSE instruction should not define an IP address or host-port mapping, found '8080:80'")
    ]


def test_legacy_format_for_label_too_and_onbuild_lines() -> None:
    text = "FROM alpine:3.20\nLABEL version 1.0\nONBUILD ENV A b\nMAINTAINER me\n"
    assert lines(text, "LegacyKeyValueFormat") == [2, 3]
    assert lines(text, "MaintainerDeprecated") == [4]


def test_definition_description_accepts_blank_line_and_matching_comment() -> None:
    head = "# check=experimental=InvalidDefinitionDescription\n\n"
    assert lines(head + "# some note\n\nARG A=1\nFROM alpine:3.20\n", "InvalidDefinitionDescription") == []
    assert lines(head + "# A the answer\nARG A=1\nFROM alpine:3.20\n", "InvalidDefinitionDescription") == []
    assert lines(head + "# the answer\nARG A=1\nFROM alpine:3.20\n", "InvalidDefinitionDescription") == [4]


def test_copy_ignored_file_skips_other_stages_urls_and_variables() -> None:
    from forklift.dockerfile.ignore import parse_dockerignore

    text = (
        "FROM alpine:3.20 AS a\nCOPY --from=a secret.txt /x\nADD https://example.com/secret.txt /x\n"
        "COPY $F /x\nCOPY ./secret.txt ./ok.txt /x/\n"
    )
    assert lines(text, "CopyIgnoredFile", dockerignore=parse_dockerignore("secret.txt\n")) == [5]


def test_invalid_base_image_platform_needs_resolution_info() -> None:
    text = "FROM --platform=linux/arm64 alpine:3.20\n"
    assert lines(text, "InvalidBaseImagePlatform") == []
    known = {"alpine:3.20": "linux/amd64"}
    assert lines(text, "InvalidBaseImagePlatform", base_image_platforms=known) == [1]
    known = {"alpine:3.20": "linux/arm64"}
    assert (
        lines(text, "InvalidBaseImagePlatform", base_image_platforms=known, target_platform="linux/amd64")
        == []
    )


# --- forklift's multi-stage rules ---------------------------------------------------------------------


def test_toolchain_in_a_stage_the_final_stage_is_built_on() -> None:
    text = (
        "FROM debian:bookworm-slim AS base\nRUN apt-get install -y gcc-12 make\n\n"
        'FROM base AS runtime\nCMD ["app"]\n'
    )
    assert hits(text, "ToolchainInFinalStage") == [
        (
            2,
            "Stage 'base' (the final stage 'runtime' is built on it) installs build toolchain package(s) "
            "gcc-12, make; install them in a builder stage and copy only the results",
        )
    ]


def test_toolchain_installed_and_removed_in_one_run_is_fine() -> None:
    text = (
        "FROM python:3.12-alpine\n"
        "RUN apk add --no-cache --virtual .build-deps gcc musl-dev && pip install --no-cache-dir x "
        "&& apk del .build-deps\n"
    )
    assert lines(text, "ToolchainInFinalStage") == []
    assert lines("FROM fedora:40\nRUN microdnf -y install glibc-devel\n", "ToolchainInFinalStage") == [2]
    assert lines("FROM alpine:3.20\nRUN apk add --no-cache curl libssl3\n", "ToolchainInFinalStage") == []


def test_toolchain_in_builder_is_fine_and_targets_choose_the_final_stage() -> None:
    text = "FROM debian:12 AS dev\nRUN apt-get install -y build-essential\n\nFROM debian:12-slim\n"
    assert lines(text, "ToolchainInFinalStage") == []
    assert lines(text, "ToolchainInFinalStage", targets=("dev",)) == [2]


def test_debug_flags_in_the_builder_are_followed_through_copy() -> None:
    text = (
        "FROM gcc:14 AS build\nRUN gcc -O0 -g -o /app main.c\n\n"
        "FROM debian:bookworm-slim\nCOPY --from=build /app /usr/local/bin/app\n"
        "COPY --from=build /src/bin/Debug/net8.0/ /app/\n"
    )
    assert lines(text, "DebugArtifactInFinalStage") == [5, 6, 6]


def test_whole_trees_and_dev_node_modules() -> None:
    text = (
        "FROM node:20 AS deps\nWORKDIR /app\nCOPY package*.json ./\nRUN npm ci\n\n"
        "FROM node:20 AS prod-deps\nWORKDIR /app\nCOPY package*.json ./\nRUN npm ci --omit=dev\n\n"
        "FROM node:20-slim\nCOPY --from=deps /app/node_modules ./node_modules\n"
        "COPY --from=prod-deps /app/node_modules ./node_modules\nCOPY --from=deps /usr /usr\n"
        "COPY --from=deps /usr/local/bin/node /usr/local/bin/\n"
    )
    assert lines(text, "CopyWholeBuilderFilesystem") == [12, 14]


def test_unreachable_and_skipped_stages() -> None:
    text = (
        "FROM alpine:3.20\nRUN echo dead\n\n"  # 1: unnamed, nothing uses it
        "FROM alpine:3.20 AS helper\nRUN echo helper\n\n"  # 4: only the lint target uses it
        "FROM helper AS lint\nRUN echo lint\n\n"  # 7: a target nothing builds
        "FROM alpine:3.20\nRUN echo app\n"  # 10: the default target
    )
    assert lines(text, "UnreachableStage") == [1]
    assert hits(text, "StageOnlyInSkippedTarget") == [
        (4, "Stage 'helper' is not built when building #3: only target 'lint' reaches it"),
        (7, "Stage 'lint' is not built when building #3: only target 'lint' reaches it"),
    ]
    # Building lint on purpose: the skipped default stage is not reported.
    assert lines(text, "StageOnlyInSkippedTarget", targets=("lint",)) == []


def test_global_arg_redeclared_in_a_base_stage_or_set_by_the_script() -> None:
    text = (
        "ARG VERSION=1\nARG OTHER=2\nFROM alpine:3.20 AS base\nARG VERSION\n\n"
        "FROM base\nRUN echo $VERSION ${OTHER}\nRUN OTHER=3; echo $OTHER\n"
        "RUN for OTHER in a b; do echo $OTHER; done\n"
        "RUN <<EOF\necho $OTHER\nEOF\n"
    )
    assert hits(text, "GlobalArgNotRedeclared") == [
        (7, "Global ARG 'OTHER' is used in stage #1 without 'ARG OTHER' in that stage, so it is empty here"),
        (10, "Global ARG 'OTHER' is used in stage #1 without 'ARG OTHER' in that stage, so it is empty here"),
    ]


def test_recursive_chown_only_right_after_the_copy_of_an_overlapping_path() -> None:
    text = (
        "FROM alpine:3.20\nWORKDIR /srv\nCOPY data data\nRUN chmod -R go-w data\n"  # 4: same path, relative
        "COPY web /var/www\nRUN echo hi\nRUN chown -R www /var/www\n"  # 7: not right after
        "COPY conf /etc/app\nRUN chown -R app /opt\n"  # 9: other path
        "COPY web /usr/share/web/\nRUN chown --recursive app /usr/share\n"  # 11: parent of the copy
    )
    assert lines(text, "RecursiveChownAfterCopy") == [4, 11]


def test_package_cache_for_dnf_and_pip_and_cache_mounts() -> None:
    text = (
        "FROM fedora:40\nRUN dnf install -y nginx\nRUN pip install flask\n"
        "RUN --mount=type=cache,target=/var/cache/dnf dnf install -y less\n"
        "RUN dnf clean all && rm -rf /root/.cache/pip\n"
    )
    assert lines(text, "PackageCacheInFinalStage") == [2, 3]
    assert lines("FROM fedora:40\nRUN dnf install -y nginx\n", "PackageCacheInFinalStage") == []


def test_heavy_base_when_the_builder_installs_a_toolchain() -> None:
    text = (
        "FROM debian:bookworm AS build\nRUN apt-get install -y gcc\nRUN gcc -o /app main.c\n\n"
        "FROM debian:bookworm\nCOPY --from=build /app /app\n"
    )
    assert lines(text, "HeavyBaseInFinalStage") == [5]
    assert lines(text.replace("apt-get install -y gcc", "true"), "HeavyBaseInFinalStage") == []
    assert lines(text.replace("bookworm", "bookworm-slim"), "HeavyBaseInFinalStage") == []


def test_definition_description_uses_the_closest_comment_and_any_arg_key() -> None:
    head = "# check=experimental=InvalidDefinitionDescription\n\n"
    text = head + "# A the answer\n# more words\nARG A=1\nFROM alpine:3.20\n"
    assert lines(text, "InvalidDefinitionDescription") == [5]
    assert lines(head + "# B is fine\nARG A B\nFROM alpine:3.20\n", "InvalidDefinitionDescription") == []
    assert hits(head + "# nope\nARG A B\nFROM alpine:3.20\n", "InvalidDefinitionDescription") == [
        (4, "Comment for ARG should follow the format: `# <arg_key> <description>`")
    ]
