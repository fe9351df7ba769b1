"""forklift's default seccomp profile: default-allow, EPERM for Docker's documented list."""

from __future__ import annotations

import errno
from pathlib import Path

from forklift.runtime.base import Process
from forklift.runtime.oci import build_config
from forklift.runtime.seccomp import (
    BLOCKED_SYSCALLS,
    CLONE_NAMESPACE_FLAGS,
    architectures,
    default_profile,
    kernel_has_seccomp,
)


def test_profile_allows_by_default_and_refuses_the_documented_calls_with_eperm() -> None:
    profile = default_profile("x86_64")
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    first = profile["syscalls"][0]
    assert first["action"] == "SCMP_ACT_ERRNO" and first["errnoRet"] == errno.EPERM
    for name in (
        "mount",
        "umount2",
        "unshare",
        "setns",
        "pivot_root",
        "keyctl",
        "bpf",
        "reboot",
        "kexec_load",
    ):
        assert name in first["names"]
    # Everyday calls stay allowed (no rule names them at all).
    named = {n for rule in profile["syscalls"] for n in rule["names"]}
    for name in ("execve", "openat", "read", "write", "fork", "vfork", "wait4", "ptrace", "socket"):
        assert name not in named
    assert len(set(BLOCKED_SYSCALLS)) == len(BLOCKED_SYSCALLS)


def test_clone_is_refused_only_for_namespace_flags_and_clone3_falls_back() -> None:
    rules = default_profile("x86_64")["syscalls"]
    clone = [r for r in rules if r["names"] == ["clone"]]
    flags = sorted(r["args"][0]["value"] for r in clone)
    assert flags == sorted(CLONE_NAMESPACE_FLAGS) and sum(flags) == 0x7E020000
    for r in clone:
        (arg,) = r["args"]
        assert arg["index"] == 0 and arg["op"] == "SCMP_CMP_MASKED_EQ" and arg["valueTwo"] == arg["value"]
    (clone3,) = [r for r in rules if r["names"] == ["clone3"]]
    assert clone3["errnoRet"] == errno.ENOSYS


def test_architectures_per_host() -> None:
    assert architectures("aarch64") == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert architectures("riscv64") == []  # native only


def test_kernel_support_is_read_from_proc_status() -> None:
    assert kernel_has_seccomp("Name:\tx\nSeccomp:\t0\nSeccomp_filters:\t0\n")
    assert not kernel_has_seccomp("Name:\tx\nCapEff:\t0\n")


def test_config_has_the_profile_unless_privileged_or_unsupported() -> None:
    def config(**kw: object) -> dict[str, object]:
        privileged = bool(kw.pop("privileged", False))
        linux: dict[str, object] = build_config(
            Process(args=("x",), privileged=privileged), Path("/r"), (), bundle=Path("/b"), nofile=8, **kw
        )["linux"]
        return linux

    assert config()["seccomp"] == default_profile()
    assert "seccomp" not in config(privileged=True)
    assert "seccomp" not in config(seccomp=False)


def test_a_privileged_config_gets_buildkits_insecure_devices() -> None:
    linux = build_config(
        Process(args=("x",), privileged=True), Path("/r"), (), bundle=Path("/b"), nofile=8, free_loop=2
    )["linux"]
    paths = [d["path"] for d in linux["devices"]]
    assert paths[:6] == [
        "/dev/kmsg",
        "/dev/cuse",
        "/dev/fuse",
        "/dev/kvm",
        "/dev/net/tun",
        "/dev/loop-control",
    ]
    assert paths[6:] == [f"/dev/loop{i}" for i in range(10)]  # up to 7 past the first free one
    assert linux["devices"][-1] == {"path": "/dev/loop9", "type": "b", "major": 7, "minor": 9}
    plain = build_config(Process(args=("x",)), Path("/r"), (), bundle=Path("/b"), nofile=8)["linux"]
    assert "devices" not in plain
