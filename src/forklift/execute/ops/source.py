"""FROM: where a stage starts. ``scratch`` is an empty image; a stage is that stage's result; an
image comes from the local store (by its canonical name, as ``forklift pull``/``load`` store it),
else from its registry when a client is available.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from forklift.errors import BuildError, ForkliftError, ImageError
from forklift.execute.engine import BuildEnv, StageResult, Stepper
from forklift.execute.state import StageState
from forklift.oci.image import StoreImage
from forklift.oci.model import ContainerConfig, ImageConfig
from forklift.plan.ops import ImageRef, NamedContextRef, ScratchRef, SourceOp, StageRef
from forklift.report.progress import StepCached, StepDone, StepFailed, StepStarted

if TYPE_CHECKING:
    from forklift.oci.registry.client import RegistryOptions

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def scratch_state(env: BuildEnv) -> StageState:
    """``FROM scratch``: no layers; the platform of the build and BuildKit's default PATH."""
    platform = env.options.platform
    config = ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        config=ContainerConfig(env=(DEFAULT_PATH_ENV,)),
    )
    return StageState(config=config, base="scratch")


def load_base(env: BuildEnv, ref: str) -> StageState:
    """An image from the store (or its registry) as a stage's starting state."""
    from forklift.oci.image import image_config, image_manifest, load_image
    from forklift.oci.registry.reference import parse_reference

    try:
        canonical = ref if ref.startswith("sha256:") else str(parse_reference(ref))
    except ForkliftError as err:
        raise BuildError(f"invalid image reference {ref!r}: {err.message}") from err
    if env.options.pull and not canonical.startswith("sha256:") and "@" not in canonical:
        # --pull: the registry says what the tag names now (a digest cannot change: not checked).
        _check_registry(env, canonical)
    try:
        img = load_image(env.store, canonical, platform=env.options.platform)
    except ImageError as err:
        img = _pull(env, canonical, err)
    manifest = image_manifest(img)
    config = image_config(img)
    if len(manifest.layers) != len(config.diff_ids):
        raise BuildError(f"image {ref}: {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids")
    if env.lease is not None:
        env.lease.add(*(d.digest for d in manifest.layers))
    return StageState(config=config, layers=manifest.layers, base=ref, base_created=config.created)


def _registry_options(env: BuildEnv) -> RegistryOptions:
    from forklift.oci.registry.client import RegistryOptions

    return RegistryOptions(insecure_registries=env.options.insecure_registries)


def _check_registry(env: BuildEnv, canonical: str) -> None:
    """``--pull``: fetch what ``canonical`` names in its registry now (only new blobs are downloaded),
    once per build for each reference, however many stages and COPY --from name it."""
    from forklift.errors import RegistryError
    from forklift.oci.registry.transfer import ensure_image

    with env.pull_lock:
        if canonical in env.pulled:
            return
        try:
            ensure_image(
                env.store, canonical, platform=env.options.platform, pull=True, options=_registry_options(env)
            )
        except (RegistryError, ImageError) as err:
            raise BuildError(
                f"--pull: cannot pull {canonical}: {err.message}",
                hint="check the registry (plain HTTP needs --insecure-registry), or build without --pull",
            ) from None
        except OSError as err:
            raise BuildError(f"--pull: cannot pull {canonical}: {err}") from None
        env.pulled.add(canonical)


def _pull(env: BuildEnv, canonical: str, missing: ImageError) -> StoreImage:
    """Pull a base the store does not have (once per build, even when several stages need it)."""
    from forklift.errors import RegistryError
    from forklift.oci.image import load_image
    from forklift.oci.registry.transfer import pull_image

    with env.pull_lock:
        try:
            return load_image(env.store, canonical, platform=env.options.platform)
        except ImageError:
            pass
        try:
            result = pull_image(
                env.store, canonical, platform=env.options.platform, options=_registry_options(env)
            )
        except (RegistryError, ImageError) as err:
            raise BuildError(
                f"image {canonical} is not in the local store and could not be pulled: {err.message}",
                hint=err.hint or "pull it (forklift pull), or load it (forklift load, forklift import)",
            ) from missing
        except OSError as err:
            raise BuildError(
                f"image {canonical} is not in the local store and could not be pulled: {err}",
                hint="pull it (forklift pull), or load/import it (forklift load, forklift import)",
            ) from missing
        return load_image(env.store, result.manifest_digest)


def named_image(env: BuildEnv, name: str) -> StageState:
    """The image a ``--build-context NAME=docker-image://...|oci-layout://...`` stands for."""
    from forklift.oci.layout import load_layout

    ctx = env.options.named_contexts[name]
    if ctx.image is not None:
        return load_base(env, ctx.image)
    if ctx.layout is not None:
        with env.pull_lock:
            loaded = load_layout(env.store, ctx.layout)
        if not loaded:
            raise BuildError(f"--build-context {name}: {ctx.layout} holds no image")
        chosen = loaded[0]
        if ctx.layout_tag is not None:
            tagged = [i for i in loaded if i.name and i.name.endswith(":" + ctx.layout_tag)]
            if not tagged:
                raise BuildError(f"--build-context {name}: no image tagged {ctx.layout_tag} in {ctx.layout}")
            chosen = tagged[0]
        return load_base(env, str(chosen.digest))
    raise BuildError(
        f"--build-context {name} is a directory: it can be copied from, not built FROM",
        hint="use docker-image://REF or oci-layout://PATH to replace a base image",
    )


def resolve_source(env: BuildEnv, stepper: Stepper, op: SourceOp, done: dict[int, StageResult]) -> StageState:
    """The state a stage starts from, reported as the stage's first step."""
    src = op.source
    vertex = env.next_vertex()
    started = time.monotonic()
    shown = op.text
    if isinstance(src, ImageRef) and "$" in shown:  # show what FROM resolved to, as BuildKit does
        named = not stepper.stage_name.startswith("stage-")
        shown = f"FROM {src.ref}" + (f" AS {stepper.stage_name}" if named else "")
    env.events(StepStarted(vertex, stepper.title(0, shown), stepper.stage_name, str(op.location)))
    try:
        if isinstance(src, ScratchRef):
            state = scratch_state(env)
        elif isinstance(src, StageRef):
            parent = done[src.index].state
            state = replace(parent, base=done[src.index].name)
        elif isinstance(src, ImageRef):
            state = load_base(env, src.ref)
        elif isinstance(src, NamedContextRef):
            state = named_image(env, src.name)
        else:  # pragma: no cover - exhaustive
            raise BuildError(f"unknown FROM source {src!r}", location=op.location)
    except BuildError as err:
        if err.location is None:
            err = BuildError(err.message, location=op.location, hint=err.hint)
        env.events(StepFailed(vertex, time.monotonic() - started, err.render()))
        raise err from None
    env.events(StepCached(vertex))
    env.events(StepDone(vertex, time.monotonic() - started, cached=True))
    return replace(state, cmd_set=False)
