"""Commands on one container from several processes at once: ketch has no daemon to
serialise them, only the container's lock, so a command that waited for the lock must
look at the container again before it acts on what it saw before."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from tests.conftest import ketch_command
from tests.helpers.host import has_open, wait_for

from ketch.errors import NotFound


def test_a_prune_that_waited_for_a_start_leaves_the_started_container_running(ketch):
    """`container prune` lists a created container, then waits for its lock while a
    `start` (of a `run`) holds it: once the start is done the container runs, and the
    prune leaves it. Before, the prune removed it with what its listing had seen, and
    killed the freshly started container."""
    from ketch.engine import Engine

    cid = ketch("create", "busybox", "sleep", "300").stdout.strip()
    ketch.ids.add(cid)
    lock = ketch.root / "run" / "containers" / f"{cid}.lock"
    release = threading.Event()
    prune: list[subprocess.Popen[str]] = []
    errors: list[BaseException] = []

    def start() -> None:
        # the start holds the container's lock while `before_start` runs: the prune is
        # started there, and the start goes on once the prune waits for the lock
        def before_start(_paths: object) -> None:
            env = dict(os.environ, KETCH_ROOT=str(ketch.root),
                       KETCH_RUN_ROOT=str(ketch.root / "run"))
            prune.append(subprocess.Popen([*ketch_command(), "container", "prune", "-f"],
                                          env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
            release.wait(60)

        try:
            with Engine(ketch.root, ketch.root / "run") as engine:
                engine.containers.lifecycle.start(cid, before_start=before_start)
        except BaseException as e:  # (reported by the test's thread)
            errors.append(e)

    starter = threading.Thread(target=start)
    starter.start()
    try:
        wait_for(lambda: prune and has_open(prune[0].pid, lock),
                 what="the prune to wait for the container's lock")
    finally:
        release.set()
        starter.join(60)
    assert errors == []
    out, err = prune[0].communicate(timeout=60)
    assert prune[0].returncode == 0, err
    assert cid not in out
    assert ketch("inspect", "-f", "{{.State.Status}}", cid).stdout == "running\n"
    ketch("rm", "-f", cid)


def test_a_start_that_waited_for_a_removal_says_the_container_is_gone(ketch):
    """`start` finds the container, then waits for its lock while an `rm` holds it:
    once the removal is done, the start says there is no such container (as dockerd's)
    and starts nothing. Before, it went on with the removed container's record: an
    internal error from `run`, or a start of a container that no longer existed."""
    from ketch.engine import Engine

    cid = ketch("create", "busybox", "sleep", "300").stdout.strip()
    ketch.ids.add(cid)
    lock = ketch.root / "run" / "containers" / f"{cid}.lock"
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    with Engine(ketch.root, ketch.root / "run") as engine:
        with engine.containers.lock(cid):  # the removal's lock, held here
            starting = subprocess.Popen([*ketch_command(), "start", cid], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
            wait_for(lambda: has_open(starting.pid, lock),
                     what="the start to wait for the container's lock")
            engine.containers._delete(engine.containers.records.get(cid))
        out, err = starting.communicate(timeout=60)
    assert (starting.returncode, out) == (1, "")
    assert err == (f"Error: No such container: {cid}\n"
                   f"Error: failed to start containers: {cid}\n")
    assert ketch("ps", "-aq", "--no-trunc").stdout == ""
    assert not lock.exists()  # the lock file the start made is not left behind
    runc = subprocess.run(["runc", "--root", str(ketch.root / "run" / "runc"), "list", "-q"],
                          capture_output=True, text=True)
    assert cid not in runc.stdout


def test_a_rename_that_waited_for_a_removal_says_the_container_is_gone(ketch):
    """`rename` finds the container, then waits for its lock while an `rm` holds it:
    once the removal is done, it says there is no such container. Before, it renamed
    nothing (the record was gone), said nothing and exited 0."""
    from ketch.engine import Engine

    cid = ketch("create", "--name", "before", "busybox", "true").stdout.strip()
    ketch.ids.add(cid)
    lock = ketch.root / "run" / "containers" / f"{cid}.lock"
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    with Engine(ketch.root, ketch.root / "run") as engine:
        with engine.containers.lock(cid):  # the removal's lock, held here
            renaming = subprocess.Popen([*ketch_command(), "rename", "before", "after"],
                                        env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
            # (or its end: the rename that took no lock was over at once, exit 0)
            wait_for(lambda: renaming.poll() is not None or has_open(renaming.pid, lock),
                     what="the rename to wait for the container's lock")
            engine.containers._delete(engine.containers.records.get(cid))
        out, err = renaming.communicate(timeout=60)
    assert (renaming.returncode, out, err) == (1, "", "Error: No such container: before\n")
    assert ketch("ps", "-aq", "--no-trunc").stdout == ""
    assert not lock.exists()


def test_an_exec_that_waited_for_a_removal_leaves_no_session_record(ketch):
    """`exec` finds the running container, then waits for its lock while an `rm -f`
    holds it: once the removal is done, it says there is no such container and leaves
    nothing. Before, it took no lock and went on beside the removal (here: it ran and
    exited 0), and in 1 of 10 `exec & rm -f` rounds recorded its session after the
    removal, which made the removed container's run directory again and left it."""
    from ketch.engine import Engine

    cid = ketch("run", "-d", "busybox", "sleep", "300").stdout.strip()
    ketch.ids.add(cid)
    run_dir = ketch.root / "run" / "containers" / cid
    lock = ketch.root / "run" / "containers" / f"{cid}.lock"
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    with Engine(ketch.root, ketch.root / "run") as engine:
        svc = engine.containers
        with svc.lock(cid):  # what `rm -f` does under the container's lock
            execing = subprocess.Popen([*ketch_command(), "exec", cid, "true"], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
            # (or its end: an exec that took no lock went on at once)
            wait_for(lambda: execing.poll() is not None or has_open(execing.pid, lock),
                     what="the exec to wait for the container's lock")
            rec = svc.records.get(cid)
            svc.lifecycle.kill_now(rec)
            svc.lifecycle.finish(cid, locked=True, apply_policy=False)
            svc._delete(svc.records.get(cid) or rec)
        out, err = execing.communicate(timeout=60)
    assert (execing.returncode, out, err) == (1, "", f"Error: No such container: {cid}\n")
    assert not run_dir.exists()
    assert ketch("ps", "-aq", "--no-trunc").stdout == ""


def test_a_pod_start_beside_a_pod_kill_starts_the_pod_after_the_kill(ketch):
    """`pod start` waits for the pod's lock while a `pod kill` holds it, then starts
    the pod the kill left: every container runs. Before, it went on beside the kill,
    and (3 of 6 rounds of `pod kill P & pod start P`) started members into the
    namespaces of the infra the kill was ending: "cannot join network of a non running
    container", the pod left exited."""
    from ketch.engine import Engine

    ketch("pod", "create", "--name", "pk")
    ketch("run", "-d", "--pod", "pk", "--name", "pk-m", "busybox", "sleep", "300")
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    with Engine(ketch.root, ketch.root / "run") as engine:
        with engine.pods.locked("pk") as pod:  # the kill's lock, held here
            lock = ketch.root / "run" / "pods" / f"{pod.id}.lock"
            starting = subprocess.Popen([*ketch_command(), "pod", "start", "pk"], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
            # (or its end: a start that took no lock went on at once)
            wait_for(lambda: starting.poll() is not None or has_open(starting.pid, lock),
                     what="the pod start to wait for the pod's lock")
            engine.pods.kill(pod.id)
            for c in engine.pods.all_containers(pod):
                wait_for(lambda c=c: engine.containers.get(c.id).state == "exited",
                         what=f"{c.name} to exit")
        out, err = starting.communicate(timeout=60)
    assert (starting.returncode, err) == (0, ""), err
    states = ketch("ps", "-a", "--filter", "pod=pk", "--format", "{{.State}}").stdout
    assert states.split() == ["running", "running"]
    ketch("pod", "rm", "-f", "pk")
    assert not lock.exists()


def test_a_network_removed_while_a_start_looks_it_up_is_not_joined(ketch, monkeypatch):
    """A `network rm` that commits between a start's lookup of the network and the
    transaction that adds the start's endpoint: the start says the network is gone (and
    a `network rm` after that transaction finds the endpoint and refuses). Before, the
    start added its endpoint to the removed network and ran with an address on it,
    listed on no network (1 of 40 `run --network N & network rm N` rounds here). The
    real `ketch network rm` runs at that moment: the test calls it when the start's
    lookup of the network has returned."""
    from ketch.engine import Engine
    from ketch.network import records

    ketch("network", "create", "racy")
    cid = ketch("create", "--network", "racy", "busybox", "sleep", "300").stdout.strip()
    ketch.ids.add(cid)
    lookup = records.find_network
    removals: list[subprocess.CompletedProcess[str]] = []

    def find_network(conn, ref):  # type: ignore[no-untyped-def]
        found = lookup(conn, ref)
        if ref == "racy" and not removals:
            removals.append(ketch("network", "rm", "racy", check=False))
        return found

    monkeypatch.setattr(records, "find_network", find_network)
    with Engine(ketch.root, ketch.root / "run") as engine:
        try:
            engine.containers.start(cid)
        except NotFound as e:
            error = str(e)
        else:
            error = ""
    assert [(r.returncode, r.stdout) for r in removals] == [(0, "racy\n")]
    assert error == "network racy not found"
    assert ketch("inspect", "-f", "{{.State.Status}}", cid).stdout == "created\n"
    assert "racy" not in ketch("network", "ls", "--format", "{{.Name}}").stdout


def test_a_volume_prune_during_a_first_start_leaves_the_new_anonymous_volume(ketch):
    """A `volume prune` (which takes unused anonymous volumes) while a container's first
    start has made its anonymous volume: the volume is the container's from the moment it
    exists. Before, the record named it only once the start was done, and the prune
    removed it under the starting container (16 of 20 such runs failed to mount it, the
    other containers ran on a deleted directory)."""
    from ketch.engine import Engine

    cid = ketch("create", "-v", "/data", "busybox", "sh", "-c",
                "echo kept > /data/f; sleep 300").stdout.strip()
    ketch.ids.add(cid)
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    pruned: list[subprocess.CompletedProcess[str]] = []

    def before_start(_paths: object) -> None:  # the volume exists, the process has not run
        pruned.append(subprocess.run([*ketch_command(), "volume", "prune", "-f"], env=env,
                                     capture_output=True, text=True, timeout=60))

    with Engine(ketch.root, ketch.root / "run") as engine:
        engine.containers.lifecycle.start(cid, before_start=before_start)
    assert pruned[0].returncode == 0, pruned[0].stderr
    name = ketch("inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", cid).stdout.strip()
    assert len(name) == 64
    assert name not in pruned[0].stdout
    assert name in ketch("volume", "ls", "-q").stdout.split()
    where = ketch("volume", "inspect", "-f", "{{.Mountpoint}}", name).stdout.strip()
    wait_for(lambda: os.path.exists(f"{where}/f"), what="the container's write to its volume")
    assert Path(where, "f").read_text() == "kept\n"
    ketch("rm", "-f", "-v", cid)


def test_prunes_side_by_side_each_take_what_the_other_left(ketch):
    """Four `volume prune`s at once over the same unused volumes: each volume is removed
    once, by one of them, and none fails. Before, a prune that listed a volume another had
    just removed failed with "no such volume"."""
    from ketch.containers.volumes import VolumeStore
    from ketch.engine import Engine

    with Engine(ketch.root, ketch.root / "run") as engine:
        store = VolumeStore(engine)
        names = [os.urandom(32).hex() for _ in range(60)]  # anonymous volumes' names
        for name in names:
            store.create(name)
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    prunes = [subprocess.Popen([*ketch_command(), "volume", "prune", "-f"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in prunes]
    assert ([(p.returncode, err) for p, (_out, err) in zip(prunes, outputs, strict=True)]
            == [(0, "")] * 4)
    removed = [line for out, _err in outputs for line in out.splitlines()
               if len(line) == 64]
    assert sorted(removed) == sorted(names)
    assert ketch("volume", "ls", "-q").stdout == ""


def test_a_commit_beside_a_pause_commits_and_leaves_the_users_pause(ketch):
    """`commit` pauses a running container while it copies its changes; a `pause` of
    the user's that comes first is no error for the commit, which commits the paused
    container and leaves it paused, as dockerd's. Before, the commit looked before it
    took the lock and failed with "Container ... is already paused" (4 of 8 here)."""
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    names = [f"cp{i}" for i in range(8)]
    for name in names:
        ketch.ids.add(ketch("run", "-d", "--name", name, "busybox", "sleep", "300"
                            ).stdout.strip())
    procs = []
    for name in names:
        procs.append(subprocess.Popen([*ketch_command(), "commit", name, f"{name}-image"],
                                      env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
        procs.append(subprocess.Popen([*ketch_command(), "pause", name], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = [(p.args[-2] if "commit" in p.args else "pause", p.wait(timeout=120),
                p.communicate()[1]) for p in procs]
    assert [r for r in results if r[0] != "pause" and r[1] != 0] == []
    images = ketch("images", "--format", "{{.Repository}}").stdout.split()
    assert sorted(i for i in images if i.endswith("-image")) == sorted(
        f"{n}-image" for n in names)
    for name, (_kind, code, err) in zip(names, results[1::2], strict=True):
        # the user's pause either came first or found the commit's in place (an error,
        # as dockerd's); a container whose pause succeeded is paused now
        status = ketch("inspect", "-f", "{{.State.Status}}", name).stdout.strip()
        if code == 0:
            assert status == "paused", (name, err)
        else:
            assert "is already paused" in err and status == "running", (name, err)
    for name in names:
        ketch("rm", "-f", name)
        ketch("rmi", f"{name}-image")


def test_an_attached_run_rm_whose_container_another_command_removes_exits_137(ketch):
    """`run --rm` attached, and `rm -f` of its container from another shell: the run
    ends with the kill's 137 as docker run does, and the container is destroyed once.
    Before, the removal deleted the record a second time with the exit code it had read
    before the kill (the run exited 0) and journaled a second destroy."""
    import time

    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    since = str(int(time.time()))
    run = subprocess.Popen([*ketch_command(), "run", "--rm", "--name", "gone", "busybox",
                            "sleep", "300"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    wait_for(lambda: ketch("inspect", "-f", "{{.State.Running}}", "gone",
                           check=False).stdout == "true\n", what="the run's container to run")
    assert ketch("rm", "-f", "gone").stdout == "gone\n"
    out, err = run.communicate(timeout=60)
    assert (run.returncode, out, err) == (137, "", "")
    until = str(int(time.time()) + 1)
    actions = ketch("events", "--since", since, "--until", until, "--filter",
                    "container=gone", "--format", "{{.Action}}").stdout.split()
    assert actions.count("destroy") == 1 and actions[-1] == "destroy", actions
    assert ketch("ps", "-aq").stdout == ""
