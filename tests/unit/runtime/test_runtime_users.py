"""USER strings resolved against an image's /etc/passwd and /etc/group."""

from __future__ import annotations

from pathlib import Path

import pytest

from forklift.errors import ForkliftError
from forklift.runtime.users import parse_group, parse_passwd, resolve_user

PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:app:/home/app:/bin/sh
broken:x:notanumber:1::/:/bin/sh
"""
GROUP = """root:x:0:
app:x:1000:
staff:x:50:app,other
docker:x:998:app
wheel:x:10:root
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", (0, 0, ())),
        ("root", (0, 0, (10,))),
        ("app", (1000, 1000, (50, 998))),
        ("1000", (1000, 1000, (50, 998))),
        ("4242", (4242, 0, ())),
        ("app:staff", (1000, 50, ())),
        ("app:77", (1000, 77, ())),
        ("1000:staff", (1000, 50, ())),
        ("4242:4343", (4242, 4343, ())),
        ("daemon", (1, 1, ())),
    ],
)
def test_resolve_user(rootfs: Path, user: str, expected: tuple[int, int, tuple[int, ...]]) -> None:
    assert resolve_user(rootfs, user) == expected


def test_unknown_user_name_is_a_clear_error(rootfs: Path) -> None:
    with pytest.raises(ForkliftError, match="unable to find user nobody: no matching entries in /etc/passwd"):
        resolve_user(rootfs, "nobody")


def test_unknown_group_name_is_a_clear_error(rootfs: Path) -> None:
    with pytest.raises(ForkliftError, match="unable to find group nogroup"):
        resolve_user(rootfs, "app:nogroup")


def test_image_without_passwd(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "123:456") == (123, 456, ())
    assert resolve_user(tmp_path, "123") == (123, 0, ())
    with pytest.raises(ForkliftError, match="the image has none"):
        resolve_user(tmp_path, "app")


def test_passwd_reached_through_a_symlink_stays_in_the_image(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "passwd").write_text("svc:x:77:88::/:/bin/sh\n")
    (tmp_path / "etc" / "passwd").symlink_to("/data/passwd")  # absolute: relative to the image root
    assert resolve_user(tmp_path, "svc") == (77, 88, ())


def test_parsers_skip_malformed_lines() -> None:
    assert [e.name for e in parse_passwd(PASSWD)] == ["root", "daemon", "app"]
    assert [(g.name, g.members) for g in parse_group(GROUP)][2] == ("staff", ("app", "other"))
