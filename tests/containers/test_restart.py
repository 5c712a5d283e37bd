"""Restart policies on real runc and conmon: restarted with Docker's backoff and counted,
called off by `stop`/`kill`/`rm -f`, re-armed by `start`, and brought back after a
(simulated) reboot by `ketch system restart-policies`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from tests.conftest import require
from tests.containers.conftest import NOTHING_MADE, cgroups_of, made_in
from tests.helpers.host import conmon_pids, live_pids, poll_pause, wait_for

from ketch.containers.records import ContainerRecord
from ketch.containers.restart import BACKOFF_FIRST, BACKOFF_MAX, next_delay

FIELDS = "{{.RestartCount}} {{.State.Status}} {{.State.Running}} {{.State.Restarting}}" \
         " {{.State.ExitCode}} {{.State.StartedAt}} {{.State.FinishedAt}}"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def look(ketch, name: str) -> dict:
    """The restart fields of `inspect`, as `inspect -f FIELDS` prints them, read in this
    process (the tests poll them: see KetchCLI.inspected);
    test_policies_that_do_not_restart holds it to what the command prints."""
    doc = ketch.inspected(name)
    state = doc["State"]
    return {"count": doc["RestartCount"], "status": state["Status"],
            "running": "true" if state["Running"] else "false",
            "restarting": "true" if state["Restarting"] else "false",
            "exit": state["ExitCode"], "started": _ts(state["StartedAt"]),
            "finished": _ts(state["FinishedAt"])}


def look_through_the_cli(ketch, name: str) -> dict:
    out = ketch("inspect", "-f", FIELDS, name).stdout.split()
    return {"count": int(out[0]), "status": out[1], "running": out[2],
            "restarting": out[3], "exit": int(out[4]), "started": _ts(out[5]),
            "finished": _ts(out[6])}


def restarters(cid: str) -> list[int]:
    """Live processes waiting to restart this container."""
    return live_pids(lambda cmdline: b"restart-wait" in cmdline and cid.encode() in cmdline)


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """Freeze the process for the block, and thaw it 0.5 s into it."""
    freezer = Path("/sys/fs/cgroup/freezer")
    require(freezer.is_dir(), "the cgroup v1 freezer")
    group = freezer / f"kt-test-{os.getpid()}-{pid}"
    group.mkdir()
    thaw = threading.Timer(0.5, lambda: (group / "freezer.state").write_text("THAWED"))
    try:
        (group / "cgroup.procs").write_text(str(pid))
        (group / "freezer.state").write_text("FROZEN")
        thaw.start()
        yield
    finally:
        thaw.cancel()
        (group / "freezer.state").write_text("THAWED")
        for moved in (group / "cgroup.procs").read_text().split():
            (freezer / "cgroup.procs").write_text(moved)
        group.rmdir()


def stays(cond, seconds: float) -> bool:
    """`cond` holds on every check for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.monotonic()
        if not cond():
            return False
        time.sleep(poll_pause(0.1, time.monotonic() - began))
    return bool(cond())


# -- the backoff (unit) --------------------------------------------------------------------
def _rec(started: float, backoff: float) -> ContainerRecord:
    return ContainerRecord(id="x" * 64, name="x", image_id="", image_name="", created=0,
                           state="running", pid=0, exit_code=0, error="",
                           started_at=started, finished_at=0, restart_count=0, config={},
                           host_config={}, chain_ids=[], extra={"RestartBackoff": backoff})


def test_backoff_doubles_from_100ms_to_a_minute_and_starts_over_after_10s_of_uptime():
    assert next_delay(_rec(100, 0), 101) == BACKOFF_FIRST == 0.1
    assert next_delay(_rec(100, 0.1), 101) == 0.2
    assert next_delay(_rec(100, 0.4), 109.9) == 0.8
    assert next_delay(_rec(100, 40), 101) == BACKOFF_MAX == 60
    assert next_delay(_rec(100, 60), 101) == 60
    assert next_delay(_rec(100, 6.4), 110) == 0.1  # ran 10 s: the delay starts over


# -- acting on exits ---------------------------------------------------------------------------
def test_always_restarts_a_failing_container_with_a_doubling_delay(ketch, run_d):
    cid = run_d("--name", "flappy", "--restart", "always", "busybox", "sh", "-c",
                "echo run; exit 3")
    seen: dict[int, dict] = {}

    def count_reaches_6() -> bool:
        s = look(ketch, "flappy")
        if s["status"] == "restarting":
            seen.setdefault(s["count"], s)
        return s["count"] >= 6

    wait_for(count_reaches_6, timeout=120, interval=0.02, what="six restarts")
    for s in seen.values():
        # Docker shows a container waiting for its restart as running and restarting
        assert (s["running"], s["restarting"], s["exit"]) == ("true", "true", 3)
        assert s["finished"] >= s["started"]
    # restart k waits 100 ms * 2^(k-1) after exit k-1: the next start shows it
    gaps = {k: seen[k + 1]["started"] - seen[k]["finished"]
            for k in seen if k + 1 in seen}
    assert len([k for k in gaps if k >= 3]) >= 2, f"too few restarts observed: {seen}"
    for k, gap in gaps.items():
        assert gap >= 0.1 * 2 ** (k - 1) - 0.02, (k, gap)
    assert "Restarting (3)" in ketch("ps", "-a", "--filter", "name=flappy",
                                     "--format", "{{.Status}}").stdout
    wait_for(lambda: ketch("ps", "-q", "--no-trunc", "--filter", "status=restarting"
                           ).stdout.strip() == cid, what="ps to list it as restarting")
    assert ketch("logs", "flappy").stdout.count("run") >= 6


def test_on_failure_with_a_limit_gives_up_and_keeps_the_exit_code(ketch, run_d):
    run_d("--name", "twice", "--restart", "on-failure:2", "busybox", "sh", "-c",
          "echo run; exit 3")
    wait_for(lambda: look(ketch, "twice")["status"] == "exited", timeout=60,
             what="on-failure:2 to give up")
    s = look(ketch, "twice")
    assert (s["count"], s["exit"], s["running"]) == (2, 3, "false")
    assert ketch("logs", "twice").stdout == "run\n" * 3
    assert ketch("wait", "twice").stdout == "3\n"


@pytest.mark.parametrize("policy,command,code", [
    ("on-failure", "exit 0", 0),
    ("no", "exit 3", 3),
    ("", "exit 3", 3),
])
def test_policies_that_do_not_restart(ketch, run_d, policy, command, code):
    cid = run_d("--name", "once", "--restart", policy, "busybox", "sh", "-c", command)
    assert ketch("wait", "once").stdout == f"{code}\n"
    assert stays(lambda: look(ketch, "once")["status"] == "exited", 1.5)
    s = look_through_the_cli(ketch, "once")
    assert (s["count"], s["exit"]) == (0, code)
    assert look(ketch, "once") == s  # what the tests' polls read is what inspect prints
    assert restarters(cid) == []


def _tar_with(name: str) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo(name))
    return buf.getvalue()


def test_stop_calls_restarts_off_until_the_next_start(ketch, run_d):
    # once /rearmed exists (copied in while stopped) a run waits for /go before it ends,
    # so the count read right after `start` cannot race the next exit
    cid = run_d("--name", "svc", "--restart", "always", "busybox", "sh", "-c",
                "echo run; [ -e /rearmed ] && until [ -e /go ]; do sleep 0.05; done;"
                " sleep 1; exit 3")
    wait_for(lambda: look(ketch, "svc")["count"] >= 1, timeout=30, what="a restart")
    assert ketch("stop", "-t", "1", "svc").stdout == "svc\n"
    assert look(ketch, "svc")["status"] == "exited"
    runs = ketch("logs", "svc").stdout.count("run")
    assert stays(lambda: look(ketch, "svc")["status"] == "exited", 2.5)
    assert ketch("logs", "svc").stdout.count("run") == runs and restarters(cid) == []
    # `start` re-arms the policy and the count starts over, as Docker's
    ketch("cp", "-", "svc:/", input=_tar_with("rearmed"))
    ketch("start", "svc")
    assert look(ketch, "svc")["count"] == 0
    ketch("exec", "svc", "touch", "/go")
    wait_for(lambda: look(ketch, "svc")["count"] >= 1, timeout=30, what="a restart")


def test_stop_during_the_backoff_leaves_the_container_exited(ketch, run_d):
    cid = run_d("--name", "waiting", "--restart", "unless-stopped", "busybox", "sh", "-c",
                "exit 3")
    wait_for(lambda: (lambda s: s["status"] == "restarting" and s["count"] >= 3)(
        look(ketch, "waiting")), timeout=60, interval=0.02, what="a restart to wait for")
    ketch("stop", "waiting")
    s = look(ketch, "waiting")
    assert (s["status"], s["exit"], s["restarting"]) == ("exited", 3, "false")
    assert restarters(cid) == []
    assert stays(lambda: look(ketch, "waiting") == s, 2)


def test_kill_calls_off_an_always_policy(ketch, run_d):
    run_d("--name", "killed", "--restart", "always", "busybox", "sleep", "600")
    ketch("kill", "killed")
    wait_for(lambda: look(ketch, "killed")["status"] == "exited", what="the kill")
    assert stays(lambda: look(ketch, "killed")["status"] == "exited", 1.5)
    assert look(ketch, "killed")["exit"] == 137


def test_kill_with_another_signal_than_the_stop_signal_keeps_the_policy(ketch, run_d):
    # Docker: only SIGKILL or the container's stop signal call the policy off
    script = 'trap "exit 5" USR1; trap "exit 6" TERM; echo up; while true; do sleep 0.1; done'
    run_d("--name", "sig", "--restart", "always", "--stop-signal", "TERM", "busybox", "sh",
          "-c", script)
    wait_for(lambda: ketch("logs", "sig").stdout == "up\n", what="the traps")
    ketch("kill", "-s", "USR1", "sig")
    wait_for(lambda: ketch("logs", "sig").stdout == "up\nup\n", timeout=30,
             what="the restart after USR1")
    s = look(ketch, "sig")
    assert (s["count"], s["status"]) == (1, "running")
    ketch("kill", "-s", "TERM", "sig")
    wait_for(lambda: look(ketch, "sig")["status"] == "exited", what="the exit on TERM")
    assert stays(lambda: look(ketch, "sig")["status"] == "exited", 1.5)
    assert (look(ketch, "sig")["exit"], ketch("logs", "sig").stdout) == (6, "up\nup\n")


def test_a_stale_restarting_record_does_not_turn_a_restarted_container_exited(ketch, run_d):
    """A reader (any `inspect`) that read "restarting" just before the waiting process
    started the container and exited finds that process gone: it looks again under the
    container's lock instead of writing "exited" over the running container, which
    nothing would then finish or restart (a CI run saw the restarts stop)."""
    import subprocess

    from ketch.containers.restart import RESTARTER, settle_if_orphaned
    from ketch.engine import Engine
    from ketch.values import fields_of

    cid = run_d("--restart", "always", "busybox", "sleep", "300")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a waiting process that has exited
    with Engine(ketch.root, ketch.root / "run") as engine:
        svc = engine.containers
        running = svc.records.get(cid)
        assert running is not None and running.state == "running"
        fields = {name: getattr(running, name) for name in fields_of(running)}
        fields["state"] = "restarting"
        fields["extra"] = {**running.extra,
                           RESTARTER: {"pid": gone.pid, "start": "1", "token": "t", "at": 0}}
        settled = settle_if_orphaned(svc, ContainerRecord(**fields))
        assert settled.state == "running"
    assert ketch("inspect", "-f", "{{.State.Status}} {{.State.Pid}}", cid).stdout.split() \
        == ["running", str(running.pid)]


def test_rm_force_during_the_backoff_leaves_nothing(ketch, run_d, image_root):
    cid = run_d("--name", "doomed", "--restart", "always", "busybox", "sh", "-c", "exit 3")
    seen: list[dict] = []

    def waiting_after_three_restarts() -> bool:
        seen.append(look(ketch, "doomed"))
        return seen[-1]["status"] == "restarting" and seen[-1]["count"] >= 3

    try:
        wait_for(waiting_after_three_restarts, timeout=60, interval=0.02)
    except AssertionError:  # say where the restarts stopped
        state = ketch("inspect", "-f", "{{json .State}}", "doomed").stdout
        raise AssertionError(f"no restart to wait for: last seen {seen[-1]}; {state}") \
            from None
    refused = ketch("rm", "doomed", check=False)
    assert refused.returncode == 1
    assert "You cannot remove a restarting container" in refused.stderr
    # rm -f returns once the waiting process is gone, not once it is signalled: frozen
    # (a cgroup v1 freezer holds back even SIGKILL), it dies only when thawed 0.5 s on
    (waiting,) = restarters(cid)
    with frozen(waiting):
        ketch("rm", "-f", "doomed")
        assert restarters(cid) == []
    assert ketch("ps", "-aq").stdout == ""
    # nothing comes back once the backoff would have run out
    assert stays(lambda: not conmon_pids(cid) and ketch("ps", "-aq").stdout == "",
                 2)
    assert not (image_root / "containers" / cid).exists()
    assert not [m for m in Path("/proc/self/mountinfo").read_text().splitlines()
                if cid in m]


@pytest.mark.parametrize("value,message", [
    ("bogus", "invalid restart policy 'bogus'"),
    ("on-failure:x", "maximum retry count must be an integer"),
    ("always:3", "maximum retry count cannot be used with restart policy 'always'"),
    ("on-failure:-1", "maximum retry count cannot be negative"),
    ("on-failure:1:2", "invalid restart policy format"),
])
def test_invalid_restart_policies_are_refused(ketch, value, message):
    for cmd in ("run", "create"):
        p = ketch(cmd, "--restart", value, "busybox", "true", check=False)
        assert p.returncode == 125, p
        assert p.stderr.strip() == f"Error: {message}"
    p = ketch("run", "--rm", "--restart", "always", "busybox", "true", check=False)
    assert (p.returncode, p.stderr.strip()) == (
        125, "Error: conflicting options: cannot specify both --restart and --rm")
    # found before the policy's name is looked at, as the docker CLI does
    p = ketch("run", "--rm", "--restart", "bogus", "busybox", "true", check=False)
    assert (p.returncode, p.stderr.strip()) == (
        125, "Error: conflicting options: cannot specify both --restart and --rm")
    assert made_in(ketch.root) == NOTHING_MADE


# -- after a reboot -------------------------------------------------------------------------------
def _reboot(root: Path, cid: str, pid: int) -> None:
    """What a reboot takes from a running container: its processes, the runtime's and
    conmon's state (tmpfs), its cgroup."""
    conmon = int((root / "run" / "containers" / cid / "conmon.pid").read_text())
    for p in (conmon, pid):
        os.kill(p, signal.SIGKILL)
    wait_for(lambda: not conmon_pids(cid), what="conmon to die")
    shutil.rmtree(root / "run" / "runc" / cid)
    shutil.rmtree(root / "run" / "containers" / cid)
    for cg in cgroups_of(cid):
        wait_for(lambda cg=cg: not (cg / "cgroup.procs").read_text().strip(),
                 what="the cgroup to empty")
        cg.rmdir()


def test_boot_command_restarts_always_and_unless_stopped_after_a_reboot(ketch, run_d,
                                                                         image_root):
    sleeper = ("busybox", "sh", "-c", "echo up; exec sleep 600")
    ids = {name: run_d("--name", name, "--restart", policy, *sleeper)
           for name, policy in [("p-always", "always"), ("p-unless", "unless-stopped"),
                                ("p-unless-stopped", "unless-stopped"),
                                ("p-failure", "on-failure"), ("p-no", "no")]}
    ketch("create", "--name", "p-never-ran", "--restart", "always", "busybox", "true")
    ketch("stop", "-t", "0", "p-unless-stopped")
    for name, cid in ids.items():
        if name != "p-unless-stopped":
            pid = int(ketch("inspect", "-f", "{{.State.Pid}}", name).stdout)
            _reboot(image_root, cid, pid)
    p = ketch("system", "restart-policies")
    assert sorted(p.stdout.split()) == ["p-always", "p-unless"]
    for name in ("p-always", "p-unless"):
        wait_for(lambda n=name: ketch("logs", n).stdout == "up\nup\n", what=f"{name} up")
        s = look(ketch, name)
        assert (s["status"], s["count"]) == ("running", 0)
    for name in ("p-unless-stopped", "p-failure", "p-no"):
        assert look(ketch, name)["status"] == "exited"
    assert look(ketch, "p-never-ran")["status"] == "created"
    # run again (a second boot job, or by hand): nothing is started twice
    assert ketch("system", "restart-policies").stdout == ""
    assert ketch("logs", "p-always").stdout == "up\nup\n"


def test_boot_unit_runs_the_command_after_the_network(ketch, image_root):
    unit = ketch("system", "restart-policies", "--print-unit").stdout
    lines = unit.splitlines()
    assert "[Unit]" in lines and "[Service]" in lines and "[Install]" in lines
    assert "Type=oneshot" in lines and "After=network-online.target" in lines
    assert "Wants=network-online.target" in lines and "WantedBy=default.target" in lines
    exec_start = [x for x in lines if x.startswith("ExecStart=")]
    assert len(exec_start) == 1
    argv = exec_start[0][len("ExecStart="):].split()
    assert os.access(argv[0], os.X_OK)
    assert argv[-2:] == ["system", "restart-policies"]
    assert argv[argv.index("--root") + 1] == str(image_root)
    assert argv[argv.index("--run-root") + 1] == str(image_root / "run")
