"""Pure parts of the ops: config edits, docker-style history text, --chmod, COPY destination rules."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from forklift.errors import BuildError
from forklift.execute.ops import config as cfg
from forklift.execute.ops.copy import apply_chmod
from forklift.oci.model import ContainerConfig, HealthConfig
from forklift.report.progress import (
    BuildFinished,
    PlainRenderer,
    RawJsonRenderer,
    StepCached,
    StepDone,
    StepLog,
    StepMissed,
    StepStarted,
)


def test_entrypoint_resets_an_inherited_cmd_but_keeps_one_set_in_the_stage() -> None:
    base = ContainerConfig(cmd=("sh",))
    assert cfg.set_entrypoint(base, ["/app"], shell_form=False, cmd_set_in_stage=False).cmd is None
    assert cfg.set_entrypoint(base, ["/app"], shell_form=False, cmd_set_in_stage=True).cmd == ("sh",)
    shell = cfg.set_entrypoint(base, ["run it"], shell_form=True, cmd_set_in_stage=False)
    assert shell.entrypoint == ("/bin/sh", "-c", "run it")
    custom = cfg.set_shell(base, ["/bin/bash", "-eu", "-c"])
    assert cfg.set_cmd(custom, ["x"], shell_form=True).cmd == ("/bin/bash", "-eu", "-c", "x")


def test_env_labels_ports_volumes_workdir() -> None:
    c = cfg.set_env(ContainerConfig(env=("PATH=/bin", "A=1")), [("A", "2"), ("B", "3")])
    assert c.env == ("PATH=/bin", "A=2", "B=3")
    c = cfg.set_labels(ContainerConfig(labels={"a": "1"}), [("b", "2"), ("a", "3")])
    assert dict(c.labels) == {"a": "3", "b": "2"}
    assert cfg.add_ports(ContainerConfig(), ["80", "53/UDP"]).exposed_ports == ("53/udp", "80/tcp")
    assert cfg.add_volumes(ContainerConfig(volumes=("/b",)), ["/a"]).volumes == ("/a", "/b")
    c = cfg.set_workdir(ContainerConfig(working_dir="/srv"), "app/../data")
    assert c.working_dir == "/srv/data"
    assert cfg.set_workdir(c, "/abs").working_dir == "/abs"


def test_history_text_is_what_docker_shows() -> None:
    assert cfg.run_history(["/bin/sh", "-c", "make"], [("A", "1"), ("B", "2")]) == (
        "RUN |2 A=1 B=2 /bin/sh -c make # buildkit"
    )
    assert cfg.run_history(["/bin/sh", "-c", "make"], []) == "RUN /bin/sh -c make # buildkit"
    assert cfg.copy_history("COPY", ["a", "b"], "/dst/") == "COPY a b /dst/ # buildkit"
    assert cfg.command_history("CMD", ["node", "server.js"]) == 'CMD ["node" "server.js"]'
    assert cfg.expose_history(["8080", "53/udp"]) == "EXPOSE map[53/udp:{} 8080/tcp:{}]"
    assert cfg.volume_history(["/data"]) == "VOLUME [/data]"
    assert cfg.arg_history([("A", "1"), ("B", None)]) == "ARG A=1 B"
    health = HealthConfig(test=("CMD-SHELL", "true"), interval=30_000_000_000, retries=3)
    assert cfg.healthcheck_history(health) == (
        'HEALTHCHECK &{["CMD-SHELL" "true"] "30s" "0s" "0s" "0s" \'\\x03\'}'
    )


@pytest.mark.parametrize(
    ("spec", "mode", "is_dir", "expected"),
    [
        ("755", 0o644, False, 0o755),
        ("0640", 0o777, False, 0o640),
        ("u=rwX,go=rX", 0o600, True, 0o755),
        ("u=rwX,go=rX", 0o600, False, 0o644),
        ("u=rwX,go=rX", 0o700, False, 0o755),
        ("a+x", 0o644, False, 0o755),
        ("go-w", 0o666, False, 0o644),
        ("u+s", 0o755, False, 0o4755),
    ],
)
def test_chmod_octal_and_symbolic(spec: str, mode: int, is_dir: bool, expected: int) -> None:
    assert apply_chmod(spec, mode, is_dir) == expected


def test_bad_chmod_is_a_build_error() -> None:
    with pytest.raises(BuildError):
        apply_chmod("u=rwq", 0o644, False)


def test_plain_progress_marks_hits_and_explains_misses() -> None:
    out = io.StringIO()
    render = PlainRenderer(out)
    render(StepStarted(1, "[app 2/3] COPY a.txt /a"))
    render(StepCached(1))
    render(StepDone(1, 0.0, cached=True))
    render(StepStarted(2, "[app 3/3] RUN make"))
    render(StepMissed(2, "build context a.txt: file a.txt changed"))
    render(StepLog(2, "line one\nline "))
    render(StepLog(2, "two\n"))
    render(StepDone(2, 1.25))
    render(BuildFinished(("sha256:x",), 1.3, ("image app: sha256:x",)))
    lines = out.getvalue().splitlines()
    assert lines[0:2] == ["#1 [app 2/3] COPY a.txt /a", "#1 CACHED"]
    assert lines[3] == "#2 cache miss: build context a.txt: file a.txt changed"
    assert lines[4].startswith("#2 ") and lines[4].endswith(" line one")
    assert lines[5].endswith(" line two")
    assert lines[6] == "#2 DONE 1.2s" or lines[6] == "#2 DONE 1.3s"
    assert lines[7] == "image app: sha256:x"


def test_rawjson_progress_is_one_object_per_line(tmp_path: Path) -> None:
    import json

    out = io.StringIO()
    RawJsonRenderer(out)(StepMissed(3, "not built before"))
    assert json.loads(out.getvalue()) == {"type": "StepMissed", "vertex": 3, "reason": "not built before"}
