"""Bind mounts, named and anonymous volumes, and the `volume` commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest


def test_bind_mount_read_write_and_read_only(ketch, tmp_path: Path):
    host = tmp_path / "share"
    host.mkdir()
    (host / "in").write_text("from host\n")
    p = ketch("run", "--rm", "-v", f"{host}:/share", "busybox", "sh", "-c",
              "cat /share/in; echo from container > /share/out")
    assert p.stdout == "from host\n"
    assert (host / "out").read_text() == "from container\n"
    p = ketch("run", "--rm", "-v", f"{host}:/share:ro", "busybox", "sh", "-c",
              "cat /share/in; touch /share/nope", check=False)
    assert p.returncode == 1 and p.stdout == "from host\n"
    assert "Read-only file system" in p.stderr
    assert not (host / "nope").exists()


def test_bind_mount_with_mount_flag(ketch, tmp_path: Path):
    (tmp_path / "f").write_text("x\n")
    p = ketch("run", "--rm", "--mount", f"type=bind,source={tmp_path},target=/m,readonly",
              "busybox", "sh", "-c", "cat /m/f; touch /m/g", check=False)
    assert p.stdout == "x\n" and "Read-only file system" in p.stderr
    p = ketch("run", "--rm", "--mount", "type=bind,source=/no/such/dir,target=/m", "busybox",
              "true", check=False)
    assert p.returncode == 125 and "bind source path does not exist" in p.stderr


def test_inspect_shows_mounts(ketch, run_d, tmp_path: Path):
    cid = run_d("-v", f"{tmp_path}:/b:ro", "-v", "named1:/n", "busybox", "sleep", "60")
    mounts = json.loads(ketch("container", "inspect", "-f", "{{json .Mounts}}", cid).stdout)
    by_dest = {m["Destination"]: m for m in mounts}
    assert by_dest["/b"]["Type"] == "bind" and by_dest["/b"]["RW"] is False
    assert by_dest["/b"]["Source"] == str(tmp_path)
    assert by_dest["/n"]["Type"] == "volume" and by_dest["/n"]["Name"] == "named1"
    assert by_dest["/n"]["RW"] is True


def test_named_volume_outlives_its_containers(ketch):
    ketch("run", "--rm", "-v", "keep:/data", "busybox", "sh", "-c", "echo saved > /data/f")
    assert ketch("volume", "ls", "-q").stdout.split() == ["keep"]
    p = ketch("run", "--rm", "--mount", "source=keep,target=/again", "busybox", "cat",
              "/again/f")
    assert p.stdout == "saved\n"


def test_anonymous_volumes_and_rm_v(ketch):
    ketch("create", "--name", "anon", "-v", "/scratch", "busybox", "sh", "-c",
          "echo x > /scratch/x")
    ketch("start", "-a", "anon")
    vols = ketch("volume", "ls", "-q").stdout.split()
    assert len(vols) == 1 and re.fullmatch(r"[0-9a-f]{64}", vols[0])
    # a restart keeps the same anonymous volume
    ketch("start", "-a", "anon")
    assert ketch("volume", "ls", "-q").stdout.split() == vols
    ketch("rm", "-v", "anon")
    assert ketch("volume", "ls", "-q").stdout == ""


def test_run_rm_removes_its_anonymous_volumes_but_not_named_ones(ketch):
    ketch("run", "--rm", "-v", "/tmpvol", "-v", "named2:/n", "--mount", "type=volume,"
          "target=/anon2", "busybox", "true")
    assert ketch("volume", "ls", "-q").stdout.split() == ["named2"]


def test_tmpfs_mount(ketch):
    p = ketch("run", "--rm", "--tmpfs", "/cache", "busybox", "sh", "-c",
              "grep ' /cache ' /proc/mounts")
    assert "tmpfs" in p.stdout


# -- volume commands --------------------------------------------------------------------
def test_volume_create_takes_the_local_driver_and_the_name_flag_only(ketch):
    assert ketch("volume", "create", "--driver", "local", "--name", "byflag").stdout == \
        "byflag\n"
    p = ketch("volume", "create", "-d", "convoy", "other", check=False)
    assert p.returncode == 1
    assert p.stderr == ('Error: create other: error looking up volume plugin convoy: plugin'
                        ' "convoy" not found\n')  # dockerd's words
    p = ketch("volume", "create", "--name", "one", "two", check=False)
    assert p.returncode == 1 and "conflicting options" in p.stderr
    assert ketch("volume", "ls", "-q").stdout == "byflag\n"


def test_volume_create_ls_inspect_rm(ketch):
    assert ketch("volume", "create", "v1").stdout == "v1\n"
    assert ketch("volume", "create", "--label", "team=core", "v2").stdout == "v2\n"
    anon = ketch("volume", "create").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", anon)
    lines = ketch("volume", "ls").stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == ["DRIVER", "VOLUME NAME"]
    assert sorted(re.split(r"\s+", line.strip())[1] for line in lines[1:]) == sorted(
        [anon, "v1", "v2"])
    doc = json.loads(ketch("volume", "inspect", "v2").stdout)
    assert len(doc) == 1
    v = doc[0]
    assert v["Name"] == "v2" and v["Driver"] == "local" and v["Scope"] == "local"
    assert v["Labels"] == {"team": "core"}
    assert Path(v["Mountpoint"]).is_dir() and v["Mountpoint"].endswith("/v2/_data")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", v["CreatedAt"])
    assert ketch("volume", "inspect", "-f", "{{.Name}}", "v1", "v2").stdout == "v1\nv2\n"
    assert ketch("volume", "ls", "-q", "--filter", "label=team").stdout == "v2\n"
    assert ketch("volume", "ls", "-q", "-f", "name=v").stdout.split() == ["v1", "v2"]
    # as dockerd's: the value is also a regular expression searched in the name
    assert ketch("volume", "ls", "-q", "-f", "name=^v1$").stdout == "v1\n"
    assert ketch("volume", "ls", "-q", "-f", "name=v[2-9]").stdout == "v2\n"
    assert ketch("volume", "ls", "-q", "-f", "name=^v$").stdout == ""
    assert ketch("volume", "ls", "-q", "-f", "name=v(").stdout == ""  # (not an expression)
    # docker's volume context, in name order for {{json .}}
    doc = json.loads(ketch("volume", "ls", "--format", "json", "-f", "name=v2").stdout)
    assert doc == {"Availability": "N/A", "Driver": "local", "Group": "N/A",
                   "Labels": "team=core", "Links": "N/A", "Mountpoint": v["Mountpoint"],
                   "Name": "v2", "Scope": "local", "Size": "N/A", "Status": "N/A"}
    assert list(doc) == sorted(doc)
    assert ketch("volume", "ls", "--format", "{{.Name}}|{{.Status}}|{{.Links}}", "-f",
                 "name=v2").stdout == "v2|N/A|N/A\n"
    assert ketch("volume", "ls", "--format", "{{.Name}}:{{.Driver}}", "-f", "name=v1"
                 ).stdout == "v1:local\n"
    assert ketch("volume", "rm", "v1", "v2", anon).stdout == f"v1\nv2\n{anon}\n"
    assert ketch("volume", "ls", "-q").stdout == ""


def test_volume_rm_refuses_a_volume_in_use(ketch):
    ketch("create", "--name", "holder", "-v", "used:/u", "busybox")
    p = ketch("volume", "rm", "used", check=False)
    assert p.returncode == 1
    cid = ketch("container", "inspect", "-f", "{{.Id}}", "holder").stdout.strip()
    assert p.stderr == f"Error: remove used: volume is in use - [{cid}]\n"
    p = ketch("volume", "rm", "nosuch", check=False)
    assert p.returncode == 1 and p.stderr == "Error: get nosuch: no such volume\n"
    assert ketch("volume", "rm", "-f", "nosuch").returncode == 0
    ketch("rm", "holder")
    ketch("volume", "rm", "used")


def test_volume_creations_and_removals_take_turns(ketch):
    """A removal waits while another command creates or removes a volume (the volume
    store's lock), so it never renames a volume away while a creation of the name
    writes its labels: that creation failed with an internal error."""
    import fcntl
    import os
    import subprocess

    from tests.conftest import ketch_command
    from tests.helpers.host import has_open, wait_for

    ketch("volume", "create", "--label", "a=b", "turns")
    lock = ketch.root / "volumes" / ".lock"
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        rm = subprocess.Popen([*ketch_command(), "volume", "rm", "turns"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: has_open(rm.pid, lock), what="the removal to wait for the lock")
        assert rm.poll() is None
        assert ketch("volume", "inspect", "-f", "{{.Labels.a}}", "turns").stdout == "b\n"
    out, err = rm.communicate(timeout=60)
    assert (rm.returncode, out, err) == (0, "turns\n", "")
    assert ketch("volume", "ls", "-q").stdout == ""


def test_an_exclusive_create_of_a_volume_that_exists_is_a_conflict(ketch):
    """What kube play relies on to undo only the volumes it made: `create` of an existing
    volume returns it as Docker's does, `exclusive=True` refuses it and keeps it whole."""
    from ketch.engine import Engine
    from ketch.errors import Conflict

    ketch("volume", "create", "--label", "by=user", "claimed")
    with Engine(ketch.root, ketch.root / "run") as engine:
        assert engine.volumes.create("claimed")["Labels"] == {"by": "user"}
        with pytest.raises(Conflict) as refused:
            engine.volumes.create("claimed", labels={"by": "play"}, exclusive=True)
        assert refused.value.message == "create claimed: volume already exists"
        assert engine.volumes.create("fresh", exclusive=True)["Name"] == "fresh"
    assert ketch("volume", "inspect", "-f", "{{.Labels.by}}", "claimed").stdout == "user\n"
    assert ketch("volume", "ls", "-q").stdout.split() == ["claimed", "fresh"]


def test_volume_ls_dangling(ketch):
    ketch("volume", "create", "free")
    ketch("create", "--name", "h1", "-v", "taken:/t", "busybox")
    assert ketch("volume", "ls", "-q", "-f", "dangling=true").stdout == "free\n"
    assert ketch("volume", "ls", "-q", "-f", "dangling=false").stdout == "taken\n"
    assert ketch("volume", "ls", "-q", "-f", "dangling=1").stdout == "free\n"
    bad = ketch("volume", "ls", "-q", "-f", "dangling=maybe", check=False)
    assert (bad.returncode, bad.stdout, bad.stderr) == (
        1, "", "Error: invalid filter 'dangling=[maybe]'\n")  # not a list of everything


def test_volume_prune(ketch):
    ketch("volume", "create", "named-free")
    anon = ketch("volume", "create").stdout.strip()
    ketch("create", "--name", "h2", "-v", "/in-use", "busybox")
    ketch("start", "-a", "h2")
    in_use = [v for v in ketch("volume", "ls", "-q").stdout.split()
              if v not in (anon, "named-free")]
    p = ketch("volume", "prune", input="y\n")
    assert "anonymous local volumes" in p.stdout
    assert f"Deleted Volumes:\n{anon}\n" in p.stdout
    assert re.search(r"Total reclaimed space: .*B\n$", p.stdout)
    assert sorted(ketch("volume", "ls", "-q").stdout.split()) == sorted(in_use +
                                                                       ["named-free"])
    ketch("volume", "prune", "-a", "-f")
    assert ketch("volume", "ls", "-q").stdout.split() == in_use


def test_volume_prune_filter_removes_only_the_matching_volumes(ketch):
    ketch("volume", "create", "--label", "keep=no", "drop-me")
    ketch("volume", "create", "--label", "keep=yes", "keep-me")
    p = ketch("volume", "prune", "-a", "-f", "--filter", "label=keep=no")
    assert "Deleted Volumes:\ndrop-me\n" in p.stdout
    assert ketch("volume", "ls", "-q").stdout.split() == ["keep-me"]


@pytest.mark.parametrize("spec", ["rel/path:/x", "/host:relative"])
def test_bad_volume_specs(ketch, spec):
    p = ketch("run", "--rm", "-v", spec, "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.stderr.count("\n") == 1


def test_run_refuses_a_volume_name_in_the_words_of_volume_create_and_makes_no_volume(ketch):
    """`-v NAME:/path` makes the volume NAME, so a name no volume can have is refused as
    `volume create` refuses it, with dockerd's hint for a host path meant; a good name
    beside it is not made either."""
    p = ketch("run", "--rm", "-v", "rel/x:/d", "busybox", "true", check=False)
    assert (p.returncode, p.stderr) == (125, (
        'Error: create rel/x: "rel/x" includes invalid characters for a local volume name,'
        ' only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host'
        " directory, use absolute path\n"))
    p = ketch("create", "-v", "fine:/d", "--mount", "type=volume,src=b,dst=/e", "busybox",
              check=False)
    assert (p.returncode, p.stderr) == (125, "Error: create b: volume name is too short,"
                                             " names should be at least two alphanumeric"
                                             " characters\n")
    assert ketch("volume", "ls", "-q").stdout == ""


@pytest.mark.parametrize(("name", "quoted"), [
    ("a b", '"a b"'), ("ab\n", '"ab\\n"'), ("é1", '"é1"'), (".ab", '".ab"'),
    ("ab/c", '"ab/c"')])
def test_volume_create_refuses_a_name_outside_dockers_pattern_and_creates_nothing(
        ketch, name, quoted):
    # dockerd's local driver's words (Go's %q of the name)
    p = ketch("volume", "create", name, check=False)
    assert p.returncode == 1
    assert p.stderr == (f"Error: create {name}: {quoted} includes invalid characters for a"
                        ' local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed.'
                        " If you intended to pass a host directory, use absolute path\n")
    assert ketch("volume", "ls", "-q").stdout == ""


def test_a_volume_name_no_volume_can_have_is_refused_in_dockers_words(ketch):
    p = ketch("volume", "create", "a", check=False)
    assert (p.returncode, p.stderr) == (1, "Error: create a: volume name is too short, names"
                                           " should be at least two alphanumeric characters\n")
    for verb in ("inspect", "rm"):  # (no volume has it: not found, as dockerd says)
        p = ketch("volume", verb, "ab/c", check=False)
        assert (p.returncode, p.stderr) == (1, "Error: get ab/c: no such volume\n")
    assert ketch("volume", "ls", "-q").stdout == ""


def test_volume_names_of_two_characters_and_dots_dashes_underscores_are_accepted(ketch):
    for name in ("9x", "ok.name-1_x"):
        assert ketch("volume", "create", name).stdout == f"{name}\n"
    assert sorted(ketch("volume", "ls", "-q").stdout.split()) == ["9x", "ok.name-1_x"]
    ketch("volume", "rm", "9x", "ok.name-1_x")


def test_system_df_and_prune_count_a_volumes_regular_files_only(ketch):
    # 100 KiB in a nested file and 3 bytes elsewhere; a symlink (to a 2 MB binary) and
    # directories count nothing: what docker's du-based size of a local volume says
    ketch("run", "--rm", "-v", "sized:/d", "busybox", "sh", "-c",
          "dd if=/dev/zero of=/d/f bs=1024 count=100 2>/dev/null; mkdir -p /d/x/y;"
          " printf abc > /d/x/y/z; ln -s /bin/busybox /d/l")
    # docker's volume table prints four digits ("102.4kB"; 3 gave "102kB")
    table = ketch("system", "df", "-v").stdout.split("Local Volumes space usage:\n\n")[1]
    assert table.splitlines()[:2] == ["VOLUME NAME   LINKS     SIZE",
                                      "sized         0         102.4kB"]
    p = ketch("volume", "prune", "-a", "-f")
    assert p.stdout.endswith("Deleted Volumes:\nsized\n\nTotal reclaimed space: 102.4kB\n")
