"""Why a step missed the cache, in words: its inputs compared with those last seen at its position."""

from __future__ import annotations

from forklift.execute.cache.format import SourceDigest, StepInputs


def _short(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def explain_miss(
    previous: StepInputs | None, current: StepInputs, *, parent_reason: str | None = None
) -> str:
    """Why ``current`` missed, compared with the inputs last seen at the same position.

    ``parent_reason`` is what the caller knows about a changed parent ("step 3 re-ran", "base
    image changed"); it is used when the parent is what differs.
    """
    if previous is None:
        return "not built before"
    reasons: list[str] = []
    if previous.instruction != current.instruction:
        reasons.append(f"instruction changed (was {_short(previous.instruction)!r})")
    old_env, new_env = dict(previous.env), dict(current.env)
    for name in sorted(set(old_env) | set(new_env)):
        if name not in old_env:
            reasons.append(f"argument {name} added ({_short(new_env[name])!r})")
        elif name not in new_env:
            reasons.append(f"argument {name} removed")
        elif old_env[name] != new_env[name]:
            reasons.append(
                f"argument {name} changed ({_short(old_env[name])!r} -> {_short(new_env[name])!r})"
            )
    old_src = {s.label: s for s in previous.sources}
    for src in current.sources:
        before = old_src.get(src.label)
        if before is None:
            reasons.append(f"new source {src.label}")
        elif before.digest != src.digest:
            reasons.append(_files_changed(src, before))
    for label in old_src:
        if label not in {s.label for s in current.sources}:
            reasons.append(f"source {label} no longer read")
    old_meta, new_meta = dict(previous.metadata), dict(current.metadata)
    for name in sorted(set(old_meta) | set(new_meta)):
        if old_meta.get(name) != new_meta.get(name):
            reasons.append(f"option {name} changed")
    if previous.parent != current.parent:
        reasons.append(parent_reason or "parent changed")
    if not reasons:
        return "cache entry missing (pruned or never stored)"
    return "; ".join(reasons)


def _files_changed(now: SourceDigest, before: SourceDigest) -> str:
    old, new = dict(before.files), dict(now.files)
    changed = sorted(p for p in new if p in old and old[p] != new[p])
    added = sorted(p for p in new if p not in old)
    removed = sorted(p for p in old if p not in new)
    parts: list[str] = []
    for verb, paths in (("changed", changed), ("added", added), ("removed", removed)):
        if not paths:
            continue
        shown = ", ".join(p or "." for p in paths[:3])
        more = f" (+{len(paths) - 3} more)" if len(paths) > 3 else ""
        noun = "file" if len(paths) == 1 else "files"
        parts.append(f"{noun} {shown}{more} {verb}")
    if not parts:
        return f"source {now.label} changed"
    return f"{now.label}: " + ", ".join(parts)
