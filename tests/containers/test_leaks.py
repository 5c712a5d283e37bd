"""Nothing outlives a container: after many `run --rm` cycles (attached, detached,
failing) no overlay mount, conmon, runc state, cgroup or run-state file is left."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ketch_command
from tests.containers.conftest import leaks
from tests.helpers.host import conmon_pids, wait_for

# Every object checked below (overlay mount, conmon, runc state, cgroup, run-state file,
# container directory) is made once per container, so a leak on an exit path shows in
# the first cycle that takes that path; the cycles run each of the three exit paths
# (0, 1, 2) five times, so a leak that happens only on some runs of a path still has
# five chances. More cycles would only repeat the same path (and every test of this
# folder runs the same leak check after itself, over some hundreds of containers).
CYCLES = 15


def leftovers(root: Path, ids: set[str]) -> list[str]:
    found = leaks(root, ids)
    run_containers = root / "run" / "containers"
    if run_containers.is_dir():
        found += [f"run state {p.name}" for p in run_containers.iterdir()]
    containers = root / "containers"
    if containers.is_dir():
        found += [f"container dir {p.name}" for p in containers.iterdir()]
    return found


def assert_clean(ketch) -> None:
    found: list[str] = []

    def clean() -> bool:
        found[:] = leftovers(ketch.root, ketch.ids)
        return not found

    try:
        wait_for(clean, timeout=30, what="cleanup")
    except AssertionError:
        raise AssertionError(f"left behind: {found}") from None


def test_repeated_run_rm_cycles_leave_nothing_behind(ketch):
    for i in range(CYCLES):
        p = ketch("run", "--rm", "busybox", "sh", "-c", f"echo {i}; exit {i % 3}",
                  check=False)
        assert (p.returncode, p.stdout) == (i % 3, f"{i}\n")
    assert len(ketch.ids) == CYCLES
    assert ketch("ps", "-aq").stdout == ""
    assert_clean(ketch)


def test_detached_and_failing_runs_leave_nothing_behind(ketch):
    for _ in range(5):
        ketch("run", "-d", "--rm", "busybox", "true")
        p = ketch("run", "--rm", "busybox", "no-such-command", check=False)
        assert p.returncode == 127
        p = ketch("run", "-d", "--rm", "busybox", "no-such-command", check=False)
        assert p.returncode == 127
        p = ketch("run", "--rm", "-v", "/etc/passwd:/etc/hostname/x", "busybox", "true",
                  check=False)
        assert p.returncode != 0
    wait_for(lambda: ketch("ps", "-aq").stdout == "", what="the --rm containers to go")
    assert_clean(ketch)


def test_removed_containers_leave_nothing_behind(ketch, run_d):
    ids = [run_d("busybox", "sleep", "300") for _ in range(3)]
    ketch("pause", ids[0])
    ketch("stop", "-t", "0", ids[1])
    ketch("rm", "-f", *ids)
    assert_clean(ketch)


def test_rm_of_containers_that_never_ran_leaves_nothing_behind(ketch, tmp_path):
    # `rm` skips the runtime, network and mount release for a container that never
    # started: one with files copied in, one whose start failed and one holding a named
    # volume must still go entirely
    plain = ketch("create", "busybox", "true").stdout.strip()
    with_file = ketch("create", "busybox", "true").stdout.strip()
    (tmp_path / "f").write_text("x")
    ketch("cp", str(tmp_path / "f"), f"{with_file}:/f")
    failed = ketch("create", "busybox", "/no/such/command").stdout.strip()
    with_volume = ketch("create", "-v", "leakvol:/data", "busybox", "true").stdout.strip()
    ids = [plain, with_file, failed, with_volume]
    ketch.ids.update(ids)
    assert ketch("start", failed, check=False).returncode != 0
    assert any((ketch.root / "containers" / with_file).rglob("f"))
    assert ketch("rm", *ids).stdout.split() == ids
    assert_clean(ketch)
    assert ketch("volume", "rm", "leakvol").stdout.strip() == "leakvol"  # released


def test_exit_command_runs_ketch_through_the_launcher_the_container_came_from(ketch, run_d):
    # conmon runs `ketch container cleanup` after the container exits: through the same
    # `-I -S` launcher (no `site` processing again), not `python -m ketch`
    cid = run_d("busybox", "sleep", "300")
    [pid] = conmon_pids(cid)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    cleanup = argv.index(b"--exit-command-arg=cleanup")
    assert argv[cleanup - 6:cleanup - 3] == [
        b"--exit-command-arg=" + ketch_command()[0].encode(), b"--exit-command-arg=--root",
        b"--exit-command-arg=" + str(ketch.root).encode()]
    ketch("rm", "-f", cid)


def test_rm_and_volume_rm_delete_a_tree_nested_thousands_deep(ketch):
    # A recursive walk stopped at Python's recursion limit (~1,000 levels): `rm` failed
    # with an internal error once the record was gone and left the directory; `volume
    # rm` failed the same way. docker removes both.
    nest = "i=0; while [ $i -lt 1500 ]; do mkdir d; cd d; i=$((i+1)); done; echo deep > f"
    ketch("volume", "create", "deepvol")
    cid = ketch("run", "-d", "-v", "deepvol:/v", "busybox", "sh", "-c",
                f"mkdir /n && cd /n && {nest} && chmod 500 . && cd /v && {nest}").stdout.strip()
    ketch.ids.add(cid)
    assert ketch("wait", cid).stdout.strip() == "0"
    rm = ketch("rm", cid, check=False)
    assert (rm.returncode, rm.stderr) == (0, "")
    assert not (ketch.root / "containers" / cid).exists()
    vrm = ketch("volume", "rm", "deepvol", check=False)
    assert (vrm.returncode, vrm.stderr) == (0, "")
    assert not (ketch.root / "volumes" / "deepvol").exists()
    assert_clean(ketch)
