"""The build context: source lookup (wildcards, .dockerignore) and content digests, stat-cached.

A file's content is read only when its (size, mtime, inode, ctime) changed since the last build
that hashed it: the stat cache lives under ``<store root>/cache/context-stat/`` and is rewritten
atomically after each build. A source set's digest covers (relpath, mode, uid/gid, link target,
content digest) of every entry, so renames, mode changes and content changes all change it while
an mtime-only ``touch`` does not (as BuildKit).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from forklift.errors import BuildError
from forklift.fsatomic import atomic_write
from forklift.oci.storelayout import StoreLayout
from forklift.records import record

if TYPE_CHECKING:
    from forklift.dockerfile.ignore import DockerIgnore

_HASH_CHUNK = 1 << 20
# A file modified this recently may still change within the same timestamp tick (a kernel tick is at
# most 10 ms): do not trust a cached digest for it next time (git's "racily clean" problem).
_RACY_SECONDS = 0.1


class IgnoreRules(Protocol):
    """What the context needs of ``dockerfile.ignore.DockerIgnore``."""

    def matches(self, path: str) -> bool:
        """True when ``path`` (relative, ``/``-separated) is excluded."""
        ...

    def may_skip_dir(self, path: str) -> bool:
        """True when nothing below directory ``path`` can be re-included."""
        ...


@record
class SourceEntry:
    """One file, directory or symlink of a source set, as it will land in a layer."""

    relpath: str  # relative to the source root it was found under ("" for the root itself)
    host: str  # where to read it on the host (a str: a Path per entry cost 40% of a big walk)
    kind: str  # "file", "dir", "symlink", "other"
    mode: int  # permission bits (and suid/sgid/sticky)
    uid: int
    gid: int
    size: int
    mtime_ns: int
    link_target: str = ""
    digest: str = ""  # sha256 of the content, for files; "" otherwise

    @cached_property
    def path(self) -> Path:
        """``host`` as a Path, made on first use."""
        return Path(self.host)


def source_set_digest(entries: list[SourceEntry] | tuple[SourceEntry, ...]) -> str:
    """The digest of a source set: one line per entry of (relpath, kind, mode, uid:gid, link, digest)."""
    h = hashlib.sha256()
    for e in entries:
        h.update(
            f"{e.relpath}\0{e.kind}\0{e.mode:o}\0{e.uid}:{e.gid}\0{e.link_target}\0{e.digest}\n".encode()
        )
    return "sha256:" + h.hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class StatCache:
    """relpath -> (size, mtime_ns, ino, ctime_ns, digest), loaded once and saved atomically.

    Thread-safe: concurrent stages hash through one cache.
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._entries: dict[str, list[object]] = {}
        self._dirty = False
        if path is not None:
            try:
                data = json.loads(path.read_text())
                if isinstance(data, dict):
                    self._entries = data
            except (OSError, ValueError):
                pass
        self.hashed = 0  # files whose content was read this build (tests and progress use it)

    @staticmethod
    def for_context(store_root: Path, context_dir: Path) -> StatCache:
        """The stat cache of ``context_dir`` kept under ``store_root``."""
        name = hashlib.sha256(str(context_dir.resolve()).encode()).hexdigest()[:32]
        return StatCache(StoreLayout(store_root).context_stat / f"{name}.json")

    def digest(self, relpath: str, path: str | os.PathLike[str], st: os.stat_result) -> str:
        """The content digest of ``path``, reading it only when its stat signature changed."""
        sig = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
        with self._lock:
            cached = self._entries.get(relpath)
        if cached is not None and cached[:4] == sig:
            return str(cached[4])
        digest = file_digest(path)
        racy = time.time() - max(st.st_mtime, st.st_ctime) < _RACY_SECONDS
        with self._lock:
            self.hashed += 1
            if racy:
                self._entries.pop(relpath, None)
            else:
                self._entries[relpath] = [*sig, digest]
            self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache back (atomically) if anything changed."""
        if self._path is None or not self._dirty:
            return
        with self._lock:
            text = json.dumps(self._entries, separators=(",", ":"))
            atomic_write(self._path, text, durable=False, parents=True)
            self._dirty = False


_MAGIC = re.compile(r"[*?\[\\]")


def has_wildcards(pattern: str) -> bool:
    """True when ``pattern`` uses Go filepath.Match metacharacters."""
    return _MAGIC.search(pattern) is not None


def _component_regex(component: str) -> re.Pattern[str]:
    """Go filepath.Match for one path component: ``*``, ``?``, ``[...]`` (``^`` negates), ``\\`` escapes."""
    out: list[str] = []
    i = 0
    n = len(component)
    while i < n:
        c = component[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(component[i]))
        elif c == "[":
            j = i + 1
            body: list[str] = []
            if j < n and component[j] == "^":
                body.append("^")
                j += 1
            while j < n and component[j] != "]":
                if component[j] == "\\" and j + 1 < n:
                    j += 1
                    body.append(re.escape(component[j]))
                elif component[j] == "-":
                    body.append("-")
                else:
                    body.append(re.escape(component[j]))
                j += 1
            if j >= n:
                raise BuildError(f"bad wildcard pattern {component!r}: unterminated '['")
            out.append("[" + "".join(body) + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def match_path(pattern: str, path: str) -> bool:
    """Go ``filepath.Match(pattern, path)`` for ``/``-separated paths."""
    pparts = [p for p in pattern.split("/") if p]
    parts = [p for p in path.split("/") if p]
    if len(pparts) != len(parts):
        return False
    return all(_component_regex(pp).match(p) for pp, p in zip(pparts, parts))


def clean_source(src: str) -> str:
    """A COPY source relative to its root: leading ``/`` and ``./`` dropped, trailing ``/`` ignored.

    ``..`` that would leave the root is refused (the context is the boundary of what a build reads).
    """
    parts: list[str] = []
    for part in src.replace("\\\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise BuildError(
                    f"source {src!r} is outside the build context", hint="sources are relative to the context"
                )
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


class SourceTree:
    """A directory tree that COPY reads from: the build context (with .dockerignore) or a stage root.

    Paths never leave ``root``: ``..`` is refused, and a symlink met while resolving a source path
    is followed only while it stays inside ``root``.
    """

    def __init__(
        self,
        root: Path,
        *,
        ignore: IgnoreRules | None = None,
        stat_cache: StatCache | None = None,
        keep_owner: bool = False,
        label: str = "build context",
        layers: Sequence[Path] = (),
    ) -> None:
        self.root = root
        # An image's or a stage's tree: the snapshot dirs ``root`` shows, top-most first. Snapshots
        # never change, so a COPY may hard-link their files instead of copying them.
        self.layers = tuple(layers)
        self._root_str = str(root)  # the walk joins str paths: a Path per entry is slow
        self.ignore = ignore
        self.stat_cache = stat_cache
        self.keep_owner = keep_owner  # COPY from the context makes files root-owned; --from keeps owners
        self.label = label
        # Every path this build looked at, with its stat signature (size, mtime, inode, ctime): a
        # rebuild whose read set is unchanged can reuse the whole previous result (see execute.cache.memo).
        self.reads: dict[str, list[int]] = {}

    def _seen(self, rel: str, st: os.stat_result | None = None) -> None:
        if st is None:
            try:
                st = os.lstat(self.root / rel if rel else self.root)
            except OSError:
                self.reads[rel] = []
                return
        self.reads[rel] = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]

    # -- lookup -------------------------------------------------------------------------------
    def _ignored(self, rel: str) -> bool:
        return self.ignore is not None and rel != "" and self.ignore.matches(rel)

    def resolve(self, rel: str) -> str:
        """``rel`` with every symlink along it resolved inside the root; refused when one escapes."""
        parts = [p for p in rel.split("/") if p]
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if not done:
                    raise BuildError(f"source {rel!r} escapes the {self.label}")
                done.pop()
                continue
            cand = self.root.joinpath(*done, part)
            self._seen("/".join([*done, part]))
            if cand.is_symlink():
                hops += 1
                if hops > 40:
                    raise BuildError(f"too many levels of symbolic links in {rel!r}")
                target = os.readlink(cand)
                if target.startswith("/"):
                    if self.label == "build context":
                        raise BuildError(
                            f"source {rel!r} is a symlink to {target!r}, outside the {self.label}",
                            hint="a COPY source must stay inside the build context",
                        )
                    done = []
                    parts = [p for p in target.split("/") if p] + parts
                    continue
                tparts = [p for p in target.split("/") if p]
                depth = len(done)
                for t in tparts:
                    if t == "..":
                        depth -= 1
                        if depth < 0:
                            raise BuildError(
                                f"source {rel!r} is a symlink to {target!r}, outside the {self.label}",
                                hint="a COPY source must stay inside the build context",
                            )
                    elif t != ".":
                        depth += 1
                parts = tparts + parts
                continue
            done.append(part)
        return "/".join(done)

    def glob(self, pattern: str) -> list[str]:
        """Relative paths under the root matching a COPY source pattern (sorted), ignoring excluded ones."""
        clean = clean_source(pattern)
        if not has_wildcards(clean):
            if clean == "":
                return [""]
            rel = self.resolve(clean)
            self._seen(rel)
            if self._ignored(rel) or not os.path.lexists(self.root / rel):
                return []
            return [rel]
        found: list[str] = []
        comps = clean.split("/")

        def walk(base: str, idx: int) -> None:
            comp = comps[idx]
            last = idx == len(comps) - 1
            if not has_wildcards(comp):
                names = [comp.replace("\\", "")]
            else:
                self._seen(base)
                try:
                    names = sorted(os.listdir(self.root / base if base else self.root))
                except OSError:
                    return
                rx = _component_regex(comp)
                names = [n for n in names if rx.match(n)]
            for name in names:
                rel = f"{base}/{name}" if base else name
                if not os.path.lexists(self.root / rel) or self._ignored(rel):
                    continue
                if last:
                    found.append(rel)
                elif (self.root / rel).is_dir():
                    walk(self.resolve(rel), idx + 1)

        walk("", 0)
        return sorted(found)

    # -- entries ------------------------------------------------------------------------------
    def _entry(self, rel_in_root: str, relpath: str, st: os.stat_result) -> SourceEntry:
        path = os.path.join(self._root_str, rel_in_root) if rel_in_root else self._root_str
        self._seen(rel_in_root, st)
        uid, gid = (st.st_uid, st.st_gid) if self.keep_owner else (0, 0)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            return SourceEntry(relpath, path, "symlink", mode, uid, gid, 0, st.st_mtime_ns, os.readlink(path))
        if stat.S_ISDIR(st.st_mode):
            return SourceEntry(relpath, path, "dir", mode, uid, gid, 0, st.st_mtime_ns)
        if stat.S_ISREG(st.st_mode):
            if self.stat_cache is not None:
                digest = self.stat_cache.digest(rel_in_root, path, st)
            else:
                digest = file_digest(path)
            return SourceEntry(relpath, path, "file", mode, uid, gid, st.st_size, st.st_mtime_ns, "", digest)
        return SourceEntry(relpath, path, "other", mode, uid, gid, 0, st.st_mtime_ns)

    def entries(self, rel: str, *, follow: bool = True) -> Iterator[SourceEntry]:
        """``rel`` itself (relpath "") and, for a directory, everything below it not excluded.

        ``follow``: the top-level source is resolved through symlinks (inside the root), as
        BuildKit does; symlinks below it are kept as symlinks.
        """
        real = self.resolve(rel) if follow else rel
        top = self.root / real if real else self.root
        st = os.lstat(top)
        yield self._entry(real, "", st)
        if not stat.S_ISDIR(st.st_mode):
            return
        yield from self._walk(real, "")

    def _walk(self, real: str, relpath: str) -> Iterator[SourceEntry]:
        base = os.path.join(self._root_str, real) if real else self._root_str
        try:
            with os.scandir(base) as it:
                children = sorted(it, key=lambda d: d.name)
        except OSError as err:
            raise BuildError(f"cannot read {real or '.'} in the {self.label}: {err.strerror}") from err
        for child in children:
            crel = f"{real}/{child.name}" if real else child.name
            cpath = f"{relpath}/{child.name}" if relpath else child.name
            is_dir = child.is_dir(follow_symlinks=False)
            if self.ignore is not None and self.ignore.matches(crel):
                if is_dir and not self.ignore.may_skip_dir(crel):
                    # An exception pattern (!x) may re-include something below: descend anyway.
                    # _walk checks every child against the rules itself.
                    self._seen(crel)
                    yield from self._walk(crel, cpath)
                continue
            st = child.stat(follow_symlinks=False)
            yield self._entry(crel, cpath, st)
            if is_dir:
                yield from self._walk(crel, cpath)


def read_dockerignore(context: Path, dockerfile: Path | None) -> DockerIgnore | None:
    """The build's ignore file, parsed: ``<Dockerfile>.dockerignore`` next to the Dockerfile wins
    over ``CONTEXT/.dockerignore``, as in BuildKit. None when there is neither."""
    from forklift.dockerfile.ignore import parse_dockerignore

    candidates = [context / ".dockerignore"]
    if dockerfile is not None:
        candidates.insert(0, dockerfile.with_name(dockerfile.name + ".dockerignore"))
    for candidate in candidates:
        try:
            text = candidate.read_bytes().decode("utf-8", errors="replace")
        except OSError:  # absent, or a directory: not an ignore file
            continue
        return parse_dockerignore(text, file=str(candidate))
    return None
