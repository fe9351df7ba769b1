"""A built image leaves the engine: config and manifest into the store, then each ``--output``.

``final_state`` merges ``--label`` values into a target's config, ``write_image`` stores its config
and manifest, ``tag_image`` points the ``-t`` tags at it, and ``export_image`` hands it to one
output: store names (``type=image``), an OCI layout or archive, a docker-archive, a root filesystem
directory or tarball, or a registry push (reported as a progress task of its own). With several
targets, ``tags_for`` and ``outputs_for`` pair the ``-t`` and ``--output`` values with them in order.

The heavy imports happen where they are used: a memo replay without outputs never pays for them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from forklift.errors import ForkliftError
from forklift.execute.options import OutputSpec
from forklift.report.progress import EventSink, StepDone, StepStarted

if TYPE_CHECKING:
    from forklift.execute.state import StageState
    from forklift.oci.image import Image
    from forklift.oci.store import Lease, Store


def tags_for(tags: tuple[str, ...], position: int, count: int) -> tuple[str, ...]:
    """With one target every tag names it; with several, ``-t`` pairs with the targets in order."""
    if count == 1:
        return tags
    return (tags[position],) if position < len(tags) else ()


def outputs_for(outputs: tuple[OutputSpec, ...], position: int, count: int) -> tuple[OutputSpec, ...]:
    """With one target every output is its; with several, ``--output`` pairs with the targets in order."""
    if count == 1:
        return outputs
    return (outputs[position],) if position < len(outputs) else ()


def canonical_name(tag: str) -> str:
    """``tag`` as the store names it (``app`` -> ``docker.io/library/app:latest``)."""
    from forklift.oci.registry.reference import parse_reference

    return str(parse_reference(tag))


def final_state(state: StageState, labels: Mapping[str, str]) -> StageState:
    """The target's config: ``--label`` values merged; ``created`` = the last history entry's time."""
    config = state.config
    if labels:
        merged = dict(config.config.labels)
        merged.update(labels)
        config = replace(config, config=replace(config.config, labels=merged))
    created = next((h.created for h in reversed(config.history) if h.created), None) or state.base_created
    config = replace(config, created=created)
    return replace(state, config=config)


def stored_state(image: Image) -> StageState:
    """The state (config and layers) of an image the store holds already (a memo replay's target)."""
    from forklift.execute.state import StageState
    from forklift.oci.image import image_config, image_manifest

    return StageState(config=image_config(image), layers=image_manifest(image).layers)


def write_image(store: Store, state: StageState, lease: Lease | None) -> tuple[Image, str, str]:
    """Config and manifest into the store; returns (image, image ID, manifest digest).

    A fully cached rebuild makes the same bytes: they are already stored and not written again.
    """
    from forklift.oci.image import StoreImage
    from forklift.oci.model import Descriptor, Digest, Manifest, MediaType

    def put(data: bytes) -> Digest:
        digest = Digest.of(data)
        if store.has(digest):
            if lease is not None:
                lease.add(digest)
            return digest
        return store.put_bytes(data, lease=lease)

    raw_config = state.config.to_bytes()
    config_digest = put(raw_config)
    manifest = Manifest(
        config=Descriptor(media_type=MediaType.OCI_CONFIG, digest=config_digest, size=len(raw_config)),
        layers=state.layers,
    )
    digest = put(manifest.to_bytes())
    return StoreImage(store, digest), str(config_digest), str(digest)


def tag_image(store: Store, tags: tuple[str, ...], digest: str) -> None:
    """Point each ``-t`` tag at the manifest ``digest`` (an unchanged reference is not rewritten)."""
    from forklift.oci.model import Digest

    for tag in tags:
        if store.get_ref(canonical_name(tag)) != Digest.parse(digest):
            store.set_ref(canonical_name(tag), Digest.parse(digest))


class TaskProgress:
    """Reports an internal task (a push) as a progress vertex of its own: started, done or failed."""

    def __init__(self, events: EventSink, next_vertex: Callable[[], int]) -> None:
        self.events = events
        self.next_vertex = next_vertex

    @contextmanager
    def task(self, title: str) -> Iterator[None]:
        """Report the body as the task ``title``; a ForkliftError marks it failed and propagates."""
        from forklift.report.progress import StepFailed

        vertex = self.next_vertex()
        started = time.monotonic()
        self.events(StepStarted(vertex, title))
        try:
            yield
        except ForkliftError as err:
            self.events(StepFailed(vertex, time.monotonic() - started, err.render()))
            raise
        self.events(StepDone(vertex, time.monotonic() - started))


def export_image(
    store: Store,
    image: Image,
    state: StageState,
    out: OutputSpec,
    tags: tuple[str, ...],
    insecure_registries: frozenset[str] = frozenset(),
    progress: TaskProgress | None = None,
) -> None:
    """Write one output of a target (a push is reported as a task of its own)."""
    from forklift.oci.model import Digest

    if out.type == "registry":
        _push(store, image, out, tags, insecure_registries, progress)
        return
    assert out.dest is not None or out.type == "image"
    if out.type == "image":
        if out.name:
            for image_name in out.name.split(","):
                store.set_ref(canonical_name(image_name), Digest.parse(_image_digest(image)))
        return
    dest = out.dest
    assert dest is not None
    name = tags[0] if tags else None
    if out.type == "oci":
        from forklift.oci.layout import write_layout

        dest.parent.mkdir(parents=True, exist_ok=True)
        write_layout(dest, [(canonical_name(name) if name else None, image)], as_tar=out.tar)
    elif out.type == "docker":
        from forklift.oci.archive import write_archive

        dest.parent.mkdir(parents=True, exist_ok=True)
        write_archive(dest, [(tuple(tags), image)])
    elif out.type == "local":
        write_rootfs(store, state, dest)
    elif out.type == "tar":
        from forklift.snapshot.diff import DirectorySource, write_layer

        store.layout.exports.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="forklift-rootfs-", dir=store.layout.exports) as tmp:
            root = Path(tmp) / "rootfs"
            write_rootfs(store, state, root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as f:
                write_layer(DirectorySource(root), f)


def _push(
    store: Store,
    image: Image,
    out: OutputSpec,
    tags: tuple[str, ...],
    insecure_registries: frozenset[str],
    progress: TaskProgress | None,
) -> None:
    """``type=registry``: store the image under each name (``name=`` or the tags) and push it there."""
    from forklift.errors import RegistryError
    from forklift.oci.model import Digest
    from forklift.oci.registry.client import RegistryOptions
    from forklift.oci.registry.transfer import MediaFamily, push_image

    targets = out.name.split(",") if out.name else list(tags)
    if not targets:
        raise ForkliftError("--output type=registry needs name=NAME[:TAG] (or -t)")
    digest = Digest.parse(_image_digest(image))
    media_types: MediaFamily | None = None
    if out.oci_mediatypes is not None:
        media_types = "oci" if out.oci_mediatypes else "docker"
    for target in targets:
        canonical = canonical_name(target)
        if store.get_ref(canonical) != digest:
            store.set_ref(canonical, digest)
        insecure = set(insecure_registries)
        if out.insecure:
            insecure.add(canonical.split("/", 1)[0])
        with progress.task(f"pushing {canonical}") if progress is not None else nullcontext():
            try:
                push_image(
                    store,
                    canonical,
                    media_types=media_types,
                    compression=out.compression,
                    options=RegistryOptions(insecure_registries=frozenset(insecure)),
                )
            except (RegistryError, OSError) as err:
                raise ForkliftError(f"pushing {target}: {err}") from err


def _image_digest(image: Image) -> str:
    from forklift.oci.image import image_digest

    return str(image_digest(image))


def write_rootfs(store: Store, state: StageState, dest: Path) -> None:
    """``type=local``: the final root filesystem, layer by layer (whiteouts applied)."""
    from forklift.oci.compression import open_uncompressed
    from forklift.snapshot.unpack import ApplyOptions, apply_layer

    dest.mkdir(parents=True, exist_ok=True)
    for layer in state.layers:
        with store.open_blob(layer.digest, size=layer.size) as blob, open_uncompressed(blob) as tar:
            apply_layer(tar, dest, options=ApplyOptions(mode="merge"))
