"""Bad input to the pod commands: one line saying what is wrong (Podman's words where
Podman has them), exit 125, and nothing created or half-made."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import ketch

NO_POD = "Error: no pod with name or ID nosuch found: no such pod"
SHARED = "network cannot be configured when it is shared with a pod"


def _refused(pk, *args: str, message: str) -> None:
    r = pk(*args, check=False)
    assert r.returncode == 125, r
    assert r.stderr.strip() == message
    assert "Traceback" not in r.stderr


def _inventory(pk) -> tuple[list[str], list[str]]:
    """(pod IDs, container IDs) of the root, as its records hold them (read in this
    process: one look instead of `pod ps -q` and `ps -aq`, and with no recovery run
    first that could tidy up what a refused command half-made)."""
    from ketch.engine import Engine

    with Engine(pk.root, pk.root / "run") as engine:
        return (sorted(p.id for p in engine.pods.records.all()),
                sorted(c.id for c in engine.containers.records.all()))


def test_run_in_an_unknown_pod_is_refused_and_creates_nothing(pk):
    _refused(pk, "run", "--pod", "nosuch", "busybox", "true", message=NO_POD)
    _refused(pk, "create", "--pod", "nosuch", "busybox", "true", message=NO_POD)
    assert _inventory(pk) == ([], [])


@pytest.mark.parametrize("command", ["stop", "start", "rm", "inspect", "logs", "top", "kill",
                                     "pause", "unpause", "restart"])
def test_pod_commands_on_an_unknown_pod_exit_125(pk, command):
    _refused(pk, "pod", command, "nosuch", message=NO_POD)


def test_a_second_pod_of_the_same_name_is_a_conflict(pk):
    pk("pod", "create", "--name", "dup")
    before = _inventory(pk)
    _refused(pk, "pod", "create", "--name", "dup",
             message='Error: adding pod to state: name "dup" is in use: pod already exists')
    assert _inventory(pk) == before
    assert len(before[1]) == 1  # the first pod's infra container only


@pytest.mark.parametrize("flags, message", [
    (("--network", "bridge"), f"invalid config provided: networks must be defined when the"
                              f" pod is created: {SHARED}"),
    (("-p", "8080:80"), "invalid config provided: published or exposed ports must be"
                        f" defined when the pod is created: {SHARED}"),
    (("-P",), "invalid config provided: published or exposed ports must be defined when the"
              f" pod is created: {SHARED}"),
    (("--add-host", "db:10.0.0.2"), "invalid config provided: extra host entries must be"
                                    f" specified on the pod: {SHARED}"),
    (("--hostname", "mine"), "invalid config provided: cannot set hostname when joining the"
                             " pod's UTS namespace"),
])
def test_network_settings_of_a_member_are_refused(pk, flags, message):
    pk("pod", "create", "--name", "shared")
    before = _inventory(pk)
    for command in ("run", "create"):
        _refused(pk, command, "--pod", "shared", *flags, "busybox", "true",
                 message=f"Error: {message}")
    assert _inventory(pk) == before


@pytest.mark.parametrize("args, message", [
    (("--network", "nosuch"), "Error: network nosuch not found"),
    (("-p", "99999:80"), "Error: invalid hostPort: 99999"),
    (("--name", "bad name"), "Error: invalid pod name 'bad name': only [a-zA-Z0-9]"
                             "[a-zA-Z0-9_.-] are allowed"),
    (("--network", "container:x"), "Error: pods cannot use network mode 'container:x': a"
                                   " pod's infra container owns its network"),
    (("--add-host", "nocolon"), 'Error: invalid argument "nocolon" for "--add-host" flag:'
                                " invalid IP address: expected HOST:IP"),
])
def test_pod_create_refuses_bad_settings_and_leaves_nothing(pk, args, message):
    _refused(pk, "pod", "create", *args, message=message)
    assert _inventory(pk) == ([], [])


def test_rm_and_container_prune_leave_a_pods_infra_alone(pk):
    pid = pk("pod", "create", "--name", "kept").stdout.strip()
    infra = pk("pod", "inspect", "-f", "{{.InfraContainerID}}", "kept").stdout.strip()
    r = pk("rm", "-f", infra, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"Error: container {infra} is the infra container of pod"
                                f" {pid} and cannot be removed without removing the pod")
    pk("container", "prune", "-f")
    assert pk("ps", "-aq", "--no-trunc").stdout.split() == [infra]
    pk("pod", "start", "kept")  # still whole
    assert pk("pod", "ps", "--format", "{{.Status}}").stdout.strip() == "Running"


def test_a_pod_create_killed_half_way_is_undone_by_the_next_command(pk):
    # a `pod create` that died after recording the pod and making its infra container,
    # before the infra was recorded on the pod: its intent row names a dead owner
    script = (
        "import os, sys\n"
        "from ketch.engine import Engine\n"
        "from ketch.pods.records import PodRecord\n"
        "e = Engine()\n"
        "pid = os.urandom(32).hex()\n"
        "e.intents.begin('pods.create', pid)\n"
        "e.pods.records.insert(PodRecord(pid, 'halfmade', 0.0, '', {}, {}))\n"
        "from ketch.pods.infra import ensure_pause_image\n"
        "e.containers.create({'Image': ensure_pause_image(e.images)}, {},"
        " name=pid[:12] + '-infra')\n"
        "os._exit(0)\n")
    src = os.path.dirname(os.path.dirname(os.path.abspath(ketch.__file__)))
    subprocess.run([sys.executable, "-c", script], env={**pk.env(), "PYTHONPATH": src},
                   check=True)
    assert pk("pod", "ps", "-q").stdout == ""  # the next command undid it
    assert pk("ps", "-aq").stdout == ""
    pk("pod", "create", "--name", "halfmade")  # and the name is free again
