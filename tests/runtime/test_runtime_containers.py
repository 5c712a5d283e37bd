"""Real containers: busybox under conmon + runc, detached, attached, exec'd, limited."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from ketch.errors import InvalidArgument, RuntimeFailure
from ketch.runtime.logs import iter_entries, read_log
from ketch.runtime.monitor import ContainerStartError, process_alive
from ketch.runtime.spec import exec_process, host_capabilities
from ketch.runtime.users import resolve_user

DOCKER_DEFAULT_CAPEFF = "00000000a80425fb"


def cap_line(text: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*([0-9a-f]+)$", text, re.M)
    assert match, text
    return match.group(1)


# --- running, exit codes, logs -------------------------------------------------------


def test_echo_output_lands_in_the_log_as_a_k8s_file_record(harness):
    status, out, err = harness.run(["echo", "hello"])
    assert status.exit_code == 0 and not status.oom_killed
    assert (out, err) == ("hello\n", "")
    raw = Path(harness.created[0].log_path).read_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d stdout F hello\n",
                        raw), raw


def test_stdout_and_stderr_are_logged_apart(harness):
    _status, out, err = harness.run(["sh", "-c", "echo out; echo err >&2"])
    assert (out, err) == ("out\n", "err\n")


@pytest.mark.parametrize("args, code", [(["true"], 0), (["sh", "-c", "exit 3"], 3),
                                        (["false"], 1)])
def test_exit_codes_are_recorded(harness, args, code):
    status, _, _ = harness.run(args)
    assert status.exit_code == code


def test_missing_executable_fails_start_with_exit_code_127_and_leaves_nothing(harness):
    with pytest.raises(ContainerStartError) as info:
        harness.start(["no-such-command"])
    assert info.value.exit_code == 127
    assert "executable file not found in $PATH" in str(info.value)
    assert "\n" not in str(info.value)
    paths = harness.created[0]
    assert harness.runtime.state(paths.container_id) is None
    harness.monitor.wait_monitor_exit(paths, timeout=10)


def test_non_executable_file_fails_start_with_exit_code_126(harness):
    with pytest.raises(ContainerStartError) as info:
        harness.start(["/etc/passwd"])
    assert info.value.exit_code == 126
    assert "permission denied" in str(info.value)


def test_start_reports_the_container_and_monitor_pids(harness):
    paths, started = harness.start(["sleep", "30"])
    assert started.pid > 0 and started.conmon_pid > 0
    assert process_alive(started.pid) and process_alive(started.conmon_pid)
    assert int(Path(paths.pidfile).read_text()) == started.pid
    state = harness.runtime.state(paths.container_id)
    assert state is not None and state.status == "running" and state.pid == started.pid
    assert harness.monitor.exit_status(paths) is None


def test_true_runs_from_start_to_recorded_exit(harness):
    spec = harness.spec(["true"])
    paths = harness.prepare(spec)
    harness.monitor.start_container(paths)
    harness.monitor.wait_exit(paths, timeout=10)
    assert harness.monitor.exit_status(paths) is not None


def test_kill_init_kills_the_container_and_its_pid_namespace_without_a_runc_process(harness):
    # the shell's background child dies with the namespace's init, as with `runc kill`
    paths, started = harness.start(["sh", "-c", "sleep 30 & exec sleep 31"])
    state = json.loads((Path(harness.runtime.state_root) / paths.container_id
                        / "state.json").read_text())
    init = state["init_process_pid"]
    children = Path(f"/proc/{init}/task/{init}/children")
    harness.wait_for(lambda: children.exists() and children.read_text().split(),
                     what="the container's background child")
    background = children.read_text().split()
    assert harness.runtime.kill_init(paths.container_id, signal.SIGKILL) is True
    status = harness.monitor.wait_exit(paths, timeout=10)
    assert status.exit_code == 137
    assert not process_alive(init)
    harness.wait_for(lambda: not process_alive(int(background[0])),
                     what="the background child to die with the namespace")
    assert harness.runtime.state(paths.container_id).status == "stopped"


def test_kill_init_leaves_alone_a_process_that_is_not_the_recorded_init(harness):
    paths, _started = harness.start(["sleep", "30"])
    state_file = Path(harness.runtime.state_root) / paths.container_id / "state.json"
    original = state_file.read_text()
    state = json.loads(original)
    # the pid now names a process started at another time: a pid reused after the
    # init exited, which must not get the signal
    state["init_process_start"] += 1
    state_file.write_text(json.dumps(state))
    try:
        assert harness.runtime.kill_init(paths.container_id, signal.SIGKILL) is False
        time.sleep(0.2)
        assert harness.monitor.exit_status(paths) is None
        assert process_alive(state["init_process_pid"])
    finally:
        state_file.write_text(original)


def test_start_lets_a_created_container_run_without_a_runc_process(harness):
    """What `runc start` does, done from here: the init's exec FIFO read and removed,
    after which runc itself reports the container running and its output arrives."""
    paths = harness.prepare(harness.spec(["sh", "-c", "echo started; exec sleep 30"]))
    harness.monitor.create_container(paths)
    fifo = Path(harness.runtime.state_root) / paths.container_id / "exec.fifo"
    assert harness.runtime.state(paths.container_id).status == "created"
    assert fifo.exists()
    assert harness.runtime.start_init(paths.container_id) is True
    assert not fifo.exists()
    assert harness.runtime.state(paths.container_id).status == "running"
    harness.wait_for(lambda: harness.output(paths)[0] == "started\n",
                     what="the container's output")


def test_start_of_a_container_whose_init_died_before_it_gives_runcs_error(harness):
    paths = harness.prepare(harness.spec(["true"]))
    harness.monitor.create_container(paths)
    state = json.loads((Path(harness.runtime.state_root) / paths.container_id
                        / "state.json").read_text())
    os.kill(state["init_process_pid"], signal.SIGKILL)
    harness.wait_for(lambda: harness.runtime.state(paths.container_id).status == "stopped",
                     what="the init to be gone")
    assert harness.runtime.start_init(paths.container_id) is False
    with pytest.raises(RuntimeFailure) as refused:
        harness.runtime.start(paths.container_id)
    assert str(refused.value) == "runc start: cannot start a container that has stopped"


def test_start_of_a_created_container_whose_init_cannot_write_times_out(harness):
    # a frozen init: its FIFO is opened for it, but it never writes the byte
    paths = harness.prepare(harness.spec(["true"]))
    harness.monitor.create_container(paths)
    harness.runtime.pause(paths.container_id)
    t0 = time.monotonic()
    with pytest.raises(RuntimeFailure, match="runc start timed out after 0s"):
        harness.runtime.start_init(paths.container_id, timeout=0.3)
    assert 0.3 <= time.monotonic() - t0 < 5
    harness.runtime.resume(paths.container_id)


def test_delete_of_a_stopped_container_removes_its_cgroups_and_state_without_runc(harness):
    """What `runc delete` does for a stopped container, done from here: every hierarchy's
    cgroup of the container and its runc state directory are gone; while the init ran,
    nothing was removed."""
    paths, _started = harness.start(["sleep", "30"])
    where = Path(harness.runtime.state_root) / paths.container_id
    cgroups = set(json.loads((where / "state.json").read_text())["cgroup_paths"].values())
    assert len(cgroups) > 1 and all(Path(c).is_dir() for c in cgroups)
    assert harness.runtime.delete_stopped(paths.container_id) is False
    assert where.is_dir() and all(Path(c).is_dir() for c in cgroups)
    assert harness.runtime.kill_init(paths.container_id, signal.SIGKILL) is True
    harness.monitor.wait_exit(paths, timeout=10)
    assert harness.runtime.delete_stopped(paths.container_id) is True
    assert [c for c in cgroups if Path(c).exists()] == []
    assert not where.exists()
    assert harness.runtime.state(paths.container_id) is None


@pytest.mark.parametrize("change", ["shared PID namespace", "hooks", "systemd cgroup"])
def test_delete_leaves_to_runc_a_stopped_container_it_cannot_remove_alone(harness, change):
    """A container whose processes may outlive its init (a PID namespace it joined), or
    whose removal runs more than rmdir (hooks, a systemd unit), is not removed from here:
    runc's delete is."""
    paths, _started = harness.start(["sleep", "30"])
    state_file = Path(harness.runtime.state_root) / paths.container_id / "state.json"
    assert harness.runtime.kill_init(paths.container_id, signal.SIGKILL) is True
    harness.monitor.wait_exit(paths, timeout=10)
    original = state_file.read_text()
    state = json.loads(original)
    if change == "shared PID namespace":
        for ns in state["config"]["namespaces"]:
            if ns["type"] == "NEWPID":
                ns["path"] = "/proc/1/ns/pid"
    elif change == "hooks":
        state["config"]["hooks"] = {"poststop": [{"path": "/bin/true"}]}
    else:
        state["config"]["cgroups"]["Systemd"] = True
    state_file.write_text(json.dumps(state))
    try:
        assert harness.runtime.delete_stopped(paths.container_id) is False
        assert state_file.exists()
        assert all(Path(c).is_dir() for c in state["cgroup_paths"].values())
    finally:
        state_file.write_text(original)


def test_monitor_memory_stays_near_two_mebibytes(harness):
    _paths, started = harness.start(["sleep", "30"])
    status = Path(f"/proc/{started.conmon_pid}/status").read_text()
    rss_kib = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    assert rss_kib < 4096, f"conmon uses {rss_kib} KiB"


def test_exit_command_runs_after_the_container_exits_even_when_nobody_waits(harness, tmp_path):
    marker = tmp_path / "exit-command-ran"
    # Write then rename, so the test never reads a half-written marker.
    script = ("import os, sys, pathlib; "
              "pathlib.Path(sys.argv[1] + '.tmp').write_text(' '.join(sys.argv[2:])); "
              "os.replace(sys.argv[1] + '.tmp', sys.argv[1])")
    paths, _ = harness.start(["sh", "-c", "sleep 0.2"], exit_command=[
        sys.executable, "-c", script, str(marker), "container", "cleanup", "ID"])
    harness.wait_for(marker.exists, timeout=15, what="the exit command")
    assert marker.read_text() == "container cleanup ID"
    assert harness.monitor.exit_status(paths).exit_code == 0


def test_exit_command_must_be_an_absolute_path(harness):
    with pytest.raises(InvalidArgument):
        harness.start(["true"], exit_command=["ketch", "cleanup"])


def test_cleanup_removes_runtime_state_cgroups_and_monitor_files(harness):
    paths, _ = harness.start(["true"])
    harness.monitor.wait_exit(paths, timeout=10)
    harness.monitor.wait_monitor_exit(paths)
    harness.monitor.cleanup(paths)
    assert harness.runtime.state(paths.container_id) is None
    assert not any(os.path.exists(f"{paths.bundle}/{n}") for n in ("attach", "ctl", "winsz"))
    assert not os.path.exists(paths.exit_file) and not os.path.exists(paths.pidfile)
    assert os.path.exists(paths.log_path) and os.path.exists(paths.config)
    harness.monitor.cleanup(paths)  # twice is fine


def test_same_container_id_can_run_again_after_it_stopped(harness):
    spec = harness.spec(["sh", "-c", "echo run"])
    paths = harness.prepare(spec)
    for _ in range(2):
        harness.monitor.start_container(paths)
        assert harness.monitor.wait_exit(paths, timeout=10).exit_code == 0
        harness.monitor.wait_monitor_exit(paths)
    assert harness.output(paths)[0] == "run\nrun\n"


def test_a_killed_monitor_is_reported_instead_of_waiting_forever(harness):
    paths, started = harness.start(["sleep", "30"])
    os.kill(started.conmon_pid, signal.SIGKILL)
    harness.wait_for(lambda: not process_alive(started.conmon_pid), what="conmon to die")
    with pytest.raises(RuntimeFailure, match="died without recording an exit code"):
        harness.monitor.wait_exit(paths, timeout=10)


# --- signals, pause -------------------------------------------------------------------


def test_kill_then_wait_reports_128_plus_the_signal(harness):
    paths, _ = harness.start(["sleep", "30"])
    harness.runtime.kill(paths.container_id, "SIGKILL")
    assert harness.monitor.wait_exit(paths, timeout=10).exit_code == 137


def test_a_trapped_sigterm_lets_the_process_choose_its_exit_code(harness):
    paths, _ = harness.start(["sh", "-c", "trap 'exit 42' TERM; echo ready; "
                                          "while true; do sleep 0.05; done"])
    harness.wait_for(lambda: "ready" in harness.output(paths)[0], what="the trap")
    harness.runtime.kill(paths.container_id, signal.SIGTERM)
    assert harness.monitor.wait_exit(paths, timeout=10).exit_code == 42


def test_wait_exit_times_out_while_the_container_runs(harness):
    paths, _ = harness.start(["sleep", "30"])
    with pytest.raises(TimeoutError):
        harness.monitor.wait_exit(paths, timeout=0.2)


def test_pause_freezes_and_resume_thaws(harness):
    paths, started = harness.start(["sh", "-c", "while true; do date +%s%N; sleep 0.05; done"])
    cid = paths.container_id
    harness.runtime.pause(cid)
    assert harness.runtime.state(cid).status == "paused"
    assert started.pid in harness.runtime.ps(cid)  # (with the loop's sleep, if forked)
    # a line written just before the freeze may still be on its way through conmon to
    # the log (conmon is not frozen): count once it has landed
    time.sleep(0.2)
    lines_paused = len(harness.output(paths)[0].splitlines())
    time.sleep(0.3)
    assert len(harness.output(paths)[0].splitlines()) == lines_paused
    harness.runtime.resume(cid)
    assert harness.runtime.state(cid).status == "running"
    harness.wait_for(lambda: len(harness.output(paths)[0].splitlines()) > lines_paused,
                     what="output after resume")


def test_stats_sample_memory_cpu_and_pids(harness):
    paths, _ = harness.start(["sleep", "30"])
    stats = harness.runtime.stats(paths.container_id)
    assert stats["pids"]["current"] >= 1
    assert stats["memory"]["usage"]["usage"] > 0
    assert "usage" in stats["cpu"]


def test_runtime_errors_are_one_readable_line(harness):
    with pytest.raises(RuntimeFailure) as info:
        harness.runtime.pause("does-not-exist")
    assert "does not exist" in str(info.value) and "\n" not in str(info.value)
    assert "level=" not in str(info.value)


# --- attach, stdin, tty, detach, resize ----------------------------------------------


def start_attached(harness, args, *, terminal=False, stdin=True):
    spec = harness.spec(args, terminal=terminal)
    paths = harness.prepare(spec)
    sessions = []
    harness.monitor.start_container(
        paths, terminal=terminal, stdin=stdin,
        before_start=lambda _s: sessions.append(harness.monitor.attach(paths)))
    return paths, sessions[0]


def test_stdin_is_forwarded_through_attach_and_eof_closes_it(harness):
    paths, session = start_attached(harness, ["sh", "-c", "cat; echo after-eof >&2"])
    out, err = [], []
    with session:
        result = session.stream(stdout=out.append, stderr=err.append,
                                stdin=io.BytesIO(b"hello\nworld\n"))
    assert not result.detached
    assert b"".join(out) == b"hello\nworld\n"
    assert b"".join(err) == b"after-eof\n"
    assert harness.monitor.wait_exit(paths, timeout=10).exit_code == 0


def test_large_stdin_survives_the_attach_socket_packet_limit(harness):
    payload = os.urandom(300_000).hex().encode()  # 600 kB, many packets
    paths, session = start_attached(harness, ["sh", "-c", "cat | wc -c"])
    out = []
    with session:
        session.stream(stdout=out.append, stdin=io.BytesIO(payload))
    assert b"".join(out).strip() == str(len(payload)).encode()


def test_stdin_of_an_object_arrives_whole_while_signals_cut_its_pipe_writes_short(harness):
    """A stdin without a descriptor (a library caller's BytesIO) is pumped through a
    pipe by a thread; a signal handled while that thread's write blocks makes the write
    return short, and the rest must still go in (it was dropped, and the container
    counted less)."""
    # more than the attach loop buffers (1 MiB): the pump waits on a full pipe
    payload = os.urandom(4_000_000)
    paths, session = start_attached(harness, ["sh", "-c", "sleep 0.3; cat | wc -c"])
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    done = threading.Event()
    signalled = 0

    def interrupt_the_pump() -> None:
        nonlocal signalled
        while not done.is_set():
            for t in threading.enumerate():
                if t.name == "ketch-stdin-pump" and t.ident is not None:
                    try:
                        signal.pthread_kill(t.ident, signal.SIGUSR1)
                        signalled += 1
                    except ProcessLookupError:
                        pass
            time.sleep(0.001)

    interrupter = threading.Thread(target=interrupt_the_pump)
    interrupter.start()
    out: list[bytes] = []
    try:
        with session:
            # (no detach keys: as for every container without a terminal, random
            # bytes are copied as they are)
            session.stream(stdout=out.append, stdin=io.BytesIO(payload), detach_keys=None)
    finally:
        done.set()
        interrupter.join()
        signal.signal(signal.SIGUSR1, previous)
    assert signalled > 10  # the pump was interrupted while it wrote
    assert b"".join(out).strip() == str(len(payload)).encode()


def test_attach_without_stdin_leaves_the_containers_stdin_open(harness):
    paths, session = start_attached(harness, ["sh", "-c", "echo start; read x; echo got $x"])
    out: list[bytes] = []
    with session:
        reader = threading.Thread(target=lambda: session.stream(stdout=out.append))
        reader.start()
        harness.wait_for(lambda: b"start" in b"".join(out), what="first output")
        # A second client sends the line: the first one, attached without stdin, did not
        # close the container's stdin.
        with harness.monitor.attach(paths) as writer:
            writer.stream(stdin=io.BytesIO(b"hi\n"))
        reader.join(timeout=10)
    assert b"".join(out) == b"start\ngot hi\n"


def test_tty_mode_runs_an_interactive_shell_through_attach(harness):
    paths, session = start_attached(harness, ["sh"], terminal=True)
    r, w = os.pipe()
    os.write(w, b"echo hi-$((6*7)); exit 5\n")
    out = []
    try:
        with session:
            result = session.stream(stdout=out.append, stdin=r)
    finally:
        os.close(w)
        os.close(r)
    text = b"".join(out).decode()
    assert not result.detached
    assert "hi-42\r\n" in text  # a TTY turns \n into \r\n
    assert harness.monitor.wait_exit(paths, timeout=10).exit_code == 5


def test_detach_keys_leave_the_container_running_and_reattach_works(harness):
    paths, session = start_attached(harness, ["sh"], terminal=True)
    with session:
        result = session.stream(stdout=lambda _b: None, stdin=io.BytesIO(b"x=1\n\x10\x11"))
    assert result.detached
    time.sleep(0.2)
    assert harness.runtime.state(paths.container_id).status == "running"
    out = []
    with harness.monitor.attach(paths) as again:
        again.stream(stdout=out.append, stdin=io.BytesIO(b"echo x=$x; exit 7\n"))
    assert b"x=1" in b"".join(out)
    assert harness.monitor.wait_exit(paths, timeout=10).exit_code == 7


def test_resize_reaches_the_containers_tty(harness):
    spec = harness.spec(["sh", "-c", "sleep 0.5; stty size"], terminal=True)
    paths = harness.prepare(spec)
    harness.monitor.start_container(paths, terminal=True)
    harness.monitor.resize(paths, 33, 111)
    harness.monitor.wait_exit(paths, timeout=10)
    assert "33 111" in harness.output(paths)[0]


def test_attach_works_through_a_bundle_path_longer_than_a_socket_address(harness, tmp_path):
    spec = harness.spec(["cat"])
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    paths = harness.prepare(spec, bundle=deep / "bundle")
    assert len(str(paths.attach_socket)) > 108
    sessions = []
    harness.monitor.start_container(paths, stdin=True, before_start=lambda _s: sessions.append(
        harness.monitor.attach(paths)))
    out = []
    with sessions[0] as session:
        session.stream(stdout=out.append, stdin=io.BytesIO(b"deep\n"))
    assert b"".join(out) == b"deep\n"


# --- exec ----------------------------------------------------------------------------


@pytest.fixture
def running(harness):
    paths, _ = harness.start(["sleep", "60"], hostname="exec-box", env=["FROM_CTR=1"])
    return paths, json.loads(Path(paths.config).read_text())


def test_exec_streams_output_and_returns_the_exit_code(harness, running):
    paths, config = running
    out, err = [], []
    result = harness.monitor.exec_process(
        paths, exec_process(config, ["sh", "-c", "echo $FROM_CTR $X; hostname; echo e >&2; "
                                                 "exit 9"], env=["X=2"]),
        stdout=out.append, stderr=err.append)
    assert result.exit_code == 9 and not result.detached
    assert b"".join(out) == b"1 2\nexec-box\n" and b"".join(err) == b"e\n"


def test_exec_forwards_stdin(harness, running):
    paths, config = running
    out = []
    result = harness.monitor.exec_process(paths, exec_process(config, ["cat"]),
                                          stdout=out.append, stdin=io.BytesIO(b"piped\n"))
    assert result.exit_code == 0 and b"".join(out) == b"piped\n"


def test_exec_of_a_missing_command_fails_with_127(harness, running):
    paths, config = running
    with pytest.raises(ContainerStartError) as info:
        harness.monitor.exec_process(paths, exec_process(config, ["nope"]))
    assert info.value.exit_code == 127
    assert "executable file not found" in str(info.value)


def test_exec_with_a_tty_gets_a_terminal(harness, running):
    paths, config = running
    out = []
    result = harness.monitor.exec_process(
        paths, exec_process(config, ["sh", "-c", "tty; exit 3"], terminal=True),
        stdout=out.append)
    assert result.exit_code == 3
    assert re.search(rb"/dev/pts/\d+\r\n", b"".join(out))


def test_detached_exec_returns_at_once_and_keeps_running(harness, running):
    paths, config = running
    result = harness.monitor.exec_process(
        paths, exec_process(config, ["sh", "-c", "sleep 0.3; echo done > /tmp/exec-mark"]),
        detach=True)
    assert result.detached and result.exit_code is None and result.pid > 0
    out = []

    def marked() -> bool:
        out.clear()
        harness.monitor.exec_process(paths, exec_process(config, ["cat", "/tmp/exec-mark"]),
                                     stdout=out.append, stderr=lambda _b: None)
        return b"".join(out) == b"done\n"

    harness.wait_for(marked, what="the detached exec")


def test_exec_as_another_user(harness, running):
    paths, config = running
    out = []
    user = resolve_user(harness.rootfs, "nobody")
    harness.monitor.exec_process(paths, exec_process(config, ["id"], user=user),
                                 stdout=out.append)
    assert b"".join(out).startswith(b"uid=65534(nobody) gid=65534(nogroup)")


# --- users, capabilities, read-only, limits --------------------------------------------


def test_user_resolved_from_the_images_passwd_runs_the_process(harness):
    user = resolve_user(harness.rootfs, "www-data")
    _status, out, _ = harness.run(["sh", "-c", "id; echo HOME=$HOME"], user=user)
    assert out == "uid=33(www-data) gid=33(www-data) groups=33(www-data)\nHOME=/var/www\n"


def test_numeric_user_and_group_without_passwd_entries(harness):
    user = resolve_user(harness.rootfs, "4321:8765")
    _status, out, _ = harness.run(["sh", "-c", "id -u; id -g; echo $HOME"], user=user)
    assert out == "4321\n8765\n/\n"


def test_default_capabilities_are_dockers(harness):
    _status, out, _ = harness.run(["cat", "/proc/self/status"])
    assert cap_line(out, "CapEff") == DOCKER_DEFAULT_CAPEFF
    assert cap_line(out, "CapBnd") == DOCKER_DEFAULT_CAPEFF
    assert cap_line(out, "CapInh") == "0000000000000000"


def test_cap_drop_and_cap_add_change_the_effective_set(harness):
    _status, out, _ = harness.run(["cat", "/proc/self/status"], cap_drop=["CHOWN"],
                                  cap_add=["NET_ADMIN"])
    expected = (0xA80425FB & ~(1 << 0)) | (1 << 12)
    assert int(cap_line(out, "CapEff"), 16) == expected


def test_privileged_gets_every_capability_the_host_has(harness):
    _status, out, _ = harness.run(["cat", "/proc/self/status"], privileged=True)
    from ketch.runtime.spec import ALL_CAPABILITIES

    mask = sum(1 << ALL_CAPABILITIES.index(c) for c in host_capabilities())
    assert int(cap_line(out, "CapEff"), 16) == mask


def test_masked_paths_are_empty_and_read_only_paths_refuse_writes(harness):
    assert Path("/proc/keys").stat() and Path("/sys/firmware").is_dir()
    status, out, _ = harness.run(["sh", "-c", "wc -c < /proc/keys; ls /sys/firmware | wc -l; "
                                              "echo 1 > /proc/sys/kernel/domainname || echo ro"])
    assert out.split() == ["0", "0", "ro"]


def test_read_only_rootfs_refuses_writes_but_keeps_tmpfs_writable(harness):
    status, out, err = harness.run(["sh", "-c", "touch /file; echo rc=$?; "
                                                "touch /dev/shm/ok && echo shm-ok"],
                                   readonly_rootfs=True)
    assert "rc=1" in out and "shm-ok" in out
    assert "Read-only file system" in err


def test_memory_limit_is_visible_in_the_containers_cgroup(harness):
    status, out, _ = harness.run(["sh", "-c",
                                  "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
                                  "|| cat /sys/fs/cgroup/memory.max"],
                                 memory=64 * 1024 * 1024)
    assert out.strip() == str(64 * 1024 * 1024)


def test_pids_limit_is_enforced(harness):
    # The limit leaves room for `runc init` (a Go program whose threads count against the
    # pids cgroup before the container's process replaces it): a limit of 5 failed the
    # start itself under load, with runc's "cannot start a container that has stopped".
    status, out, err = harness.run(["sh", "-c",
                                    "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || "
                                    "cat /sys/fs/cgroup/pids.max; "
                                    "i=0; while [ $i -lt 40 ]; do sleep 2 & i=$((i+1)); done;"
                                    " wait"],
                                   pids_limit=24)
    assert out.splitlines()[0] == "24"
    # busybox ash's message when fork(2) fails with EAGAIN (the pids cgroup is full)
    assert "can't fork: Resource temporarily unavailable" in err, err


def test_nofile_rlimit_inside_never_exceeds_the_hosts_hard_limit(harness):
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    _status, out, _ = harness.run(["sh", "-c", "ulimit -Sn; ulimit -Hn"],
                                  ulimits={"nofile": (10**7, 10**7)})
    soft_in, hard_in = (int(x) for x in out.split())
    assert hard_in <= hard and soft_in <= hard_in
    assert hard_in == min(hard, 1048576)


def test_explicit_lower_ulimits_apply(harness):
    _status, out, _ = harness.run(["sh", "-c", "ulimit -Sn; ulimit -Hn"],
                                  ulimits={"nofile": (256, 512)})
    assert out.split() == ["256", "512"]


def test_cpu_quota_reaches_the_cgroup(harness):
    _status, out, _ = harness.run(["sh", "-c", "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
                                               "2>/dev/null || cat /sys/fs/cgroup/cpu.max"],
                                  cpus=0.5)
    assert out.split()[0] == "50000"


def test_hostname_and_environment_reach_the_process(harness):
    _status, out, _ = harness.run(["sh", "-c", "hostname; echo $HOSTNAME $GREETING"],
                                  hostname="box1", env=["GREETING=hey"])
    assert out == "box1\nbox1 hey\n"


# --- logs of live containers ---------------------------------------------------------


def test_logs_tail_and_since_on_a_real_log(harness):
    status, _, _ = harness.run(["sh", "-c", "seq 1 100; sleep 1.2; echo late"])
    paths = harness.created[0]
    assert status.exit_code == 0
    tail = b"".join(c.data for c in read_log(paths.log_path, tail=3))
    assert tail == b"99\n100\nlate\n"
    entries = list(iter_entries(paths.log_path))
    early, late = entries[-2].timestamp, entries[-1].timestamp
    since = (early + late) / 2 / 1e9
    assert b"".join(c.data for c in read_log(paths.log_path, since=since)) == b"late\n"
    stamped = b"".join(c.data for c in read_log(paths.log_path, tail=1, timestamps=True))
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z late\n", stamped)


def test_logs_follow_a_container_printing_every_200ms(harness):
    paths, _ = harness.start(["sh", "-c", "for i in 1 2 3 4 5; do echo tick $i; sleep 0.2; "
                                          "done"])
    arrivals = []
    for chunk in read_log(paths.log_path, follow=True,
                          is_done=lambda: harness.monitor.exit_status(paths) is not None):
        for line in chunk.data.decode().splitlines():
            arrivals.append((time.monotonic(), line))
    assert [line for _t, line in arrivals] == [f"tick {i}" for i in range(1, 6)]
    # Lines arrived while the container ran, not all at the end.
    assert arrivals[-1][0] - arrivals[0][0] > 0.5


def test_runtime_state_dir_tells_whether_state_exists(harness):
    paths, _ = harness.start(["true"])
    cid = paths.container_id
    assert harness.runtime.has_state(cid)
    assert not harness.runtime.has_state("no-such-container")
    harness.monitor.wait_exit(paths, timeout=10)
    harness.monitor.wait_monitor_exit(paths)
    harness.monitor.cleanup(paths)
    assert not harness.runtime.has_state(cid)
    assert harness.runtime.state(cid) is None


def test_cleanup_in_two_halves_removes_runtime_state_and_monitor_files(harness):
    paths, _ = harness.start(["true"])
    harness.monitor.wait_exit(paths, timeout=10)
    harness.monitor.wait_monitor_exit(paths)
    finish = harness.monitor.cleanup_begin(paths)
    finish()
    assert harness.runtime.state(paths.container_id) is None
    assert not os.path.exists(paths.exit_file) and not os.path.exists(paths.pidfile)
    # a container the runtime never knew: the delete finds nothing, quietly
    harness.runtime.delete_begin("never-created", force=True)()
