"""The container lifecycle: stop/start/restart/kill/pause/wait/rename/rm/prune, lookups
by name and ID prefix, `inspect`, and images held by containers."""

from __future__ import annotations

import json
import os
import re
import time

from tests.containers.conftest import wait_for_pid1
from tests.helpers.host import has_open, wait_for

TRAP_USR1 = 'trap "echo got-usr1; exit 9" USR1; echo ready; while true; do sleep 0.1; done'


def state(ketch, name: str, field: str = "Status") -> str:
    return ketch("container", "inspect", "-f", "{{.State." + field + "}}", name).stdout.strip()


# -- stop / start / restart -------------------------------------------------------------
def test_stop_then_start_detached_then_start_attached(ketch, run_d):
    cid = run_d("--name", "svc", "busybox", "sh", "-c",
                'trap "exit 0" TERM; echo started; while true; do sleep 0.1; done')
    wait_for(lambda: "started" in ketch("logs", "svc").stdout, what="first start")
    p = ketch("stop", "svc")
    assert p.stdout == "svc\n"
    assert state(ketch, "svc") == "exited" and state(ketch, "svc", "ExitCode") == "0"
    # `start` is detached: it prints the name and returns while the container runs
    p = ketch("start", "svc")
    assert p.stdout == "svc\n"
    assert state(ketch, "svc") == "running"
    wait_for(lambda: ketch("logs", "svc").stdout.count("started") == 2, what="second start")
    ketch("stop", "-t", "5", cid)
    ketch("rm", cid)
    ketch("create", "--name", "once", "busybox", "sh", "-c", "echo attached; exit 2")
    p = ketch("start", "-a", "once", check=False)
    assert (p.returncode, p.stdout) == (2, "attached\n")
    # started again, attached, it runs again
    p = ketch("container", "start", "--attach", "once", check=False)
    assert (p.returncode, p.stdout) == (2, "attached\n")


def test_stop_kills_after_the_timeout(ketch, run_d):
    run_d("--name", "stubborn", "busybox", "sleep", "60")  # pid 1 ignores SIGTERM
    wait_for_pid1(ketch, "stubborn", "sleep")
    start = time.monotonic()
    ketch("stop", "-t", "1", "stubborn")
    took = time.monotonic() - start
    # (both in one assert: a stop that returns early says how the container ended)
    assert (0.9 < took < 8, state(ketch, "stubborn", "ExitCode")) == (True, "137"), took


def test_stop_honours_stop_signal(ketch, run_d):
    run_d("--name", "usr1", "--stop-signal", "USR1", "busybox", "sh", "-c", TRAP_USR1)
    wait_for(lambda: "ready" in ketch("logs", "usr1").stdout, what="the trap")
    start = time.monotonic()
    ketch("stop", "-t", "20", "usr1")
    assert time.monotonic() - start < 10
    assert state(ketch, "usr1", "ExitCode") == "9"
    assert "got-usr1" in ketch("logs", "usr1").stdout


def test_stopping_a_stopped_container_succeeds(ketch):
    ketch("run", "--name", "done1", "busybox", "true")
    assert ketch("stop", "done1").stdout == "done1\n"


def test_restart_runs_the_container_again(ketch, run_d):
    run_d("--name", "rs", "busybox", "sh", "-c", "echo run; sleep 60")
    wait_for(lambda: "run" in ketch("logs", "rs").stdout, what="first run")
    first = state(ketch, "rs", "StartedAt")
    assert ketch("restart", "-t", "1", "rs").stdout == "rs\n"
    assert state(ketch, "rs") == "running"
    assert state(ketch, "rs", "StartedAt") != first
    wait_for(lambda: ketch("logs", "rs").stdout.count("run") == 2, what="second run")
    # a stopped container is simply started
    ketch("kill", "rs")
    ketch("restart", "rs")
    assert state(ketch, "rs") == "running"


# -- kill / pause / wait ----------------------------------------------------------------
def test_kill_sends_the_signal_given(ketch, run_d):
    run_d("--name", "k1", "busybox", "sh", "-c", TRAP_USR1)
    wait_for(lambda: "ready" in ketch("logs", "k1").stdout, what="the trap")
    assert ketch("kill", "-s", "USR1", "k1").stdout == "k1\n"
    assert ketch("wait", "k1").stdout == "9\n"
    assert "got-usr1" in ketch("logs", "k1").stdout


def test_kill_defaults_to_sigkill_and_refuses_stopped_containers(ketch, run_d):
    run_d("--name", "k2", "busybox", "sleep", "60")
    pid = int(ketch("inspect", "-f", "{{.State.Pid}}", "k2").stdout)
    ketch("kill", "k2")
    # as docker's, a SIGKILL returns once the container has stopped: the next command
    # finds it exited, its process gone
    assert not os.path.exists(f"/proc/{pid}")
    assert ketch("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "k2"
                 ).stdout == "exited 137\n"
    assert ketch("wait", "k2").stdout == "137\n"
    p = ketch("kill", "k2", check=False)
    assert p.returncode == 1
    assert re.fullmatch(r"Error: Cannot kill container: k2: Container [0-9a-f]{64} is not"
                        r" running\n", p.stderr)


def test_kill_rejects_an_unknown_signal(ketch, run_d):
    run_d("--name", "k3", "busybox", "sleep", "60")
    p = ketch("kill", "-s", "NOPE", "k3", check=False)
    assert (p.returncode, p.stderr) == (1, "Error: Invalid signal: NOPE\n")
    # 0 is no signal (it only probed the process), 99 no signal of this host: refused
    # as dockerd refuses them, where the runtime's "invalid argument" was all one saw
    p = ketch("kill", "-s", "0", "k3", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (1, "", "Error: Invalid signal: 0\n")
    p = ketch("kill", "-s", "99", "k3", check=False)
    assert (p.returncode, p.stderr) == (1, "Error: Cannot kill container: k3: The linux"
                                           " daemon does not support signal 99\n")
    assert state(ketch, "k3") == "running"


def test_pause_freezes_and_unpause_resumes(ketch, run_d):
    run_d("--name", "pz", "busybox", "sh", "-c",
          "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done")
    wait_for(lambda: ketch("logs", "pz").stdout, what="output")
    assert ketch("pause", "pz").stdout == "pz\n"
    assert state(ketch, "pz") == "paused"
    assert state(ketch, "pz", "Paused") == "true"
    before = ketch("logs", "pz").stdout
    time.sleep(0.5)
    assert ketch("logs", "pz").stdout == before
    p = ketch("pause", "pz", check=False)
    assert re.fullmatch(r"Error: Container [0-9a-f]{64} is already paused\n", p.stderr)
    assert p.returncode == 1
    p = ketch("exec", "pz", "true", check=False)  # dockerd names it as it was given
    assert (p.returncode, p.stderr) == (1, "Error: Container pz is paused, unpause the"
                                           " container before exec\n")
    assert ketch("unpause", "pz").stdout == "pz\n"
    assert state(ketch, "pz") == "running"
    wait_for(lambda: ketch("logs", "pz").stdout != before, what="output after unpause")
    p = ketch("unpause", "pz", check=False)
    assert re.fullmatch(r"Error: Container [0-9a-f]{64} is not paused\n", p.stderr)
    assert p.returncode == 1


def test_wait_blocks_until_exit_and_prints_codes(ketch, run_d):
    # timed from before the start: `wait` cannot answer before the container's 1 s sleep
    # is over, however long the start itself took on a loaded machine
    start = time.monotonic()
    a = run_d("busybox", "sh", "-c", "sleep 1; exit 4")
    b = run_d("busybox", "true")
    assert ketch("wait", a, b).stdout == "4\n0\n"
    assert time.monotonic() - start >= 1.0
    p = ketch("wait", "nosuch", check=False)
    assert p.returncode == 1 and "No such container: nosuch" in p.stderr


def test_wait_on_a_container_that_rm_f_kills_prints_137(ketch, run_d):
    """As dockerd's: `rm -f` kills the container, and a `wait` on it returns that exit,
    though the record is gone by the time it looks (it printed 0, the code the
    container had when the wait began)."""
    import signal
    import subprocess

    from tests.conftest import ketch_command

    cid = run_d("busybox", "sleep", "300")
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    waiting = subprocess.Popen([*ketch_command(), "wait", cid], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: has_open(waiting.pid, ketch.root / "ketch.db"),
             what="the wait to look at the container")
    time.sleep(0.5)  # past its lookup of the name, into its polling of the exit
    # the wait is held still while `rm -f` kills and removes the container, so it next
    # looks at a container that is gone
    os.kill(waiting.pid, signal.SIGSTOP)
    try:
        ketch("rm", "-f", cid)
    finally:
        os.kill(waiting.pid, signal.SIGCONT)
    out, err = waiting.communicate(timeout=60)
    assert (waiting.returncode, out, err) == (0, "137\n", "")


# -- rename / rm / prune ----------------------------------------------------------------
def test_rename(ketch, run_d):
    cid = run_d("--name", "old", "busybox", "sleep", "60")
    ketch("rename", "old", "new")
    assert ketch("container", "inspect", "-f", "{{.Name}}", cid).stdout == "/new\n"
    p = ketch("container", "inspect", "old", check=False)
    assert "No such container: old" in p.stderr
    ketch("create", "--name", "other", "busybox")
    p = ketch("rename", "new", "other", check=False)
    assert p.returncode == 1 and 'The container name "/other" is already in use' in p.stderr
    p = ketch("rename", "new", "new", check=False)
    assert p.returncode == 1 and "same name as its current name" in p.stderr


def test_start_of_several_names_those_that_failed_last(ketch):
    for n in ("s1", "s2"):
        ketch("create", "--name", n, "busybox", "true")
    p = ketch("start", "s1", "nosuch", "s2", "gone", check=False)
    assert (p.returncode, p.stdout) == (1, "s1\ns2\n")
    # each error, then the list of what did not start, as the docker CLI prints them
    assert p.stderr == ("Error: No such container: nosuch\nError: No such container: gone\n"
                        "Error: failed to start containers: nosuch, gone\n")


def test_rm_of_several(ketch):
    for n in ("r1", "r2", "r3"):
        ketch("create", "--name", n, "busybox")
    p = ketch("rm", "r1", "r2", "nosuch", "r3", check=False)
    assert p.returncode == 1
    assert p.stdout == "r1\nr2\nr3\n"
    assert p.stderr == "Error: No such container: nosuch\n"
    assert ketch("ps", "-aq").stdout == ""
    # with --force a missing container is reported but is no failure, as docker rm -f
    ketch("create", "--name", "r4", "busybox")
    p = ketch("rm", "-f", "nosuch", "r4", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (0, "r4\n", "Error: No such container:"
                                                            " nosuch\n")


def test_rm_of_a_running_container_needs_force_and_leaves_it_untouched(ketch, run_d):
    cid = run_d("--name", "busy", "busybox", "sh", "-c", "while true; do sleep 0.1; done")
    pid = state(ketch, "busy", "Pid")
    p = ketch("rm", "busy", check=False)
    assert p.returncode == 1
    assert p.stderr == ('Error: cannot remove container "/busy": container is running: stop'
                        " the container before removing or force remove\n")
    assert state(ketch, "busy") == "running" and state(ketch, "busy", "Pid") == pid
    assert ketch("exec", "busy", "true").returncode == 0
    assert ketch("rm", "-f", "busy").stdout == "busy\n"
    p = ketch("container", "inspect", cid, check=False)
    assert p.returncode == 1


def test_container_prune_removes_only_stopped_containers(ketch, run_d):
    keep = run_d("--name", "alive", "busybox", "sleep", "60")
    ketch("run", "--name", "dead1", "busybox", "true")
    ketch("create", "--name", "fresh", "busybox")
    p = ketch("container", "prune", "-f")
    assert p.stdout.startswith("Deleted Containers:\n")
    assert re.search(r"Total reclaimed space: \d+(\.\d+)?[kMG]?B\n$", p.stdout)
    assert len(re.findall(r"^[0-9a-f]{64}$", p.stdout, re.M)) == 2
    assert ketch("ps", "-aq", "--no-trunc").stdout.split() == [keep]


def test_container_prune_filters_and_confirmation(ketch):
    ketch("run", "--name", "lab", "-l", "keep=yes", "busybox", "true")
    ketch("run", "--name", "nolab", "busybox", "true")
    p = ketch("container", "prune", input="n\n")
    assert "Are you sure you want to continue? [y/N]" in p.stdout
    assert len(ketch("ps", "-aq").stdout.split()) == 2
    ketch("container", "prune", "-f", "--filter", "label!=keep")
    assert ketch("ps", "-a", "--format", "{{.Names}}").stdout == "lab\n"
    ketch("container", "prune", "--filter", "until=1h", input="y\n")
    assert ketch("ps", "-a", "--format", "{{.Names}}").stdout == "lab\n"
    ketch("container", "prune", "-f", "--filter", "label=keep=yes")
    assert ketch("ps", "-aq").stdout == ""


# -- lookups ----------------------------------------------------------------------------
def test_id_prefixes_unique_and_ambiguous(ketch):
    ids: list[str] = []
    while True:
        ids.append(ketch("create", "busybox").stdout.strip())
        firsts = [i[0] for i in ids]
        dup = next((c for c in firsts if firsts.count(c) > 1), None)
        if dup:
            break
    # The target is removed below, so it must not be one of the pair that makes `dup`
    # ambiguous.
    while not any(i[0] != dup for i in ids):
        ids.append(ketch("create", "busybox").stdout.strip())
    target = next(i for i in ids if i[0] != dup)
    prefix = next(target[:n] for n in range(1, 64)
                  if sum(i.startswith(target[:n]) for i in ids) == 1)
    assert ketch("container", "inspect", "-f", "{{.Id}}", prefix).stdout.strip() == target
    assert ketch("rm", prefix).stdout == f"{prefix}\n"
    p = ketch("container", "inspect", dup, check=False)
    assert p.returncode == 1
    assert "ambiguous" in p.stderr and dup in p.stderr
    p = ketch("rm", "ffffffffffff0", check=False)
    assert p.stderr == "Error: No such container: ffffffffffff0\n"


def test_names_win_over_id_prefixes(ketch):
    cid = ketch("create", "busybox").stdout.strip()
    named = ketch("create", "--name", cid[:4], "busybox").stdout.strip()
    assert ketch("container", "inspect", "-f", "{{.Id}}", cid[:4]).stdout.strip() == named


# -- images held by containers ----------------------------------------------------------
def test_rmi_refused_while_a_stopped_container_uses_the_image(ketch):
    ketch("tag", "busybox", "held:1")
    ketch("run", "--name", "user", "held:1", "true")
    cid = ketch("container", "inspect", "-f", "{{.Id}}", "user").stdout.strip()
    iid = ketch("image", "inspect", "-f", "{{.Id}}", "held:1").stdout.strip()
    ketch("rmi", "busybox")  # another tag: only the name goes
    p = ketch("rmi", "held:1", check=False)
    assert p.returncode == 1
    assert p.stderr == (f'Error: conflict: unable to remove repository reference "held:1"'
                        f" (must force) - container {cid[:12]} is using its referenced image"
                        f" {iid.split(':')[1][:12]}\n")
    p = ketch("rmi", iid.split(":")[1][:12], check=False)
    assert p.returncode == 1
    assert p.stderr == (f"Error: conflict: unable to delete {iid.split(':')[1][:12]}"
                        f" (must be forced) - image is being used by stopped container"
                        f" {cid[:12]}\n")
    ketch("image", "prune", "-a", "-f")
    assert ketch("image", "inspect", "held:1").returncode == 0
    ketch("rm", "user")
    ketch("tag", "held:1", "busybox")


# -- inspect ----------------------------------------------------------------------------
def test_inspect_is_docker_shaped(ketch, run_d):
    cid = run_d("--name", "shape", "-e", "X=1", "-l", "a=b", "busybox", "sleep", "60")
    doc = json.loads(ketch("container", "inspect", "shape").stdout)
    assert isinstance(doc, list) and len(doc) == 1
    c = doc[0]
    for key in ("Id", "Created", "Path", "Args", "State", "Image", "ResolvConfPath",
                "HostnamePath", "HostsPath", "LogPath", "Name", "RestartCount", "Driver",
                "Platform", "HostConfig", "GraphDriver", "Mounts", "Config",
                "NetworkSettings"):
        assert key in c, key
    assert c["Id"] == cid and c["Name"] == "/shape"
    assert (c["Path"], c["Args"]) == ("sleep", ["60"])
    st = c["State"]
    assert st["Status"] == "running" and st["Running"] is True and st["Pid"] > 0
    assert st["ExitCode"] == 0 and st["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", st["StartedAt"])
    assert c["Image"].startswith("sha256:")
    assert "X=1" in c["Config"]["Env"] and c["Config"]["Labels"] == {"a": "b"}
    assert c["Config"]["Image"] == "busybox"
    assert c["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert "Networks" in c["NetworkSettings"]
    ketch("kill", "shape")
    st = json.loads(ketch("container", "inspect", "shape").stdout)[0]["State"]
    assert st["Status"] == "exited" and st["Running"] is False and st["Pid"] == 0
    assert st["ExitCode"] == 137 and st["FinishedAt"] != "0001-01-01T00:00:00Z"


def test_inspect_format_and_several_containers(ketch):
    ketch("create", "--name", "i1", "busybox", "echo", "x")
    ketch("create", "--name", "i2", "busybox")
    p = ketch("container", "inspect", "--format", "{{.Name}} {{json .Config.Cmd}}", "i1",
              "i2")
    assert p.stdout == '/i1 ["echo","x"]\n/i2 ["sh"]\n'
    p = ketch("container", "inspect", "-f", "{{.Name}}", "i1", "nope", check=False)
    assert p.returncode == 1 and p.stdout == "/i1\n"
    assert p.stderr == "Error: No such container: nope\n"
