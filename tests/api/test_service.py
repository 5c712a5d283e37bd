"""`ketch system service` as a process: where it listens, when it exits, and that the
containers it started do not depend on it."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.api.conftest import UnixHTTPConnection, ping, start_service, stop_service
from tests.conftest import ketch_command
from tests.containers.conftest import TrackingCLI, wait_for


def _exited(proc: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        stop_service(proc)


def test_service_exits_after_the_idle_time(api_root: Path) -> None:
    sock = api_root / "idle.sock"
    proc = start_service(api_root, f"unix://{sock}", "--time", "1")
    wait_for(lambda: ping(str(sock)), what="the service to answer")
    started = time.monotonic()
    assert _exited(proc, 15) == 0
    assert time.monotonic() - started < 10
    assert not sock.exists()


def test_service_listens_on_a_socket_of_mode_0660_and_sigterm_ends_it(api_root: Path
                                                                       ) -> None:
    sock = api_root / "mode.sock"
    proc = start_service(api_root, f"unix://{sock}", "--time", "0")
    try:
        wait_for(lambda: ping(str(sock)), what="the service to answer")
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
        time.sleep(1.5)  # --time 0: idle is not a reason to leave
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not sock.exists()
    finally:
        stop_service(proc)


def test_default_socket_is_ketch_sock_under_the_run_root(api_root: Path) -> None:
    proc = subprocess.Popen(
        [*ketch_command(), "--root", str(api_root), "--run-root",
         str(api_root / "run"), "system", "service", "--time", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = api_root / "run" / "ketch.sock"
    try:
        wait_for(lambda: ping(str(sock)), what="the service to answer on the default socket")
    finally:
        stop_service(proc)
    assert not sock.exists()


# A client that waits for the socket's path and connects the moment it appears.
_CONNECT_ON_SIGHT = r"""
import socket, sys
print("ready", flush=True)
while True:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sys.argv[1])
    except FileNotFoundError:
        s.close()
        continue
    except ConnectionRefusedError:
        print("refused")
        break
    print("accepted")
    break
"""


def test_the_socket_path_appears_only_once_the_service_accepts(tmp_path: Path) -> None:
    """The path is the service's promise to a client (and to scripts that wait for it):
    a bind at the path itself showed the file before listen(), and a client that connected
    on sight was refused (12 of 30 starts here)."""
    from ketch.api.server import listen

    seen = []
    for i in range(20):
        path = tmp_path / f"s{i}.sock"
        client = subprocess.Popen([sys.executable, "-I", "-S", "-c", _CONNECT_ON_SIGHT,
                                   str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert client.stdout is not None
            assert client.stdout.readline() == "ready\n"
            sock, _ = listen(f"unix://{path}")
            seen.append(client.stdout.readline().strip())
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
            sock.close()
        finally:
            client.kill()
            client.wait()
    assert seen == ["accepted"] * 20
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"s{i}.sock" for i in range(20))


def test_a_stopping_service_leaves_a_socket_that_took_its_path_over(api_root: Path) -> None:
    """A service started while another was stopping (it stops listening first, then
    exits) takes the path over; the old one's exit removed the new one's socket, which
    ran on unreachable. Here the path is taken over by hand."""
    sock = api_root / "over.sock"
    proc = start_service(api_root, f"unix://{sock}", "--time", "0")
    try:
        wait_for(lambda: ping(str(sock)), what="the service to answer")
        sock.unlink()
        newer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        newer.bind(str(sock))
        newer.listen(1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(sock))  # still the newer socket's
        probe.close()
        newer.close()
    finally:
        stop_service(proc)


def test_a_second_service_on_the_same_socket_is_refused(api_root: Path) -> None:
    sock = api_root / "twice.sock"
    first = start_service(api_root, f"unix://{sock}", "--time", "0")
    try:
        wait_for(lambda: ping(str(sock)), what="the service to answer")
        second = subprocess.run(
            [*ketch_command(), "--root", str(api_root), "system", "service",
             f"unix://{sock}"], capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert second.stderr == (f"Error: cannot listen on {sock}: another service is"
                                 " using it\n")
        assert ping(str(sock))
    finally:
        stop_service(first)


def test_tcp_on_loopback_serves_and_other_addresses_are_refused(api_root: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = start_service(api_root, f"tcp://127.0.0.1:{port}", "--time", "0")
    try:
        def answers() -> bool:
            import http.client

            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/v1.45/version")
                return json.loads(conn.getresponse().read())["ApiVersion"] == "1.45"
            except OSError:
                return False

        wait_for(answers, what="the service to answer on TCP")
    finally:
        stop_service(proc)
    res = subprocess.run([*ketch_command(), "--root", str(api_root), "system",
                          "service", "tcp://0.0.0.0:2375"], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 1
    assert res.stderr.startswith("Error: refusing to serve on 0.0.0.0:")


@pytest.mark.parametrize(("uri", "error"), [
    ("unix:///proc/ketch-api.sock", "cannot listen on /proc/ketch-api.sock: No such file or"
                                    " directory"),
    ("unix:///proc/ketch-nope/api.sock", "cannot listen on /proc/ketch-nope/api.sock: No"
                                         " such file or directory"),
    ("tcp://127.0.0.1:99999", "cannot listen on 127.0.0.1:99999: the port must be 0-65535"),
])
def test_an_address_that_cannot_be_listened_on_is_one_line(api_root: Path, uri: str,
                                                           error: str) -> None:
    res = subprocess.run([*ketch_command(), "--root", str(api_root), "system", "service",
                          uri], capture_output=True, text=True, timeout=30)
    assert (res.returncode, res.stderr) == (1, f"Error: {error}\n")


def _service_with_socket_on_fd3(api_root: Path, path: Path, *, listen_pid: str,
                                extra: str = "") -> subprocess.Popen[bytes]:
    """`ketch system service` started with a listening unix socket at `path` on fd 3 and
    LISTEN_FDS=1, LISTEN_PID=`listen_pid` (a shell word: `$$` is the service itself)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    fd = listener.fileno()
    script = (f'export LISTEN_PID={listen_pid} LISTEN_FDS=1; exec "$0" --root "$1"'
              f' {extra} system service --time 0')
    proc = subprocess.Popen(["/bin/sh", "-c", script, *ketch_command(), str(api_root)],
                            pass_fds=(3,), preexec_fn=lambda: os.dup2(fd, 3),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    listener.close()
    return proc


def test_socket_activation_serves_the_inherited_socket(api_root: Path) -> None:
    path = api_root / "activated.sock"
    # as systemd does: the socket is fd 3, LISTEN_PID names the service's own pid
    proc = _service_with_socket_on_fd3(api_root, path, listen_pid="$$")
    try:
        wait_for(lambda: ping(str(path)), what="the activated service to answer")
        assert not (api_root / "run" / "ketch.sock").exists()
    finally:
        stop_service(proc)


def test_containers_started_through_the_service_outlive_it(api_root: Path) -> None:
    sock = api_root / "outlive.sock"
    proc = start_service(api_root, f"unix://{sock}", "--time", "0")
    cli = TrackingCLI(api_root)
    try:
        wait_for(lambda: ping(str(sock)), what="the service to answer")
        env = dict(os.environ, DOCKER_HOST=f"unix://{sock}",
                   DOCKER_CONFIG=str(api_root / "docker-config"))
        run = subprocess.run(["docker", "run", "-d", "--name", "survivor", "busybox",
                              "sleep", "30"], capture_output=True, text=True, env=env,
                             timeout=60, stdin=subprocess.DEVNULL)
        assert run.returncode == 0, run.stderr
        # a client following the logs does not keep the service from stopping
        follower = subprocess.Popen(["docker", "logs", "-f", "survivor"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        follower.wait(timeout=20)
        follower.stdout.close()  # type: ignore[union-attr]
        follower.stderr.close()  # type: ignore[union-attr]
        assert cli("ps", "--format", "{{.Names}} {{.State}}").stdout == "survivor running\n"
    finally:
        stop_service(proc)
        cli.remove_everything()


def test_raw_attach_without_upgrade_to_a_created_container_streams_once_it_starts(
        api_root: Path) -> None:
    # dockerd hijacks a plain attach too: a 200, then the raw stream until the end
    sock = api_root / "noupgrade.sock"
    proc = start_service(api_root, f"unix://{sock}", "--time", "0")
    cli = TrackingCLI(api_root)
    try:
        wait_for(lambda: ping(str(sock)), what="the service to answer")
        cli("create", "--name", "plain", "-t", "busybox", "echo", "from-plain")
        conn = UnixHTTPConnection(str(sock))
        conn.request("POST", "/containers/plain/attach?stream=1&stdout=1")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "application/vnd.docker.raw-stream"
        start = UnixHTTPConnection(str(sock))
        start.request("POST", "/containers/plain/start")
        assert start.getresponse().status == 204
        start.close()
        assert resp.read() == b"from-plain\r\n"  # a TTY's output, until the close
        conn.close()
    finally:
        stop_service(proc)
        cli.remove_everything()


def test_sigterm_ends_an_attached_run_but_not_its_container(api_root: Path) -> None:
    sock = api_root / "attached.sock"
    proc = start_service(api_root, f"unix://{sock}", "--time", "0")
    cli = TrackingCLI(api_root)
    try:
        wait_for(lambda: ping(str(sock)), what="the service to answer")
        env = dict(os.environ, DOCKER_HOST=f"unix://{sock}",
                   DOCKER_CONFIG=str(api_root / "docker-config"))
        client = subprocess.Popen(["docker", "run", "--name", "held", "busybox", "sh", "-c",
                                   "echo up; sleep 30"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        assert client.stdout is not None
        assert client.stdout.readline() == b"up\n"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        client.wait(timeout=20)
        client.stdout.close()
        assert time.monotonic() - started < 15  # the stream was ended, not waited for
        assert cli("ps", "--format", "{{.Names}} {{.State}}").stdout == "held running\n"
    finally:
        stop_service(proc)
        cli.remove_everything()


def test_idle_time_waits_for_a_logs_follower_and_runs_again_once_it_leaves(
        api_root: Path) -> None:
    sock = api_root / "follow.sock"
    cli = TrackingCLI(api_root)
    cli("run", "-d", "--name", "quiet", "busybox", "sh", "-c", "echo hello; sleep 60")
    proc = start_service(api_root, f"unix://{sock}", "--time", "1")
    try:
        wait_for(lambda: ping(str(sock)), what="the service to answer")
        env = dict(os.environ, DOCKER_HOST=f"unix://{sock}",
                   DOCKER_CONFIG=str(api_root / "docker-config"))
        follower = subprocess.Popen(["docker", "logs", "-f", "quiet"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL)
        assert follower.stdout is not None
        assert follower.stdout.readline() == b"hello\n"
        time.sleep(3)  # three idle times: the open stream is not idleness
        assert proc.poll() is None
        # the client leaves (Ctrl-C) while the container stays silent
        follower.kill()
        follower.wait(timeout=10)
        follower.stdout.close()
        left = time.monotonic()
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - left < 10
        assert not sock.exists()
        assert cli("ps", "--format", "{{.Names}} {{.State}}").stdout == "quiet running\n"
    finally:
        stop_service(proc)
        cli.remove_everything()


def test_sigterm_lets_a_request_in_progress_finish(api_root: Path) -> None:
    sock = api_root / "drain.sock"
    cli = TrackingCLI(api_root)
    # ignores SIGTERM: `stop -t 2` takes its two seconds, then kills it
    cli("run", "-d", "--name", "stubborn", "busybox", "sh", "-c",
        "trap '' TERM; while true; do sleep 1; done")
    proc = start_service(api_root, f"unix://{sock}", "--time", "0")
    try:
        wait_for(lambda: ping(str(sock)), what="the service to answer")
        env = dict(os.environ, DOCKER_HOST=f"unix://{sock}",
                   DOCKER_CONFIG=str(api_root / "docker-config"))
        stop = subprocess.Popen(["docker", "stop", "-t", "2", "stubborn"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        time.sleep(0.7)
        proc.send_signal(signal.SIGTERM)
        out, err = stop.communicate(timeout=30)
        assert (stop.returncode, out, err) == (0, b"stubborn\n", b"")
        assert proc.wait(timeout=20) == 0
        assert cli("inspect", "--format", "{{.State.Status}}", "stubborn"
                   ).stdout == "exited\n"
    finally:
        stop_service(proc)
        cli.remove_everything()


def test_socket_activation_ignores_sockets_passed_to_another_pid(api_root: Path) -> None:
    path = api_root / "other.sock"
    # LISTEN_PID names some other process: the fds are not ours (sd_listen_fds(3))
    proc = _service_with_socket_on_fd3(api_root, path, listen_pid="1",
                                       extra='--run-root "$1/run"')
    try:
        default = api_root / "run" / "ketch.sock"
        wait_for(lambda: ping(str(default)), what="the service on its default socket")
        assert not ping(str(path))
    finally:
        stop_service(proc)


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no thread count for {pid}")


def test_idle_service_lets_go_of_the_workers_a_burst_of_requests_started(
        api_root: Path) -> None:
    sock = api_root / "burst.sock"
    cli = TrackingCLI(api_root)
    names = [f"burst{i}" for i in range(12)]
    for name in names:  # `sleep` as PID 1 ignores SIGTERM: a stop takes its whole timeout
        cli("run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "60")
    proc = start_service(api_root, f"unix://{sock}", "--time", "0")
    try:
        wait_for(lambda: ping(str(sock)), what="the service to answer")
        env = dict(os.environ, DOCKER_HOST=f"unix://{sock}",
                   DOCKER_CONFIG=str(api_root / "docker-config"))
        # the docker CLI sends the 12 stops at once and each holds its worker thread for
        # the 1 s timeout, so they all run together (removals of created containers are
        # so quick that on a busy machine a few workers served all of them in turn)
        stop = subprocess.run(["docker", "stop", "-t", "1", *names], env=env,
                              capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert stop.returncode == 0, stop.stderr
        assert _threads(proc.pid) > 12
        rm = subprocess.run(["docker", "rm", *names], env=env, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert rm.returncode == 0, rm.stderr
        wait_for(lambda: _threads(proc.pid) <= 3, timeout=15,
                 what="the idle workers to leave")
        assert ping(str(sock))  # and it serves on, with a new worker
        assert cli("ps", "-aq").stdout == ""
    finally:
        stop_service(proc)
        cli.remove_everything()
