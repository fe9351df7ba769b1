"""ADD <git ref>: a real repository served by ``git daemon`` on 127.0.0.1, fetched by the real git.

One daemon for the module; builds are FROM scratch (no runtime) and exported as a tar to read the
entries' owners, modes and times.
"""

from __future__ import annotations

import io
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from forklift.build import BuildOptions, OutputSpec, build
from forklift.errors import BuildError
from forklift.report.progress import PlainRenderer
from support import missed, require_tool

pytestmark = pytest.mark.e2e


@dataclass
class GitServer:
    url: str  # git://127.0.0.1:<port>/repo
    work: Path  # the served (non-bare) repository

    def git(self, *args: str) -> str:
        out = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=self.work,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def commit(self, files: dict[str, str], message: str, when: int) -> str:
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.git("add", "-A")
        date = f"{when} +0000"
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message],
            cwd=self.work,
            check=True,
            env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date, "PATH": "/usr/bin:/bin"},
        )
        return self.git("rev-parse", "HEAD")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    git = require_tool("git")
    base = tmp_path_factory.mktemp("git-served")
    work = base / "repo"
    work.mkdir()
    subprocess.run([git, "init", "-q", "-b", "main", str(work)], check=True)
    server = GitServer("", work)
    server.commit(
        {"README": "v1\n", "app/run.sh": "#!/bin/sh\n", "docs/guide.md": "guide v1\n"}, "one", 1_600_000_000
    )
    (work / "app/run.sh").chmod(0o755)
    (work / "link").symlink_to("README")
    server.git("add", "-A")
    server.git("commit", "-q", "-m", "exec bit and link")
    server.git("tag", "-a", "v1", "-m", "release 1")
    # A repository with a submodule (a relative URL, resolved against where it is fetched from).
    lib, sup = GitServer("", base / "lib"), GitServer("", base / "super")
    for repo in (lib, sup):
        subprocess.run([git, "init", "-q", "-b", "main", str(repo.work)], check=True)
    lib.commit({"lib.txt": "library\n"}, "lib", 1_600_000_000)
    sup.commit({"top.txt": "top\n"}, "top", 1_600_000_000)
    sup.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", "../lib", "lib")
    sup.git("commit", "-q", "-m", "add lib")
    port = _free_port()
    proc = subprocess.Popen(
        [
            git,
            "daemon",
            "--export-all",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            "--reuseaddr",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server.url = f"git://127.0.0.1:{port}/repo"
    try:
        for _ in range(100):  # until the daemon answers
            if subprocess.run([git, "ls-remote", server.url], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        else:
            pytest.fail("git daemon did not start")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _build(ctx: Path, store: Path, dockerfile: str, out: Path | None = None) -> str:
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    progress = io.StringIO()
    outputs = (OutputSpec(type="tar", dest=out),) if out is not None else ()
    build(BuildOptions(context=ctx, root=store, outputs=outputs), events=PlainRenderer(progress))
    return progress.getvalue()


def _members(tar_path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(tar_path) as tar:
        return {m.name.lstrip("./").rstrip("/"): m for m in tar.getmembers()}


def _read(tar_path: Path, name: str) -> str:
    with tarfile.open(tar_path) as tar:
        for m in tar.getmembers():
            if m.name.lstrip("./") == name:
                f = tar.extractfile(m)
                assert f is not None
                return f.read().decode()
    raise AssertionError(f"{name} not in the image")


def test_branch_tag_commit_subdir_and_keep_git_dir(
    git_server: GitServer, store_root: Path, tmp_path: Path
) -> None:
    first = git_server.git("rev-list", "--max-parents=0", "HEAD")
    tip = git_server.git("rev-parse", "main")  # the tests share the server: read its state now
    tagged = git_server.git("rev-parse", "v1^{commit}")
    when = int(git_server.git("log", "-1", "--format=%ct", "main"))
    url = git_server.url
    out = tmp_path / "rootfs.tar"
    _build(
        tmp_path / "ctx",
        store_root,
        "FROM scratch\n"
        f"ADD {url}#main /branch\n"
        f"ADD --exclude=**/*.md {url}#v1 /tag/\n"
        f"ADD {url}#{first} /commit\n"
        f"ADD {url}#main:docs /docs\n"
        f"ADD --keep-git-dir=true {url} /kept\n"
        f"ADD {url.rsplit('/', 1)[0]}/super /super\n"
        f"ADD --chown=1000:1001 --checksum={tagged[:10]} {url}#v1 /owned\n",
        out,
    )
    m = _members(out)
    assert _read(out, "branch/README") == git_server.git("show", "main:README") + "\n"
    assert _read(out, "tag/app/run.sh") == "#!/bin/sh\n"
    assert "tag/docs" in m and "tag/docs/guide.md" not in m  # --exclude, relative to the checkout
    assert m["branch/app/run.sh"].mode & 0o777 == 0o755 and m["branch/README"].mode & 0o777 == 0o644
    assert m["branch/link"].issym() and m["branch/link"].linkname == "README"
    assert "commit/README" in m and "commit/link" not in m  # the first commit had no link yet
    assert sorted(n for n in m if n.startswith("docs/")) == ["docs/guide.md"]
    assert not any(n.startswith("branch/.git") for n in m)
    assert "kept/.git/HEAD" in m and _read(out, "kept/.git/HEAD").strip() == tip
    for name in ("branch/README", "branch/app", "branch/link"):
        assert (m[name].uid, m[name].gid, int(m[name].mtime)) == (0, 0, when), name
    assert _read(out, "super/lib/lib.txt") == "library\n" and "super/lib/.git" not in m  # submodule
    assert (m["owned/README"].uid, m["owned/README"].gid) == (1000, 1001)


def test_cache_follows_the_branch_and_errors_are_clear(
    git_server: GitServer, store_root: Path, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    dockerfile = f"FROM scratch\nADD {git_server.url}#main /src\n"
    _build(ctx, store_root, dockerfile)
    assert missed(_build(ctx, store_root, dockerfile)) == []  # unchanged branch: a hit, no fetch
    git_server.commit({"README": "v2\n"}, "two", 1_700_000_000)
    out = tmp_path / "rootfs.tar"
    progress = _build(ctx, store_root, dockerfile, out)
    assert len(missed(progress)) == 1 and _read(out, "src/README") == "v2\n"

    with pytest.raises(BuildError, match="'nope' not found") as err:
        _build(ctx, store_root, f"FROM scratch\n\nADD {git_server.url}#nope /x\n")
    assert err.value.location is not None and err.value.location.line == 3
    with pytest.raises(BuildError, match="checksum mismatch"):
        _build(ctx, store_root, f"FROM scratch\nADD --checksum=0000000 {git_server.url} /x\n")
    with pytest.raises(BuildError, match="subdirectory 'missing' not found"):
        _build(ctx, store_root, f"FROM scratch\nADD {git_server.url}#main:missing /x\n")
    with pytest.raises(BuildError, match=r"git source git://127\.0\.0\.1:1/repo"):
        _build(ctx, store_root, "FROM scratch\nADD git://127.0.0.1:1/repo /x\n")
