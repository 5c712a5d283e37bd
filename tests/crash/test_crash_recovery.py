"""Daemonless crash recovery: a ketch command SIGKILLed at several points leaves nothing
that the next command does not finish or undo (ketch.store.intents)."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import (
    KetchCLI,
    import_image,
    isolated_network_config,
    ketch_command,
    teardown_root,
)
from tests.crash.conftest import (
    assert_no_leftovers,
    assert_usable,
    env_of,
    kill_after,
    kill_when,
    start_stage,
    store_state,
)
from tests.helpers.ports import free_port
from tests.images.archives import ImageSpec, big_layer, docker_archive, files_tar

pytestmark = pytest.mark.slow
# the tests of the big archive and the registry serving it: on one worker under
# `--dist loadgroup`, so the module's two fixtures are made once, not once per worker
BIG = pytest.mark.xdist_group("crash_big")


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~64 MB docker-archive (one incompressible layer), to be killed while loading."""
    spec = ImageSpec([files_tar({"etc/base": b"base\n" * 100}), big_layer(64 << 20, 3)],
                     tags=["big:1"], cmd=["true"])
    return docker_archive(tmp_path_factory.mktemp("crash") / "big.tar", [spec])


# -- load / pull staging -------------------------------------------------------------------
@BIG
@pytest.mark.parametrize("delay", [0.3, 0.8, 1.6])
def test_killed_load_leaves_no_staging_or_blobs_after_the_next_command(
        croot: KetchCLI, big_archive: Path, delay: float) -> None:
    before = store_state(croot)
    with open(big_archive, "rb") as f:
        assert kill_after(croot, ["load"], delay, stdin=f)
    assert list((croot.root / "tmp").iterdir()), "the kill left no staging to recover"
    croot("images")  # the next command that touches the store
    assert_no_leftovers(croot)
    assert store_state(croot) == before
    assert_usable(croot)
    proc = subprocess.run([*ketch_command(), "load", "-i", str(big_archive)],
                          capture_output=True, text=True, env=env_of(croot), timeout=300)
    assert proc.stdout == "Loaded image: big:1\n", proc.stderr


@BIG
def test_live_load_staging_survives_other_commands(croot: KetchCLI, big_archive: Path
                                                   ) -> None:
    """Recovery removes only what dead processes left: a load still reading its input
    keeps its staging while `images`, `image prune` and `system check --repair` run."""
    proc = subprocess.Popen([*ketch_command(), "load"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_of(croot))
    assert proc.stdin is not None
    with open(big_archive, "rb") as f:
        data = f.read()
    half = len(data) // 2
    proc.stdin.write(data[:half])
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while not any((croot.root / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    staged = sorted(p.name for p in (croot.root / "tmp").iterdir())
    assert staged
    croot("images")
    croot("image", "prune", "-f")
    croot("system", "check", "--repair")
    assert sorted(p.name for p in (croot.root / "tmp").iterdir()) == staged
    out, err = proc.communicate(data[half:], timeout=300)
    assert proc.returncode == 0, err
    assert out == b"Loaded image: big:1\n"


@pytest.fixture(scope="module")
def served_big_image(tmp_path_factory: pytest.TempPathFactory, big_archive: Path,
                     crash_prereqs: None) -> Iterator[str]:
    """ketch's registry on loopback holding big:1 (pushed from a scratch root)."""
    base = tmp_path_factory.mktemp("served")
    server = subprocess.Popen(
        [*ketch_command(), "registry", "serve", "--addr", "127.0.0.1:0",
         "--root", str(base / "registry"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert server.stdout is not None
        host = server.stdout.readline().decode().strip().removeprefix("listening on ")
        pusher_root = base / "pusher"
        pusher_root.mkdir()
        isolated_network_config(pusher_root)
        pusher = KetchCLI(pusher_root)
        pusher("load", "-i", str(big_archive), timeout=300)
        pusher("tag", "big:1", f"{host}/crash/big:1")
        pusher("push", f"{host}/crash/big:1", timeout=300)
        teardown_root(pusher_root, pusher_root / "run")
        yield f"{host}/crash/big:1"
    finally:
        server.terminate()
        server.wait(timeout=10)


@BIG
@pytest.mark.parametrize("delay", [0.0, 0.3, 0.7])
def test_killed_pull_leaves_no_staging_or_blobs_after_the_next_command(
        croot: KetchCLI, served_big_image: str, delay: float) -> None:
    """Killed `delay` seconds after its first download landed in tmp/."""
    before = store_state(croot)
    tmp = croot.root / "tmp"
    killed = kill_when(croot, ["pull", served_big_image],
                       lambda: tmp.is_dir() and any(tmp.iterdir()), delay)
    if delay == 0.0:
        assert killed
    croot("images")
    assert_no_leftovers(croot)
    # a kill that lands after the pull recorded its image (it was only exiting) leaves a
    # complete image, which is not a leftover; any earlier kill leaves the store as it was
    committed = croot("images", "-q", served_big_image).stdout.strip() != ""
    if killed and not committed:
        assert store_state(croot) == before
    assert_usable(croot)
    croot("pull", served_big_image, timeout=300)
    assert croot("images", "-q", served_big_image).stdout.strip()


# -- commit --------------------------------------------------------------------------------
def _freezer_state(cid: str) -> str:
    """"1" while the container's cgroup is frozen, "0" when thawed (cgroup v1 or v2)."""
    v1 = Path("/sys/fs/cgroup/freezer/ketch") / cid / "freezer.state"
    v2 = Path("/sys/fs/cgroup/ketch") / cid / "cgroup.freeze"
    try:
        return "0" if v1.read_text().strip() == "THAWED" else "1"
    except OSError:
        pass
    try:
        return v2.read_text().strip()
    except OSError:
        return "?"


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8])
def test_killed_commit_leaves_the_container_running_not_frozen(
        croot: KetchCLI, delay: float) -> None:
    """Killed `delay` seconds after it froze the container (while it copies 64 MB)."""
    cid = croot("run", "-d", "busybox", "sh", "-c",
                "dd if=/dev/urandom of=/big bs=1M count=64 2>/dev/null; touch /written;"
                " sleep 300").stdout.strip()
    # one exec that returns once dd has written its 64 MB
    croot("exec", cid, "sh", "-c", "while [ ! -e /written ]; do sleep 0.05; done",
          timeout=60)
    killed = kill_when(croot, ["commit", cid, "snap:1"],
                       lambda: _freezer_state(cid) == "1", delay)
    if delay == 0.0:
        assert killed  # (later points may land after the commit ended: an idle machine
        # copies the 64 MB in ~0.2 s; the container must be running and thawed either way)
    state = croot("ps", "-a", "--filter", f"id={cid}", "--format", "{{.State}}").stdout
    assert state.strip() == "running"
    assert _freezer_state(cid) == "0"
    assert croot("exec", cid, "echo", "alive").stdout == "alive\n"
    assert_no_leftovers(croot, {cid})
    croot("commit", cid, "snap:1", timeout=120)
    croot("rm", "-f", cid)


# -- run -d -p -----------------------------------------------------------------------------
@pytest.mark.parametrize("when", ["0.25s", "record", "mount", "netns", "conmon", "runtime"])
def test_killed_run_detached_with_port_is_undone_by_the_next_command(
        croot: KetchCLI, when: str) -> None:
    """Killed 0.25 s in, and the moment each resource of the start appears."""
    port = free_port()
    name = f"web-{when.replace('.', '')}"
    args = ["run", "-d", "--name", name, "-p", f"{port}:80", "busybox", "sleep", "300"]
    if when[0].isdigit():
        kill_after(croot, args, float(when[:-1]))
    else:
        for _attempt in range(3):
            if kill_when(croot, args, start_stage(croot, when), 0.0):
                break
            # on a loaded machine the run may finish before this process sees the stage:
            # that was no kill at all; remove its container and try again
            croot("rm", "-f", name)
        else:
            pytest.fail(f"the run finished before it was killed at {when!r}, three times")
    croot("ps", "-a")  # the next command
    listed = croot("ps", "-a", "--filter", f"name=^{name}$", "--format",
                   "{{.ID}} {{.State}}").stdout.split()
    if listed:
        cid_short, state = listed
        cid = croot("inspect", "-f", "{{.Id}}", cid_short).stdout.strip()
        assert state in ("created", "running")
        keep = {cid} if state == "running" else set()
        assert_no_leftovers(croot, keep)
        if state == "created":
            croot("start", name)  # the port is free again
        assert croot("port", name).stdout.strip().endswith(f":{port}")
        croot("rm", "-f", name)
    assert_no_leftovers(croot)
    # the port and the name are free: the same run succeeds
    croot("run", "-d", "--name", name, "-p", f"{port}:80", "busybox", "sleep", "300")
    croot("rm", "-f", name)
    assert_no_leftovers(croot)


# -- create racing rmi -----------------------------------------------------------------------
def test_create_racing_rmi_never_leaves_a_container_without_its_layers(
        croot: KetchCLI, busybox_tar: Path) -> None:
    for i in range(12):
        tag = f"racer:{i}"
        # an image of its own (its own layer), so rmi really deletes it
        unique = croot.root.parent / f"racer{i}.tar"
        shutil.copyfile(busybox_tar, unique)
        with tarfile.open(unique, "a") as tf:
            info = tarfile.TarInfo(f"racer-{i}")
            tf.addfile(info, io.BytesIO(b""))
        import_image(croot.root, unique, tag, 'CMD ["sh"]')  # set-up: in this process
        create = subprocess.Popen(
            [*ketch_command(), "create", "--name", f"r{i}", tag, "true"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_of(croot))
        time.sleep(0.01 * (i % 6))
        rmi = subprocess.run([*ketch_command(), "rmi", tag],
                             capture_output=True, text=True, env=env_of(croot))
        create.communicate(timeout=60)
        # whether the container exists, and its image: one command
        found = croot("container", "inspect", "-f", "{{.Image}}", f"r{i}", check=False)
        if found.returncode == 0:
            # the container reserved the image first: rmi refused (Docker's conflict) or
            # only untagged it; the image and its layers stay and the container runs
            assert "Deleted:" not in rmi.stdout, (rmi.stdout, rmi.stderr)
            image_id = found.stdout.strip()
            croot("image", "inspect", image_id)
            start = croot("start", "-a", f"r{i}", check=False)
            assert start.returncode == 0, start.stderr
            croot("rm", f"r{i}")
            croot("rmi", "-f", image_id, check=False)  # (its tag goes with it)
        else:
            assert found.stderr == f"Error: No such container: r{i}\n", found.stderr
            assert rmi.returncode == 0, rmi.stderr
            assert "Deleted:" in rmi.stdout


def test_rmi_and_image_prune_refuse_an_image_a_created_container_reserved(
        croot: KetchCLI) -> None:
    cid = croot("create", "busybox", "true").stdout.strip()
    rmi = croot("rmi", "busybox", check=False)
    assert rmi.returncode == 1
    assert rmi.stderr.startswith("Error: conflict: unable to remove"
                                 ' repository reference "busybox" (must force) - container'
                                 f" {cid[:12]} is using its referenced image"), rmi.stderr
    croot("image", "prune", "-a", "-f")
    assert croot("images", "-q", "busybox").stdout.strip()
    croot("rm", cid)
