"""forklift's default seccomp profile for RUN containers (not for ``RUN --security=insecure``).

The profile is written here, from the documented facts, as a *default-allow* filter: every
system call is allowed except the ones Docker's documentation ("Seccomp security profiles for
Docker", the table of significant syscalls its default profile blocks) lists as blocked for a
container without extra capabilities. Those fail with EPERM, as they do under Docker and
BuildKit. A default-allow list never breaks a program because of a system call newer than the
list.

Deliberate differences from that table, following what Docker and containerd do today:

* ``ptrace``, ``process_vm_readv`` and ``process_vm_writev`` stay allowed: both default profiles
  allow them on kernels from 4.8 on, where ptrace can no longer bypass seccomp (strace and gdb
  work in a build step).
* ``clone`` is refused only when it asks for a new namespace (any of the CLONE_NEW* flags), and
  ``clone3`` (whose flags sit in memory a filter cannot read) fails with ENOSYS so that the C
  library falls back to ``clone``; plain thread and process creation is untouched.

runc installs the filter after its own namespace and mount setup, just before it executes the
process, so blocking ``mount``, ``unshare`` or ``pivot_root`` does not get in its way. runc skips
a name that libseccomp does not know, so names of other architectures (``vm86``) are harmless.
"""

from __future__ import annotations

import errno
import platform
from typing import Any

# Blocked with EPERM (Docker's documented list, minus the ptrace family: see above).
BLOCKED_SYSCALLS: tuple[str, ...] = (
    "_sysctl",
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
)

# linux/sched.h: the flags of clone() that create namespaces.
CLONE_NAMESPACE_FLAGS: tuple[int, ...] = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

# The host machine (``platform.machine()``) -> the seccomp architectures its processes may use:
# the native one first, then the compatibility modes the kernel can run (32-bit, x32).
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "amd64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "arm64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}


def architectures(machine: str | None = None) -> list[str]:
    """The seccomp architectures for ``machine`` (default: this host); empty means native only."""
    return list(ARCHITECTURES.get((machine or platform.machine()).lower(), ()))


def default_profile(machine: str | None = None) -> dict[str, Any]:
    """The ``linux.seccomp`` object of an OCI runtime config: allow all but the blocked calls.

    Pure: the same ``machine`` always gives the same document (a run's config is reproducible).
    """
    eperm = errno.EPERM
    syscalls: list[dict[str, Any]] = [
        {"names": list(BLOCKED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": eperm},
        # One rule per flag: the filter compares (flags & FLAG) == FLAG; the rules are or-ed.
        *(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": eperm,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }
            for flag in CLONE_NAMESPACE_FLAGS
        ),
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
    ]
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(machine),
        "syscalls": syscalls,
    }


def kernel_has_seccomp(status_text: str) -> bool:
    """Whether the kernel filters system calls (a ``Seccomp:`` line in /proc/<pid>/status)."""
    return any(line.startswith("Seccomp:") for line in status_text.splitlines())
