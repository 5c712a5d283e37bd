"""Pods on real runc: members share the infra container's network, IPC and UTS
namespaces; the pod publishes the ports; stop/start/rm leave nothing behind; a pod whose
infra dies has its members stopped and marked. Traffic goes only to loopback and to the
test's own containers."""

from __future__ import annotations

import json
import os
import re
import signal
from datetime import datetime
from pathlib import Path

from tests.containers_net.helpers import PAGE, fetch, unreachable
from tests.crash.conftest import leftovers
from tests.helpers.host import wait_for
from tests.helpers.ports import free_port
from tests.pods.conftest import CLI_POLL, infra_of, state, wait_state

HTTPD = ("busybox", "httpd", "-f", "-p", "80", "-h", "/www")


def _pod_row(pk, pod: str) -> dict[str, str]:
    rows = json.loads(pk("pod", "ps", "--format", "json").stdout)
    return next(r for r in rows if r["Name"] == pod)


def test_containers_in_a_pod_reach_each_other_on_loopback(pk):
    pk("pod", "create", "--name", "app", "--hostname", "apphost")
    pk("run", "-d", "--pod", "app", "--name", "web", *HTTPD)
    got = pk("run", "--rm", "--pod", "app", "busybox", "sh", "-c",
             "wget -qO- http://127.0.0.1:80/ && hostname").stdout
    assert got.splitlines() == [PAGE, "apphost"]


def test_members_share_the_infra_namespaces_of_network_ipc_and_uts(pk):
    pk("pod", "create", "--name", "ns")
    pk("run", "-d", "--pod", "ns", "--name", "first", "busybox", "sleep", "60")
    script = "for n in net ipc uts pid; do readlink /proc/self/ns/$n; done"
    mine = pk("exec", "first", "sh", "-c", script).stdout.split()
    other = pk("run", "--rm", "--pod", "ns", "busybox", "sh", "-c", script).stdout.split()
    assert mine[:3] == other[:3]  # net, ipc, uts: the pod's
    assert mine[3] != other[3]  # each member keeps its own PID namespace
    infra = infra_of(pk, "ns")
    pid = pk("inspect", "-f", "{{.State.Pid}}", infra).stdout.strip()
    assert [os.readlink(f"/proc/{pid}/ns/{n}") for n in ("net", "ipc", "uts")] == mine[:3]


def test_infra_runs_under_a_seccomp_allow_list_narrower_than_the_default(pk):
    pk("pod", "create", "--name", "tight")
    pk("run", "-d", "--pod", "tight", "--name", "mem", "busybox", "sh", "-c",
       "trap 'exit 0' TERM; mkdir /made; while :; do sleep 0.1; done")
    infra = infra_of(pk, "tight")
    pid = pk("inspect", "-f", "{{.State.Pid}}", infra).stdout.strip()
    with open(f"/proc/{pid}/status") as f:
        assert "Seccomp:\t2" in f.read()  # filtered
    # what the default profile allows a member, the infra's profile refuses
    assert pk("exec", "mem", "ls", "-d", "/made").stdout.strip() == "/made"
    denied = pk("exec", infra, "/bin/sh", "-c", "mkdir /made", check=False)
    assert denied.returncode == 1
    assert "Operation not permitted" in denied.stderr
    # and the loop still ends cleanly on the SIGTERM of `pod stop`
    pk("pod", "stop", "-t", "5", "tight")
    assert pk("inspect", "-f", "{{.State.ExitCode}}", infra).stdout.strip() == "0"


def test_port_published_by_the_pod_is_fetched_from_the_host(pk):
    port = free_port()
    pk("pod", "create", "--name", "pub", "-p", f"127.0.0.1:{port}:80")
    pk("run", "-d", "--pod", "pub", "--name", "web", *HTTPD)
    assert PAGE in fetch(f"http://127.0.0.1:{port}/")
    ports = pk("pod", "inspect", "-f", "{{json .InfraConfig.PortBindings}}", "pub").stdout
    assert json.loads(ports) == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}


def test_pod_stop_start_rm_leave_no_namespace_veth_rule_or_process(pk):
    port = free_port()
    pk("pod", "create", "--name", "cyc", "--publish", f"{port}:80")
    pk("run", "-d", "--pod", "cyc", "--name", "web", "--stop-timeout", "1", *HTTPD)
    assert PAGE in fetch(f"http://127.0.0.1:{port}/")
    pids = [int(pk("inspect", "-f", "{{.State.Pid}}", c).stdout) for c in
            ("web", infra_of(pk, "cyc"))]

    assert pk("pod", "stop", "cyc").returncode == 0
    assert state(pk, "web") == "exited"
    assert _pod_row(pk, "cyc")["Status"] == "Exited"
    wait_for(lambda: not leftovers(pk), timeout=10, what="the stopped pod to leave nothing")
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")]
    assert unreachable(f"http://127.0.0.1:{port}/")

    pk("pod", "start", "cyc")
    assert state(pk, "web") == "running"
    assert _pod_row(pk, "cyc")["Status"] == "Running"
    assert PAGE in fetch(f"http://127.0.0.1:{port}/")
    pids = [int(pk("inspect", "-f", "{{.State.Pid}}", c).stdout) for c in
            ("web", infra_of(pk, "cyc"))]

    pk("pod", "rm", "-f", "cyc")
    assert pk("ps", "-aq").stdout == ""
    assert pk("pod", "ps", "-q").stdout == ""
    wait_for(lambda: not leftovers(pk), timeout=10, what="the removed pod to leave nothing")
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")]


def test_ps_pod_shows_the_pod_of_each_container_and_filters_by_pod(pk):
    pid = pk("pod", "create", "--name", "p1").stdout.strip()
    pk("create", "--pod", "p1", "--name", "member", "busybox", "true")
    pk("create", "--name", "loner", "busybox", "true")
    header, *rows = pk("ps", "-a", "--pod").stdout.splitlines()
    assert header.split()[-3:] == ["POD", "ID", "PODNAME"]
    tails = sorted(r.split()[-3:] for r in rows)
    assert [f"{pid[:12]}-infra", pid[:12], "p1"] in tails
    assert ["member", pid[:12], "p1"] in tails
    loner = next(r for r in rows if r.split()[-1] == "loner")
    assert pid[:12] not in loner
    names = pk("ps", "-a", "--filter", "pod=p1", "--format", "{{.Names}}").stdout.split()
    assert sorted(names) == sorted(["member", f"{pid[:12]}-infra"])
    by_id = pk("ps", "-a", "--filter", f"pod={pid[:8]}", "--format", "{{.Names}}").stdout
    assert sorted(by_id.split()) == sorted(names)


def test_starting_a_member_of_a_created_pod_starts_its_infra_first(pk):
    pk("pod", "create", "--name", "lazy")
    pk("create", "--pod", "lazy", "--name", "mem", "busybox", "sleep", "60")
    assert _pod_row(pk, "lazy")["Status"] == "Created"
    pk("start", "mem")
    assert state(pk, infra_of(pk, "lazy")) == "running"
    assert _pod_row(pk, "lazy")["Status"] == "Running"


def test_a_member_whose_infra_fails_to_start_beside_it_is_undone_with_the_infras_error(pk):
    # The member is created beside its infra, once the infra's namespaces exist; an infra
    # whose runtime create then fails (its image has lost /bin/busybox) fails the member
    # with its error, and neither is left running or holding anything
    pk("pod", "create", "--name", "broken")
    infra = infra_of(pk, "broken")
    image = pk("inspect", "-f", "{{.Image}}", infra).stdout.strip()
    layer = Path(pk("image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}",
                    image).stdout.strip())
    (layer / "bin" / "busybox").rename(layer / "bin" / "busybox.away")
    try:  # (the pause image is the module's other pods' too)
        for n in range(3):  # (however far the member's own create got when the infra failed)
            failed = pk("run", "-d", "--pod", "broken", "--name", f"mem{n}", "busybox",
                        "sleep", "60", check=False)
            assert failed.returncode == 127
            assert failed.stderr.splitlines() == [
                'Error: OCI runtime create failed: runc create failed: unable to start'
                ' container process: exec: "/bin/sh": stat /bin/sh: no such file or directory']
            assert [state(pk, c) for c in (f"mem{n}", infra)] == ["created", "created"]
            assert not leftovers(pk)
    finally:
        (layer / "bin" / "busybox.away").rename(layer / "bin" / "busybox")
    pk("pod", "start", "broken")
    assert [state(pk, c) for c in ("mem0", "mem1", "mem2", infra)] == ["running"] * 4


def test_member_is_stopped_and_marked_when_the_infra_dies(pk):
    pk("pod", "create", "--name", "fragile")
    pk("run", "-d", "--pod", "fragile", "--name", "mem", "--stop-timeout", "1", "busybox",
       "sleep", "600")
    infra = infra_of(pk, "fragile")
    os.kill(int(pk("inspect", "-f", "{{.State.Pid}}", infra).stdout), signal.SIGKILL)
    wait_state(pk, "mem", "exited")
    assert pk("inspect", "-f", "{{.State.Error}}", "mem").stdout.strip() == (
        "the pod's infra container exited")
    assert _pod_row(pk, "fragile")["Status"] == "Exited"
    wait_for(lambda: not leftovers(pk), timeout=10, what="the dead pod to leave nothing")
    pk("pod", "start", "fragile")  # and the pod comes back whole
    assert state(pk, "mem") == "running"
    assert pk("inspect", "-f", "{{.State.Error}}", "mem").stdout.strip() == ""


def test_members_of_a_pod_whose_infra_dies_are_stopped_together(pk):
    """Members that ignore SIGTERM end one stop timeout after the infra, together, as
    `pod stop` stops them (they went one after another: a 10 s timeout each)."""
    pk("pod", "create", "--name", "brittle")
    for name in ("m1", "m2"):
        pk("run", "-d", "--pod", "brittle", "--name", name, "--stop-timeout", "3",
           "busybox", "sleep", "600")
    infra = infra_of(pk, "brittle")
    os.kill(int(pk("inspect", "-f", "{{.State.Pid}}", infra).stdout), signal.SIGKILL)
    for name in ("m1", "m2"):
        wait_state(pk, name, "exited")
    ends = [_seconds(pk("inspect", "-f", "{{.State.FinishedAt}}", name).stdout.strip())
            for name in ("m1", "m2")]
    assert abs(ends[0] - ends[1]) < 2, ends  # one after another: 3 s apart at least
    for name in ("m1", "m2"):
        assert pk("inspect", "-f", "{{.State.ExitCode}} {{.State.Error}}", name
                  ).stdout.strip() == "137 the pod's infra container exited"


def _seconds(rfc3339: str) -> float:
    """Seconds of an RFC 3339 UTC time as Go prints it (its fraction trimmed of zeros)."""
    whole, _, fraction = rfc3339.removesuffix("Z").partition(".")
    return datetime.fromisoformat(whole).timestamp() + float("0." + (fraction or "0"))


def test_pod_pause_kill_restart_top_and_logs(pk):
    pk("pod", "create", "--name", "ops", "--label", "tier=web", "--add-host",
       "db.internal:10.1.2.3")
    pk("run", "-d", "--pod", "ops", "--name", "talker", "busybox", "sh", "-c",
       "echo hello from talker; grep db.internal /etc/hosts; exec sleep 600")
    wait_for(lambda: "db.internal" in pk("logs", "talker").stdout, interval=CLI_POLL,
             what="talker's output")
    logs = pk("pod", "logs", "--names", "ops").stdout.splitlines()
    assert logs[0] == "talker hello from talker"
    assert logs[1].split()[1:] == ["10.1.2.3", "db.internal"]
    top = pk("pod", "top", "ops").stdout
    assert "sleep 600" in top and "sleep 86400" in top  # the member's and the infra's

    pk("pod", "pause", "ops")
    assert _pod_row(pk, "ops")["Status"] == "Paused"
    pk("pod", "unpause", "ops")
    assert _pod_row(pk, "ops")["Status"] == "Running"
    pk("pod", "kill", "ops")
    wait_state(pk, "talker", "exited")
    assert _pod_row(pk, "ops")["Status"] == "Exited"
    pk("pod", "restart", "ops")
    assert state(pk, "talker") == "running"
    assert pk("pod", "ps", "--filter", "label=tier=web", "--format",
              "{{.Name}}").stdout.split() == ["ops"]
    # as Podman's, name= is a regular expression searched in the pod's name
    assert pk("pod", "ps", "--filter", "name=^op", "--format", "{{.Name}}").stdout == "ops\n"
    assert pk("pod", "ps", "--filter", "name=^op$", "--format", "{{.Name}}").stdout == ""


def test_pod_rm_refuses_a_running_pod_without_force_and_prune_takes_stopped_ones(pk):
    pk("pod", "create", "--name", "busy")
    pk("run", "-d", "--pod", "busy", "--name", "mem", "busybox", "sleep", "600")
    r = pk("pod", "rm", "busy", check=False)
    assert r.returncode == 125
    assert "running or paused containers cannot be removed without force" in r.stderr
    assert state(pk, "mem") == "running"
    pk("pod", "create", "--name", "idle")
    pk("create", "--pod", "idle", "busybox", "true")
    pruned = pk("pod", "prune", "-f").stdout.split()
    assert len(pruned) == 1
    assert pk("pod", "ps", "--format", "{{.Name}}").stdout.split() == ["busy"]
    assert len(pk("ps", "-aq").stdout.split()) == 2  # busy's infra and m


def test_pod_on_a_user_network(pk):
    pk("network", "create", "podnet")
    try:
        pk("pod", "create", "--name", "onnet", "--network", "podnet")
        pk("run", "-d", "--pod", "onnet", "--name", "mem", "busybox", "sleep", "60")
        infra = infra_of(pk, "onnet")
        nets = pk("inspect", "-f", "{{json .NetworkSettings.Networks}}", infra).stdout
        assert list(json.loads(nets)) == ["podnet"]
        assert pk("pod", "inspect", "-f", "{{json .InfraConfig.Networks}}",
                  "onnet").stdout.strip() == '["podnet"]'
    finally:
        pk("pod", "rm", "-f", "onnet", check=False)
        pk("network", "rm", "podnet", check=False)


def test_pod_logs_follow_shows_every_member_as_it_writes(pk):
    pk("pod", "create", "--name", "chatty")
    for name, delay in (("slow", "4"), ("fast", "0")):
        pk("run", "-d", "--pod", "chatty", "--name", name, "busybox", "sh", "-c",
           f"sleep {delay}; echo from {name}; sleep 1")
    lines = pk("pod", "logs", "-f", "--names", "chatty", timeout=30).stdout.splitlines()
    # as they were written, not one member after the other (slow was created first)
    assert lines == ["fast from fast", "slow from slow"]


def test_pod_without_a_network_still_shares_loopback(pk):
    pk("pod", "create", "--name", "offline", "--network", "none")
    pk("run", "-d", "--pod", "offline", "--name", "web", *HTTPD)
    got = pk("run", "--rm", "--pod", "offline", "busybox", "sh", "-c",
             "wget -qO- http://127.0.0.1:80/ && ip -o link | cut -d: -f2").stdout
    assert got.split() == [*PAGE.split(), "lo"]


def test_pod_operations_are_pod_events(pk):
    pid = pk("pod", "create", "--name", "evented", "--label", "team=a").stdout.strip()
    pk("pod", "start", "evented")
    pk("pod", "stop", "evented")
    pk("pod", "rm", "evented")
    got = pk("events", "--since", "5m", "--until", "0s", "--filter", "type=pod",
             "--filter", "pod=evented", "--format",
             "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}").stdout.splitlines()
    assert got == [f"{a} {pid} evented" for a in ("create", "start", "stop", "remove")]
    labelled = pk("events", "--since", "5m", "--until", "0s", "--filter", "type=pod",
                  "--filter", "label=team=a", "--format", "{{.Action}}").stdout.split()
    assert labelled == ["create", "start", "stop", "remove"]


def test_pod_kill_signal_log_windows_and_stop_and_rm_time(pk):
    import time

    pk("pod", "create", "--name", "sigs")
    pk("run", "-d", "--pod", "sigs", "--name", "trapper", "busybox", "sh", "-c",
       "trap 'echo got USR1' USR1; echo one; echo two; echo three;"
       " while :; do sleep 0.1; done")
    wait_for(lambda: "three" in pk("logs", "trapper").stdout, interval=CLI_POLL,
             what="trapper's output")
    last = pk("pod", "logs", "--names", "--tail", "1", "sigs").stdout
    assert last == "trapper three\n"
    stamped = pk("pod", "logs", "--names", "--timestamps", "--tail", "1", "sigs").stdout
    assert re.match(r"^trapper \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z three\n$", stamped)
    assert pk("pod", "logs", "--since", "2099-01-01T00:00:00Z", "sigs").stdout == ""
    assert pk("pod", "logs", "--until", "2000-01-01T00:00:00Z", "sigs").stdout == ""
    pk("pod", "kill", "--signal", "USR1", "sigs")
    wait_for(lambda: "got USR1" in pk("logs", "trapper").stdout, interval=CLI_POLL,
             what="the trap to run")
    assert state(pk, "trapper") == "running"
    # sh as PID 1 ignores SIGTERM: the stop's wait is what ends it
    began = time.monotonic()
    pk("pod", "stop", "--time", "1", "sigs")
    assert time.monotonic() - began < 8
    assert state(pk, "trapper") == "exited"
    pk("pod", "start", "sigs")
    began = time.monotonic()
    pk("pod", "rm", "--force", "--time", "1", "sigs")
    assert time.monotonic() - began < 8
    assert pk("pod", "ps", "--format", "{{.Name}}").stdout.split() == []


def test_pod_stop_and_rm_stop_the_members_together(pk):
    # Each member's PID 1 ignores SIGTERM and takes its stop timeout of 3 s: one after
    # the other the stop takes 6 s and more, together (as Podman stops them) 3 s
    import time

    pk("pod", "create", "--name", "slow")
    for name in ("one", "two"):
        pk("run", "-d", "--pod", "slow", "--name", name, "--stop-timeout", "3",
           "busybox", "sleep", "600")
    began = time.monotonic()
    pk("pod", "stop", "slow")
    took = time.monotonic() - began
    assert 3 <= took < 5.5, took
    assert [state(pk, n) for n in ("one", "two")] == ["exited", "exited"]
    assert [pk("inspect", "-f", "{{.State.ExitCode}}", n).stdout for n in ("one", "two")
            ] == ["137\n", "137\n"]
    pk("pod", "start", "slow")
    began = time.monotonic()
    pk("pod", "rm", "--force", "--time", "3", "slow")
    took = time.monotonic() - began
    assert 3 <= took < 5.5, took
    assert pk("ps", "-a", "--format", "{{.Names}}").stdout == ""


def test_pod_create_stays_on_the_lean_import_path(pk) -> None:
    # `pod create` of a pod without ports, once the pause image exists (the first pod
    # made it): the tar writer, the busybox lookup, the port parser and the json
    # package are not loaded (they cost it ~16 of 37 ms; bench/bench_pods.py times it
    # with two members beside podman)
    from tests.containers.test_import_budgets import imports

    pk("pod", "create", "--name", "first")
    out, mods = imports(pk, "pod", "create", "--name", "second")
    assert len(out.strip()) == 64
    assert pk("pod", "inspect", "-f", "{{.Name}}", "second").stdout == "second\n"
    loaded = mods & {"tarfile", "shutil", "subprocess", "ipaddress", "re", "json", "pathlib",
                     "functools", "ketch.images.busybox", "ketch.network.ports"}
    assert not loaded, sorted(loaded)
