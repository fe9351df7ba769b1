"""BuildKit's checks on ``FROM``: stage names, the ``AS`` keyword, ``--platform``, the base platform."""

from __future__ import annotations

from collections.abc import Iterator

from forklift.dockerfile.checks.facts import expand_simple, flag_values
from forklift.dockerfile.checks.framework import CheckInput, Hit

RESERVED_STAGE_NAMES = ("scratch", "context")


def stage_name_casing(data: CheckInput) -> Iterator[Hit]:
    """``FROM x AS Builder``: stage names should be lowercase."""
    for stage in data.facts.stages:
        text = stage.name_text
        if text is not None and text != text.lower():
            yield Hit(stage.from_node.start_line, f"Stage name '{text}' should be lowercase")


def from_as_casing(data: CheckInput) -> Iterator[Hit]:
    """``FROM x as y`` / ``from x AS y``: the ``AS`` keyword should be cased like ``FROM``."""
    for stage in data.facts.stages:
        node = stage.from_node
        if len(node.args) < 3:
            continue
        keyword, as_word = node.keyword_text, node.args[1]
        has_lower = keyword != keyword.upper()
        has_upper = keyword != keyword.lower()
        if has_lower and has_upper:
            continue  # a mixed-case FROM is ConsistentInstructionCasing's business
        want = as_word.lower() if has_lower else as_word.upper()
        if as_word != want:
            yield Hit(node.start_line, f"'{as_word}' and '{keyword}' keywords' casing do not match")


def duplicate_stage_name(data: CheckInput) -> Iterator[Hit]:
    """Two stages with the same name (the later one is reported)."""
    seen: set[str] = set()
    for stage in data.facts.stages:
        if stage.name is None:
            continue
        if stage.name in seen:
            yield Hit(
                stage.from_node.start_line,
                f'Duplicate stage name "{stage.name}", stage names should be unique',
            )
        seen.add(stage.name)


def reserved_stage_name(data: CheckInput) -> Iterator[Hit]:
    """A stage named ``scratch`` or ``context``."""
    for stage in data.facts.stages:
        if stage.name in RESERVED_STAGE_NAMES:
            yield Hit(
                stage.from_node.start_line,
                f'Stage name should not use the same name as reserved stage "{stage.name}"',
            )


def redundant_target_platform(data: CheckInput) -> Iterator[Hit]:
    """``FROM --platform=$TARGETPLATFORM``: that is the default already."""
    for stage in data.facts.stages:
        for value in flag_values(stage.from_node, "platform"):
            if value.strip() in ("$TARGETPLATFORM", "${TARGETPLATFORM}"):
                yield Hit(
                    stage.from_node.start_line,
                    f"Setting platform to predefined {value.strip()} in FROM is redundant as this is "
                    "the default behavior",
                )


def from_platform_flag_const_disallowed(data: CheckInput) -> Iterator[Hit]:
    """``FROM --platform=linux/amd64``: a constant pins the stage to one platform.

    As in BuildKit, a stage whose name mentions the platform's OS or architecture
    (``AS build_amd64``) is taken as deliberately platform-specific.
    """
    for stage in data.facts.stages:
        for value in flag_values(stage.from_node, "platform"):
            if not value or "$" in value:
                continue
            parts = [p for p in value.lower().split("/") if p]
            if stage.name and any(p in stage.name for p in parts):
                continue
            yield Hit(
                stage.from_node.start_line, f'FROM --platform flag should not use constant value "{value}"'
            )


def invalid_base_image_platform(data: CheckInput) -> Iterator[Hit]:
    """The resolved base image's platform differs from the platform the stage is built for.

    Only known when the caller passes ``base_image_platforms`` (after resolving the bases); without
    them this rule finds nothing, because checks never touch the network.
    """
    known = data.options.base_image_platforms
    if not known:
        return
    env = {k: v for k, v in data.options.build_args.items()}
    if data.options.target_platform:
        env.setdefault("TARGETPLATFORM", data.options.target_platform)
    for stage in data.facts.stages:
        if stage.index not in data.facts.built or stage.base_stage is not None:
            continue
        got = known.get(stage.base_resolved)
        platforms = flag_values(stage.from_node, "platform")
        expected = expand_simple(platforms[0], env) if platforms else data.options.target_platform
        if got and expected and got != expected:
            yield Hit(
                stage.from_node.start_line,
                f'Base image {stage.base_resolved} was pulled with platform "{got}", expected '
                f'"{expected}" for current build',
            )
