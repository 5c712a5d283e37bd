"""Health checks on real runc and conmon, without a daemon: `run --health-*` and the
image's HEALTHCHECK run by the per-container health timer; inspect's State.Health
(status, FailingStreak, the last 5 results), `ps` "(healthy)" and `--filter health=`,
`health_status` events, timeouts, Podman's --health-on-failure, and the timer gone with
the container. Also the `oom` event and State.OOMKilled of a container over its memory
limit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.conftest import ketch_command
from tests.containers.conftest import TrackingCLI
from tests.helpers.host import live_pids, wait_for

FAST = ["--health-interval", "200ms"]


def mark() -> str:
    ns = time.time_ns()
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def health(ketch: TrackingCLI, name: str) -> dict | None:
    """inspect's State.Health (None: absent, as Docker omits it without a check), read
    in this process (the tests poll it: see KetchCLI.inspected)."""
    return ketch.inspected(name)["State"].get("Health")


def health_through_the_cli(ketch: TrackingCLI, name: str) -> dict | None:
    out = ketch("inspect", "-f", "{{json .State}}", name).stdout
    return json.loads(out).get("Health")


def wait_status(ketch: TrackingCLI, name: str, want: str, timeout: float = 30) -> dict:
    def reached() -> dict | None:
        h = health(ketch, name)
        return h if h and h["Status"] == want else None

    return wait_for(reached, timeout=timeout, what=f"{name} to be {want}")


def events(ketch: TrackingCLI, since: str, name: str) -> list[str]:
    return ketch("events", "--since", since, "--until", mark(), "--filter",
                 f"container={name}", "--format", "{{.Action}}").stdout.splitlines()


def timers(cid: str) -> list[int]:
    """Live health timer processes of this container (and checks it started)."""
    return live_pids(lambda cmd: (b"healthtimer.py" in cmd or b"healthcheck" in cmd)
                     and cid.encode() in cmd)


def ps_names(ketch: TrackingCLI, *filters: str) -> list[str]:
    args = ["ps", "-a", "--format", "{{.Names}}"]
    for f in filters:
        args += ["--filter", f]
    return ketch(*args).stdout.split()


@pytest.fixture(scope="module")
def checked_image(image_root: Path) -> str:
    """`hc-image`: busybox with a HEALTHCHECK that passes, checked every 200 ms."""
    ctx = image_root / "hc-ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "HEALTHCHECK --interval=200ms --retries=2 CMD echo image-check\n")
    TrackingCLI(image_root)("build", "-q", "-t", "hc-image", str(ctx))
    return "hc-image"


def test_passing_check_turns_healthy_shown_by_inspect_ps_filters_and_events(ketch, run_d):
    t0 = mark()
    cid = run_d("--name", "hc-ok", "--health-cmd", "echo fine", *FAST, "busybox",
                "sleep", "300")
    h = wait_status(ketch, "hc-ok", "healthy")
    assert h["FailingStreak"] == 0
    last = h["Log"][-1]
    assert (last["ExitCode"], last["Output"]) == (0, "fine\n")
    assert last["Start"] <= last["End"] and last["End"].endswith("Z")
    status = ketch("ps", "--filter", "name=hc-ok", "--format", "{{.Status}}").stdout.strip()
    assert status.startswith("Up ") and status.endswith(" (healthy)"), status
    assert "hc-ok" in ps_names(ketch, "health=healthy")
    assert "hc-ok" not in ps_names(ketch, "health=unhealthy")
    assert "hc-ok" not in ps_names(ketch, "health=none")
    assert "health_status: healthy" in events(ketch, t0, "hc-ok")
    # the timer is a lean process: no site, no ketch import
    (pid,) = [p for p in timers(cid)
              if b"healthtimer.py" in Path(f"/proc/{p}/cmdline").read_bytes()]
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1:3] == [b"-I", b"-S"]
    # and each check it starts is ketch through the launcher `run` came through
    assert cmdline[cmdline.index(b"--") + 1] == ketch_command()[0].encode()


def test_check_not_run_yet_shows_health_starting(ketch, run_d):
    run_d("--name", "hc-wait", "--health-cmd", "true", "--health-interval", "1h", "busybox",
          "sleep", "300")
    assert health_through_the_cli(ketch, "hc-wait") == {"Status": "starting",
                                                        "FailingStreak": 0, "Log": []}
    status = ketch("ps", "--filter", "name=hc-wait", "--format", "{{.Status}}").stdout
    assert status.strip().endswith(" (health: starting)"), status
    assert ps_names(ketch, "health=starting") == ["hc-wait"]


def test_failures_in_the_start_period_do_not_count_while_starting(ketch, run_d):
    run_d("--name", "hc-warm", "--health-cmd", "exit 1", "--health-start-period", "1h",
          "--health-start-interval", "200ms", "--health-interval", "30m",
          "--health-retries", "1", "busybox", "sleep", "300")
    # checked every start interval inside the start period: failures are logged, not
    # counted
    h = wait_for(lambda: (x := health(ketch, "hc-warm")) and len(x["Log"]) >= 3 and x,
                 timeout=60, what="three checks in the start period")
    assert (h["Status"], h["FailingStreak"]) == ("starting", 0)
    assert {r["ExitCode"] for r in h["Log"]} == {1}


def test_failing_check_turns_unhealthy_after_retries_with_streak_and_last_five_results(
        ketch, run_d):
    t0 = mark()
    run_d("--name", "hc-bad", "--health-cmd", "echo broken >&2; exit 3", *FAST,
          "--health-retries", "2", "busybox", "sleep", "300")
    h = wait_status(ketch, "hc-bad", "unhealthy")
    assert h["FailingStreak"] >= 2
    assert [(r["ExitCode"], r["Output"]) for r in h["Log"]][-2:] == [(3, "broken\n")] * 2
    status = ketch("ps", "--filter", "name=hc-bad", "--format", "{{.Status}}").stdout
    assert status.strip().endswith(" (unhealthy)"), status
    assert ps_names(ketch, "health=unhealthy") == ["hc-bad"]
    # the log keeps the last 5 results while the streak goes on
    h = wait_for(lambda: (x := health(ketch, "hc-bad")) and x["FailingStreak"] >= 7 and x,
                 timeout=60, what="seven failures in a row")
    assert len(h["Log"]) == 5
    acts = events(ketch, t0, "hc-bad")
    assert acts.count("health_status: unhealthy") == 1  # only when the status changes
    assert "health_status: healthy" not in acts
    assert any(a.startswith("exec_create: /bin/sh -c echo broken") for a in acts)


def test_check_past_its_timeout_is_killed_and_recorded(ketch, run_d):
    # checked on demand (the timer's interval is an hour), so no other probe is in flight
    run_d("--name", "hc-slow", "--health-cmd", "sleep 77", "--health-interval", "1h",
          "--health-timeout", "300ms", "--health-retries", "1", "busybox", "sleep", "300")
    began = time.monotonic()
    proc = ketch("container", "healthcheck", "hc-slow", check=False)
    assert (proc.returncode, proc.stdout) == (1, "unhealthy\n")
    assert time.monotonic() - began < 20
    last = health_through_the_cli(ketch, "hc-slow")["Log"][-1]
    assert (last["ExitCode"], last["Output"]) == (-1, "Health check exceeded timeout (300ms)")
    # the probe was killed, not left running in the container
    assert "sleep 77" not in ketch("top", "hc-slow").stdout


def test_image_healthcheck_runs_and_no_healthcheck_disables_it(ketch, run_d, checked_image):
    run_d("--name", "hc-img", checked_image, "sleep", "300")
    h = wait_status(ketch, "hc-img", "healthy")
    assert h["Log"][-1]["Output"] == "image-check\n"
    # one flag changes one field; the image's command stays
    run_d("--name", "hc-merge", "--health-retries", "5", checked_image, "sleep", "300")
    cfg = json.loads(ketch("inspect", "-f", "{{json .Config.Healthcheck}}", "hc-merge").stdout)
    assert cfg["Test"] == ["CMD-SHELL", "echo image-check"]
    assert (cfg["Retries"], cfg["Interval"]) == (5, 200_000_000)

    cid = run_d("--name", "hc-off", "--no-healthcheck", checked_image, "sleep", "300")
    time.sleep(1)  # five intervals of the image's check
    assert health_through_the_cli(ketch, "hc-off") is None
    assert json.loads(ketch("inspect", "-f", "{{json .Config.Healthcheck.Test}}",
                            "hc-off").stdout) == ["NONE"]
    status = ketch("ps", "--filter", "name=hc-off", "--format", "{{.Status}}").stdout.strip()
    assert status.startswith("Up ") and "(" not in status
    assert "hc-off" in ps_names(ketch, "health=none")
    assert timers(cid) == []


def test_healthcheck_none_in_the_dockerfile_leaves_no_check(ketch, image_root,
                                                             checked_image):
    ctx = image_root / "hc-none-ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(f"FROM {checked_image}\nHEALTHCHECK NONE\n")
    ketch("build", "-q", "-t", "hc-none", str(ctx))
    ketch("run", "-d", "--name", "hc-none-c", "hc-none", "sleep", "300")
    time.sleep(1)
    assert health_through_the_cli(ketch, "hc-none-c") is None
    assert "hc-none-c" in ps_names(ketch, "health=none")


def test_stop_of_a_container_whose_timer_pid_file_was_cut_short(ketch, run_d):
    # a start killed while it wrote the timer's pid file leaves it empty: the stop that
    # finishes the container takes that as no timer, not as an error (the timer, which
    # watches the container's process, ends by itself)
    cid = run_d("--name", "hc-cut", "--health-cmd", "true", *FAST, "busybox", "sleep", "300")
    pidfile = ketch.root / "run" / "containers" / cid / "health-timer.pid"
    wait_for(pidfile.exists, timeout=10, what="the timer's pid file")
    pidfile.write_text("")
    proc = ketch("stop", "-t", "0", "hc-cut", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "hc-cut\n", "")
    assert not pidfile.exists()
    wait_for(lambda: not timers(cid), timeout=10, what="the health timer to exit")


def test_health_timer_is_gone_after_stop_and_rm(ketch, run_d):
    cid = run_d("--name", "hc-gone", "--health-cmd", "true", *FAST, "busybox", "sleep", "300")
    wait_status(ketch, "hc-gone", "healthy")
    assert timers(cid)
    ketch("stop", "-t", "0", "hc-gone")
    wait_for(lambda: not timers(cid), timeout=10, what="the health timer to exit")
    ketch("start", "hc-gone")
    assert health_through_the_cli(ketch, "hc-gone")["Status"] in ("starting", "healthy")
    wait_for(lambda: timers(cid), timeout=10, what="a new health timer")
    ketch("rm", "-f", "hc-gone")
    wait_for(lambda: not timers(cid), timeout=10, what="the health timer to exit")


def test_on_failure_restart_restarts_the_unhealthy_container_and_counts_it(ketch, run_d):
    t0 = mark()
    cid = run_d("--name", "hc-restart", "--health-cmd", "test -e /tmp/ok", *FAST,
                "--health-retries", "1", "--health-on-failure", "restart", "--init",
                "busybox", "sleep", "300")
    wait_for(lambda: int(ketch("inspect", "-f", "{{.RestartCount}}", "hc-restart").stdout)
             >= 1, timeout=60, what="a restart")
    acts = events(ketch, t0, "hc-restart")
    i = acts.index("health_status: unhealthy")
    assert "die" in acts[i:] and "restart" in acts[i:]
    # healthy once the check passes: the restarted container is checked again
    wait_for(lambda: ketch("inspect", "-f", "{{.State.Status}}", "hc-restart").stdout.strip()
             == "running", timeout=30, what="running again")
    # (an exec may meet the container between two restarts: tried until it ran)
    wait_for(lambda: ketch("exec", "hc-restart", "touch", "/tmp/ok", check=False
                           ).returncode == 0, timeout=30, what="the file made")
    wait_status(ketch, "hc-restart", "healthy")
    assert timers(cid)


def test_on_failure_kill_kills_the_unhealthy_container(ketch, run_d):
    run_d("--name", "hc-kill", "--health-cmd", "false", *FAST, "--health-retries", "1",
          "--health-on-failure", "kill", "busybox", "sleep", "300")
    wait_for(lambda: ketch("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                           "hc-kill").stdout.split() == ["exited", "137"],
             timeout=30, what="the container killed")
    assert health_through_the_cli(ketch, "hc-kill")["Status"] == "unhealthy"


def test_healthcheck_command_runs_the_check_once_now(ketch, run_d):
    run_d("--name", "hc-now", "--health-cmd", "exit 1", "--health-interval", "1h",
          "--health-retries", "1", "busybox", "sleep", "300")
    proc = ketch("container", "healthcheck", "hc-now", check=False)
    assert (proc.returncode, proc.stdout) == (1, "unhealthy\n")
    assert health_through_the_cli(ketch, "hc-now")["FailingStreak"] == 1
    run_d("--name", "hc-never", "busybox", "sleep", "300")
    proc = ketch("container", "healthcheck", "hc-never", check=False)
    assert proc.returncode == 3
    assert proc.stderr == "Error: container hc-never has no defined healthcheck\n"


@pytest.mark.parametrize(("flags", "message"), [
    (["--no-healthcheck", "--health-cmd", "true"],
     "--no-healthcheck conflicts with --health-* options"),
    (["--health-retries", "-1"], "--health-retries cannot be negative"),
    (["--health-interval", "-1s"], "--health-interval cannot be negative"),
    (["--health-interval", "500us"], "Interval in Healthcheck cannot be less than 1ms"),
    (["--health-timeout", "10"], 'invalid argument "10" for "--health-timeout" flag'),
    (["--health-start-period", "1ns", "--health-cmd", "true"],
     "StartPeriod in Healthcheck cannot be less than 1ms"),
    (["--health-start-interval", "1ns", "--health-cmd", "true"],
     "StartInterval in Healthcheck cannot be less than 1ms"),
    (["--health-on-failure", "explode", "--health-cmd", "true"],
     'invalid on-failure action "explode"'),
])
def test_bad_health_flags_are_refused_with_125_and_nothing_is_created(ketch, flags, message):
    before = ps_names(ketch)
    proc = ketch("run", "-d", *flags, "busybox", "true", check=False)
    assert proc.returncode == 125
    assert message in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert ps_names(ketch) == before


def test_container_over_its_memory_limit_is_oom_killed_with_an_oom_event_before_die(ketch):
    t0 = mark()
    # the first run allocates 64 MiB under a 16 MiB limit; a later start only sleeps
    proc = ketch("run", "--name", "hc-oom", "-m", "16m", "busybox", "sh", "-c",
                 "[ -e /ran ] && exec sleep 300; touch /ran;"
                 " exec dd if=/dev/zero of=/dev/null bs=64M count=1", check=False)
    assert proc.returncode == 137, proc.stderr
    assert ketch("inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}",
                 "hc-oom").stdout.split() == ["true", "137"]
    acts = events(ketch, t0, "hc-oom")
    assert "oom" in acts and acts.index("oom") < acts.index("die"), acts
    # cleared by the next start, as Docker does
    ketch("start", "hc-oom")
    assert ketch("inspect", "-f", "{{.State.OOMKilled}} {{.State.Status}}",
                 "hc-oom").stdout.split() == ["false", "running"]
    ketch("run", "--name", "hc-fits", "-m", "16m", "busybox", "true")
    assert ketch("inspect", "-f", "{{.State.OOMKilled}}", "hc-fits").stdout.strip() == "false"
    assert "oom" not in events(ketch, t0, "hc-fits")
