"""`-u user[:group]` resolution inside an untrusted rootfs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ketch.errors import InvalidArgument
from ketch.runtime import users
from ketch.runtime.users import resolve_groups, resolve_user

PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
app:x:1000:1000::/home/app:/bin/sh
broken line
"""
GROUP = """root:x:0:
daemon:x:1:
www-data:x:33:
staff:x:50:app,other
docker:x:999:app
app:x:1000:
"""


@pytest.fixture(autouse=True, params=["openat2", "walk"])
def in_root_resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the kernel's RESOLVE_IN_ROOT and with the Python walk."""
    if request.param == "walk":
        monkeypatch.setattr(users, "_openat2_missing", True)
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text(PASSWD)
    (r / "etc" / "group").write_text(GROUP)
    return r


def test_empty_user_is_root_with_roots_home(root: Path):
    user = resolve_user(root, None)
    assert (user.uid, user.gid, user.home, user.additional_gids) == (0, 0, "/root", [])


def test_user_name_gives_its_ids_home_and_supplementary_groups(root: Path):
    user = resolve_user(root, "app")
    assert (user.uid, user.gid, user.home) == (1000, 1000, "/home/app")
    assert user.additional_gids == [50, 999]


def test_numeric_user_found_in_passwd_takes_its_group_and_home(root: Path):
    user = resolve_user(root, "33")
    assert (user.uid, user.gid, user.home) == (33, 33, "/var/www")


def test_numeric_user_absent_from_passwd_runs_with_gid_0_and_home_slash(root: Path):
    user = resolve_user(root, "4242")
    assert (user.uid, user.gid, user.home) == (4242, 0, "/")


def test_explicit_group_by_name_or_number_replaces_the_primary_group(root: Path):
    assert resolve_user(root, "app:staff").gid == 50
    assert resolve_user(root, "app:7777").gid == 7777
    # Supplementary groups only come with the implicit form, as in Docker.
    assert resolve_user(root, "app:staff").additional_gids == []


def test_unknown_user_name_fails_with_dockers_message(root: Path):
    with pytest.raises(InvalidArgument,
                       match="unable to find user xyz: no matching entries in passwd file"):
        resolve_user(root, "xyz")


def test_unknown_group_name_fails_with_dockers_message(root: Path):
    with pytest.raises(InvalidArgument,
                       match="unable to find group nogroup: no matching entries in group file"):
        resolve_user(root, "app:nogroup")


def test_ids_out_of_range_are_refused(root: Path):
    with pytest.raises(InvalidArgument, match="range"):
        resolve_user(root, "4294967296")


def test_rootfs_without_passwd_accepts_numbers_and_refuses_names(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert resolve_user(empty, "12:34").uid == 12
    assert resolve_user(empty, "12:34").gid == 34
    with pytest.raises(InvalidArgument, match="unable to find user app"):
        resolve_user(empty, "app")


def test_passwd_symlinked_out_of_the_rootfs_is_resolved_inside_it(tmp_path: Path):
    host_etc = tmp_path / "host-etc"
    host_etc.mkdir()
    (host_etc / "passwd").write_text("evil:x:7:7::/evil:/bin/sh\n")
    root = tmp_path / "root"
    root.mkdir()
    # An absolute link: inside the container it points to a path that does not exist.
    (root / "etc").symlink_to(host_etc)
    with pytest.raises(InvalidArgument, match="unable to find user evil"):
        resolve_user(root, "evil")
    # A relative link climbing out is clamped at the rootfs too.
    (root / "etc").unlink()
    (root / "etc").mkdir()
    (root / "etc" / "passwd").symlink_to("../../../../../../../../" + str(host_etc / "passwd"))
    with pytest.raises(InvalidArgument, match="unable to find user evil"):
        resolve_user(root, "evil")


def test_passwd_that_is_a_fifo_is_not_read(tmp_path: Path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.mkfifo(root / "etc" / "passwd")
    assert resolve_user(root, "5").uid == 5  # no hang, no error for numbers
    with pytest.raises(InvalidArgument):
        resolve_user(root, "app")


def test_group_add_resolves_names_and_numbers(root: Path):
    assert resolve_groups(root, ["staff", "4000", "docker"]) == [50, 4000, 999]
    with pytest.raises(InvalidArgument, match="Unable to find group wheel"):
        resolve_groups(root, ["wheel"])
