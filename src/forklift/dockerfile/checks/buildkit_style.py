"""BuildKit's style and instruction-form checks: casing, deprecated and legacy forms, EXPOSE, ...

Same names and meaning as BuildKit's rules (../shared/reference/buildkit-checks.md); the messages
follow BuildKit's wording so that people who know one recognise the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

from forklift.dockerfile.checks.facts import flag_values, global_arg_pairs
from forklift.dockerfile.checks.framework import CheckInput, Hit
from forklift.dockerfile.syntax import Node


def _all_nodes(data: CheckInput) -> Iterator[Node]:
    # Top-level nodes and the instruction nested in each ONBUILD.
    for node in data.parsed.nodes:
        yield node
        if node.inner is not None:
            # The nested node has no lines of its own: point at the ONBUILD.
            yield replace(node.inner, start_line=node.start_line, end_line=node.end_line)


def consistent_instruction_casing(data: CheckInput) -> Iterator[Hit]:
    """Each keyword all-upper or all-lower, matching the majority of the file."""
    nodes = list(_all_nodes(data))
    lower = sum(1 for n in nodes if n.keyword_text == n.keyword_text.lower())
    upper = sum(1 for n in nodes if n.keyword_text == n.keyword_text.upper())
    majority_lower = lower > upper
    for node in nodes:
        text = node.keyword_text
        if majority_lower and text != text.lower():
            want = "lowercase"
        elif not majority_lower and text != text.upper():
            want = "uppercase"
        else:
            continue
        yield Hit(node.start_line, f"Command '{text}' should match the case of the command majority ({want})")


def no_empty_continuation(data: CheckInput) -> Iterator[Hit]:
    """An empty line inside a continued instruction (the parser's warning)."""
    for warning in data.parsed.warnings:
        if "empty continuation" in warning.message.lower():
            yield Hit(warning.line, "Empty continuation line")


def maintainer_deprecated(data: CheckInput) -> Iterator[Hit]:
    """MAINTAINER is deprecated in favour of a label."""
    for node in _all_nodes(data):
        if node.keyword == "maintainer":
            yield Hit(node.start_line, "Maintainer instruction is deprecated in favor of using label")


def json_args_recommended(data: CheckInput) -> Iterator[Hit]:
    """Shell-form CMD/ENTRYPOINT: the process does not get signals (unless SHELL was set explicitly)."""
    for stage in data.facts.stages:
        shell_set = any(
            n.keyword == "shell" for s in data.facts.stage_chain(stage.index)[:-1] for n in s.body
        )
        for node in stage.body:
            if node.keyword == "shell":
                shell_set = True
            if node.keyword in ("cmd", "entrypoint") and not node.json_form and node.args and not shell_set:
                yield Hit(
                    node.start_line,
                    f"JSON arguments recommended for {node.keyword.upper()} to prevent unintended "
                    "behavior related to OS signals",
                )


def multiple_instructions_disallowed(data: CheckInput) -> Iterator[Hit]:
    """More than one CMD, ENTRYPOINT or HEALTHCHECK in one stage: all but the last are dead."""
    for stage in data.facts.stages:
        for keyword in ("cmd", "entrypoint", "healthcheck"):
            nodes = [n for n in stage.body if n.keyword == keyword]
            for node in nodes[:-1]:
                yield Hit(
                    node.start_line,
                    f"Multiple {keyword.upper()} instructions should not be used in the same stage "
                    "because only the last one will be used",
                )


def legacy_key_value_format(data: CheckInput) -> Iterator[Hit]:
    """``ENV key value`` / ``LABEL key value``: the whitespace-separated legacy form."""
    for node in _all_nodes(data):
        if node.keyword not in ("env", "label"):
            continue
        seps = node.args[2::3]
        if any(sep == "" for sep in seps):
            name = node.keyword.upper()
            yield Hit(
                node.start_line,
                f'"{name} key=value" should be used instead of legacy "{name} key value" format',
            )


def _is_absolute(path: str) -> bool:
    # POSIX absolute, or a Windows drive path; a leading variable may expand to anything.
    return path.startswith(("/", "$", "\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", path))


def workdir_relative_path(data: CheckInput) -> Iterator[Hit]:
    """A relative WORKDIR before any absolute one: the result depends on the base image's workdir."""
    set_in: dict[int, bool] = {}
    for stage in data.facts.stages:
        workdir_set = set_in.get(stage.base_stage, False) if stage.base_stage is not None else False
        for node in stage.body:
            if node.keyword != "workdir" or not node.args:
                continue
            path = node.args[0].strip()
            if not workdir_set and not _is_absolute(path):
                yield Hit(
                    node.start_line,
                    f'Relative workdir "{path}" can have unexpected results if the base image changes',
                )
            workdir_set = True
        set_in[stage.index] = workdir_set


def _expose_ports(node: Node) -> Iterator[str]:
    for arg in node.args:
        yield from arg.split()


def expose_proto_casing(data: CheckInput) -> Iterator[Hit]:
    """``EXPOSE 80/TCP``: the protocol should be lowercase."""
    for node in _all_nodes(data):
        if node.keyword != "expose":
            continue
        for port in _expose_ports(node):
            _, sep, proto = port.partition("/")
            if sep and proto != proto.lower():
                yield Hit(
                    node.start_line, f"Defined protocol '{port}' in EXPOSE instruction should be lowercase"
                )


def expose_invalid_format(data: CheckInput) -> Iterator[Hit]:
    """``EXPOSE`` with an IP address or a ``host:container`` mapping."""
    for node in _all_nodes(data):
        if node.keyword != "expose":
            continue
        for port in _expose_ports(node):
            if ":" in port:
                yield Hit(
                    node.start_line,
                    "EXPOSE instruction should not define an IP address or host-port mapping, "
                    f"found '{port}'",
                )


# BuildKit's idea of a sensitive key: one of these words as a whole part of the name.
_SECRET_WORDS = re.compile(
    r"(?i)(?:^|[^a-z0-9])(apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)"
    r"(?:[^a-z0-9]|$)"
)
_PUBLIC_WORDS = re.compile(r"(?i)(?:^|[^a-z0-9])public(?:[^a-z0-9]|$)")


def is_secret_name(name: str) -> bool:
    """Whether an ARG/ENV name looks like it holds a secret (``API_TOKEN`` yes, ``PUBLIC_KEY`` no)."""
    return bool(_SECRET_WORDS.search(name)) and not _PUBLIC_WORDS.search(name)


def secrets_used_in_arg_or_env(data: CheckInput) -> Iterator[Hit]:
    """ARG or ENV whose name looks sensitive: it ends up in the image's history or config."""
    for node in _all_nodes(data):
        if node.keyword == "env":
            keys = list(node.args[0::3])
        elif node.keyword == "arg":
            keys = [key for key, _ in global_arg_pairs(node)]
        else:
            continue
        for key in keys:
            if is_secret_name(key):
                yield Hit(
                    node.start_line,
                    f'Do not use ARG or ENV instructions for sensitive data ({node.keyword.upper()} "{key}")',
                )


_COMMENT = re.compile(r"^\s*#\s?(.*)$")


def invalid_definition_description(data: CheckInput) -> Iterator[Hit]:
    """(experimental) The comment right above a named FROM or an ARG should start with that name.

    As in BuildKit, the comment line closest to the instruction is the description; for an ARG
    with several names any of them may start it.
    """
    directive_lines = set(data.parsed.directives.lines.values())
    for node in data.parsed.nodes:
        if node.keyword == "from" and len(node.args) >= 3:
            keys = [node.args[2]]
        elif node.keyword == "arg":
            keys = [key for key, _ in global_arg_pairs(node)]
        else:
            continue
        line = node.start_line - 1
        text = data.parsed.line_text(line) if line not in directive_lines else None
        match = _COMMENT.match(text or "")
        if not keys or text is None or match is None:
            continue
        first_word = match.group(1).strip().split(" ")[0]
        if first_word in keys:
            continue
        example = keys[0] if len(keys) == 1 else "<arg_key>"
        yield Hit(
            node.start_line,
            f"Comment for {node.keyword.upper()} should follow the format: `# {example} <description>`",
        )


def copy_ignored_file(data: CheckInput) -> Iterator[Hit]:
    """COPY/ADD of a context path that ``.dockerignore`` excludes (it will not be there)."""
    ignore = data.options.dockerignore
    if ignore is None:
        return
    for node in _all_nodes(data):
        if node.keyword not in ("copy", "add") or flag_values(node, "from") or len(node.args) < 2:
            continue
        for source in node.args[:-1]:
            if source.startswith("<<") or "$" in source or re.match(r"^[a-z][a-z0-9+.-]*://|^git@", source):
                continue
            path = source
            while path.startswith("./"):
                path = path[2:]
            path = path.lstrip("/")
            if path and path != "." and ignore.matches(path):
                verb = node.keyword.capitalize()
                yield Hit(
                    node.start_line, f'Attempting to {verb} file "{source}" that is excluded by .dockerignore'
                )
