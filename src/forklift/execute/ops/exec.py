"""RUN: the parent's snapshots as overlay lowers, an empty upper, the process in the OCI runtime.

The upper directory becomes the layer (overlay whiteouts and opaque directories turn into OCI ones)
and is then adopted as the new layer's snapshot, so nothing is unpacked again. ``--mount`` types:
cache (a directory under ``<store>/cache/mounts`` that persists between builds), bind (from the
context or another stage, read-only unless ``rw``, whose writes are then discarded), tmpfs, secret
(a file outside every layer, never in the cache key or history) and ssh (the agent socket).
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import hashlib
import os
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from forklift.errors import BuildError
from forklift.execute.cache import SourceDigest, StepInputs
from forklift.execute.context import clean_source, source_set_digest
from forklift.execute.engine import (
    BuildEnv,
    Outcome,
    StageResult,
    Stepper,
    image_view,
    lower_dirs,
    sorted_env,
    store_layer,
)
from forklift.execute.ops.config import run_history, shell_of
from forklift.execute.state import StageState
from forklift.plan.ops import ExecOp, ImageRef, MainContextRef, NamedContextRef, ResolvedMount, StageRef
from forklift.report.progress import StepLog
from forklift.runtime.base import DeviceNode, Mount, NetworkMode, Process
from forklift.snapshot.diff import OverlayUpperSource

if TYPE_CHECKING:
    from forklift.execute.options import Entitlements
    from forklift.runtime.cdi import ContainerEdits, DeviceRequest

_TAIL_BYTES = 4096


def process_args(op: ExecOp, state: StageState) -> tuple[str, ...]:
    """argv of the RUN: exec form as written; shell form wrapped in the stage's SHELL."""
    if op.shell_form:
        return (*shell_of(state.container), " ".join(op.args))
    return op.args


def _network(op: ExecOp, env: BuildEnv) -> NetworkMode:
    mode = op.network if op.network and op.network != "default" else env.options.network
    if mode == "none":
        return "none"
    return "host"  # "default" shares the host network (package managers work), as buildx does


def device_requests(op: ExecOp) -> tuple[DeviceRequest, ...]:
    """The RUN's ``--device`` flags parsed (errors at the RUN's location)."""
    if not op.instruction.devices:
        return ()
    from forklift.runtime.cdi import CdiError, parse_device_flag

    try:
        return tuple(parse_device_flag(d) for d in op.instruction.devices)
    except CdiError as err:
        raise BuildError(f"--device: {err.message}", location=op.location, hint=err.hint) from err


def check_insecure_allowed(ops: Iterable[object], granted: Entitlements) -> None:
    """Refuse the first ``RUN --security=insecure`` among ``ops`` unless ``--allow security.insecure``
    was given. BuildKit checks entitlements before it runs anything: call this on the stages to build."""
    for op in ops:
        if isinstance(op, ExecOp) and op.security == "insecure" and not granted.security_insecure:
            raise BuildError(
                "security.insecure is not allowed",
                location=op.location,
                hint="RUN --security=insecure runs privileged: pass --allow security.insecure to allow it",
            )


def check_entitlements(op: ExecOp, env: BuildEnv, requests: tuple[DeviceRequest, ...]) -> None:
    """Refuse a RUN that needs an entitlement ``--allow`` did not grant (also on a cache hit, as
    BuildKit checks them before solving): ``--security=insecure`` and ``--device``."""
    granted = env.options.entitlements
    check_insecure_allowed((op,), granted)
    if not requests or granted.all_devices:
        return
    from forklift.runtime.cdi import CdiError, find_devices, load_registry

    try:
        registry = load_registry(env.options.cdi_spec_dirs or _default_cdi_dirs())
        for request in requests:
            name = granted.device_name(request.name)
            found = find_devices(registry, name)
            if granted.device_allowed(request.name, [d.qualified_name for d in found]):
                continue
            if found and all(d.auto_allowed for d in found):
                continue
            raise BuildError(
                f'device "{request.name}" is not allowed',
                location=op.location,
                hint=f"RUN --device needs the device entitlement: pass --allow device "
                f"(every CDI device) or --allow device={request.name}",
            )
    except CdiError as err:
        raise BuildError(err.message, location=op.location, hint=err.hint) from err


def _default_cdi_dirs() -> tuple[Path, ...]:
    from forklift.runtime.cdi import DEFAULT_SPEC_DIRS

    return DEFAULT_SPEC_DIRS


def mount_inputs(
    op: ExecOp, env: BuildEnv, done: dict[int, StageResult]
) -> tuple[tuple[SourceDigest, ...], tuple[tuple[str, str], ...]]:
    """Source digests of bind mounts and the mount options that change the result (never secret values)."""
    sources: list[SourceDigest] = []
    meta: list[tuple[str, str]] = []
    for i, rm in enumerate(op.mounts):
        m = rm.mount
        desc = f"type={m.type},target={m.target},source={m.source},id={m.id},ro={m.readonly},env={m.env}"
        meta.append((f"mount{i}", desc))
        if m.type == "bind":
            if isinstance(rm.source_ref, StageRef):
                sources.append(SourceDigest(f"mount{i} stage", done[rm.source_ref.index].state.identity()))
            elif isinstance(rm.source_ref, MainContextRef):
                rel = clean_source(m.source or "")
                tree = env.context
                entries = list(tree.entries(tree.resolve(rel))) if rel else list(tree.entries(""))
                files = tuple((e.relpath, e.digest or e.link_target or e.kind) for e in entries)
                sources.append(
                    SourceDigest(f"mount{i} context {rel or '.'}", source_set_digest(entries), files)
                )
            elif isinstance(rm.source_ref, ImageRef):
                sources.append(SourceDigest(f"mount{i} image", rm.source_ref.ref))
    return tuple(sources), tuple(meta)


def run_exec(
    env: BuildEnv, stepper: Stepper, state: StageState, op: ExecOp, index: int, done: dict[int, StageResult]
) -> StageState:
    """One RUN step through the cache."""
    from dataclasses import replace

    from forklift.plan.args import expand_mount

    scope = state.env()
    mounts = tuple(
        replace(rm, mount=expand_mount(rm.mount, scope, escape=env.options.escape, location=op.location))
        for rm in op.mounts
    )
    op = replace(op, mounts=mounts)
    args = process_args(op, state)
    build_args = [(k, v) for k, v in state.args.items()]
    history = run_history(args, build_args)
    sources, meta = mount_inputs(op, env, done)
    requests = device_requests(op)
    check_entitlements(op, env, requests)
    # Devices are a cache input only when asked for, so other RUNs keep their keys.
    devices = (("devices", "\n".join(op.instruction.devices)),) if requests else ()
    inputs = StepInputs(
        parent=state.identity(),
        instruction=" ".join(args) + "".join(f"\n{f.name}:{f.data}" for f in op.inline_files),
        env=sorted_env(state.env()),
        sources=sources,
        metadata=(
            *meta,
            ("network", _network(op, env)),
            ("security", op.security),
            *devices,
            *env.epoch_inputs(),
        ),
    )

    def run(vertex: int) -> Outcome:
        return _execute(env, state, op, args, vertex, done, eager=stepper.eager_layers, devices=requests)

    return stepper.step(
        state, index=index, text=op.text, history=history, inputs=inputs, run=run, location=str(op.location)
    )


def _execute(
    env: BuildEnv,
    state: StageState,
    op: ExecOp,
    args: tuple[str, ...],
    vertex: int,
    done: dict[int, StageResult],
    *,
    eager: bool = False,
    devices: tuple[DeviceRequest, ...] = (),
) -> Outcome:
    from forklift.runtime.cdi import ContainerEdits
    from forklift.runtime.users import resolve_user
    from forklift.snapshot.overlay import writable_rootfs

    runtime = env.runtime.get()
    lowers = lower_dirs(env, state)
    scratch = env.snapshots.scratch_dir("run")
    upper, work, merged, files = (scratch / n for n in ("upper", "work", "merged", "files"))
    for d in (upper, work, merged, files):
        d.mkdir()
    tail = bytearray()

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # chunks may split characters
    edits = _device_edits(env, op, vertex, devices) if devices else ContainerEdits()

    def output(chunk: bytes) -> None:
        tail.extend(chunk)
        del tail[:-_TAIL_BYTES]
        text = decoder.decode(chunk)
        if text:
            env.events(StepLog(vertex, text))

    try:
        with (
            contextlib.ExitStack() as stack,
            # volatile: the container's fsyncs and the unmount's sync of the upper dir are skipped
            # (apt's fsyncs, and ~50 ms per 20 MB written). Snapshots are a rebuildable cache, never
            # fsynced (COPY's and unpacked ones neither); the blobs made from them are.
            writable_rootfs(lowers, upper, work, merged, use_overlay=env.overlay(), volatile=True) as root,
        ):
            container = state.container
            try:
                uid, gid, groups = resolve_user(root, container.user)
            except BuildError:
                raise
            except Exception as err:
                raise BuildError(str(err), location=op.location) from err
            run_env = state.env()
            run_env.update(edits.env_pairs())
            mounts: list[Mount] = list(edits.mounts)
            for i, rm in enumerate(op.mounts):
                mounts.extend(_mount(env, stack, rm, i, files, run_env, done))
            for f in op.inline_files:
                d = files / f"inline-{hashlib.sha256(f.directory.encode()).hexdigest()[:12]}"
                d.mkdir(exist_ok=True)
                (d / f.name).write_text(f.data)
                (d / f.name).chmod(f.mode)
                if not any(m.target == f.directory.rstrip("/") for m in mounts):
                    mounts.append(
                        Mount(target=f.directory.rstrip("/"), source=str(d), options=("rbind", "ro"))
                    )
            process = Process(
                args=args,
                env=tuple(run_env.items()),
                cwd=container.working_dir or "/",
                uid=uid,
                gid=gid,
                additional_gids=(*groups, *(g for g in edits.additional_gids if g not in groups)),
                network=_network(op, env),
                privileged=op.security == "insecure",
                devices=_runtime_devices(edits, op),
                hooks=edits.hooks,
            )
            status = runtime.run(process, root, tuple(mounts), output=output)
        if status != 0:
            lines = bytes(tail).decode(errors="replace").rstrip("\n").splitlines()[-10:]
            shown = " ".join(args)
            raise BuildError(
                f'process "{shown}" did not complete successfully: exit code: {status}',
                location=op.location,
                hint=("last output:\n" + "\n".join(lines)) if lines else None,
            )
        layer = store_layer(env, OverlayUpperSource(upper), lazy=not eager)
        if layer is None:
            return Outcome(None)
        # The upper directory is the new layer's snapshot: move it out of the scratch dir (same
        # filesystem, a rename) for the stepper to adopt.
        adopt = env.snapshots.scratch_dir("adopt")
        os.rmdir(adopt)
        os.rename(upper, adopt)
        return Outcome(layer, adopt, source_kind="upper")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _device_edits(
    env: BuildEnv, op: ExecOp, vertex: int, requests: tuple[DeviceRequest, ...]
) -> ContainerEdits:
    """The CDI edits for the RUN's devices; a required device that is not registered fails the step."""
    from forklift.runtime.cdi import CdiError, DeviceRequest, load_registry, resolve_devices

    granted = env.options.entitlements
    try:
        registry = load_registry(env.options.cdi_spec_dirs or _default_cdi_dirs())
        named = [DeviceRequest(granted.device_name(r.name), r.required) for r in requests]
        resolved = resolve_devices(registry, named)
        for name in resolved.missing_optional:
            env.events(StepLog(vertex, f"WARNING: optional device {name!r} is not registered: skipped\n"))
        return resolved.edits
    except CdiError as err:
        raise BuildError(err.message, location=op.location, hint=err.hint) from err


def _runtime_devices(edits: ContainerEdits, op: ExecOp) -> tuple[DeviceNode, ...]:
    if not edits.device_nodes:
        return ()
    from forklift.runtime.cdi import CdiError, runtime_devices

    try:
        return runtime_devices(edits)
    except CdiError as err:
        raise BuildError(err.message, location=op.location, hint=err.hint) from err


def _mount(
    env: BuildEnv,
    stack: contextlib.ExitStack,
    rm: ResolvedMount,
    i: int,
    files: Path,
    run_env: dict[str, str],
    done: dict[int, StageResult],
) -> list[Mount]:
    m = rm.mount
    target = m.target or ""
    ro = ("ro",) if m.readonly else ()
    if m.type == "cache":
        return [_cache_mount(env, stack, rm, done)]
    if m.type == "tmpfs":
        opts = ("nosuid", "nodev") + ((f"size={m.size}",) if m.size else ())
        return [Mount(target=target, type="tmpfs", source="tmpfs", options=opts)]
    if m.type == "secret":
        ident = m.id or os.path.basename(target)
        secret = env.options.secrets.get(ident)
        value: bytes | None = None
        if secret is not None:
            if secret.file is not None:
                value = secret.file.read_bytes()
            elif secret.env is not None and secret.env in os.environ:
                value = os.environ[secret.env].encode()
        if value is None:
            if m.required:
                raise BuildError(
                    f"secret {ident} is required but was not given (--secret id={ident},src=FILE)"
                )
            return []
        out: list[Mount] = []
        if m.env:
            run_env[m.env] = value.decode(errors="replace")
        if m.target or not m.env:
            d = files / f"secret-{i}"
            d.mkdir()
            p = d / "value"
            p.write_bytes(value)
            os.chown(p, m.uid or 0, m.gid or 0)
            p.chmod(m.mode if m.mode is not None else 0o400)
            out.append(
                Mount(target=target or f"/run/secrets/{ident}", source=str(p), options=("rbind", "ro"))
            )
        return out
    if m.type == "ssh":
        ident = m.id or "default"
        sock = env.options.ssh.get(ident)
        if sock is None:
            if m.required:
                raise BuildError(f"ssh agent {ident} is required but was not given (--ssh {ident}=SOCKET)")
            return []
        tgt = target or f"/run/buildkit/ssh_agent.{i}"
        run_env.setdefault("SSH_AUTH_SOCK", tgt)
        return [Mount(target=tgt, source=sock, options=("rbind",))]
    # bind
    source_dir = _bind_source(env, stack, rm, done)
    src = source_dir
    if m.source:
        from forklift.runtime.rootpath import resolve_in_root

        src = resolve_in_root(source_dir, m.source)
        if not os.path.lexists(src):
            raise BuildError(f"bind mount source {m.source!r} not found")
    if not m.readonly:
        # Writes to a rw bind mount are discarded: give the container a private copy.
        copy = files / f"bind-{i}"
        if src.is_dir():
            shutil.copytree(src, copy, symlinks=True)
        else:
            shutil.copy2(src, copy)
        src = copy
    return [Mount(target=target, source=str(src), options=("rbind", *ro))]


def _cache_mount(
    env: BuildEnv, stack: contextlib.ExitStack, rm: ResolvedMount, done: dict[int, StageResult]
) -> Mount:
    """``type=cache``: a directory under ``<store>/cache/mounts`` that outlives builds.

    ``sharing=shared`` lets concurrent steps use it together, ``locked`` makes them take turns, and
    ``private`` gives a step that finds it busy an instance of its own. ``from``/``source`` seed a new
    cache with that stage's (or image's) directory; the seed is part of the cache's identity.
    """
    m = rm.mount
    target = m.target or ""
    seed: Path | None = None
    ident = m.id or target
    if rm.source_ref is not None:
        seed_root = _bind_source(env, stack, rm, done)
        from forklift.runtime.rootpath import resolve_in_root

        seed = resolve_in_root(seed_root, m.source or "/")
        ident += (
            "\0" + str(getattr(rm.source_ref, "index", getattr(rm.source_ref, "ref", ""))) + (m.source or "")
        )
    base = env.store.layout.cache_mounts / hashlib.sha256(ident.encode()).hexdigest()[:32]
    path = base
    for instance in range(64):
        path = base if instance == 0 else base.with_name(f"{base.name}-{instance}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        stack.callback(os.close, fd)
        if m.sharing == "locked":
            fcntl.flock(fd, fcntl.LOCK_EX)  # wait for our turn
        elif m.sharing == "private":
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # busy: try the next instance
        else:
            fcntl.flock(fd, fcntl.LOCK_SH)  # shared use; creation below happens once
        break
    if not path.is_dir():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        if seed is not None and seed.is_dir():
            shutil.copytree(seed, tmp, symlinks=True)
        else:
            tmp.mkdir()
        tmp.chmod(m.mode if m.mode is not None else 0o755)
        os.chown(tmp, m.uid or 0, m.gid or 0)
        try:
            os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another step made it first
    ro = ("ro",) if m.readonly else ()
    return Mount(target=target, source=str(path), options=("rbind", *ro))


def _bind_source(
    env: BuildEnv, stack: contextlib.ExitStack, rm: ResolvedMount, done: dict[int, StageResult]
) -> Path:
    ref = rm.source_ref
    if isinstance(ref, StageRef):
        return stack.enter_context(image_view(env, done[ref.index].state))
    if isinstance(ref, ImageRef):
        from forklift.execute.ops.source import load_base

        return stack.enter_context(image_view(env, load_base(env, ref.ref)))
    if isinstance(ref, NamedContextRef):
        named = env.options.named_contexts[ref.name]
        if named.directory is not None:
            return named.directory.resolve()
        from forklift.execute.ops.source import named_image

        return stack.enter_context(image_view(env, named_image(env, ref.name)))
    return env.context.root
