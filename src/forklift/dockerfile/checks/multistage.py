"""Multi-stage checks no other builder has: what leaks from builders into the final image.

"The final stage" is each target stage (the last stage by default) together with the stages it is
built FROM: everything they leave behind is in the image. A "builder" is a stage the final stage
reads with ``COPY --from`` or ``RUN --mount=from=``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

from forklift.dockerfile.checks.facts import DockerfileFacts, Stage, flag_values, mount_options, variable_uses
from forklift.dockerfile.checks.framework import CheckInput, Hit
from forklift.dockerfile.checks.shell_commands import (
    package_actions,
    recursive_changes,
    run_text,
    simple_commands,
    toolchain_installs,
)
from forklift.dockerfile.syntax import Node


def _final_nodes(facts: DockerfileFacts) -> Iterator[tuple[Stage, Stage, Node]]:
    """(target stage, stage the node is in, node) for every instruction that ends up in a target."""
    for target in facts.targets:
        for stage in facts.stage_chain(target):
            for node in stage.body:
                yield facts.stages[target], stage, node


def _where(final: Stage, stage: Stage) -> str:
    if stage.index == final.index:
        return f"the final stage {final.label}"
    return f"stage {stage.label} (the final stage {final.label} is built on it)"


def _from_stage(facts: DockerfileFacts, node: Node, before: int) -> Stage | None:
    refs = flag_values(node, "from")
    if not refs:
        return None
    ref = refs[0]
    for stage in reversed(facts.stages[:before]):  # the latest definition of a name wins
        if stage.name == ref.lower() or str(stage.index) == ref:
            return stage
    return None


# --- ToolchainInFinalStage --------------------------------------------------------------------------


def toolchain_in_final_stage(data: CheckInput) -> Iterator[Hit]:
    """The final stage installs compilers or development packages that belong in a builder."""
    for final, stage, node in _final_nodes(data.facts):
        if node.keyword != "run":
            continue
        packages = toolchain_installs(run_text(node))
        if packages:
            names = ", ".join(dict.fromkeys(packages))
            yield Hit(
                node.start_line,
                f"{_where(final, stage).capitalize()} installs build toolchain package(s) {names}; "
                "install them in a builder stage and copy only the results",
            )


# --- DebugArtifactInFinalStage ------------------------------------------------------------------------

_DEBUG_PATH = re.compile(
    r"(?:^|/)target/(?:[^/]+/)?debug(?:/|$)|(?:^|/)Debug(?:/|$)|(?:^|/)cmake-build-debug(?:/|$)"
)
_DEBUG_FLAGS = re.compile(r"(?:^|\s)-O0(?:\s|$)|CMAKE_BUILD_TYPE=Debug\b|--config\s+Debug\b")


def _compiles_for_debug(facts: DockerfileFacts, stage: Stage) -> int | None:
    for s in facts.stage_chain(stage.index):
        for node in s.body:
            if node.keyword == "run" and _DEBUG_FLAGS.search(run_text(node)):
                return node.start_line
    return None


def debug_artifact_in_final_stage(data: CheckInput) -> Iterator[Hit]:
    """Debug build output (``target/debug``, ``Debug/``, ``-O0``) is copied into the final stage."""
    facts = data.facts
    for final, stage, node in _final_nodes(facts):
        if node.keyword == "run" and _DEBUG_FLAGS.search(run_text(node)):
            yield Hit(
                node.start_line, f"{_where(final, stage).capitalize()} compiles without optimisation (debug)"
            )
            continue
        if node.keyword not in ("copy", "add") or not flag_values(node, "from"):
            continue
        for source in node.args[:-1]:
            if _DEBUG_PATH.search(source):
                yield Hit(
                    node.start_line,
                    f"{source} is debug build output, copied into {_where(final, stage)}; "
                    "build in release mode and copy the release output",
                )
        source_stage = _from_stage(facts, node, stage.index)
        if source_stage is not None:
            line = _compiles_for_debug(facts, source_stage)
            if line is not None:
                yield Hit(
                    node.start_line,
                    f"Copies from stage {source_stage.label}, which compiles for debug (line {line}), "
                    f"into {_where(final, stage)}",
                )


# --- CopyWholeBuilderFilesystem -----------------------------------------------------------------------

_WHOLE = frozenset({"/", "/usr", "/usr/lib", "/lib", "/var", "/root"})
_TOOL_DIRS = re.compile(
    r"^(?:/root|/home/[^/]+)/(?:\.cargo|\.rustup|\.cache|\.m2|\.gradle|\.npm|\.yarn|\.nuget|go/pkg)(?:/.*)?$"
    r"|^/usr/local/(?:cargo|rustup|go)$|^/go/pkg(?:/.*)?$|^/usr/lib/gcc(?:/.*)?$|^/usr/include$"
    r"|^/var/cache(?:/.*)?$|^/var/lib/apt(?:/.*)?$|^/usr/local/share/\.cache(?:/.*)?$"
)
_NPM_INSTALL = re.compile(r"\b(?:npm\s+(?:ci|install|i)|yarn(?:\s+install)?|pnpm\s+(?:install|i))\b")
_PROD_ONLY = re.compile(
    r"--omit[= ]dev|--production|--only[= ]prod|--prod\b|NODE_ENV=production|npm\s+prune"
    r"|yarn\s+workspaces\s+focus"
)


def _dev_node_install(facts: DockerfileFacts, stage: Stage) -> bool:
    # The builder's node_modules hold dev dependencies unless the install (or a prune) says otherwise.
    installs = False
    for s in facts.stage_chain(stage.index):
        for node in s.body:
            text = run_text(node) if node.keyword == "run" else node.original
            if node.keyword == "env" and _PROD_ONLY.search(text):
                return False
            if node.keyword == "run":
                if _PROD_ONLY.search(text):
                    return False
                if _NPM_INSTALL.search(text):
                    installs = True
    return installs


def copy_whole_builder_filesystem(data: CheckInput) -> Iterator[Hit]:
    """COPY --from copies a builder's whole filesystem, toolchain or cache directory into the final stage."""
    facts = data.facts
    for final, stage, node in _final_nodes(facts):
        if node.keyword not in ("copy", "add") or not flag_values(node, "from"):
            continue
        ref = flag_values(node, "from")[0]
        for source in node.args[:-1]:
            path = posixpath.normpath("/" + source.strip().lstrip("/"))
            if path in _WHOLE:
                what = "whole filesystem" if path == "/" else f"whole {path} tree"
            elif _TOOL_DIRS.match(path):
                what = f"toolchain or cache directory {path}"
            elif posixpath.basename(path) == "node_modules":
                source_stage = _from_stage(facts, node, stage.index)
                if source_stage is None or not _dev_node_install(facts, source_stage):
                    continue
                what = "node_modules of a dev install (dev dependencies included)"
            else:
                continue
            yield Hit(
                node.start_line,
                f"COPY --from={ref} copies the {what} into {_where(final, stage)}; "
                "copy only what the program needs",
            )


# --- UnreachableStage / StageOnlyInSkippedTarget ------------------------------------------------------


def _targetable(facts: DockerfileFacts) -> list[int]:
    # Stages a build can select: named ones (--target) and the last one (the default).
    last = len(facts.stages) - 1
    return [s.index for s in facts.stages if s.name is not None or s.index == last]


def unreachable_stage(data: CheckInput) -> Iterator[Hit]:
    """A stage no target can ever reach: it has no name and no stage uses it (dead code)."""
    facts = data.facts
    possible = facts.reach(_targetable(facts))
    for stage in facts.stages:
        if stage.index not in possible:
            yield Hit(
                stage.from_node.start_line,
                f"Stage {stage.label} is never built: it has no name to build it with --target "
                "and no other stage uses it",
            )


def stage_only_in_skipped_target(data: CheckInput) -> Iterator[Hit]:
    """A stage only a target that is not being built reaches (a test stage that silently does not run)."""
    facts = data.facts
    if not facts.stages:
        return
    used = {d for s in facts.stages for d in s.deps}
    # The default target (the last stage) is skipped only on purpose, with an explicit --target.
    last = len(facts.stages) - 1
    leaves = [i for i in _targetable(facts) if i not in facts.built and i not in used and i != last]
    built_names = ", ".join(facts.stages[t].label for t in facts.targets)
    for stage in facts.stages:
        if stage.index in facts.built:
            continue
        reaching = [facts.stages[t].label for t in leaves if stage.index in facts.reach([t])]
        if not reaching:
            continue
        by = "target " + reaching[0] if len(reaching) == 1 else "targets " + ", ".join(reaching)
        yield Hit(
            stage.from_node.start_line,
            f"Stage {stage.label} is not built when building {built_names}: only {by} reaches it",
        )


# --- GlobalArgNotRedeclared ---------------------------------------------------------------------------


def _assigned_in_script(name: str, text: str) -> bool:
    return bool(
        re.search(
            rf"(?:^|[\s;&|(]){re.escape(name)}=|\bfor\s+{re.escape(name)}\b|\bread\b[^\n;&|]*\b{re.escape(name)}\b",
            text,
        )
    )


def global_arg_not_redeclared(data: CheckInput) -> Iterator[Hit]:
    """A RUN uses a global ARG the stage did not redeclare with ``ARG NAME``: it is empty there."""
    facts = data.facts
    globals_ = set(facts.global_args)
    if not globals_:
        return
    escape = data.parsed.directives.escape
    declared_after: dict[int, set[str]] = {}
    for stage in facts.stages:
        declared = set(declared_after.get(stage.base_stage, set())) if stage.base_stage is not None else set()
        for node in stage.body:
            if node.keyword == "arg":
                declared.update(w.partition("=")[0].strip("\"'") for w in node.args)
            elif node.keyword == "env":
                declared.update(node.args[0::3])
            elif node.keyword == "run":
                text = run_text(node)
                names = {u.name for u in variable_uses(text, escape=escape)}
                for name in sorted((names & globals_) - declared):
                    if _assigned_in_script(name, text):
                        continue
                    yield Hit(
                        node.start_line,
                        f"Global ARG '{name}' is used in stage {stage.label} without 'ARG {name}' in "
                        "that stage, so it is empty here",
                    )
        declared_after[stage.index] = declared


# --- RecursiveChownAfterCopy --------------------------------------------------------------------------


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def recursive_chown_after_copy(data: CheckInput) -> Iterator[Hit]:
    """``RUN chown -R``/``chmod -R`` right after a COPY of the same path: the bytes are stored twice."""
    facts = data.facts
    workdir_after: dict[int, str] = {}
    for stage in facts.stages:
        workdir = workdir_after.get(stage.base_stage, "/") if stage.base_stage is not None else "/"
        previous: Node | None = None
        for node in stage.body:
            if node.keyword == "workdir" and node.args:
                workdir = posixpath.normpath(posixpath.join(workdir, node.args[0]))
            if node.keyword == "run" and previous is not None and len(previous.args) >= 2:
                dest = posixpath.normpath(posixpath.join(workdir, previous.args[-1]))
                for change in recursive_changes(run_text(node)):
                    for path in change.paths:
                        target = posixpath.normpath(posixpath.join(workdir, path))
                        if _overlaps(target, dest):
                            flag = "--chown" if change.command == "chown" else "--chmod"
                            yield Hit(
                                node.start_line,
                                f"RUN {change.command} -R {path} right after a COPY to {dest} stores the "
                                f"copied files twice; use COPY {flag}=... instead",
                            )
                            break
            previous = node if node.keyword in ("copy", "add") else None
        workdir_after[stage.index] = workdir


# --- PackageCacheInFinalStage -------------------------------------------------------------------------

_CACHE_DIRS = {
    "apt": ("/var/lib/apt/lists", "/var/cache/apt"),
    "dnf": ("/var/cache/dnf", "/var/cache/yum"),
    "apk": ("/var/cache/apk",),
    "zypper": ("/var/cache/zypp",),
    "pip": ("/root/.cache/pip", "/root/.cache", "~/.cache/pip", "~/.cache", "$HOME/.cache"),
}


def _writes_cache(manager: str, action: str, words: tuple[str, ...]) -> bool:
    if manager == "pip":
        return action == "install" and "--no-cache-dir" not in words
    if manager == "apk":
        return action in ("install", "update") and "--no-cache" not in words
    return action in ("install", "update")


def _cleans(manager: str, text: str) -> bool:
    if any(a.manager == manager and a.action == "clean" for a in package_actions(text)):
        return True
    for words in simple_commands(text):
        if not words or words[0] != "rm":
            continue
        for target in words[1:]:
            path = target.rstrip("*").rstrip("/")
            if path and any(_overlaps(path, d) for d in _CACHE_DIRS[manager]):
                return True
    return False


def _cache_mounted(node: Node, manager: str) -> bool:
    targets = [m.get("target") or m.get("dst") or m.get("destination") or "" for m in mount_options(node)]
    return any(t and any(_overlaps(t.rstrip("/"), d) for d in _CACHE_DIRS[manager]) for t in targets)


def package_cache_in_final_stage(data: CheckInput) -> Iterator[Hit]:
    """Install and clean-up in different RUNs: the cache is already stored in the install's layer."""
    for target in data.facts.targets:
        final = data.facts.stages[target]
        runs = [(s, n) for s in data.facts.stage_chain(target) for n in s.body if n.keyword == "run"]
        for i, (stage, node) in enumerate(runs):
            text = run_text(node)
            managers = {
                a.manager for a in package_actions(text) if _writes_cache(a.manager, a.action, a.words)
            }
            for manager in sorted(managers):
                if _cleans(manager, text) or _cache_mounted(node, manager):
                    continue
                later = next((n for _, n in runs[i + 1 :] if _cleans(manager, run_text(n))), None)
                if later is None:
                    continue
                yield Hit(
                    node.start_line,
                    f"The {manager} cache written by this RUN stays in {_where(final, stage)}: the clean-up "
                    f"on line {later.start_line} is a separate RUN and cannot remove it from this layer; "
                    "clean up in the same RUN",
                )


# --- HeavyBaseInFinalStage ----------------------------------------------------------------------------

_TOOLCHAIN_IMAGES = re.compile(
    r"^(?:rust|golang|gcc|maven|gradle|openjdk|amazoncorretto|buildpack-deps|haskell|elixir|erlang|swift|"
    r"clojure|sbt|mcr\.microsoft\.com/dotnet/sdk|eclipse-temurin:[^:]*jdk[^:]*|node|python|ruby|php)"
    r"(?::|$)"
)
_MINIMAL = re.compile(r"alpine|slim|distroless|scratch|busybox|minimal|micro|chainguard|wolfi|static")


def _normal_image(ref: str) -> str:
    ref = ref.strip().lower()
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "library/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
    if "@" not in ref and ":" not in ref.rsplit("/", 1)[-1]:
        ref += ":latest"
    return ref


def _is_toolchain_image(ref: str) -> bool:
    return bool(_TOOLCHAIN_IMAGES.match(ref)) and not _MINIMAL.search(ref)


def heavy_base_in_final_stage(data: CheckInput) -> Iterator[Hit]:
    """The final stage uses the same heavy base image as a builder that needs a toolchain."""
    facts = data.facts
    for target in facts.targets:
        final = facts.stages[target]
        chain = facts.stage_chain(target)
        base = _normal_image(chain[0].base_resolved)
        if _MINIMAL.search(base):
            continue
        in_chain = {s.index for s in chain}
        for index in sorted(facts.reach([target]) - in_chain):
            builder_chain = facts.stage_chain(index)
            if _normal_image(builder_chain[0].base_resolved) != base:
                continue
            installs = any(
                toolchain_installs(run_text(n)) for s in builder_chain for n in s.body if n.keyword == "run"
            )
            if installs or _is_toolchain_image(base):
                builder = facts.stages[index]
                yield Hit(
                    chain[0].from_node.start_line,
                    f"The final stage {final.label} is based on {chain[0].base_resolved}, the same heavy "
                    f"base as builder stage {builder.label}; use a slim runtime base image",
                )
                break
