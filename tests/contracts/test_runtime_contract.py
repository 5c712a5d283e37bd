"""The OCI runtime contract: what ketch needs of runc and of crun, behind OCIRuntime.

Containers are created the way ketch creates them (conmon runs `<runtime> create`);
the lifecycle after that is driven through OCIRuntime. Every runtime in
tests/contracts/conftest.py RUNTIMES passes these (crun is an expected failure on a
host with hybrid cgroups, which crun 1.8 refuses)."""

from __future__ import annotations

import os
import secrets
import time

import pytest
from tests.contracts.conftest import ContractHarness

from ketch.errors import RuntimeFailure
from ketch.runtime.monitor import ContainerPaths, StartedContainer
from ketch.runtime.oci import ContainerMissing


def created(h: ContractHarness, args: list[str]) -> tuple[ContainerPaths, StartedContainer]:
    paths = h.prepare(h.spec(args))
    return paths, h.create(paths)


# PID 1 gets no default signal actions: a process that exits on a signal handles it.
# It says "ready" once its traps are set: a signal sent before would be ignored.
TRAPS = "trap 'exit 50' INT; trap 'exit 51' USR1; trap 'exit 52' TERM; echo ready; " \
        "while :; do sleep 0.05; done"


def wait_ready(h: ContractHarness, paths: ContainerPaths) -> None:
    h.wait_for(lambda: h.output(paths)[0] == "ready\n", what="the traps to be set")


def test_a_container_goes_created_running_stopped_and_then_has_no_state(
        runtime_harness: ContractHarness) -> None:
    h = runtime_harness
    rt = h.runtime
    paths, started = created(h, ["sh", "-c", TRAPS])
    cid = paths.container_id
    state = rt.state(cid)
    assert state is not None
    assert (state.id, state.status, state.pid) == (cid, "created", started.pid)
    assert os.path.realpath(state.bundle) == os.path.realpath(paths.bundle)
    assert [s.id for s in rt.list()] == [cid]
    rt.start(cid)
    state = rt.state(cid)
    assert state is not None and state.status == "running"
    assert os.path.exists(f"/proc/{state.pid}")
    wait_ready(h, paths)
    rt.kill(cid, "TERM")
    assert h.monitor.wait_exit(paths, timeout=10).exit_code == 52
    h.wait_for(lambda: (s := rt.state(cid)) is not None and s.status == "stopped",
               what="stopped state")
    rt.delete(cid)
    assert rt.state(cid) is None
    assert not rt.has_state(cid)
    assert rt.list() == []


@pytest.mark.parametrize("code", [0, 3, 255])
def test_the_exit_status_of_the_process_is_reported(runtime_harness: ContractHarness,
                                                    code: int) -> None:
    status, _out, _err = runtime_harness.run(["sh", "-c", f"exit {code}"])
    assert status.exit_code == code


def test_kill_with_a_signal_name_or_number_ends_the_process_with_that_signal(
        runtime_harness: ContractHarness) -> None:
    h = runtime_harness
    for sig, code in (("KILL", 137), ("SIGUSR1", 51), (2, 50)):
        paths, _ = h.start(["sh", "-c", TRAPS])
        wait_ready(h, paths)
        h.runtime.kill(paths.container_id, sig)
        assert h.monitor.wait_exit(paths, timeout=10).exit_code == code


def test_the_state_of_a_missing_container_is_none_and_commands_raise_container_missing(
        runtime_harness: ContractHarness) -> None:
    rt = runtime_harness.runtime
    cid = secrets.token_hex(32)
    assert rt.state(cid) is None
    assert not rt.has_state(cid)
    for op in (lambda: rt.start(cid), lambda: rt.kill(cid, "KILL"),
               lambda: rt.pause(cid)):
        with pytest.raises(ContainerMissing, match=rt.name):
            op()
    rt.delete(cid)  # deleting what is not there is not an error
    rt.delete(cid, force=True)


def test_a_failure_that_is_not_a_missing_container_is_a_plain_runtime_failure(
        runtime_harness: ContractHarness) -> None:
    h = runtime_harness
    paths, _ = h.start(["true"])
    h.monitor.wait_exit(paths, timeout=10)
    with pytest.raises(RuntimeFailure) as info:
        h.runtime.start(paths.container_id)  # a stopped container cannot start again
    assert not isinstance(info.value, ContainerMissing)
    assert "\n" not in str(info.value)


def test_a_created_container_can_be_force_deleted_without_running(
        runtime_harness: ContractHarness) -> None:
    h = runtime_harness
    paths, started = created(h, ["sleep", "60"])
    h.runtime.delete(paths.container_id, force=True)
    assert h.runtime.state(paths.container_id) is None
    h.wait_for(lambda: not os.path.exists(f"/proc/{started.pid}"), what="process gone")


def test_pause_freezes_resume_thaws_and_ps_lists_the_containers_processes(
        runtime_harness: ContractHarness) -> None:
    h = runtime_harness
    rt = h.runtime
    ticker = "i=0; while :; do i=$((i+1)); echo $i > /dev/shm/n; sleep 0.01; done"
    paths, started = h.start(["sh", "-c", f"({ticker}) & wait"])
    counter = f"/proc/{started.pid}/root/dev/shm/n"

    def ticks() -> int:
        seen: list[str] = []

        def read() -> bool:  # the shell truncates, then writes: retry an empty read
            try:
                seen.append(open(counter).read().strip())
            except FileNotFoundError:
                return False
            return seen[-1].isdigit()

        h.wait_for(read, what="the counter")
        return int(seen[-1])

    h.wait_for(lambda: len(rt.ps(paths.container_id)) >= 2, what="the ticker")
    assert started.pid in rt.ps(paths.container_id)
    rt.pause(paths.container_id)
    state = rt.state(paths.container_id)
    assert state is not None and state.status == "paused"
    frozen = ticks()
    time.sleep(0.3)
    assert ticks() == frozen, "a paused container kept running"
    rt.resume(paths.container_id)
    state = rt.state(paths.container_id)
    assert state is not None and state.status == "running"
    h.wait_for(lambda: ticks() > frozen, what="the ticker to go on after resume")
    rt.kill(paths.container_id, "KILL", all_processes=True)
    assert h.monitor.wait_exit(paths, timeout=10).exit_code == 137
