"""Reading RUN commands well enough for the multi-stage checks: package installs, chown/chmod -R.

This is not a shell parser. It splits a command line at ``&&``, ``||``, ``;``, ``|`` and newlines,
then splits each simple command into words; that is enough to recognise ``apt-get install -y gcc``
or ``chown -R app /app``, and errs on the side of finding nothing.
"""

from __future__ import annotations

import re
import shlex

from forklift.dockerfile.syntax import Node
from forklift.records import record

_SEPARATORS = re.compile(r"&&|\|\||;|\||\n")


def run_text(node: Node) -> str:
    """The whole text a RUN executes: the command (exec form joined) and its heredoc bodies."""
    parts = [" ".join(node.args)] if node.json_form else list(node.args)
    parts.extend(h.content for h in node.heredocs)
    return "\n".join(parts)


def simple_commands(text: str) -> list[list[str]]:
    """The simple commands of a command line, each as a list of words (quotes removed)."""
    commands: list[list[str]] = []
    text = text.replace("\\\n", " ")  # line continuations inside heredoc scripts
    for piece in _SEPARATORS.split(text):
        try:
            words = shlex.split(piece, comments=True, posix=True)
        except ValueError:
            words = piece.split()
        if words:
            commands.append(words)
    return commands


@record
class PackageAction:
    """One package-manager command found in a RUN."""

    manager: str  # "apt", "dnf" (dnf, yum, microdnf, tdnf), "apk", "zypper", "pip"
    action: str  # "install", "update", "remove", "clean"
    packages: tuple[str, ...]
    words: tuple[str, ...]  # the whole simple command


_MANAGERS = {
    "apt-get": "apt",
    "apt": "apt",
    "aptitude": "apt",
    "dnf": "dnf",
    "yum": "dnf",
    "microdnf": "dnf",
    "tdnf": "dnf",
    "apk": "apk",
    "zypper": "zypper",
    "pip": "pip",
    "pip3": "pip",
}
_ACTIONS = {
    "install": "install",
    "add": "install",
    "in": "install",
    "groupinstall": "install",
    "update": "update",
    "makecache": "update",
    "upgrade": "update",
    "remove": "remove",
    "purge": "remove",
    "autoremove": "remove",
    "erase": "remove",
    "del": "remove",
    "rm": "remove",
    "clean": "clean",
    "cache": "clean",  # pip cache purge, apk cache clean
}
# Options that take a separate value word, so that value is not taken for a package.
_VALUE_OPTIONS = frozenset({"-o", "--option", "-t", "--target-release", "--virtual", "--setopt", "-r"})


def package_actions(text: str) -> list[PackageAction]:
    """Every package-manager command in ``text``, in order."""
    found: list[PackageAction] = []
    for words in simple_commands(text):
        for i, word in enumerate(words):
            manager = _MANAGERS.get(word.rsplit("/", 1)[-1])
            if manager is None and word in ("python", "python3") and words[i + 1 : i + 3] == ["-m", "pip"]:
                manager, i = "pip", i + 2
            if manager is None:
                continue
            rest = words[i + 1 :]
            action: str | None = None
            packages: list[str] = []
            skip_next = False
            for w in rest:
                if skip_next:
                    skip_next = False
                    continue
                if w.startswith("-"):
                    skip_next = w in _VALUE_OPTIONS
                    continue
                if action is None:
                    action = _ACTIONS.get(w)
                    if action is None:
                        break
                    continue
                packages.append(w)
            if action is not None:
                found.append(PackageAction(manager, action, tuple(packages), tuple(words)))
            break
    return found


def package_name(spec: str) -> str:
    """``gcc=4:12.2`` / ``gcc:amd64`` / ``openssl-devel-3.0`` -> the bare package name (lower-cased)."""
    name = re.split(r"[=<>:]", spec, maxsplit=1)[0]
    return name.lower()


_TOOLCHAIN_EXACT = frozenset(
    {
        "gcc",
        "g++",
        "gcc-c++",
        "cpp",
        "cc",
        "clang",
        "llvm",
        "lld",
        "make",
        "cmake",
        "ninja",
        "ninja-build",
        "meson",
        "automake",
        "autoconf",
        "libtool",
        "build-essential",
        "build-base",
        "alpine-sdk",
        "musl-dev",
        "libc-dev",
        "libc6-dev",
        "glibc-devel",
        "linux-headers",
        "kernel-headers",
        "binutils",
        "gfortran",
        "gdb",
        "cargo",
        "rustc",
        "rustup",
        "rust",
        "golang",
        "golang-go",
        "go",
        "maven",
        "gradle",
        "default-jdk",
        "openjdk",
        "nodejs-dev",
        "pkg-config",
        "pkgconf",
        "pkgconfig",
        "bison",
        "flex",
    }
)
_TOOLCHAIN_PATTERNS = re.compile(
    r"^(?:.+-dev|.+-devel|.+-headers|gcc-\d.*|g\+\+-\d.*|clang-\d.*|llvm-\d.*|golang-\d.*|"
    r"openjdk-\d+-jdk.*|java-[\d.]+-openjdk-devel.*|rust-.*-toolchain|.+-static-dev)$"
)


def is_toolchain_package(spec: str) -> bool:
    """Whether a package is a compiler, build tool or development package (headers, static libs)."""
    name = package_name(spec)
    return name in _TOOLCHAIN_EXACT or bool(_TOOLCHAIN_PATTERNS.match(name))


def toolchain_installs(text: str) -> list[str]:
    """The toolchain packages a command installs and does not remove again in the same command."""
    actions = package_actions(text)
    removes = any(a.action == "remove" for a in actions)
    if removes:
        return []  # installed for the build and removed again in the same layer: fine
    return [
        p
        for a in actions
        if a.action == "install" and a.manager != "pip"
        for p in a.packages
        if is_toolchain_package(p)
    ]


@record
class RecursiveChange:
    """``chown -R owner paths`` or ``chmod -R mode paths``."""

    command: str  # "chown" or "chmod"
    paths: tuple[str, ...]


def recursive_changes(text: str) -> list[RecursiveChange]:
    """Every recursive chown/chmod in ``text``."""
    found: list[RecursiveChange] = []
    for words in simple_commands(text):
        for i, word in enumerate(words):
            if word not in ("chown", "chmod"):
                continue
            options = [w for w in words[i + 1 :] if w.startswith("-") and not re.fullmatch(r"-[rwxXst]+", w)]
            operands = [w for w in words[i + 1 :] if w not in options]
            recursive = any(o == "--recursive" or (not o.startswith("--") and "R" in o) for o in options)
            if recursive and len(operands) >= 2:
                found.append(RecursiveChange(word, tuple(operands[1:])))
            break
    return found
