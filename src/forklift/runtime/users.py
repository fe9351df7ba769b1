"""USER strings (``name``, ``uid``, ``name:group``, ``uid:gid``) resolved against an image's files.

Names are looked up in the image's ``/etc/passwd`` and ``/etc/group`` (never the host's), as
Docker and BuildKit do. Supplementary groups come from ``/etc/group`` memberships, and only when
the USER string names no group.
"""

from __future__ import annotations

from pathlib import Path

from forklift.errors import ForkliftError
from forklift.records import record
from forklift.runtime.rootpath import resolve_in_root


@record
class PasswdEntry:
    """One line of /etc/passwd."""

    name: str
    uid: int
    gid: int
    home: str


@record
class GroupEntry:
    """One line of /etc/group."""

    name: str
    gid: int
    members: tuple[str, ...]


def parse_passwd(text: str) -> list[PasswdEntry]:
    """The entries of a passwd file; malformed lines are skipped (as libc does)."""
    entries = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 4 or line.startswith("#"):
            continue
        try:
            uid, gid = int(fields[2]), int(fields[3])
        except ValueError:
            continue
        home = fields[5] if len(fields) > 5 else "/"
        entries.append(PasswdEntry(fields[0], uid, gid, home))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """The entries of a group file; malformed lines are skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 3 or line.startswith("#"):
            continue
        try:
            gid = int(fields[2])
        except ValueError:
            continue
        members = tuple(m for m in fields[3].split(",") if m) if len(fields) > 3 else ()
        entries.append(GroupEntry(fields[0], gid, members))
    return entries


def _read_image_file(rootfs: Path, path: str) -> str | None:
    host = resolve_in_root(rootfs, path)
    try:
        return host.read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, tuple[int, ...]]:
    """``(uid, gid, additional_gids)`` for a USER string, using the image at ``rootfs``.

    Accepts ``""`` (root), ``name``, ``uid``, ``name:group``, ``uid:gid`` and mixes of both. A
    numeric uid that is not in /etc/passwd is allowed (gid 0, as Docker does); an unknown *name*
    raises ``ForkliftError``.
    """
    user_part, _, group_part = user.partition(":")
    if not user_part:
        if group_part:
            raise ForkliftError(f"invalid user {user!r}: the user part is empty")
        return 0, 0, ()
    passwd_text = _read_image_file(rootfs, "/etc/passwd")
    passwd = parse_passwd(passwd_text) if passwd_text is not None else []

    entry: PasswdEntry | None
    if _is_number(user_part):
        uid = int(user_part)
        entry = next((e for e in passwd if e.uid == uid), None)
    else:
        entry = next((e for e in passwd if e.name == user_part), None)
        if entry is None:
            where = "/etc/passwd" if passwd_text is not None else "/etc/passwd (the image has none)"
            raise ForkliftError(
                f"unable to find user {user_part}: no matching entries in {where}",
                hint="create the user in an earlier step (e.g. RUN adduser) or use a numeric uid",
            )
        uid = entry.uid
    gid = entry.gid if entry is not None else 0

    group_text: str | None = None
    groups: list[GroupEntry] = []
    if group_part or entry is not None:
        group_text = _read_image_file(rootfs, "/etc/group")
        groups = parse_group(group_text) if group_text is not None else []

    if group_part:
        if _is_number(group_part):
            gid = int(group_part)
        else:
            group = next((g for g in groups if g.name == group_part), None)
            if group is None:
                where = "/etc/group" if group_text is not None else "/etc/group (the image has none)"
                raise ForkliftError(
                    f"unable to find group {group_part}: no matching entries in {where}",
                    hint="create the group in an earlier step (e.g. RUN addgroup) or use a numeric gid",
                )
            gid = group.gid
        return uid, gid, ()

    additional: list[int] = []
    if entry is not None:
        for group in groups:
            if entry.name in group.members and group.gid != gid and group.gid not in additional:
                additional.append(group.gid)
    return uid, gid, tuple(additional)


def user_home(rootfs: Path, uid: int) -> str:
    """The home directory of ``uid`` in the image's /etc/passwd; ``/`` (``/root`` for root) if absent."""
    passwd_text = _read_image_file(rootfs, "/etc/passwd")
    for entry in parse_passwd(passwd_text or ""):
        if entry.uid == uid and entry.home:
            return entry.home
    return "/root" if uid == 0 else "/"
