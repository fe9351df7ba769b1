"""The installed ``forklift`` script: a click-free fast path for plain builds, then the click CLI.

A cached rebuild takes about 0.1 s, and importing click is 60 ms of it. So a ``forklift build``
whose flags are all among the everyday ones (``-f``, ``-t``, ``--target``, ``--build-arg``,
``-q``, ``--progress``, and the global ``--root``) is parsed here and run through the same
``cli.build_run.run_build`` as the click command. Anything else (another flag, ``--help``, ``-f -``,
a repeated single-valued flag, another command) goes to the click CLI in ``cli/main.py``, which
parses and reports errors for everything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from forklift.records import record

# Flags taking a value -> the field they fill; switches; what the fast path accepts, nothing more.
_VALUE_FLAGS = {
    "-f": "file",
    "--file": "file",
    "-t": "tags",
    "--tag": "tags",
    "--target": "targets",
    "--build-arg": "build_args",
    "--progress": "progress",
}
_QUIET_FLAGS = ("-q", "--quiet")
_PROGRESS_MODES = ("auto", "tty", "plain", "rawjson", "quiet")  # as cli/build.py's --progress choice


@record
class FastBuild:
    """A ``forklift build`` command line the fast path can run."""

    root: str | None
    context: str
    file: str | None = None
    tags: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    build_args: tuple[str, ...] = ()
    progress: str = "auto"
    quiet: bool = False


def default_root() -> Path:
    """The store root: ``$FORKLIFT_ROOT``, else ``$XDG_DATA_HOME/forklift``, else ~/.local/share/forklift."""
    env = os.environ.get("FORKLIFT_ROOT")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "forklift"


def parse_fast_build(argv: list[str]) -> FastBuild | None:
    """``argv`` as a plain build, or None when it needs the full command line parser."""
    i, root = 0, None
    while i < len(argv) and argv[i].startswith("--root"):
        if argv[i] == "--root" and i + 1 < len(argv):
            root, i = argv[i + 1], i + 2
        elif argv[i].startswith("--root="):
            root, i = argv[i].removeprefix("--root="), i + 1
        else:
            return None
    if i >= len(argv) or argv[i] != "build":
        return None
    values: dict[str, list[str]] = {name: [] for name in set(_VALUE_FLAGS.values())}
    quiet, context = False, None
    i += 1
    while i < len(argv):
        arg = argv[i]
        if arg in _QUIET_FLAGS:
            quiet, i = True, i + 1
            continue
        name, inline, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _VALUE_FLAGS:
            if not inline:
                if i + 1 >= len(argv):
                    return None
                value, i = argv[i + 1], i + 1
            values[_VALUE_FLAGS[name]].append(value)
            i += 1
            continue
        if arg.startswith("-") or context is not None:
            return None  # another flag, or a second positional argument
        context, i = arg, i + 1
    files, progress = values["file"], values["progress"]
    if context is None or os.path.isfile(context) or len(files) > 1 or len(progress) > 1:
        return None
    if (files and files[0] == "-") or (progress and progress[0] not in _PROGRESS_MODES):
        return None
    return FastBuild(
        root=root,
        context=context,
        file=files[0] if files else None,
        tags=tuple(values["tags"]),
        targets=tuple(values["targets"]),
        build_args=tuple(values["build_args"]),
        progress=progress[0] if progress else "auto",
        quiet=quiet,
    )


def run_fast_build(fast: FastBuild) -> int:
    """Run a plain build as ``forklift build`` would; the exit status."""
    from forklift.build import BuildOptions
    from forklift.cli.build_run import pairs, run_build, source_date_epoch
    from forklift.errors import ForkliftError

    try:
        args = pairs(fast.build_args, "--build-arg", from_env=True)
        options = BuildOptions(
            context=Path(fast.context),
            root=(Path(fast.root) if fast.root is not None else default_root()).absolute(),
            dockerfile=Path(fast.file) if fast.file else None,
            tags=fast.tags,
            targets=fast.targets,
            build_args=args,
            source_date_epoch=source_date_epoch(args),
        )
        run_build(options, quiet=fast.quiet, progress=fast.progress)
    except ForkliftError as err:
        print(err.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    return 0


def console_main() -> None:
    """The ``forklift`` script: the fast path or the click CLI, then exit at once.

    Everything a command writes is done (closed, renamed, fsynced where it matters) when it
    returns; tearing the interpreter down after that (module teardown, a last garbage collection)
    costs 20-50 ms, a tenth of a cached rebuild, so the process skips it.
    """
    fast = parse_fast_build(sys.argv[1:])
    if fast is not None:
        code = run_fast_build(fast)
    else:
        from forklift.cli.main import main

        code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    console_main()
