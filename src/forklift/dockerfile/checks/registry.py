"""Every build check, as plain data, and ``run_checks``: the one entry point callers use."""

from __future__ import annotations

from forklift.dockerfile.checks import buildkit_args, buildkit_stages, buildkit_style, multistage
from forklift.dockerfile.checks.facts import collect_facts
from forklift.dockerfile.checks.framework import (
    CheckConfig,
    CheckInput,
    CheckOptions,
    Finding,
    Rule,
    check_config_for,
    run_rules,
)
from forklift.dockerfile.syntax import ParsedDockerfile
from forklift.records import record

# BuildKit's 22 checks, same names and meaning (../shared/reference/buildkit-checks.md).
BUILDKIT_RULES: tuple[Rule, ...] = (
    Rule("StageNameCasing", "Stage names should be lowercase.", buildkit_stages.stage_name_casing),
    Rule("FromAsCasing", "The AS keyword should be cased like FROM.", buildkit_stages.from_as_casing),
    Rule(
        "NoEmptyContinuation",
        "No empty lines inside a continued instruction.",
        buildkit_style.no_empty_continuation,
    ),
    Rule(
        "ConsistentInstructionCasing",
        "Instruction keywords should all be uppercase or all lowercase, like the majority.",
        buildkit_style.consistent_instruction_casing,
    ),
    Rule("DuplicateStageName", "Stage names should be unique.", buildkit_stages.duplicate_stage_name),
    Rule(
        "ReservedStageName",
        "scratch and context are reserved stage names.",
        buildkit_stages.reserved_stage_name,
    ),
    Rule(
        "JSONArgsRecommended",
        "Use the JSON (exec) form for CMD and ENTRYPOINT so the process gets signals.",
        buildkit_style.json_args_recommended,
    ),
    Rule(
        "MaintainerDeprecated", "MAINTAINER is deprecated; use a LABEL.", buildkit_style.maintainer_deprecated
    ),
    Rule(
        "UndefinedArgInFrom",
        "FROM uses a variable that no global ARG or automatic platform ARG defines.",
        buildkit_args.undefined_arg_in_from,
    ),
    Rule(
        "WorkdirRelativePath",
        "A relative WORKDIR before any absolute one depends on the base image.",
        buildkit_style.workdir_relative_path,
    ),
    Rule("UndefinedVar", "A variable is used before ARG or ENV defines it.", buildkit_args.undefined_var),
    Rule(
        "MultipleInstructionsDisallowed",
        "Only the last CMD, ENTRYPOINT or HEALTHCHECK of a stage counts.",
        buildkit_style.multiple_instructions_disallowed,
    ),
    Rule(
        "LegacyKeyValueFormat",
        "Use ENV/LABEL key=value, not the legacy key value form.",
        buildkit_style.legacy_key_value_format,
    ),
    Rule(
        "InvalidBaseImagePlatform",
        "The base image was resolved for another platform than the stage is built for.",
        buildkit_stages.invalid_base_image_platform,
    ),
    Rule(
        "RedundantTargetPlatform",
        "FROM --platform=$TARGETPLATFORM is the default already.",
        buildkit_stages.redundant_target_platform,
    ),
    Rule(
        "SecretsUsedInArgOrEnv",
        "ARG/ENV names that look like secrets; use secret mounts.",
        buildkit_style.secrets_used_in_arg_or_env,
    ),
    Rule(
        "InvalidDefaultArgInFrom",
        "With the default ARG values the FROM image name is empty or invalid.",
        buildkit_args.invalid_default_arg_in_from,
    ),
    Rule(
        "FromPlatformFlagConstDisallowed",
        "FROM --platform with a constant pins the stage to one platform.",
        buildkit_stages.from_platform_flag_const_disallowed,
    ),
    Rule(
        "CopyIgnoredFile",
        "COPY/ADD of a path that .dockerignore excludes.",
        buildkit_style.copy_ignored_file,
    ),
    Rule(
        "InvalidDefinitionDescription",
        "A comment right above FROM ... AS name or ARG should read '# <name> <description>'.",
        buildkit_style.invalid_definition_description,
        experimental=True,
    ),
    Rule("ExposeProtoCasing", "EXPOSE protocols should be lowercase.", buildkit_style.expose_proto_casing),
    Rule(
        "ExposeInvalidFormat",
        "EXPOSE takes ports, not IP addresses or host:container mappings.",
        buildkit_style.expose_invalid_format,
    ),
)

# forklift's own multi-stage checks (issue 8).
MULTISTAGE_RULES: tuple[Rule, ...] = (
    Rule(
        "CopyWholeBuilderFilesystem",
        "The final stage copies a builder's whole filesystem, toolchain or cache directory.",
        multistage.copy_whole_builder_filesystem,
    ),
    Rule(
        "ToolchainInFinalStage",
        "The final stage installs compilers or development packages.",
        multistage.toolchain_in_final_stage,
    ),
    Rule(
        "DebugArtifactInFinalStage",
        "Debug build output is copied into the final stage.",
        multistage.debug_artifact_in_final_stage,
    ),
    Rule("UnreachableStage", "A stage no target can ever build (dead code).", multistage.unreachable_stage),
    Rule(
        "StageOnlyInSkippedTarget",
        "A stage only a target that is not being built reaches (it silently does not run).",
        multistage.stage_only_in_skipped_target,
    ),
    Rule(
        "GlobalArgNotRedeclared",
        "A RUN uses a global ARG that its stage did not redeclare (it is empty).",
        multistage.global_arg_not_redeclared,
    ),
    Rule(
        "RecursiveChownAfterCopy",
        "chown -R / chmod -R right after a COPY of the same path stores the files twice.",
        multistage.recursive_chown_after_copy,
    ),
    Rule(
        "PackageCacheInFinalStage",
        "Package-manager caches left in the final stage by a clean-up in a separate RUN.",
        multistage.package_cache_in_final_stage,
    ),
    Rule(
        "HeavyBaseInFinalStage",
        "The final stage uses the same heavy base image as a builder that needs a toolchain.",
        multistage.heavy_base_in_final_stage,
    ),
)

RULES: tuple[Rule, ...] = BUILDKIT_RULES + MULTISTAGE_RULES
RULES_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}


@record
class CheckReport:
    """The findings of one run, and the configuration they were judged with."""

    findings: tuple[Finding, ...]
    config: CheckConfig

    @property
    def failed(self) -> bool:
        """True when any finding is an error (``# check=error=true``): the build must stop."""
        return any(f.severity == "error" for f in self.findings)


def run_checks(parsed: ParsedDockerfile, options: CheckOptions | None = None) -> CheckReport:
    """Run every enabled check on a parsed Dockerfile. Pure: no build, no network, no file access.

    The ``# check=`` directive (or the ``BUILDKIT_DOCKERFILE_CHECK`` build argument) picks the rules
    and the severity. Raises DockerfileSyntaxError when that configuration is malformed.
    """
    opts = options if options is not None else CheckOptions()
    config = check_config_for(parsed, opts)
    facts = collect_facts(parsed, build_args=opts.build_args, targets=opts.targets)
    findings = run_rules(RULES, CheckInput(parsed=parsed, facts=facts, options=opts), config)
    return CheckReport(findings=findings, config=config)
