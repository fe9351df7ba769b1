"""The ``forklift`` command: a click group whose subcommands are imported only when used.

Lazy loading keeps start-up fast (a cached rebuild pays for Python start-up) and lets each command
group live in its own module.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from forklift import __version__
from forklift.cli.entry import default_root
from forklift.errors import ForkliftError

# command name -> (module under forklift.cli, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "build": ("build", "build_command", "Build an image from a Dockerfile."),
    "graph": ("graph", "graph_command", "Show the stage graph of a Dockerfile without building."),
    "check": ("check", "check_command", "Run the build checks (lint) on a Dockerfile."),
    "images": ("images", "images_command", "List images in the local store."),
    "inspect": ("images", "inspect_command", "Show an image's manifest and config."),
    "history": ("images", "history_command", "Show an image's history."),
    "tag": ("images", "tag_command", "Give an image another name."),
    "rmi": ("images", "rmi_command", "Remove image names from the store."),
    "save": ("images", "save_command", "Write images to an OCI layout or docker-archive."),
    "load": ("images", "load_command", "Load images from an OCI layout or docker-archive."),
    "import": ("images", "import_command", "Make an image from a root filesystem tarball."),
    "prune": ("images", "prune_command", "Remove what nothing in the store needs any more."),
    "size": ("size", "size_command", "Explain an image's size, per layer and per stage."),
    "run": ("run", "run_command", "Run a command in a new container from an image."),
    "pull": ("registry", "pull_command", "Pull an image from a registry."),
    "push": ("registry", "push_command", "Push an image to a registry."),
    "login": ("registry", "login_command", "Store credentials for a registry."),
    "logout": ("registry", "logout_command", "Forget credentials for a registry."),
    "bootstrap": ("bootstrap", "bootstrap_command", "Make a base image from Debian packages."),
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr, help_text = entry
        try:
            module = importlib.import_module(f"forklift.cli.{module_name}")
            command: click.Command = getattr(module, attr)
        except (ImportError, AttributeError):
            # Not built yet: show it in --help, and say so when it is used.
            def unavailable() -> None:
                raise click.ClickException(f"'{cmd_name}' is not available in this build of forklift")

            return click.Command(cmd_name, callback=unavailable, help=help_text, short_help=help_text)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and name not in COMMANDS and name not in self.commands and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            ctx.fail(f"no such command '{name}'{hint}")
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="forklift")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Local store directory (env FORKLIFT_ROOT; default $XDG_DATA_HOME/forklift).",
)
@click.pass_context
def cli(ctx: click.Context, root: Path | None) -> None:
    """forklift: a daemonless container image builder for multi-stage Dockerfiles."""
    # Absolute: runtime bundles and overlay mount options must not depend on the working directory.
    ctx.obj = CliContext(root=(root if root is not None else default_root()).absolute())


class CliContext:
    """What every command receives from the global options."""

    def __init__(self, root: Path) -> None:
        self.root = root


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become a message and exit status 1, never a traceback."""
    try:
        # standalone_mode=False returns the code of ctx.exit(n); a command's return value is not a code.
        result: Any = cli.main(args=argv, prog_name="forklift", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except ForkliftError as err:
        click.echo(err.render(), err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    from forklift.cli.entry import console_main

    console_main()
