"""BuildKit's variable checks: UndefinedArgInFrom, InvalidDefaultArgInFrom, UndefinedVar."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator

from forklift.dockerfile.builtin_args import PLATFORM_ARGS
from forklift.dockerfile.checks.facts import expand_tracked, flag_values, global_arg_pairs
from forklift.dockerfile.checks.framework import CheckInput, Hit
from forklift.dockerfile.syntax import Node

# Environment variables base images commonly set. The checks never pull a base image, so for a
# stage built on an external image these count as defined; otherwise `ENV PATH=$PATH:/x` or
# `$GOPATH` would be false alarms. A stage built on `scratch` only gets PATH (BuildKit's default).
COMMON_IMAGE_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "HOSTNAME",
        "TERM",
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "SHELL",
        "USER",
        "TZ",
        "DEBIAN_FRONTEND",
        "container",
        "GOPATH",
        "GOROOT",
        "GOLANG_VERSION",
        "GOTOOLCHAIN",
        "GOARCH",
        "GOOS",
        "CGO_ENABLED",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUST_VERSION",
        "NODE_VERSION",
        "YARN_VERSION",
        "NODE_ENV",
        "NPM_CONFIG_PREFIX",
        "PYTHON_VERSION",
        "PYTHON_SHA256",
        "PYTHON_PIP_VERSION",
        "PIP_VERSION",
        "GPG_KEY",
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "JAVA_HOME",
        "JAVA_VERSION",
        "JDK_VERSION",
        "MAVEN_HOME",
        "MAVEN_CONFIG",
        "GRADLE_HOME",
        "GRADLE_VERSION",
        "DOTNET_VERSION",
        "ASPNET_VERSION",
        "ASPNETCORE_URLS",
        "ASPNETCORE_HTTP_PORTS",
        "DOTNET_RUNNING_IN_CONTAINER",
        "PHP_VERSION",
        "PHP_INI_DIR",
        "RUBY_VERSION",
        "RUBY_MAJOR",
        "GEM_HOME",
        "BUNDLE_PATH",
        "BUNDLE_SILENCE_ROOT_WARNING",
        "NGINX_VERSION",
        "HTTPD_PREFIX",
        "PG_MAJOR",
        "PG_VERSION",
        "PGDATA",
        "MYSQL_MAJOR",
        "MYSQL_VERSION",
        "REDIS_VERSION",
        "LD_LIBRARY_PATH",
        "PKG_CONFIG_PATH",
        "SSL_CERT_FILE",
    }
)

_REFERENCE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"  # registry host
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"  # path
    r"(?::[\w][\w.-]{0,127})?"  # tag
    r"(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,})?$"  # digest
)


def is_valid_reference(ref: str) -> bool:
    """Whether ``ref`` is a well-formed image reference (``name[:tag][@digest]``)."""
    return bool(_REFERENCE.match(ref))


def _suggest(name: str, choices: Iterable[str], *, prefix: str = "") -> str:
    match = difflib.get_close_matches(name, sorted(set(choices)), n=1, cutoff=0.6)
    return f" (did you mean {prefix}{match[0]}?)" if match else ""


def _from_words(node: Node) -> list[str]:
    words = [node.args[0]] if node.args else []
    return words + flag_values(node, "platform")


def undefined_arg_in_from(data: CheckInput) -> Iterator[Hit]:
    """FROM uses a variable no global ARG, build argument or automatic platform ARG defines."""
    # FROM sees only declared global ARGs (a --build-arg alone does not declare one).
    known = set(data.facts.global_args) | set(PLATFORM_ARGS)
    escape = data.parsed.directives.escape
    for stage in data.facts.stages:
        for word in _from_words(stage.from_node):
            result = expand_tracked(word, {}, escape=escape)
            if result is None:
                continue
            for name in sorted(result.used - known):
                yield Hit(
                    stage.from_node.start_line,
                    f"FROM argument '{name}' is not declared{_suggest(name, known)}",
                )


def invalid_default_arg_in_from(data: CheckInput) -> Iterator[Hit]:
    """With the global ARGs' default values only, a FROM's image name is empty or invalid."""
    escape = data.parsed.directives.escape
    env: dict[str, str] = {}
    for node in data.facts.global_arg_nodes:
        for key, raw in global_arg_pairs(node):
            if raw is not None:
                expanded = expand_tracked(raw, env, escape=escape)
                env[key] = expanded.value if expanded is not None else raw
    names = {s.name for s in data.facts.stages if s.name}
    for stage in data.facts.stages:
        base = stage.base
        if "$" not in base:
            continue
        result = expand_tracked(base, env, escape=escape)
        if result is None or result.used & set(PLATFORM_ARGS):
            continue  # platform ARGs have no default here; the value depends on the build
        value = result.value
        if value.lower() in names or value == "scratch":
            continue
        if not value or not is_valid_reference(value):
            yield Hit(
                stage.from_node.start_line,
                f"Default value for ARG {base} results in empty or invalid base image name",
            )


# Instructions whose arguments the builder expands (RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK are
# left to the shell at run time and are not checked).
_EXPANDED = frozenset({"add", "copy", "env", "expose", "label", "stopsignal", "user", "volume", "workdir"})


def _words_to_check(node: Node) -> list[str]:
    if node.keyword in ("env", "label"):
        return [node.args[i] for i in range(1, len(node.args), 3)] + (
            [node.args[i] for i in range(0, len(node.args), 3)] if node.keyword == "label" else []
        )
    if node.keyword in ("copy", "add"):
        return [a for a in node.args if not a.startswith("<<")]
    return list(node.args)


def undefined_var(data: CheckInput) -> Iterator[Hit]:
    """A variable used before any ARG or ENV in the stage (or its base stages) defines it."""
    escape = data.parsed.directives.escape
    defined_after: dict[int, set[str]] = {}
    for stage in data.facts.stages:
        if stage.base_stage is not None:
            defined = set(defined_after.get(stage.base_stage, set()))
        elif stage.base_resolved.strip().lower() == "scratch":
            defined = {"PATH"}
        else:
            defined = set(COMMON_IMAGE_ENV)
        for node in stage.body:
            if node.keyword == "arg":
                for key, raw in global_arg_pairs(node):
                    if raw is not None:
                        yield from _report(node, raw, defined, escape)
                    defined.add(key)
                continue
            if node.keyword in _EXPANDED:
                for word in _words_to_check(node):
                    yield from _report(node, word, defined, escape)
            if node.keyword == "env":
                defined.update(node.args[0::3])
        defined_after[stage.index] = defined


def _report(node: Node, word: str, defined: set[str], escape: str) -> Iterator[Hit]:
    result = expand_tracked(word, {k: "" for k in defined}, escape=escape)
    if result is None:
        return
    for name in sorted(result.unset - set(PLATFORM_ARGS)):
        yield Hit(
            node.start_line, f"Usage of undefined variable '${name}'{_suggest(name, defined, prefix='$')}"
        )
