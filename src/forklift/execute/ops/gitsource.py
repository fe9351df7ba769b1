"""``ADD <git ref> <dest>``: recognise git sources, resolve them to a commit, check them out.

Detection follows BuildKit's ``gitutil.ParseGitRef``: ``git://`` and ``ssh://`` URLs, scp-style
``user@host:path``, and ``http(s)://`` URLs whose path ends in ``.git``. An optional fragment picks
the ref and a subdirectory: ``#<branch|tag|commit>[:<subdir>]``, or BuildKit's CSV form
``##ref=<ref>,subdir=<dir>``.

The commit is resolved with ``git ls-remote`` (no clone) so it can go into the cache key: a moved
branch misses the cache, an unchanged one hits without fetching. A full commit id needs no network
at all. On a miss the commit is fetched shallowly (``git fetch --depth 1``) into a scratch
directory with the real ``git`` binary, checked out, and normalised for a deterministic layer:
directories 0755, files 0644 or 0755 (git's executable bit), every mtime the commit time (as
BuildKit's ``git.mtime=commit``), ``.git`` removed unless ``--keep-git-dir=true``.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from forklift.errors import BuildError, SourceLocation
from forklift.records import record

_PROTO = re.compile(r"^([a-zA-Z0-9]+)://")
_SUPPORTED = frozenset({"http", "https", "git", "ssh"})
# scp-style ``user@host:path[#fragment]``; BuildKit's dockerfile 1.7 era form needs the user part,
# which keeps ``ADD a:b /x`` (a local file with a colon) local.
_SCP = re.compile(r"^([a-zA-Z0-9_-]+)@([a-zA-Z0-9.-]+):(.*?)(?:#(.*))?$")
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_TIMEOUT = 300  # seconds for one git command (a fetch of a big repository over a slow link)


@record
class GitRef:
    """A parsed git source: the remote to hand to git, the ref ("" = the remote's HEAD), a subdir."""

    remote: str
    ref: str = ""
    subdir: str = ""
    commit: str = ""  # ``##...,commit=<sha>``: the commit ``ref`` must resolve to


def _split_fragment(fragment: str) -> tuple[str, str, str]:
    """(ref, subdir, commit) of ``ref[:subdir]``, or of the CSV form ``#ref=..,commit=..,subdir=..``
    (the URL had ``##``)."""
    if fragment.startswith("#"):
        ref = subdir = commit = ""
        for field in filter(None, fragment[1:].split(",")):
            key, eq, value = field.partition("=")
            key = key.strip().lower()
            if not eq or key not in ("ref", "subdir", "commit"):
                raise ValueError(
                    f"invalid git fragment field {field!r} (supported keys: ref, commit, subdir)"
                )
            if key == "ref":
                ref = value
            elif key == "subdir":
                subdir = value
            else:
                commit = value
        return ref or commit, subdir, commit
    ref, _, subdir = fragment.partition(":")
    return ref, subdir, ""


def parse_git_ref(src: str) -> GitRef | None:
    """The git source ``src`` names, or None when it is not one (a local path or a plain URL).

    Raises ValueError for a git URL with a malformed fragment.
    """
    if src.startswith(("./", "../")):
        return None
    proto = _PROTO.match(src)
    if proto is not None:
        scheme = proto.group(1).lower()
        if scheme not in _SUPPORTED:
            return None
        remote, _, fragment = src.partition("#")
        # An HTTP(S) URL is a git source only when its path ends in ".git".
        if scheme in ("http", "https") and not urlsplit(remote).path.endswith(".git"):
            return None
    else:
        m = _SCP.match(src)
        if m is None:
            return None
        remote, fragment = src.partition("#")[0], m.group(4) or ""
    ref, subdir, commit = _split_fragment(fragment) if fragment else ("", "", "")
    return GitRef(remote, ref, subdir, commit)


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GIT_TERMINAL_PROMPT="0",  # never ask for a password: fail instead
        GIT_ASKPASS="true",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_SSH_COMMAND=env.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
        LC_ALL="C",
    )
    return env


def _git(
    args: list[str], *, cwd: Path | None, what: str, location: SourceLocation | None
) -> subprocess.CompletedProcess[str]:
    """Run git; a failure becomes a BuildError quoting git's last message line."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=_git_env(),
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise BuildError(
            f"{what}: the git binary is not installed",
            location=location,
            hint="install git (apt-get install git)",
        ) from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what}: git timed out after {_TIMEOUT} s", location=location) from None
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"git exited with status {proc.returncode}"
        raise BuildError(f"{what}: {detail}", location=location)
    return proc


def _display(remote: str) -> str:
    """The remote without a password (for messages)."""
    parts = urlsplit(remote)
    if parts.password:
        return remote.replace(f":{parts.password}@", ":***@", 1)
    return remote


def resolve_commit(ref: GitRef, *, location: SourceLocation | None = None) -> str:
    """The commit ``ref`` points to now: a full commit id as is, else looked up with ``git ls-remote``.

    Tags win over branches of the same name (git's own order); an annotated tag gives its commit.
    An unknown ref raises BuildError.
    """
    sha = _lookup(ref, location)
    if ref.commit and not sha.startswith(ref.commit.lower()):
        raise BuildError(
            f"git source {_display(ref.remote)}: {ref.ref or 'HEAD'} is commit {sha}, expected {ref.commit}",
            location=location,
        )
    return sha


def _lookup(ref: GitRef, location: SourceLocation | None) -> str:
    name = ref.ref or "HEAD"
    if _FULL_SHA.fullmatch(name):
        return name
    shown = _display(ref.remote)
    out = _git(["ls-remote", "--", ref.remote], cwd=None, what=f"git source {shown}", location=location)
    refs: dict[str, str] = {}
    for line in out.stdout.splitlines():
        sha, _, refname = line.partition("\t")
        if sha and refname:
            refs[refname.strip()] = sha.strip()
    candidates = [name] if name == "HEAD" or name.startswith("refs/") else []
    candidates += [f"refs/tags/{name}", f"refs/heads/{name}", f"refs/{name}"]
    for candidate in candidates:
        if f"{candidate}^{{}}" in refs:  # an annotated tag: the commit it points to
            return refs[f"{candidate}^{{}}"]
        if candidate in refs:
            return refs[candidate]
    raise BuildError(
        f"git source {shown}: ref {name!r} not found",
        location=location,
        hint="name a branch, a tag or a full commit id",
    )


def check_commit_checksum(sha: str, checksum: str, *, location: SourceLocation | None = None) -> None:
    """``ADD --checksum`` on a git source: the commit id (or a prefix of at least 4 hex digits)."""
    want = checksum.lower()
    if not (re.fullmatch(r"[0-9a-f]{4,64}", want) and sha.startswith(want)):
        raise BuildError(
            f"git source: checksum mismatch: expected {checksum}, got commit {sha}",
            location=location,
            hint="for a git source --checksum is the commit id (or a prefix of it)",
        )


@record
class Checkout:
    """A checked-out commit: ``root`` is what lands at the destination (the subdir, if one was named)."""

    root: Path
    commit: str
    commit_time: int  # seconds since the epoch (committer date)


def checkout(
    ref: GitRef, commit: str, scratch: Path, *, keep_git_dir: bool, location: SourceLocation | None = None
) -> Checkout:
    """Fetch ``commit`` of ``ref.remote`` shallowly into ``scratch`` (an empty directory) and check it out."""
    shown = _display(ref.remote)
    what = f"git source {shown}"
    repo = scratch / "repo"
    _git(["init", "-q", str(repo)], cwd=None, what=what, location=location)
    try:
        _git(
            ["fetch", "-q", "--depth", "1", "--no-tags", "--", ref.remote, commit],
            cwd=repo,
            what=what,
            location=location,
        )
    except BuildError:
        # An old server (protocol v0) may refuse a commit id it does not advertise: fetch the
        # named ref instead when there is one, else everything, and check the commit is there.
        refspecs = (
            [ref.ref]
            if ref.ref and not _FULL_SHA.fullmatch(ref.ref)
            else ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
        )
        _git(["fetch", "-q", "--", ref.remote, *refspecs], cwd=repo, what=what, location=location)
    _git(
        ["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit],
        cwd=repo,
        what=what,
        location=location,
    )
    got = _git(["rev-parse", "HEAD"], cwd=repo, what=what, location=location).stdout.strip()
    if got != commit:
        raise BuildError(f"{what}: fetched commit {got}, expected {commit}", location=location)
    when = int(
        _git(["log", "-1", "--format=%ct", commit], cwd=repo, what=what, location=location).stdout.strip()
    )
    # The commit stays checked out detached; `git remote -v` names where it came from, and
    # relative submodule URLs resolve against it.
    _git(["remote", "add", "origin", ref.remote], cwd=repo, what=what, location=location)
    if (repo / ".gitmodules").is_file():
        # Submodules come along, as BuildKit checks them out (recursively, shallow).
        _git(
            ["submodule", "update", "--init", "--recursive", "--depth", "1"],
            cwd=repo,
            what=f"{what} (submodules)",
            location=location,
        )
    if not keep_git_dir:
        _drop_git_dirs(repo)
    root = repo
    if ref.subdir:
        sub = Path(os.path.normpath("/" + ref.subdir)).relative_to("/")
        root = repo / sub
        # Not through a symlink: a repository's link must not bring the host's files in.
        inside = root.resolve().is_relative_to(repo.resolve()) and root.resolve() != repo.resolve()
        if not inside or not root.is_dir() or root.is_symlink():
            raise BuildError(
                f"{what}: subdirectory {ref.subdir!r} not found at {commit[:12]}", location=location
            )
    _normalise(root, when)
    return Checkout(root, commit, when)


def _drop_git_dirs(repo: Path) -> None:
    """Remove ``.git`` of the checkout and of its submodules (a ``.git`` file in each)."""
    shutil.rmtree(repo / ".git")
    for dirpath, dirnames, filenames in os.walk(repo):
        if ".git" in filenames:
            os.unlink(os.path.join(dirpath, ".git"))
        if ".git" in dirnames:
            shutil.rmtree(os.path.join(dirpath, ".git"))
            dirnames.remove(".git")


def _normalise(root: Path, when: int) -> None:
    """Modes and times that do not depend on the umask or the clock: 0755 dirs, 0644/0755 files,
    every mtime (symlinks' too) the commit time."""
    times = (when, when)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*filenames, *dirnames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                os.chmod(path, 0o755)
            elif stat.S_ISREG(st.st_mode):
                os.chmod(path, 0o755 if st.st_mode & 0o100 else 0o644)
            os.utime(path, times, follow_symlinks=False)
        os.chmod(dirpath, 0o755)
        os.utime(dirpath, times)
