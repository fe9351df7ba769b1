"""COPY and ADD straight into a new layer (no runtime), and WORKDIR's directory.

The layer is staged in a directory on the snapshots' filesystem: the destination's parent
directories (with the metadata they have in the image, or 0755 root when new), then the copied
entries with their modes and times (owners root unless ``--chown``; ``--from`` keeps owners).
The staged directory is written as the layer and then adopted as its snapshot. Destination paths
are resolved through the image's symlinks (``/bin`` -> ``usr/bin``), as BuildKit does.

Cache: the key holds the expanded instruction, the parent identity (none with ``--link``), and one
source-set digest per source argument (relpath, mode, owner, link target, content digest of each
entry), so a COPY --from of byte-identical artifacts is a hit even when the builder re-ran.

``--exclude`` and the ``--parents`` pattern use the .dockerignore matcher (``**`` spans
directories); ``ADD <git ref>`` goes through ``gitsource`` (its resolved commit is the cache input).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import posixpath
import re
import shutil
import stat
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

from forklift.errors import BuildError, ForkliftError, SourceLocation
from forklift.execute.cache import SourceDigest, StepInputs, copy_memo
from forklift.execute.context import (
    SourceEntry,
    SourceTree,
    clean_source,
    has_wildcards,
    source_set_digest,
)
from forklift.execute.engine import (
    BuildEnv,
    Outcome,
    StageResult,
    Stepper,
    image_view,
    lower_dirs,
    store_layer,
)
from forklift.execute.layerview import LayeredView
from forklift.execute.ops.config import copy_history
from forklift.execute.state import StageState
from forklift.plan.args import expand_at
from forklift.plan.ops import CopyOp, ImageRef, MainContextRef, NamedContextRef, StageRef
from forklift.records import record
from forklift.snapshot.diff import DirectorySource

if TYPE_CHECKING:
    from forklift.dockerfile.ignore import DockerIgnore
    from forklift.execute.ops.gitsource import GitRef
    from forklift.execute.ops.readahead import CopySourceReadAhead


@record
class Placed:
    """One entry to write: where it goes in the layer (relative, no leading slash) and from what."""

    dest: str
    entry: SourceEntry | None  # None: an inline (heredoc) file
    data: bytes = b""
    archive: bool = False  # ADD: extract this file (a tar archive) into ``dest``
    key: str = ""  # the source path as the cache inputs name it (match/relpath)
    mkdir: bool = False  # only make sure directory ``dest`` exists (the image's or a new 0755 one)


def _entry_line(e: SourceEntry) -> str:
    return hashlib.sha256(
        f"{e.kind}\0{e.mode:o}\0{e.uid}:{e.gid}\0{e.link_target}\0{e.digest}".encode()
    ).hexdigest()[:16]


def _abs_dest(dest: str, workdir: str) -> str:
    joined = dest if dest.startswith("/") else posixpath.join(workdir or "/", dest)
    clean = posixpath.normpath(joined)
    return "/" if clean in ("/", "//", ".") else "/" + clean.lstrip("/")


@contextlib.contextmanager
def source_tree(env: BuildEnv, op: CopyOp, done: dict[int, StageResult]) -> Iterator[SourceTree]:
    """The tree the sources are read from: the context (with .dockerignore) or a stage/image root."""
    src = op.source
    if isinstance(src, MainContextRef):
        yield env.context
    elif isinstance(src, StageRef):
        result = done[src.index]
        with image_view(env, result.state) as root:
            yield SourceTree(
                root, keep_owner=True, label=f"stage {result.name}", layers=lower_dirs(env, result.state)
            )
    elif isinstance(src, ImageRef):
        from forklift.execute.ops.source import load_base

        image = load_base(env, src.ref)
        with image_view(env, image) as root:
            yield SourceTree(root, keep_owner=True, label=f"image {src.ref}", layers=lower_dirs(env, image))
    elif isinstance(src, NamedContextRef):
        named = env.options.named_contexts[src.name]
        if named.directory is not None:
            yield SourceTree(named.directory.resolve(), label=f"build context {src.name}")
        else:
            from forklift.execute.ops.source import named_image

            image = named_image(env, src.name)
            with image_view(env, image) as root:
                yield SourceTree(
                    root, keep_owner=True, label=f"context {src.name}", layers=lower_dirs(env, image)
                )
    else:
        raise BuildError(f"cannot copy from {src!r}", location=op.location)


def _is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


def _exclude_matcher(op: CopyOp) -> DockerIgnore | None:
    """``--exclude`` patterns as one matcher (moby/patternmatcher semantics, shared with .dockerignore)."""
    if not op.excludes:
        return None
    from forklift.dockerfile.ignore import compile_patterns

    try:
        return compile_patterns(op.excludes)
    except ValueError as err:
        raise BuildError(f"--exclude: {err}", location=op.location) from None


def _wildcard_base(clean: str) -> str:
    """The leading components of a cleaned source without wildcards (fsutil's ``splitWildcards``)."""
    base: list[str] = []
    for part in clean.split("/"):
        if has_wildcards(part):
            break
        base.append(part)
    return "/".join(base)


def _is_archive(path: Path) -> bool:
    from forklift.oci.compression import detect_compression

    try:
        with open(path, "rb") as f:
            head = f.read(512)
        kind = detect_compression(head[:8])
        if kind != "none":
            return True
        return len(head) >= 262 and head[257:262] == b"ustar"
    except (OSError, ValueError):
        return False


@record
class Matched:
    """One match of a source argument, with the entries (after --exclude) it copies."""

    src: str
    match: str
    entries: tuple[SourceEntry, ...]


def gather(tree: SourceTree, op: CopyOp, sources: list[str]) -> tuple[list[Matched], list[SourceDigest]]:
    """Match the sources in ``tree`` and digest each source argument's entries (for the cache key).

    ``--exclude`` patterns match paths relative to what each match copies (as BuildKit's copier
    matches ``srcComponents``); a wildcard match itself is also dropped when the patterns match
    its path below the wildcard's fixed prefix (``COPY --exclude=*.txt hom* /d/``).
    """
    excludes = _exclude_matcher(op)
    found_all: list[Matched] = []
    digests: list[SourceDigest] = []
    for src in sources:
        if op.parents:
            matched = _gather_parents(tree, op, src, excludes)
        else:
            matched = _gather_plain(tree, op, src, excludes)
        kept_all: list[SourceEntry] = []
        files: list[tuple[str, str]] = []
        for m in matched:
            found_all.append(m)
            kept_all.extend(m.entries)
            files.extend(
                (posixpath.join(m.match, e.relpath) if e.relpath else m.match, _entry_line(e))
                for e in m.entries
            )
        digests.append(SourceDigest(f"{tree.label} {src}", source_set_digest(kept_all), tuple(files)))
    return found_all, digests


def _not_found(tree: SourceTree, op: CopyOp, src: str) -> BuildError:
    where = "" if tree.label == "build context" else f" in {tree.label}"
    return BuildError(
        f'failed to compute cache key: "/{src.lstrip("/")}": not found{where}',
        location=op.location,
        hint="check the path and .dockerignore" if tree.label == "build context" else None,
    )


def _gather_plain(tree: SourceTree, op: CopyOp, src: str, excludes: DockerIgnore | None) -> list[Matched]:
    """A source without ``--parents``: each wildcard match (Go filepath.Match per component, so
    ``**`` is ``*`` here, as in BuildKit) is copied on its own, directories by their contents."""
    found = tree.glob(src)
    if not found:
        raise _not_found(tree, op, src)
    clean = clean_source(src)
    base = _wildcard_base(clean) if has_wildcards(clean) else None
    out: list[Matched] = []
    for match in found:
        if excludes is not None and base is not None:
            below = match[len(base) :].lstrip("/") if base and match.startswith(base) else match
            if below and excludes.matches(below):
                continue
        entries = [
            e for e in tree.entries(match) if not (excludes and e.relpath and excludes.matches(e.relpath))
        ]
        out.append(Matched(src, match, tuple(entries)))
    return out


def _gather_parents(tree: SourceTree, op: CopyOp, src: str, excludes: DockerIgnore | None) -> list[Matched]:
    """``COPY --parents``: BuildKit splits the source at its first ``/./`` into a pivot (the root
    by default) and a pattern; everything under the pivot that the pattern matches (patternmatcher:
    ``**`` spans directories, a matched directory brings its contents) is copied with its path
    below the pivot, and the directories on the way keep their metadata. A pattern with wildcards
    may match nothing (no error); a plain path must exist. Entries' relpaths are pivot-relative.
    """
    from forklift.dockerfile.ignore import compile_patterns

    pivot_text, sep, pattern_text = src.partition("/./")
    if not sep:
        pivot_text, pattern_text = "", src
    pattern = clean_source(pattern_text)
    pivot_clean = clean_source(pivot_text)
    wild = has_wildcards(pattern) or has_wildcards(pivot_clean)
    pivots = tree.glob(pivot_text) if pivot_clean else [""]
    if not pivots:
        if wild:
            return []
        raise _not_found(tree, op, src)
    try:
        include = compile_patterns([pattern]) if pattern else None
    except ValueError as err:
        raise BuildError(f"--parents: {err}", location=op.location) from None
    prefix = _wildcard_base(pattern) if has_wildcards(pattern) else pattern
    out: list[Matched] = []
    for pivot in pivots:
        start = posixpath.join(pivot, prefix) if prefix else pivot
        if prefix:
            if not tree.glob(start):
                if wild:
                    out.append(Matched(src, pivot, ()))  # dest is still made, as in BuildKit
                    continue
                raise _not_found(tree, op, src)
        elif pivot and not os.path.isdir(tree.root / tree.resolve(pivot)):
            continue  # a pivot must be a directory to have anything below it
        chosen: dict[str, SourceEntry] = {}  # pivot-relative path -> entry, in walk order
        walked: dict[str, SourceEntry] = {}
        # The directories between the pivot and the pattern's fixed prefix: parents of any match.
        parts = prefix.split("/") if prefix else []
        for i in range(1, len(parts)):
            rel = "/".join(parts[:i])
            top = next(tree.entries(posixpath.join(pivot, rel) if pivot else rel))
            walked[rel] = dataclasses.replace(top, relpath=rel)
        for e in tree.entries(start):
            rel = posixpath.join(prefix, e.relpath) if e.relpath else prefix
            if not rel:
                continue  # the pivot itself: its contents are what is copied
            e = dataclasses.replace(e, relpath=rel)
            walked[rel] = e
            if include is not None and not include.matches(rel):
                continue
            if excludes is not None and excludes.matches(rel):
                continue
            # Its parent directories come along (lazily, as BuildKit's copier creates them).
            parent = posixpath.dirname(rel)
            while parent and parent not in chosen:
                if parent in walked:
                    chosen[parent] = walked[parent]
                parent = posixpath.dirname(parent)
            chosen[rel] = e
        ordered = sorted(chosen.values(), key=lambda x: x.relpath.split("/"))
        out.append(Matched(src, pivot, tuple(ordered)))
    return out


def place(
    matches: list[Matched],
    op: CopyOp,
    inline: list[tuple[str, bytes]],
    n_sources: int,
    dest: str,
    *,
    dest_is_dir_in_image: bool,
    is_add: bool,
) -> list[Placed]:
    """Where every entry goes under ``dest`` (relative to the root), by Docker's destination rules."""
    as_dir = dest.endswith("/") or len(matches) + len(inline) > 1 or dest_is_dir_in_image
    if n_sources + len(inline) > 1 and not dest.endswith("/"):
        raise BuildError(
            "When using COPY with more than one source file, "
            "the destination must be a directory and end with a /",
            location=op.location,
        )
    base = dest.rstrip("/").lstrip("/")
    placed: list[Placed] = []
    for m in matches:
        if op.parents:
            # The pivot's contents go below dest (created even when nothing matched, as BuildKit
            # creates it); relpaths are already relative to the pivot.
            if base:
                placed.append(Placed(base, None, mkdir=True))
            for e in m.entries:
                key = posixpath.join(m.match, e.relpath)
                placed.append(Placed(posixpath.join(base, e.relpath), e, key=key))
            continue
        if not m.entries:
            continue
        top = m.entries[0]
        if top.kind == "dir":
            root_dest = base
        else:
            root_dest = posixpath.join(base, posixpath.basename(m.match)) if as_dir else base
        for e in m.entries:
            target = posixpath.join(root_dest, e.relpath) if e.relpath else root_dest
            archive = (
                is_add
                and e.relpath == ""
                and e.kind == "file"
                and getattr(op.instruction, "unpack", None) is not False
                and _is_archive(e.path)
            )
            if archive:
                target = base
            if target == "" and e.kind == "dir":
                continue  # the root itself: nothing to write
            key = posixpath.join(m.match, e.relpath) if e.relpath else m.match
            placed.append(Placed(target, e, archive=archive, key=key))
    for path, data in inline:
        target = posixpath.join(base, path) if as_dir else base
        placed.append(Placed(target, None, data=data))
    return placed


# ---- chmod --------------------------------------------------------------------------------------

_SYMBOLIC = re.compile(r"^([ugoa]*)([-+=])([rwxXst]*)$")


def apply_chmod(spec: str, mode: int, is_dir: bool) -> int:
    """``--chmod``: octal (``755``) or symbolic (``u=rwX,go=rX``) applied to ``mode``."""
    if re.fullmatch(r"[0-7]{1,4}", spec):
        return int(spec, 8)
    current = stat.S_IMODE(mode)
    for clause in spec.split(","):
        m = _SYMBOLIC.match(clause)
        if m is None:
            raise BuildError(f"invalid --chmod value {spec!r}")
        who, opr, perms = m.groups()
        who = who or "a"
        bits = 0
        shifts = {"u": 6, "g": 3, "o": 0}
        targets = [s for k, s in shifts.items() if k in who or "a" in who]
        for shift in targets:
            for p in perms:
                if p == "r":
                    bits |= 4 << shift
                elif p == "w":
                    bits |= 2 << shift
                elif p == "x" or (p == "X" and (is_dir or current & 0o111)):
                    bits |= 1 << shift
        if "s" in perms:
            bits |= (0o4000 if "u" in who or "a" in who else 0) | (0o2000 if "g" in who or "a" in who else 0)
        if "t" in perms:
            bits |= 0o1000
        if opr == "+":
            current |= bits
        elif opr == "-":
            current &= ~bits
        else:
            mask = 0
            for shift in targets:
                mask |= 7 << shift
            current = (current & ~mask) | bits
    return current


# ---- staging ------------------------------------------------------------------------------------


def _resolve_dest_dir(view: Path | None, dest_abs: str) -> str:
    """``dest_abs`` with symlinks in the image resolved (relative, no leading slash)."""
    if view is None:
        return dest_abs.lstrip("/")
    from forklift.runtime.rootpath import resolve_in_root

    if dest_abs.endswith("/"):  # a directory: a symlink to one is followed too (as BuildKit)
        rel = os.path.relpath(resolve_in_root(view, dest_abs), view)
        return "" if rel == "." else rel
    parent, name = posixpath.split(dest_abs.rstrip("/") or "/")
    real_parent = resolve_in_root(view, parent or "/")
    rel = os.path.relpath(real_parent, view)
    rel = "" if rel == "." else rel
    return posixpath.join(rel, name) if name else rel


def _make_parents(
    staging: Path, view: Path | LayeredView | None, rel_dir: str, mtime: float, made: set[str] | None = None
) -> None:
    """Create ``rel_dir`` and its parents in staging, with the image's metadata where they exist.

    ``made``: the rel dirs known to exist in staging already, kept up to date here. A COPY of
    thousands of files calls this once per file, and a path join plus a stat per component of
    every file was a tenth of a big COPY's time.
    """
    if not rel_dir or (made is not None and rel_dir in made):
        return
    parts = rel_dir.split("/")
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        if made is not None and sub in made:
            continue
        here = staging / sub
        if here.exists():
            if made is not None:
                made.add(sub)
            continue
        here.mkdir()
        if made is not None:
            made.add(sub)
        st = None
        if isinstance(view, LayeredView):
            st = view.lstat(sub)
        elif view is not None:
            with contextlib.suppress(OSError):
                st = os.lstat(view / sub)
        if st is not None and stat.S_ISDIR(st.st_mode):
            os.chmod(here, stat.S_IMODE(st.st_mode))
            os.chown(here, st.st_uid, st.st_gid)
            os.utime(here, ns=(st.st_mtime_ns, st.st_mtime_ns))
        else:
            os.chmod(here, 0o755)
            os.utime(here, (mtime, mtime))


def _forget_replaced_dirs(made: set[str], p: Placed) -> None:
    """Keep ``made`` true after ``p`` was written: an archive may replace any dir, a file or
    symlink entry replaces the dir at its path (and so everything below it), and a dir entry may
    have replaced a symlink that ``made`` saw through."""
    if p.archive:
        made.clear()
        return
    if p.dest in made:
        prefix = p.dest + "/"
        made.difference_update([d for d in made if d == p.dest or d.startswith(prefix)])
    if p.entry is not None and p.entry.kind == "dir":
        made.add(p.dest)


def _write_entry(
    p: Placed,
    staging: Path,
    owner: tuple[int, int] | None,
    chmod: str | None,
    dir_times: list[tuple[Path, int]],
    reuse: str | Path | None = None,
    location: SourceLocation | None = None,
    *,
    fresh: bool = False,
) -> None:
    """Write one placed entry into the staging dir. ``reuse``: the same file in the previous
    snapshot of this step, known to be identical; it is hard-linked (snapshots are immutable).
    ``fresh``: nothing is at the entry's path yet and its parent dir exists (the caller knows)."""
    e = p.entry
    if fresh and e is not None and e.kind in ("file", "symlink") and not p.archive:
        # The common case, thousands of times in a big COPY: str paths, no checks to make.
        _write_leaf(os.path.join(staging, p.dest), e, owner, chmod, reuse)
        return
    target = staging / p.dest
    if e is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(p.data)
        mode = 0o644
        uid, gid = owner or (0, 0)
        os.chmod(target, apply_chmod(chmod, mode, False) if chmod else mode)
        os.chown(target, uid, gid)
        return
    uid, gid = owner if owner is not None else (e.uid, e.gid)
    if p.archive:
        target.mkdir(parents=True, exist_ok=True)
        _extract_archive(e.path, target, location)
        return
    if e.kind == "dir":
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, apply_chmod(chmod, e.mode, True) if chmod else e.mode)
        os.chown(target, uid, gid)
        dir_times.append((target, e.mtime_ns))
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(target):
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    _write_leaf(str(target), e, owner, chmod, reuse)


def _write_leaf(
    target: str, e: SourceEntry, owner: tuple[int, int] | None, chmod: str | None, reuse: str | Path | None
) -> None:
    """Write a file or symlink entry at ``target``, where nothing is."""
    uid, gid = owner if owner is not None else (e.uid, e.gid)
    if e.kind == "symlink":
        os.symlink(e.link_target, target)
        os.lchown(target, uid, gid)
        os.utime(target, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
    elif e.kind == "file":
        if reuse is not None:
            try:
                os.link(reuse, target)
                return
            except OSError:
                pass  # another filesystem, or a link limit: copy
        shutil.copyfile(e.host, target, follow_symlinks=False)
        os.chown(target, uid, gid)
        os.chmod(target, apply_chmod(chmod, e.mode, False) if chmod else e.mode)
        os.utime(target, ns=(e.mtime_ns, e.mtime_ns))


def _extract_archive(path: Path, target: Path, location: SourceLocation | None = None) -> None:
    """ADD of a local tar archive (gzip, bzip2, xz, zstd or plain): extracted safely into ``target``.

    A user's archive is not an image layer: its ``.wh.*`` files are ordinary files, as in BuildKit.
    """
    from forklift.oci.compression import open_uncompressed
    from forklift.snapshot.unpack import ApplyOptions, apply_layer

    options = ApplyOptions(mode="merge", same_owner=True, whiteouts=False)
    try:
        with open(path, "rb") as f, open_uncompressed(f) as tar:
            apply_layer(tar, target, options=options)
    except ForkliftError as err:  # ImageError: a malformed or hostile archive
        raise BuildError(f"cannot extract {path.name}: {err.message}", location=location) from err
    except (OSError, tarfile.TarError) as err:
        raise BuildError(f"cannot extract {path.name}: {err}", location=location) from err


def _owner(view: Path | None, chown: str | None, *, names: bool = True) -> tuple[int, int] | None:
    """The uid/gid of ``--chown``; names are looked up in the image at ``view`` (``names``=False:
    None for names, without looking)."""
    if not chown:
        return None
    user, _, group = chown.partition(":")
    if user.isdigit() and (not group or group.isdigit()):
        return int(user), int(group) if group else int(user)
    if not names:
        return None
    if view is None:
        raise BuildError(f"--chown={chown}: names need /etc/passwd in the image (use numeric ids)")
    from forklift.runtime.users import resolve_user

    uid, gid, _ = resolve_user(view, chown)
    return uid, gid


def _download(
    env: BuildEnv, url: str, checksum: str | None, scratch: Path, location: SourceLocation
) -> SourceEntry:
    """ADD <url>: download, verify ``--checksum``, mode 0600 as BuildKit."""
    import httpx

    env.downloaded = True
    name = posixpath.basename(url.split("?", 1)[0].rstrip("/")) or "index.html"
    path = scratch / "download" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as resp:
            if resp.status_code != 200:
                raise BuildError(f"ADD {url}: HTTP {resp.status_code}", location=location)
            with open(path, "wb") as f:
                for chunk in resp.iter_bytes():
                    h.update(chunk)
                    f.write(chunk)
    except httpx.HTTPError as err:
        raise BuildError(f"ADD {url}: {err}", location=location) from err
    digest = "sha256:" + h.hexdigest()
    if checksum and checksum != digest:
        raise BuildError(
            f"ADD {url}: checksum mismatch: expected {checksum}, got {digest}", location=location
        )
    st = os.stat(path)
    return SourceEntry("", str(path), "file", 0o600, 0, 0, st.st_size, st.st_mtime_ns, "", digest)


def _git_sources(sources: list[str], op: CopyOp) -> list[tuple[str, GitRef]]:
    """The ADD sources that are git repositories (BuildKit's detection), with their parsed refs."""
    from forklift.execute.ops.gitsource import parse_git_ref

    found: list[tuple[str, GitRef]] = []
    for text in sources:
        try:
            ref = parse_git_ref(text)
        except ValueError as err:
            raise BuildError(f"ADD {text}: {err}", location=op.location) from None
        if ref is not None:
            found.append((text, ref))
    return found


def _resolve_git(
    env: BuildEnv, gits: list[tuple[str, GitRef]], checksum: str | None, location: SourceLocation
) -> list[str]:
    """The commit of each git source now (``git ls-remote``; a full commit id needs no network),
    checked against ``--checksum`` (a commit id or prefix) when one is given."""
    if not gits:
        return []
    from forklift.execute.ops.gitsource import check_commit_checksum, resolve_commit

    commits = [resolve_commit(ref, location=location) for _, ref in gits]
    if any(ref.ref != sha for (_, ref), sha in zip(gits, commits)):
        env.downloaded = True  # a branch or tag can move: remote state, so the build is not memoized
    if checksum:
        for sha in commits:
            check_commit_checksum(sha, checksum, location=location)
    return commits


def _place_git(
    ref: GitRef, sha: str, dest_rel: str, scratch: Path, op: CopyOp, *, keep_git_dir: bool
) -> list[Placed]:
    """Check ``sha`` out under ``scratch`` (an empty directory the caller removes) and place its
    files: the checkout's contents go into ``dest``, a directory made with the checkout root's
    metadata when new (as BuildKit copies ``/`` of a git source). ``--exclude`` patterns match
    paths relative to the checkout root."""
    from forklift.execute.ops.gitsource import checkout

    done = checkout(ref, sha, scratch, keep_git_dir=keep_git_dir, location=op.location)
    tree = SourceTree(done.root, label=f"git source {ref.remote}")
    excludes = _exclude_matcher(op)
    return [
        Placed(posixpath.join(dest_rel, e.relpath) if e.relpath else dest_rel, e, key=f"git:{e.relpath}")
        for e in tree.entries("")
        if (e.relpath or dest_rel) and not (excludes and e.relpath and excludes.matches(e.relpath))
    ]


def run_copy(
    env: BuildEnv,
    stepper: Stepper,
    state: StageState,
    op: CopyOp,
    index: int,
    done: dict[int, StageResult],
    read_ahead: CopySourceReadAhead | None = None,
) -> StageState:
    """One COPY/ADD step through the cache (its sources perhaps read ahead: ``read_ahead``)."""
    scope = state.env()
    esc = env.options.escape

    def expand(text: str) -> str:
        return expand_at(text, scope, escape=esc, location=op.location)

    keyword = op.instruction.keyword  # "COPY" or "ADD"
    is_add = keyword == "ADD"
    raw_sources = [expand(s) for s in op.paths]
    dest_text = expand(op.dest)
    chown = expand(op.chown) if op.chown else None
    chmod = expand(op.chmod) if op.chmod else None
    checksum = getattr(op.instruction, "checksum", None)
    dest_abs = _abs_dest(dest_text, state.container.working_dir)
    if dest_text.endswith("/") and not dest_abs.endswith("/"):
        dest_abs += "/"
    gits = _git_sources(raw_sources, op) if is_add else []
    git_texts = {text for text, _ in gits}
    urls = [s for s in raw_sources if is_add and s not in git_texts and _is_url(s)]
    local = [s for s in raw_sources if s not in urls and s not in git_texts]
    keep_git_dir = bool(getattr(op.instruction, "keep_git_dir", False))
    flags = f"chown={chown} chmod={chmod} link={op.link} parents={op.parents} exclude={','.join(op.excludes)}"
    flags += f" unpack={getattr(op.instruction, 'unpack', None)}"
    if gits:
        flags += f" keep-git-dir={keep_git_dir}"

    inline = [(i.path, (expand(i.data) if i.expand else i.data).encode()) for i in op.inline]
    memo = from_memo_key(op, done, local)
    digests = load_from_memo(env, memo) if memo is not None else None
    matches: list[Matched] | None = None

    with contextlib.ExitStack() as stack:
        scratch = env.snapshots.scratch_dir("copy")
        stack.callback(shutil.rmtree, scratch, True)
        url_entries = [
            _download(env, u, expand(checksum) if checksum else None, scratch, op.location) for u in urls
        ]
        commits = _resolve_git(env, gits, expand(checksum) if checksum else None, op.location)
        trees: list[SourceTree] = []  # the tree the local sources were read from
        ahead = read_ahead.take(op) if read_ahead is not None else None
        if ahead is not None:
            stack.callback(ahead.stack.close)
        if digests is None:
            if ahead is not None and list(ahead.sources) == local:
                tree, matches, digests = ahead.tree, cast("list[Matched]", ahead.matches), ahead.digests
            else:
                tree = stack.enter_context(source_tree(env, op, done)) if local else env.context
                matches, digests = gather(tree, op, local) if local else ([], [])
            trees.append(tree)
            if memo is not None:
                _save_memo(env, memo, digests)
        key_digests = [
            *digests,
            *(SourceDigest(f"url {u}", e.digest) for u, e in zip(urls, url_entries)),
            *(SourceDigest(text, f"git:{sha}") for (text, _), sha in zip(gits, commits)),
            *(SourceDigest(f"inline {p}", "sha256:" + hashlib.sha256(d).hexdigest()) for p, d in inline),
        ]
        text_sources = [*op.paths] + [f"<<{i.path}" for i in op.inline]
        inputs = StepInputs(
            parent="link" if op.link else state.identity(),
            instruction=f"{keyword} {' '.join(raw_sources)} {dest_abs} [{flags}]",
            sources=tuple(key_digests),
            metadata=env.epoch_inputs(),
        )

        def run(vertex: int) -> Outcome:
            nonlocal matches
            if matches is None:
                tree = stack.enter_context(source_tree(env, op, done))
                trees.append(tree)
                matches, _ = gather(tree, op, local)
            # What the destination is in the image decides "dir or file" for a single source, and
            # symlinks on the way to it are followed inside the image.
            view: Path | None = None
            layered: LayeredView | None = None
            plain: str | None = None
            if state.layers and not op.link:
                numeric_owner = not chown or _owner(None, chown, names=False) is not None
                if len(state.layers) > 1 and numeric_owner:
                    # No overlay mount (0.1 s) in the common case: no symlink on the way to the
                    # destination and no user names to look up. One layer is its snapshot: no mount.
                    layered = LayeredView(lower_dirs(env, state))
                    plain = layered.plain_dest(dest_abs)
                    if plain is None:
                        layered = None
                if layered is None:
                    view = stack.enter_context(image_view(env, state))
            dest_rel = plain if plain is not None else _resolve_dest_dir(view, dest_abs)
            if layered is not None:
                dest_st = layered.lstat(dest_rel)
                dest_is_dir = dest_st is not None and stat.S_ISDIR(dest_st.st_mode)
            else:
                dest_is_dir = (
                    view is not None and (view / dest_rel).is_dir() and not (view / dest_rel).is_symlink()
                )
            placed = place(
                matches,
                op,
                inline,
                len(raw_sources),
                "/" + dest_rel + ("/" if dest_abs.endswith("/") else ""),
                dest_is_dir_in_image=dest_is_dir,
                is_add=is_add,
            )
            for e in url_entries:
                as_dir = dest_abs.endswith("/") or len(raw_sources) > 1
                if getattr(op.instruction, "unpack", None) is True and _is_archive(e.path):
                    placed.append(Placed(dest_rel, e, archive=True))  # ADD --unpack=true <url>
                    continue
                placed.append(Placed(posixpath.join(dest_rel, e.path.name) if as_dir else dest_rel, e))
            for i, ((_, ref), sha) in enumerate(zip(gits, commits)):
                checkout_dir = scratch / f"git-{i}"
                checkout_dir.mkdir()
                placed.extend(_place_git(ref, sha, dest_rel, checkout_dir, op, keep_git_dir=keep_git_dir))
            staging = env.snapshots.scratch_dir("stage")
            try:
                now = (
                    float(env.options.source_date_epoch)
                    if env.options.source_date_epoch is not None
                    else _now()
                )
                owner = _owner(view, chown)
                dir_times: list[tuple[Path, int]] = []
                same = _unchanged_files(stepper, inputs)
                old = stepper.previous_snapshot
                originals = _SnapshotOriginals(trees[-1]) if trees and trees[-1].layers else None
                made: set[str] = set()  # rel dirs that exist in staging
                written: set[str] = set()  # every dest written so far (staging starts empty)
                archived = False  # an extracted archive may have put anything anywhere
                for p in placed:
                    if p.mkdir:
                        _make_parents(staging, None if op.link else (layered or view), p.dest, now, made)
                        continue
                    parent = posixpath.dirname(p.dest)
                    _make_parents(staging, None if op.link else (layered or view), parent, now, made)
                    reuse = None
                    if old is not None and p.entry is not None and p.entry.kind == "file" and not p.archive:
                        reuse = _reusable(os.path.join(old, p.dest), p, owner, chmod, same)
                    if reuse is None and originals is not None and not p.archive:
                        reuse = originals.linkable(p, owner, chmod)
                    fresh = not archived and p.dest != "" and p.dest not in written and p.dest not in made
                    _write_entry(p, staging, owner, chmod, dir_times, reuse, op.location, fresh=fresh)
                    _forget_replaced_dirs(made, p)
                    written.add(p.dest)
                    archived = archived or p.archive
                for path, mtime_ns in reversed(dir_times):
                    os.utime(path, ns=(mtime_ns, mtime_ns))
                layer = store_layer(env, DirectorySource(staging), lazy=not stepper.eager_layers)
                if layer is None:
                    shutil.rmtree(staging, ignore_errors=True)
                    return Outcome(None)
                return Outcome(layer, staging, source_kind="dir")
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise

        return stepper.step(
            state,
            index=index,
            text=op.text,
            history=copy_history(keyword, text_sources, dest_text),
            inputs=inputs,
            run=run,
            location=str(op.location),
        )


def _unchanged_files(stepper: Stepper, inputs: StepInputs) -> set[str]:
    """Source paths whose entry (kind, mode, owner, content digest) is what the last build at this
    step position copied, when that build had the same instruction (same destination and flags)."""
    before = stepper.previous_inputs
    if before is None or before.instruction != inputs.instruction or before.parent != inputs.parent:
        return set()
    old = {f for s in before.sources for f in s.files}
    return {path for s in inputs.sources for path, line in s.files if (path, line) in old}


def _reusable(
    candidate: str, p: Placed, owner: tuple[int, int] | None, chmod: str | None, same: set[str]
) -> str | None:
    """``candidate`` (in the previous snapshot) when it is exactly the file entry ``p`` becomes:
    same content and metadata in the cache inputs, and the same size, mtime, mode and owner on disk."""
    e = p.entry
    if e is None or p.key not in same:
        return None
    try:
        st = os.lstat(candidate)
    except OSError:
        return None
    return candidate if _lands_as(st, e, owner, chmod) else None


def _lands_as(st: os.stat_result, e: SourceEntry, owner: tuple[int, int] | None, chmod: str | None) -> bool:
    """Whether the file ``st`` is what entry ``e`` becomes in the layer: a regular file of the
    same size and mtime, with the mode and owner COPY gives it (so it may be hard-linked)."""
    uid, gid = owner if owner is not None else (e.uid, e.gid)
    mode = apply_chmod(chmod, e.mode, False) if chmod else e.mode
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_size == e.size
        and st.st_mtime_ns == e.mtime_ns
        and stat.S_IMODE(st.st_mode) == mode
        and (st.st_uid, st.st_gid) == (uid, gid)
    )


class _SnapshotOriginals:
    """The files of an image's or a stage's snapshots that a COPY --from may hard-link.

    A snapshot never changes, so a copied file whose owner, mode and mtime stay those of the
    original (and that has no xattrs, which a copy does not carry) can be a link to it: free,
    where copying a 20 MB artifact took ~50 ms. Each original is linked once per step, so the
    layer shows no hard links the source did not have.
    """

    def __init__(self, tree: SourceTree) -> None:
        self._root = str(tree.root)
        self._view = LayeredView(tree.layers) if len(tree.layers) > 1 else None
        self._single = str(tree.layers[0]) if len(tree.layers) == 1 else None
        self._linked: set[tuple[int, int]] = set()

    def linkable(self, p: Placed, owner: tuple[int, int] | None, chmod: str | None) -> str | None:
        """The original of file entry ``p`` when the copy would be identical to it; else None."""
        e = p.entry
        if e is None or e.kind != "file":
            return None
        rel = os.path.relpath(e.host, self._root)
        if rel.startswith(".."):
            return None
        if self._view is not None:
            found = self._view.locate(rel)
            if found is None:
                return None
            original, st = found
        else:
            assert self._single is not None
            original = os.path.join(self._single, rel)
            try:
                st = os.lstat(original)
            except OSError:
                return None
        inode = (st.st_dev, st.st_ino)
        if inode in self._linked or not _lands_as(st, e, owner, chmod):
            return None
        try:
            if os.listxattr(original, follow_symlinks=False):
                return None
        except OSError:
            return None
        self._linked.add(inode)
        return original


def from_memo_key(op: CopyOp, done: Mapping[int, StageResult], local: list[str]) -> str | None:
    """COPY --from=<stage>: the source digests depend only on the stage's content identity and the
    patterns, so they are remembered and a cached rebuild neither mounts nor hashes the stage."""
    if not isinstance(op.source, StageRef) or not local:
        return None
    stage = done[op.source.index]
    return copy_memo.key(stage.state.identity(), local, op.excludes, op.parents, stage.name)


def load_from_memo(env: BuildEnv, memo: str) -> list[SourceDigest] | None:
    return copy_memo.load(env.cache.layout, memo)


def _save_memo(env: BuildEnv, memo: str, digests: list[SourceDigest]) -> None:
    copy_memo.save(env.cache.layout, memo, digests)


def _now() -> float:
    import time

    return time.time()


def run_workdir(
    env: BuildEnv,
    stepper: Stepper,
    state: StageState,
    path: str,
    index: int,
    text: str,
    location: SourceLocation,
) -> StageState:
    """WORKDIR: set it, and create the directory (owned by USER) in a layer when it is missing."""
    from forklift.execute.ops.config import resolve_workdir, set_workdir

    workdir = resolve_workdir(state.container, path)
    inputs = StepInputs(
        parent=state.identity(),
        instruction=f"WORKDIR {workdir} user={state.container.user}",
        metadata=env.epoch_inputs(),
    )

    def run(vertex: int) -> Outcome:
        with contextlib.ExitStack() as stack:
            view = stack.enter_context(image_view(env, state)) if state.layers else None
            rel = _resolve_dest_dir(view, workdir)
            if view is not None and (view / rel).is_dir():
                return Outcome(None)
            staging = env.snapshots.scratch_dir("stage")
            now = (
                float(env.options.source_date_epoch) if env.options.source_date_epoch is not None else _now()
            )
            _make_parents(staging, view, rel, now)
            if state.container.user and view is not None:
                owner = _owner(view, state.container.user) if ":" in state.container.user else None
                if owner is None:
                    from forklift.runtime.users import resolve_user

                    uid, gid, _ = resolve_user(view, state.container.user)
                    owner = (uid, gid)
                os.chown(staging / rel, *owner)
            layer = store_layer(env, DirectorySource(staging), lazy=not stepper.eager_layers)
            if layer is None:
                shutil.rmtree(staging, ignore_errors=True)
                return Outcome(None)
            return Outcome(layer, staging, source_kind="dir")

    return stepper.step(
        state,
        index=index,
        text=text,
        history=f"WORKDIR {workdir}",
        inputs=inputs,
        run=run,
        after=lambda s: s.with_container(set_workdir(s.container, path)),
        location=str(location),
    )
