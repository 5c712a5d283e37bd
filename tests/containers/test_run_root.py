"""A state root keeps to the run root its containers run under: a command given another
one (--run-root, KETCH_RUN_ROOT) is refused while a container lives under the first,
instead of recording the container as exited while its process runs on unmanaged."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import teardown_root
from tests.helpers.host import mounts_under, wait_for

from ketch.containers.rootfs import unmount


def _pid(ketch, name: str, **kw) -> int:
    return int(ketch("inspect", "-f", "{{.State.Pid}}", name, **kw).stdout)


def test_another_run_root_is_refused_while_a_container_runs(ketch, run_d, tmp_path: Path):
    run_d("--name", "kept", "busybox", "sleep", "600")
    pid = _pid(ketch, "kept")
    other = {"KETCH_RUN_ROOT": str(tmp_path / "other-run")}

    ps = ketch("ps", "-a", check=False, env=other)
    assert ps.returncode == 1 and ps.stdout == ""
    assert ps.stderr == (f"Error: containers of {ketch.root} are running under the run root"
                         f" {ketch.root / 'run'}, not {tmp_path / 'other-run'}: use"
                         f" --run-root {ketch.root / 'run'} (or KETCH_RUN_ROOT), or stop"
                         " them first\n")
    run = ketch("run", "--rm", "--name", "second", "busybox", "true", check=False, env=other)
    assert run.returncode == 125 and run.stderr.count("\n") == 1, run.stderr
    flag = ketch("--run-root", str(tmp_path / "other-run"), "rm", "-f", "kept", check=False)
    assert flag.returncode == 1 and "running under the run root" in flag.stderr

    # nothing was recorded or made, and the container runs on, still managed
    os.kill(pid, 0)
    assert ketch("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout == "kept running\n"
    assert not (tmp_path / "other-run").exists()  # refused before anything is made
    # images need no run root
    assert "busybox" in ketch("images", env=other).stdout


def test_the_run_root_is_taken_over_once_nothing_runs_under_the_old_one(ketch, run_d,
                                                                        tmp_path: Path):
    run_d("--name", "first", "busybox", "sleep", "600")
    ketch("stop", "-t", "0", "first")
    moved_run = tmp_path / "moved-run"
    moved = {"KETCH_RUN_ROOT": str(moved_run)}
    try:
        assert ketch("ps", "-a", "--format", "{{.Names}} {{.State}}", env=moved
                     ).stdout == "first exited\n"
        ketch("start", "first", env=moved)
        pid = _pid(ketch, "first", env=moved)
        assert (moved_run / "containers").is_dir()

        # now the first run root is the other one
        for args in (("ps",), ("inspect", "first")):
            back = ketch(*args, check=False)
            assert back.returncode == 1, back
            assert f"under the run root {moved_run}" in back.stderr
        os.kill(pid, 0)
        ketch("rm", "-f", "first", env=moved)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what="the container's process")
    finally:
        # what the moved run root holds (its network's processes, the namespace mount)
        teardown_root(ketch.root, moved_run)
        unmount(moved_run / "netns")
    assert ketch("ps", "-a").stdout.count("\n") == 1  # the header: back on the first
    assert mounts_under(moved_run) == []


def test_a_long_lived_engine_claims_its_run_root_again_at_each_start(ketch, tmp_path: Path):
    # as the API service does: its Engine and container service are made when it begins
    from ketch.engine import Engine

    moved = {"KETCH_RUN_ROOT": str(tmp_path / "moved-run")}
    with Engine(ketch.root, ketch.root / "run") as engine:
        assert engine.containers.list(all=True) == []
        ketch("ps", env=moved)  # nothing runs: the command's run root takes over
        rec = engine.containers.create({"Image": "busybox", "Cmd": ["sleep", "600"]}, {},
                                       name="lib")
        ketch.ids.add(rec.id)
        engine.containers.start(rec.id)  # takes it back, for the container it starts
    refused = ketch("ps", check=False, env=moved)
    assert refused.returncode == 1 and "running under the run root" in refused.stderr
    assert ketch("ps", "--format", "{{.Names}} {{.State}}").stdout == "lib running\n"


def test_a_root_or_run_root_that_cannot_be_a_directory_is_one_line_and_makes_nothing(
        ketch, tmp_path: Path):
    afile = tmp_path / "afile"
    afile.write_text("")
    run = ketch("run", "--rm", "busybox", "true", check=False,
                env={"KETCH_RUN_ROOT": str(afile / "run")})
    assert (run.returncode, run.stderr) == (125, f"Error: cannot use {afile / 'run'} as the"
                                            " run root: it (or a parent) is not a directory\n")
    images = ketch("--root", str(afile), "images", check=False)
    assert (images.returncode, images.stderr) == (1, f"Error: cannot use {afile} as the state"
                                                  " root: it (or a parent) is not a directory\n")
    assert ketch("ps", "-aq").stdout == ""
