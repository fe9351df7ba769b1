"""``forklift build``: flags -> BuildOptions, progress rendered on stderr, the image ID with ``-q``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from forklift.errors import ForkliftError


def _secrets(values: tuple[str, ...]) -> tuple[Any, ...]:
    """``--secret id=ID[,src=FILE|,env=VAR][,type=file|env]`` (buildx's forms)."""
    from forklift.execute.options import SecretSource

    out = []
    for spec in values:
        fields: dict[str, str] = {}
        for part in spec.split(","):
            key, _, value = part.partition("=")
            fields[key.strip().lower()] = value.strip()
        ident = fields.get("id")
        if not ident:
            raise ForkliftError(f"--secret {spec!r}: id= is required")
        src = fields.get("src") or fields.get("source")
        kind = fields.get("type")
        envvar = fields.get("env")
        if kind == "env" and src and not envvar:
            envvar, src = src, None
        if src:
            path = Path(src).expanduser()
            if not path.is_file():
                raise ForkliftError(f"--secret {spec!r}: {src} is not a file")
            out.append(SecretSource(id=ident, file=path))
        else:
            out.append(SecretSource(id=ident, env=envvar or ident))
    return tuple(out)


def _ssh(values: tuple[str, ...]) -> dict[str, str]:
    """``--ssh default`` (the agent of $SSH_AUTH_SOCK) or ``--ssh ID=SOCKET``."""
    out: dict[str, str] = {}
    for spec in values:
        ident, _, sock = spec.partition("=")
        if not sock:
            sock = os.environ.get("SSH_AUTH_SOCK", "")
            if not sock:
                raise ForkliftError(f"--ssh {spec}: SSH_AUTH_SOCK is not set", hint="give --ssh ID=SOCKET")
        out[ident or "default"] = sock
    return out


@click.command("build", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-f", "--file", "file", default=None, help="The Dockerfile (default: CONTEXT/Dockerfile; '-': stdin)."
)
@click.option("--check", "check_only", is_flag=True, help="Run the build checks (forklift check), then stop.")
@click.option(
    "-t", "--tag", "tags", multiple=True, help="Name and optionally a tag (NAME[:TAG]); repeatable."
)
@click.option("--target", "targets", multiple=True, help="Stage to build; repeatable (default: the last).")
@click.option("--build-arg", "build_args", multiple=True, help="Set a build-time variable (K=V).")
@click.option("--label", "labels", multiple=True, help="Set a label on the image (K=V).")
@click.option("--no-cache", is_flag=True, help="Do not use the cache.")
@click.option("--no-cache-filter", "no_cache_filter", multiple=True, help="Do not cache these stages.")
@click.option(
    "--network", type=click.Choice(["default", "host", "none"]), default="default", help="RUN network."
)
@click.option("--secret", "secrets", multiple=True, help="Secret: id=ID,src=FILE or id=ID,env=VAR.")
@click.option("--ssh", "ssh", multiple=True, help="SSH agent socket: default or ID=SOCKET.")
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    help="Output; repeatable: type=oci|docker|local|tar,dest=PATH; type=image,name=REF[,push=true]; "
    "type=registry[,name=REF] (push).",
)
@click.option("--iidfile", type=click.Path(dir_okay=False, path_type=Path), help="Write the image ID here.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID.")
@click.option(
    "--progress",
    type=click.Choice(["auto", "tty", "plain", "rawjson", "quiet"]),
    default="auto",
    help="Progress output.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Stages run at once (default: the CPU count, at least 4: stages mostly wait on runc and I/O).",
)
@click.option("--runtime", default=None, help="OCI runtime: runc or crun (name or path).")
@click.option("--platform", default=None, help="Target platform (os/arch).")
@click.option("--push", is_flag=True, help="Push the tagged image(s) (--output type=registry).")
@click.option(
    "--pull", is_flag=True, help="Always check the registry for newer FROM images, even those stored."
)
@click.option(
    "--insecure-registry",
    "insecure_registries",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Use plain HTTP with this registry (pulls, pushes, cache); repeatable. "
    "localhost and 127.0.0.1 always are.",
)
@click.option(
    "--cache-to",
    "cache_to",
    multiple=True,
    help="Export the build cache; repeatable: type=registry,ref=REF[,mode=min|max] or "
    "type=local,dest=DIR[,mode=min|max] (also compression=gzip|zstd|uncompressed, ignore-error=true).",
)
@click.option(
    "--cache-from",
    "cache_from",
    multiple=True,
    help="Import a build cache first; repeatable: type=registry,ref=REF or type=local,src=DIR.",
)
@click.option("--max-size", default=None, help="Fail when the image is bigger than this (50MB, 1GiB).")
@click.option(
    "--build-context",
    "build_contexts",
    multiple=True,
    help="NAME=DIR|docker-image://REF|oci-layout://PATH[:TAG]: replaces a stage or image.",
)
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="ENTITLEMENT",
    help="Grant an entitlement; repeatable: security.insecure (RUN --security=insecure), "
    "device or device=NAME (RUN --device), network.host.",
)
@click.option(
    "--cdi-spec-dir",
    "cdi_spec_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Read CDI device specs from this directory instead of /etc/cdi and /var/run/cdi; repeatable.",
)
@click.argument("context", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def build_command(
    ctx: click.Context,
    file: str | None,
    check_only: bool,
    tags: tuple[str, ...],
    targets: tuple[str, ...],
    build_args: tuple[str, ...],
    labels: tuple[str, ...],
    no_cache: bool,
    no_cache_filter: tuple[str, ...],
    network: str,
    secrets: tuple[str, ...],
    ssh: tuple[str, ...],
    outputs: tuple[str, ...],
    iidfile: Path | None,
    quiet: bool,
    progress: str,
    jobs: int | None,
    runtime: str | None,
    platform: str | None,
    push: bool,
    pull: bool,
    insecure_registries: tuple[str, ...],
    cache_to: tuple[str, ...],
    cache_from: tuple[str, ...],
    max_size: str | None,
    build_contexts: tuple[str, ...],
    allow: tuple[str, ...],
    cdi_spec_dirs: tuple[Path, ...],
    context: Path,
) -> None:
    """Build an image from a Dockerfile and a build context."""
    from forklift.build import BuildOptions, OutputSpec
    from forklift.cli.build_run import pairs, run_build, source_date_epoch

    if check_only:
        from forklift.cli.check import check_command

        ctx.invoke(check_command, dockerfile=file, build_args=build_args, targets=targets, context=context)
        return
    dockerfile_text = sys.stdin.read() if file == "-" else None
    args = pairs(build_args, "--build-arg", from_env=True)
    options = BuildOptions(
        context=context,
        root=ctx.obj.root,
        dockerfile=Path(file) if file and file != "-" else None,
        dockerfile_text=dockerfile_text,
        tags=tags,
        targets=targets,
        build_args=args,
        labels=pairs(labels, "--label", from_env=False),
        no_cache=no_cache,
        no_cache_filter=no_cache_filter,
        network=network,
        secrets=_secrets(secrets),
        ssh=_ssh(ssh),
        outputs=tuple(OutputSpec.parse(o) for o in outputs)
        + ((OutputSpec(type="registry"),) if push else ()),
        iidfile=iidfile,
        jobs=jobs,
        runtime=runtime,
        source_date_epoch=source_date_epoch(args),
        platform=platform,
        build_contexts=pairs(build_contexts, "--build-context", from_env=False),
        max_size=max_size,
        cache_to=cache_to,  # parsed (and checked) by build() before any work
        cache_from=cache_from,
        pull=pull,
        insecure_registries=frozenset(insecure_registries),
        allow=allow,
        cdi_spec_dirs=cdi_spec_dirs,
    )
    run_build(options, quiet=quiet, progress=progress)
