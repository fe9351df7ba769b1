"""One planned stage, op by op: FROM, then RUN / COPY / ADD / metadata steps, each through the cache."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace

from forklift.dockerfile.instructions import (
    Arg,
    Cmd,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from forklift.dockerfile.words import expand_words
from forklift.errors import BuildError, ExpansionError, SourceLocation
from forklift.execute.cache import StepInputs
from forklift.execute.engine import BuildEnv, StageResult, Stepper, check_cancel, sorted_env
from forklift.execute.ops import config as cfg
from forklift.execute.ops.copy import run_copy, run_workdir
from forklift.execute.ops.exec import run_exec
from forklift.execute.ops.readahead import CopySourceReadAhead
from forklift.execute.ops.source import resolve_source
from forklift.execute.state import StageState
from forklift.oci.model import HealthConfig
from forklift.plan.args import declare_stage_arg, expand_at
from forklift.plan.graph import PlannedStage
from forklift.plan.ops import ConfigOp, CopyOp, ExecOp, ImageRef, Op, SourceOp, SourceRef


def run_stage(
    env: BuildEnv,
    planned: PlannedStage,
    done: Mapping[int, StageResult],
    cancel: threading.Event,
    *,
    global_values: Mapping[str, str],
    build_args: Mapping[str, str],
    no_cache: bool,
) -> StageResult:
    """Build one stage; ``done`` holds the results of the stages it depends on."""
    ops = planned.ops
    if not ops or not isinstance(ops[0], SourceOp):
        raise BuildError(f"stage {planned.display_name} has no FROM", location=planned.location)
    source = ops[0]
    stepper = Stepper(
        env,
        planned.display_name,
        len(ops),
        no_cache=no_cache,
        cancel=cancel,
        eager_layers=planned.index in env.eager_stages,
    )
    finished = dict(done)
    state = resolve_source(env, stepper, source, finished)
    body = list(ops[1:])
    if isinstance(source.source, ImageRef) and state.container.on_build:
        # An image's ONBUILD triggers run right after FROM (a stage base's are planned already).
        body = [*image_triggers(state.container.on_build, env.options.escape), *body]
        stepper.total = len(body) + 1
    if state.container.on_build:
        state = state.with_container(replace(state.container, on_build=()))  # not passed further down
    read_ahead = CopySourceReadAhead(env, body, finished)
    try:
        for index, op in enumerate(body, start=1):
            check_cancel(cancel)
            if isinstance(op, ExecOp):
                state = run_exec(env, stepper, state, op, index, finished)
            elif isinstance(op, CopyOp):
                state = run_copy(env, stepper, state, op, index, finished, read_ahead)
            elif isinstance(op, ConfigOp):
                state = _config_step(env, stepper, state, op, index, global_values, build_args)
            else:
                raise BuildError(f"unexpected FROM inside stage {planned.display_name}", location=op.location)
    finally:
        read_ahead.close()
    return StageResult(planned.display_name, planned.index, state, ran=stepper.ran, keys=tuple(stepper.keys))


def image_triggers(texts: tuple[str, ...], escape: str) -> list[Op]:
    """Ops for ONBUILD triggers stored in a base image's config (``--from`` cannot name stages here)."""
    from forklift.dockerfile.instructions import parse_instruction
    from forklift.dockerfile.syntax import parse
    from forklift.plan.lower import lower_instruction

    def no_stages(value: str, *, via: object, location: SourceLocation, allow_index: bool) -> SourceRef:
        return ImageRef(ref=value)

    out: list[Op] = []
    for text in texts:
        directive = f"# escape={escape}\n" if escape != "\\" else ""
        parsed = parse(directive + text + "\n", file="ONBUILD")
        for node in parsed.nodes:
            out.append(lower_instruction(parse_instruction(node, parsed), no_stages))
    return out


def _config_step(
    env: BuildEnv,
    stepper: Stepper,
    state: StageState,
    op: ConfigOp,
    index: int,
    global_values: Mapping[str, str],
    build_args: Mapping[str, str],
) -> StageState:
    ins = op.instruction
    scope = state.env()
    esc = env.options.escape

    def expand(text: str) -> str:
        return expand_at(text, scope, escape=esc, location=op.location)

    container = state.container
    new_state = state
    if isinstance(ins, Workdir):
        return run_workdir(env, stepper, state, expand(ins.path), index, op.text, op.location)
    if isinstance(ins, Env):
        pairs = [(expand(k), expand(v)) for k, v in ins.pairs]
        new_state = state.with_container(cfg.set_env(container, pairs))
        history = cfg.env_history(pairs)
    elif isinstance(ins, Arg):
        args = dict(state.args)
        declared: list[tuple[str, str | None]] = []
        for decl in ins.args:
            name, value = declare_stage_arg(
                decl,
                env=scope,
                global_values=global_values,
                build_args=build_args,
                escape=esc,
                location=op.location,
            )
            declared.append((name, None if decl.default is None else expand(decl.default)))
            if value is not None:
                args[name] = value
            else:
                args.pop(name, None)
        new_state = replace(state, args=args)
        history = cfg.arg_history(declared)
    elif isinstance(ins, Label):
        pairs = [(expand(k), expand(v)) for k, v in ins.pairs]
        new_state = state.with_container(cfg.set_labels(container, pairs))
        history = cfg.label_history(pairs)
    elif isinstance(ins, Expose):
        ports: list[str] = []
        for p in ins.ports:
            try:
                ports.extend(expand_words(p, scope, escape=esc))
            except ExpansionError as err:
                raise ExpansionError(err.message, location=op.location) from None
        new_state = state.with_container(cfg.add_ports(container, ports))
        history = cfg.expose_history(ports)
    elif isinstance(ins, Volume):
        paths = [expand(p) for p in ins.paths]
        new_state = state.with_container(cfg.add_volumes(container, paths))
        history = cfg.volume_history(paths)
    elif isinstance(ins, User):
        user = expand(ins.user)
        new_state = state.with_container(cfg.set_user(container, user))
        history = f"USER {user}"
    elif isinstance(ins, Cmd):
        new = cfg.set_cmd(container, ins.command, shell_form=ins.shell_form)
        new_state = replace(state.with_container(new), cmd_set=True)
        history = cfg.command_history("CMD", new.cmd or ())
    elif isinstance(ins, Entrypoint):
        new = cfg.set_entrypoint(
            container, ins.command, shell_form=ins.shell_form, cmd_set_in_stage=state.cmd_set
        )
        new_state = state.with_container(new)
        history = cfg.command_history("ENTRYPOINT", new.entrypoint or ())
    elif isinstance(ins, Shell):
        new_state = state.with_container(cfg.set_shell(container, ins.shell))
        history = "SHELL " + cfg.go_list(ins.shell)
    elif isinstance(ins, StopSignal):
        signal = expand(ins.signal)
        new_state = state.with_container(cfg.set_stop_signal(container, signal))
        history = f"STOPSIGNAL {signal}"
    elif isinstance(ins, Healthcheck):
        health = HealthConfig(
            test=ins.test,
            interval=ins.interval,
            timeout=ins.timeout,
            start_period=ins.start_period,
            start_interval=ins.start_interval,
            retries=ins.retries,
        )
        new_state = state.with_container(cfg.set_healthcheck(container, health))
        history = cfg.healthcheck_history(health)
    elif isinstance(ins, Onbuild):
        new_state = state.with_container(cfg.add_onbuild(container, ins.expression))
        history = f"ONBUILD {ins.expression}"
    elif isinstance(ins, Maintainer):
        new_state = replace(state, config=replace(state.config, author=ins.name))
        history = f"MAINTAINER {ins.name}"
    else:  # pragma: no cover - exhaustive over ConfigInstruction
        raise BuildError(f"unsupported instruction {op.text}", location=op.location)

    inputs = StepInputs(parent=state.identity(), instruction=history, env=sorted_env(new_state.args))
    final = new_state
    return stepper.step(
        state,
        index=index,
        text=op.text,
        history=history,
        inputs=inputs,
        run=None,
        after=lambda _s: final,
        visible=False,
    )
