"""Facts the checks share, derived from the node list: stages, their edges, what the targets build.

The checks work on ``Node``s directly (no typing, no planning) so that a file the typed layer would
reject can still be linted. Stage edges follow the planner's rules: ``FROM <stage>``,
``COPY/ADD --from=<stage>`` and ``RUN --mount=...,from=<stage>``; a stage may be named or given by
its index.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from forklift.dockerfile.syntax import Node, ParsedDockerfile
from forklift.dockerfile.words import Expansion, expand_word_tracked
from forklift.errors import ExpansionError, PlanError, did_you_mean
from forklift.records import record

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_IDENT = re.compile(_NAME)
# $NAME, ${NAME}, ${NAME<op>word}; positional and special parameters are not variables here.
_VAR = re.compile(r"\$(?:(" + _NAME + r")|\{(" + _NAME + r")((?:[:]?[-+?=#%/])[^}]*)?\})")


@record
class VarUse:
    """A variable reference in a word: its name and whether it carries its own default/alternative."""

    name: str
    operator: str  # "", ":-", "-", ":+", "+", ":?", "?", "#", "%", "/", ...


def variable_uses(text: str, *, escape: str = "\\") -> list[VarUse]:
    """The ``$NAME`` / ``${NAME...}`` references in ``text`` that the builder would expand.

    Text in single quotes and escaped dollars (``\\$X``) are literal, as in BuildKit's lexer.
    Nested references inside a ``${X:-$Y}`` word are found too.
    """
    uses: list[VarUse] = []
    i, n = 0, len(text)
    in_single = in_double = False
    while i < n:
        ch = text[i]
        if in_single:
            if ch == "'":
                in_single = False
            i += 1
            continue
        if ch == escape:
            i += 2
            continue
        if ch == '"':
            in_double = not in_double
        elif ch == "'" and not in_double:
            in_single = True
            i += 1
            continue
        if ch == "$":
            m = _VAR.match(text, i)
            if m:
                name = m.group(1) or m.group(2)
                rest = m.group(3) or ""
                op = rest[:2] if rest[:1] == ":" else rest[:1]
                uses.append(VarUse(name, op))
                if rest:
                    uses.extend(variable_uses(rest[len(op) :], escape=escape))
                i = m.end()
                continue
        i += 1
    return uses


def expand_tracked(text: str, env: Mapping[str, str], *, escape: str = "\\") -> Expansion | None:
    """Expand one word like the builder does, or None when the expansion itself fails.

    Only identifier names are kept in ``used``/``unset`` (positional parameters are never variables).
    """
    try:
        result = expand_word_tracked(text, env, escape=escape)
    except (ExpansionError, ValueError):
        return None
    return Expansion(
        value=result.value,
        used=frozenset(n for n in result.used if _IDENT.fullmatch(n)),
        unset=frozenset(n for n in result.unset if _IDENT.fullmatch(n)),
    )


def expand_simple(text: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """Expand ``text`` as one word; when that fails, the text as written."""
    result = expand_tracked(text, env, escape=escape)
    return text if result is None else result.value


def flag_values(node: Node, name: str) -> list[str]:
    """The values of every ``--name=value`` flag of ``node`` (``--name`` alone gives "")."""
    values: list[str] = []
    for flag in node.flags:
        body = flag[2:] if flag.startswith("--") else flag
        key, sep, value = body.partition("=")
        if key.lower() == name:
            values.append(value if sep else "")
    return values


def mount_options(node: Node) -> list[dict[str, str]]:
    """Each ``--mount`` of a RUN as a dict of lower-cased keys to values (bare keys map to "")."""
    mounts: list[dict[str, str]] = []
    for spec in flag_values(node, "mount"):
        opts: dict[str, str] = {}
        for part in spec.split(","):
            key, _, value = part.partition("=")
            opts[key.strip().lower()] = value.strip().strip('"')
        mounts.append(opts)
    return mounts


@record
class Stage:
    """One ``FROM`` and the instructions up to the next one."""

    index: int
    from_node: Node
    body: tuple[Node, ...]
    name: str | None  # lower-cased ``AS`` name (how references are matched)
    name_text: str | None  # the name as written (for StageNameCasing)
    base: str  # the base image as written
    base_resolved: str  # the base after expanding global ARGs (defaults and --build-arg)
    base_stage: int | None  # the stage this one is built FROM, when its base is a stage
    copy_sources: tuple[int, ...]  # stages read by COPY/ADD --from and RUN --mount from=

    @property
    def label(self) -> str:
        """How messages name the stage: its name, else ``#index``."""
        return f"'{self.name}'" if self.name else f"#{self.index}"

    @property
    def deps(self) -> tuple[int, ...]:
        """Every stage this one needs (its base stage first)."""
        first = (self.base_stage,) if self.base_stage is not None else ()
        return first + tuple(i for i in self.copy_sources if i != self.base_stage)


@record
class DockerfileFacts:
    """The stages, the global ARGs, and which stages the chosen targets build."""

    global_arg_nodes: tuple[Node, ...]  # ARG instructions before the first FROM
    global_args: Mapping[str, str | None]  # name -> default value (None: declared without one)
    stages: tuple[Stage, ...]
    targets: tuple[int, ...]  # the target stages (the last stage by default)
    built: frozenset[int]  # every stage the targets need

    def stage_chain(self, index: int) -> list[Stage]:
        """The stage and the stages it is built FROM, base first: all of them end up in its image."""
        chain: list[Stage] = []
        seen: set[int] = set()
        current: int | None = index
        while current is not None and current not in seen:
            seen.add(current)
            chain.append(self.stages[current])
            current = self.stages[current].base_stage
        chain.reverse()
        return chain

    def reach(self, starts: tuple[int, ...] | list[int]) -> frozenset[int]:
        """Every stage reachable from ``starts`` through stage edges (starts included)."""
        seen: set[int] = set()
        todo = list(starts)
        while todo:
            i = todo.pop()
            if i in seen or not 0 <= i < len(self.stages):
                continue
            seen.add(i)
            todo.extend(self.stages[i].deps)
        return frozenset(seen)


def global_arg_pairs(node: Node) -> Iterator[tuple[str, str | None]]:
    """The ``name[=default]`` pairs of an ARG node; defaults are raw (quotes kept, not expanded)."""
    for word in node.args:
        key, sep, value = word.partition("=")
        yield key.strip("\"'"), (value if sep else None)


def _stage_ref(ref: str, names: Mapping[str, list[int]], before: int) -> int | None:
    # A --from / from= value or a base: a stage name (any case; the latest definition before the
    # reference wins, as in the planner), or a stage index, defined earlier.
    earlier = [i for i in names.get(ref.lower(), []) if i < before]
    if earlier:
        return earlier[-1]
    if ref.isdigit() and int(ref) < before:
        return int(ref)
    return None


def collect_facts(
    parsed: ParsedDockerfile, *, build_args: Mapping[str, str], targets: tuple[str, ...]
) -> DockerfileFacts:
    """Split the nodes into stages, resolve stage references, and mark what the targets build.

    With no targets the last stage is the target; an unknown target name raises PlanError.
    """
    escape = parsed.directives.escape
    global_nodes: list[Node] = []
    groups: list[tuple[Node, list[Node]]] = []
    for node in parsed.nodes:
        if node.keyword == "from":
            groups.append((node, []))
        elif groups:
            groups[-1][1].append(node)
        elif node.keyword == "arg":
            global_nodes.append(node)

    global_args: dict[str, str | None] = {}
    env: dict[str, str] = {}
    for node in global_nodes:
        for key, value in global_arg_pairs(node):
            global_args[key] = value
            if key in build_args:
                env[key] = build_args[key]
            elif value is not None:
                env[key] = expand_simple(value, env, escape=escape)

    names: dict[str, list[int]] = {}
    stages: list[Stage] = []
    for index, (from_node, body) in enumerate(groups):
        args = from_node.args
        base = args[0] if args else ""
        name_text = args[2] if len(args) >= 3 else None
        name = name_text.lower() if name_text else None
        resolved = expand_simple(base, env, escape=escape)
        base_stage = _stage_ref(resolved, names, index)
        sources: list[int] = []
        for node in body:
            refs: list[str] = []
            if node.keyword in ("copy", "add"):
                refs = flag_values(node, "from")
            elif node.keyword == "run":
                refs = [m["from"] for m in mount_options(node) if m.get("from")]
            for ref in refs:
                found = _stage_ref(ref, names, index)
                if found is not None and found not in sources:
                    sources.append(found)
        stages.append(
            Stage(
                index=index,
                from_node=from_node,
                body=tuple(body),
                name=name,
                name_text=name_text,
                base=base,
                base_resolved=resolved,
                base_stage=base_stage,
                copy_sources=tuple(sources),
            )
        )
        if name is not None:
            names.setdefault(name, []).append(index)

    for target in targets:
        if target.lower() not in names:
            raise PlanError(
                f"target stage {target!r} could not be found",
                hint=did_you_mean(target, [s.name_text for s in stages if s.name_text]),
            )
    wanted = tuple(dict.fromkeys(names[t.lower()][-1] for t in targets))
    if not wanted and stages:
        wanted = (len(stages) - 1,)
    facts = DockerfileFacts(
        global_arg_nodes=tuple(global_nodes),
        global_args=global_args,
        stages=tuple(stages),
        targets=wanted,
        built=frozenset(),
    )
    return DockerfileFacts(
        global_arg_nodes=facts.global_arg_nodes,
        global_args=facts.global_args,
        stages=facts.stages,
        targets=facts.targets,
        built=facts.reach(wanted),
    )
