"""The container monitor contract: what ketch needs of the process that watches a
container (conmon today): start it, record its exit in the exit file, carry its stdio to
an attach socket and a log, notice however the process dies, and outlive whoever
started it. Every monitor in tests/contracts/conftest.py MONITORS passes these."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from tests.contracts.conftest import ContractHarness

from ketch.errors import InvalidArgument, RuntimeFailure
from ketch.runtime.logs import read_log
from ketch.runtime.monitor import ContainerPaths, process_alive


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_start_runs_the_process_and_reports_its_pid_and_the_monitors(
        monitor_harness: ContractHarness) -> None:
    h = monitor_harness
    paths, started = h.start(["sleep", "60"])
    assert started.container_id == paths.container_id
    assert process_alive(started.pid) and process_alive(started.conmon_pid)
    assert started.pid != started.conmon_pid
    assert int(_read(paths.pidfile)) == started.pid
    assert h.monitor.conmon_pid(paths) == started.conmon_pid
    assert h.monitor.monitor_alive(paths)
    assert h.monitor.exit_status(paths) is None
    # the monitor is the container process's parent (it reaps it and records its exit)
    ppid = int(open(f"/proc/{started.pid}/stat").read().rsplit(")", 1)[1].split()[1])
    assert ppid == started.conmon_pid


def test_the_exit_code_is_written_to_the_exit_file_and_reported(
        monitor_harness: ContractHarness) -> None:
    h = monitor_harness
    before = time.time()
    paths, _ = h.start(["sh", "-c", "exit 42"])
    status = h.monitor.wait_exit(paths, timeout=10)
    assert (status.exit_code, status.oom_killed) == (42, False)
    assert before - 1 <= status.finished_at <= time.time() + 1
    # (conmon writes the exit to its persist dir, then to the exit dir: wait_exit may
    # have read the first before the second was there)
    h.monitor.wait_monitor_exit(paths, timeout=10)
    assert _read(paths.exit_file).strip() == "42"
    assert not h.monitor.monitor_alive(paths)


def test_output_is_written_to_the_log_path_as_k8s_file_records(
        monitor_harness: ContractHarness) -> None:
    h = monitor_harness
    spec = h.spec(["sh", "-c", "echo to-out; echo to-err >&2"])
    paths = h.prepare(spec)
    paths = ContainerPaths.create(paths.container_id, paths.bundle, paths.run_dir,
                                  h.tmp_path / "logs" / "custom.log")
    h.created.append(paths)
    h.monitor.start_container(paths)
    assert h.monitor.wait_exit(paths, timeout=10).exit_code == 0
    h.monitor.wait_monitor_exit(paths, timeout=10)
    # Two pipes: the records of the two streams may interleave in either order.
    assert sorted((c.stream, c.data) for c in read_log(paths.log_path)) == [
        ("stderr", b"to-err\n"), ("stdout", b"to-out\n")]
    line = re.compile(rb"\d{4}-\d\d-\d\dT[\d:.]+[+-]\d\d:\d\d (stdout|stderr) F to-(out|err)")
    assert all(line.fullmatch(raw) for raw in _read(paths.log_path).encode().splitlines())


def test_a_log_path_the_monitor_cannot_take_is_refused_before_anything_starts(
        monitor_harness: ContractHarness) -> None:
    h = monitor_harness
    paths = h.prepare(h.spec(["true"]))
    bad = ContainerPaths.create(paths.container_id, paths.bundle, paths.run_dir,
                                h.tmp_path / "a:b.log")
    with pytest.raises(InvalidArgument, match="must not contain ':'"):
        h.monitor.start_container(bad)
    assert h.runtime.state(paths.container_id) is None
    assert not os.path.exists(bad.log_path) and not os.path.exists(bad.conmon_pidfile)


def test_attach_before_start_sees_every_byte_and_forwards_stdin(
        monitor_harness: ContractHarness) -> None:
    h = monitor_harness
    paths = h.prepare(h.spec(["sh", "-c", "echo first; cat; echo last >&2"]))
    sessions = []
    h.monitor.start_container(paths, stdin=True,
                              before_start=lambda _s: sessions.append(h.monitor.attach(paths)))
    out: list[bytes] = []
    err: list[bytes] = []
    with sessions[0] as session:
        result = session.stream(stdout=out.append, stderr=err.append,
                                stdin=io.BytesIO(b"typed\n"))
    assert not result.detached
    assert (b"".join(out), b"".join(err)) == (b"first\ntyped\n", b"last\n")
    assert h.monitor.wait_exit(paths, timeout=10).exit_code == 0


def test_a_sigkill_of_the_monitored_process_is_recorded_as_137(
        monitor_harness: ContractHarness) -> None:
    h = monitor_harness
    paths, started = h.start(["sleep", "60"])
    os.kill(started.pid, signal.SIGKILL)
    assert h.monitor.wait_exit(paths, timeout=10).exit_code == 128 + signal.SIGKILL


def test_a_killed_monitor_is_reported_instead_of_waited_for(
        monitor_harness: ContractHarness) -> None:
    h = monitor_harness
    paths, started = h.start(["sleep", "60"])
    os.kill(started.conmon_pid, signal.SIGKILL)
    h.wait_for(lambda: not process_alive(started.conmon_pid), what="the monitor to die")
    with pytest.raises(RuntimeFailure, match="died without recording an exit code"):
        h.monitor.wait_exit(paths, timeout=10)


_STARTER = """
import sys
from pathlib import Path
from ketch.runtime.monitor import ConmonMonitor, ContainerPaths
from ketch.runtime.oci import OCIRuntime
runtime = OCIRuntime(sys.argv[1], Path(sys.argv[2]))
paths = ContainerPaths.create(sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5]))
print(ConmonMonitor(runtime).start_container(paths).conmon_pid)
"""


def test_the_monitor_outlives_the_process_that_started_it_and_still_records_the_exit(
        monitor_harness: ContractHarness) -> None:
    h = monitor_harness
    paths = h.prepare(h.spec(["sleep", "60"]))
    starter = subprocess.run(
        [sys.executable, "-c", _STARTER, h.runtime.name, str(h.runtime.state_root),
         paths.container_id, str(paths.bundle), str(paths.run_dir)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert starter.returncode == 0, starter.stderr
    conmon_pid = int(starter.stdout)
    # The starter has exited: the monitor and the container run on without it.
    assert h.monitor.monitor_alive(paths) and h.monitor.conmon_pid(paths) == conmon_pid
    state = h.runtime.state(paths.container_id)
    assert state is not None and state.status == "running"
    h.runtime.kill(paths.container_id, "KILL")
    assert h.monitor.wait_exit(paths, timeout=10).exit_code == 137
