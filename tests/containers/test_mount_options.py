"""Mount options take effect or are refused, as in Docker: tmpfs size and mode, bind
propagation (checked against the source's mount), unknown `--mount` keys and `-v`
modes, and the local volume driver's `type`/`device`/`o` (tmpfs and bind volumes,
mounted while a container uses them)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.containers.conftest import NOTHING_MADE, made_in
from tests.helpers.host import mounts_under, wait_for


def _df_blocks(out: str) -> int:
    return int(out.splitlines()[-1].split()[1])


@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Path]:
    """A directory that is a mount point of its own (bound on itself), unmounted after."""
    d = tmp_path / "src"
    d.mkdir()
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
    yield d
    for m in sorted(mounts_under(d), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)


def _propagation(path: Path, kind: str) -> None:
    subprocess.run(["mount", f"--make-{kind}", str(path)], check=True)


# -- tmpfs --------------------------------------------------------------------------------
@pytest.mark.parametrize("how", [["--mount", "type=tmpfs,dst=/x,tmpfs-size=2m,tmpfs-mode=1770"],
                                 ["--tmpfs", "/x:size=2m,mode=1770"]])
def test_tmpfs_size_and_mode_are_applied(ketch, how):
    p = ketch("run", "--rm", *how, "busybox", "sh", "-c", "df -k /x; stat -c %a /x")
    lines = p.stdout.splitlines()
    assert _df_blocks("\n".join(lines[:-1])) == 2048
    assert lines[-1] == "1770"


# -- refusals -----------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--mount", "type=bind,src=/tmp,dst=/x,bogus=1"],
     'Error: invalid argument "type=bind,src=/tmp,dst=/x,bogus=1" for "--mount" flag:'
     " unexpected key 'bogus' in 'bogus=1'\n"),
    (["--mount", "type=tmpfs,dst=/x,tmpfs-mode=99"],
     'Error: invalid argument "type=tmpfs,dst=/x,tmpfs-mode=99" for "--mount" flag:'
     " invalid value for tmpfs-mode: 99\n"),
    (["--mount", "type=volume,src=v,dst=/x,tmpfs-size=1m"],
     'Error: invalid argument "type=volume,src=v,dst=/x,tmpfs-size=1m" for "--mount"'
     " flag: cannot mix 'tmpfs-*' options with mount type 'volume'\n"),
    (["-v", "/tmp:/x:bogus"], "Error: invalid mode: bogus\n"),
    (["-v", "v:/x:bogus"], "Error: invalid mode: bogus\n"),
    (["-v", "v:/x:rslave"], "Error: invalid volume specification: 'v:/x:rslave': invalid"
     ' mount config for type "volume": field BindOptions must not be specified\n'),
    (["-v", "/tmp:/x:nocopy"], "Error: invalid volume specification: '/tmp:/x:nocopy':"
     ' invalid mount config for type "bind": field VolumeOptions must not be specified\n'),
    (["--tmpfs", "/x:bogus=1"], 'Error: Invalid tmpfs option ["bogus" "1"]\n'),
    # dockerd's words, the volume named ("create v: ...")
    (["--mount", "type=volume,src=v,dst=/x,volume-opt=bogus=1"],
     'Error: create v: invalid option: "bogus"\n'),
    (["--mount", "type=volume,src=v,dst=/x,volume-driver=nfsplugin"],
     'Error: create v: error looking up volume plugin nfsplugin: plugin "nfsplugin" not'
     " found\n"),
])
def test_bad_mount_options_are_refused_and_nothing_is_created(ketch, args, message):
    p = ketch("run", "--rm", *args, "busybox", "true", check=False)
    assert (p.returncode, p.stderr) == (125, message)
    assert made_in(ketch.root) == NOTHING_MADE
    assert ketch("volume", "ls", "-q").stdout == ""


# -- bind propagation ---------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["-v", "{src}:/s:rslave"], "path {src} is mounted on {src} but it is not a shared or"
     " slave mount"),
    (["--mount", "type=bind,src={src},dst=/s,bind-propagation=rshared"],
     "path {src} is mounted on {src} but it is not a shared mount"),
])
def test_propagation_is_refused_on_a_private_source(ketch, mount_point, args, message):
    _propagation(mount_point, "private")
    args = [a.format(src=mount_point) for a in args]
    p = ketch("run", "--rm", *args, "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.stderr == f"Error: {message.format(src=mount_point)}\n"


def test_rslave_bind_sees_host_mounts_made_after_start(ketch, run_d, mount_point):
    _propagation(mount_point, "shared")
    slave = run_d("-v", f"{mount_point}:/s:rslave", "busybox", "sleep", "60")
    private = run_d("-v", f"{mount_point}:/s", "busybox", "sleep", "60")
    sub = mount_point / "sub"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(sub)], check=True)
    (sub / "f").write_text("from the host\n")
    assert ketch("exec", slave, "cat", "/s/sub/f").stdout == "from the host\n"
    p = ketch("exec", private, "cat", "/s/sub/f", check=False)
    assert p.returncode == 1 and "No such file" in p.stderr
    mounts = json.loads(ketch("inspect", "-f", "{{json .Mounts}}", slave).stdout)
    assert [m["Propagation"] for m in mounts] == ["rslave"]


def test_rshared_bind_shows_container_mounts_on_the_host(ketch, mount_point):
    _propagation(mount_point, "shared")
    ketch("run", "--rm", "--privileged", "--mount",
          f"type=bind,src={mount_point},dst=/s,bind-propagation=rshared", "busybox", "sh",
          "-c", "mkdir /s/in && mount -t tmpfs tmpfs /s/in && echo inside > /s/in/f")
    assert (mount_point / "in" / "f").read_text() == "inside\n"


# -- local volume driver options ----------------------------------------------------------
def test_tmpfs_volume_is_mounted_while_in_use_and_unmounted_after(ketch, run_d):
    assert ketch("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                 "--opt", "o=size=1m,uid=1000", "tv").stdout == "tv\n"
    v = json.loads(ketch("volume", "inspect", "tv").stdout)[0]
    assert v["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=1000"}
    data = Path(v["Mountpoint"])
    first = run_d("-v", "tv:/x", "busybox", "sleep", "60")
    second = run_d("--mount", "src=tv,dst=/y", "busybox", "sleep", "60")
    p = ketch("exec", first, "sh", "-c", "df -k /x; stat -c %u /x; echo hi > /x/f")
    assert _df_blocks("\n".join(p.stdout.splitlines()[:2])) == 1024
    assert p.stdout.splitlines()[-1] == "1000"
    assert ketch("exec", second, "cat", "/y/f").stdout == "hi\n"
    assert mounts_under(data) == [str(data)]
    ketch("stop", "-t", "0", first)
    assert mounts_under(data) == [str(data)]  # the second container still uses it
    ketch("stop", "-t", "0", second)
    assert mounts_under(data) == []
    assert list(data.iterdir()) == []  # a tmpfs keeps nothing


def test_mount_volume_opt_creates_a_tmpfs_volume(ketch):
    p = ketch("run", "--rm", "--mount", "type=volume,src=mv,dst=/x,volume-opt=type=tmpfs,"
              "volume-opt=device=tmpfs,volume-opt=o=size=3m", "busybox", "df", "-k", "/x")
    assert _df_blocks(p.stdout) == 3072
    assert json.loads(ketch("volume", "inspect", "mv").stdout)[0]["Options"] == {
        "type": "tmpfs", "device": "tmpfs", "o": "size=3m"}


def test_bind_volume_shows_a_host_directory_and_rm_keeps_it(ketch, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep").write_text("host file\n")
    ketch("volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt",
          f"device={host}", "bv")
    p = ketch("run", "--rm", "-v", "bv:/b", "busybox", "sh", "-c",
              "cat /b/keep; echo new > /b/new")
    assert p.stdout == "host file\n"
    assert (host / "new").read_text() == "new\n"
    ketch("volume", "rm", "bv")
    assert sorted(p.name for p in host.iterdir()) == ["keep", "new"]


@pytest.mark.parametrize("opts, message", [
    # dockerd's words, the volume named ("create badopts: ...")
    (["bogus=1"], 'Error: create badopts: invalid option: "bogus"\n'),
    (["type=tmpfs"], 'Error: create badopts: missing required option: "device"\n'),
    (["o=size=1m", "device=tmpfs"], 'Error: create badopts: missing required option:'
                                    ' "type"\n'),
    (["type=nfs", "o=addr=192.0.2.1,rw", "device=:/export"],
     'Error: create badopts: volume type "nfs" is a network filesystem: ketch mounts no'
     ' network filesystems (tmpfs, bind and local devices only)\n'),
])
def test_volume_create_refuses_unknown_or_incomplete_options(ketch, opts, message):
    args = [a for o in opts for a in ("--opt", o)]
    p = ketch("volume", "create", *args, "badopts", check=False)
    assert (p.returncode, p.stderr) == (1, message)
    assert ketch("volume", "ls", "-q").stdout == ""


def test_volume_that_cannot_be_mounted_fails_the_start(ketch, tmp_path):
    ketch("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt",
          "o=size=nonsense", "badmount")
    p = ketch("run", "--rm", "-v", "badmount:/x", "busybox", "true", check=False)
    data = Path(json.loads(ketch("volume", "inspect", "badmount").stdout)[0]["Mountpoint"])
    # moby's mount error: the flags and data only when there are any
    assert (p.returncode, p.stderr) == (
        125, f"Error: error while mounting volume '{data}': failed to mount local volume:"
             f" mount tmpfs:{data}, data: size=nonsense: invalid argument\n")
    missing = tmp_path / "missing"
    ketch("volume", "create", "--opt", "type=none", "--opt", f"device={missing}", "--opt",
          "o=bind", "badbind")
    p = ketch("run", "--rm", "-v", "badbind:/x", "busybox", "true", check=False)
    bind = Path(json.loads(ketch("volume", "inspect", "badbind").stdout)[0]["Mountpoint"])
    # the docker CLI's exit for a start failure that says a file is not there: 127
    assert p.returncode == 127
    assert p.stderr == (f"Error: error while mounting volume '{bind}': failed to mount local"
                        f" volume: mount {missing}:{bind}, flags: 0x1000: no such file or"
                        " directory\n")
    wait_for(lambda: not mounts_under(data), what="nothing mounted")


def test_bind_nonrecursive_leaves_out_mounts_below_the_source(ketch, mount_point):
    sub = mount_point / "sub"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(sub)], check=True)
    (sub / "f").write_text("on the submount\n")
    spec = f"type=bind,src={mount_point},dst=/s"
    assert ketch("run", "--rm", "--mount", spec, "busybox", "cat", "/s/sub/f"
                 ).stdout == "on the submount\n"
    p = ketch("run", "--rm", "--mount", spec + ",bind-nonrecursive", "busybox", "ls", "-A",
              "/s/sub")
    assert p.stdout == ""


def test_mount_volume_label_labels_the_new_volume(ketch):
    ketch("run", "--rm", "--mount", "type=volume,src=lv,dst=/x,volume-label=team=core",
          "busybox", "true")
    assert ketch("volume", "inspect", "-f", "{{json .Labels}}", "lv").stdout == \
        '{"team":"core"}\n'


def test_cp_into_a_stopped_container_reaches_its_bind_volume(ketch, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    ketch("volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt",
          f"device={host}", "cpv")
    ketch("create", "--name", "cpt", "-v", "cpv:/b", "busybox", "true")
    ketch("start", "-a", "cpt")  # mounts and seeds the volume once, then stops
    src = tmp_path / "f"
    src.write_text("copied\n")
    ketch("cp", str(src), "cpt:/b/f")
    assert (host / "f").read_text() == "copied\n"
    ketch("cp", "cpt:/b/f", str(tmp_path / "back"))
    assert (tmp_path / "back").read_text() == "copied\n"
