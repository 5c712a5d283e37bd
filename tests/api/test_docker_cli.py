"""The stock docker CLI (28) against `ketch system service`: the everyday workflow, on
the same state as the ketch CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from tests.api.conftest import Api
from tests.containers.conftest import wait_for
from tests.helpers.terminal import read_until


def test_docker_version_shows_the_ketch_server_engine(api: Api) -> None:
    out = api.docker("version").stdout
    server = out.split("Server:", 1)[1]
    assert "Engine:" in server
    assert "API version:      1.45 (minimum version 1.24)" in server
    assert "API version:       1.45 (downgraded from" in out.split("Server:", 1)[0]


def test_docker_info_reports_containers_and_images(api: Api) -> None:
    out = api.docker("info", "--format", "{{.Images}} {{.OSType}}").stdout
    assert out.strip() == "1 linux"


def test_docker_info_lists_the_drivers_ketch_has_and_runcs_commit(api: Api) -> None:
    """What the docker CLI printed empty: the plugin lists and runc's version (the
    commit line of `runc --version`, as dockerd reports it)."""
    runc = subprocess.run(["runc", "--version"], capture_output=True, text=True,
                          check=True).stdout
    commit = next(line.split(":", 1)[1].strip() for line in runc.splitlines()
                  if line.startswith("commit:"))
    out = api.docker("info").stdout
    assert ("\n Plugins:\n  Volume: local\n  Network: bridge host null\n"
            "  Log: journald json-file k8s-file local\n") in out
    assert f"\n runc version: {commit}\n" in out


def test_docker_run_rm_prints_the_output_and_leaves_no_container(api: Api) -> None:
    res = api.docker("run", "--rm", "busybox", "echo", "hi")
    assert res.stdout == "hi\n"
    assert api.docker("ps", "-aq").stdout == ""
    assert api.ketch("ps", "-aq").stdout == ""


def test_docker_run_rm_exits_with_the_containers_exit_code(api: Api) -> None:
    res = api.docker("run", "--rm", "busybox", "sh", "-c", "echo bye >&2; exit 3",
                     check=False)
    assert res.returncode == 3
    assert res.stderr == "bye\n"


def test_docker_run_attached_keeps_stdout_and_stderr_apart(api: Api) -> None:
    res = api.docker("run", "--name", "apart", "busybox", "sh", "-c",
                     "echo out; echo err >&2")
    assert res.stdout == "out\n"
    assert res.stderr == "err\n"
    state = json.loads(api.docker("inspect", "apart").stdout)[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 0
    assert api.docker("wait", "apart").stdout == "0\n"


def test_docker_create_naming_a_missing_container_does_not_pull(api: Api) -> None:
    # a 404 from create means "no such image" to the docker CLI, which then pulls; a
    # missing --volumes-from, --link or --ipc container is a 400, as dockerd answers
    for flags in (["--volumes-from", "nosuch"], ["--link", "nosuch:x"],
                  ["--ipc", "container:nosuch"]):
        res = api.docker("create", *flags, "busybox", check=False)
        assert (res.returncode, res.stderr) == (
            1, "Error response from daemon: No such container: nosuch\n"), flags
    assert api.docker("ps", "-aq").stdout == ""


def test_docker_run_with_bad_detach_keys_gets_the_attach_refused(api: Api) -> None:
    # as against dockerd: the attach is refused with a 400, the docker CLI exits 1
    res = api.docker("run", "--name", "dk", "--detach-keys", "bogus", "busybox", "true",
                     check=False)
    assert (res.returncode, res.stderr.strip()) == (1, "unable to upgrade to tcp, received 400")
    api.docker("rm", "-f", "dk")


def test_docker_run_interactive_forwards_stdin_until_eof(api: Api) -> None:
    res = api.docker("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z",
                     input="piped through\n")
    assert res.stdout == "PIPED THROUGH\n"


def test_docker_run_detached_is_seen_by_docker_ps_and_ketch_ps_at_once(api: Api) -> None:
    cid = api.docker("run", "-d", "--name", "web", "busybox", "sleep", "30").stdout.strip()
    assert len(cid) == 64
    ps = api.docker("ps", "--format", "{{.Names}} {{.Status}}").stdout
    assert ps.startswith("web Up")
    assert "web" in api.ketch("ps", "--format", "{{.Names}}").stdout.split()
    # and the other way round: a container made by the ketch CLI shows through the API
    api.ketch("run", "-d", "--name", "fromketch", "busybox", "sleep", "30")
    names = api.docker("ps", "--format", "{{.Names}}").stdout.split()
    assert sorted(names) == ["fromketch", "web"]
    assert api.docker("stop", "-t", "1", "web", "fromketch").stdout.split() == [
        "web", "fromketch"]
    assert api.docker("ps", "-q").stdout == ""
    assert len(api.docker("ps", "-aq").stdout.split()) == 2


def test_docker_ps_filters_by_name_status_label_and_id(api: Api) -> None:
    a = api.docker("run", "-d", "--name", "fa", "--label", "tier=web", "busybox",
                   "sleep", "30").stdout.strip()
    api.docker("create", "--name", "fb", "busybox", "true")

    def names(*flags: str) -> list[str]:
        return sorted(api.docker("ps", "-a", "--format", "{{.Names}}", *flags).stdout.split())

    assert names("--filter", "name=fa") == ["fa"]
    assert names("--filter", "status=created") == ["fb"]
    assert names("--filter", "label=tier=web") == ["fa"]
    assert names("--filter", f"id={a[:12]}") == ["fa"]
    assert names("--last", "1") == ["fb"]


def test_docker_logs_reads_both_streams_tail_and_timestamps(api: Api) -> None:
    api.docker("run", "--name", "talk", "busybox", "sh", "-c",
               "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three")
    res = api.docker("logs", "talk")
    assert res.stdout == "one\nthree\n"
    assert res.stderr == "two\n"
    assert api.docker("logs", "--tail", "1", "talk").stdout == "three\n"
    stamped = api.docker("logs", "-t", "talk").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "three"]
    assert all(line[:4].isdigit() and "T" in line.split(" ")[0] for line in stamped)


def test_docker_logs_of_a_tty_container_is_the_raw_stream(api: Api) -> None:
    api.docker("run", "-d", "-t", "--name", "tty", "busybox", "sh", "-c", "echo on-a-tty")
    wait_for(lambda: api.docker("ps", "-aq", "--filter", "status=exited").stdout.strip(),
             what="the container to exit")
    # no frame headers: the same bytes as the ketch CLI reads from the log
    out = api.docker("logs", "tty").stdout
    assert out.rstrip("\r\n") == "on-a-tty"
    assert out == api.ketch("logs", "tty").stdout


def test_docker_logs_follow_ends_when_the_container_exits(api: Api) -> None:
    api.docker("run", "-d", "--name", "fol", "busybox", "sh", "-c",
               "for i in 1 2 3; do echo line$i; sleep 0.3; done")
    res = api.docker("logs", "-f", "fol", timeout=30)
    assert res.stdout == "line1\nline2\nline3\n"


def test_docker_stop_of_a_stopped_container_succeeds(api: Api) -> None:
    api.docker("create", "--name", "idle", "busybox", "true")
    assert api.docker("stop", "idle").stdout == "idle\n"
    api.docker("start", "idle")
    wait_for(lambda: api.docker("inspect", "-f", "{{.State.Status}}", "idle").stdout.strip()
             == "exited", what="the container to exit")


def test_docker_restart_and_kill(api: Api) -> None:
    api.docker("run", "-d", "--name", "rk", "busybox", "sleep", "30")
    first = api.docker("inspect", "-f", "{{.State.Pid}}", "rk").stdout.strip()
    api.docker("restart", "-t", "1", "rk")
    second = api.docker("inspect", "-f", "{{.State.Pid}}", "rk").stdout.strip()
    assert second != first and second != "0"
    api.docker("kill", "rk")
    wait_for(lambda: api.docker("inspect", "-f", "{{.State.ExitCode}}", "rk").stdout.strip()
             == "137", what="the kill to be recorded")
    res = api.docker("kill", "rk", check=False)
    assert res.returncode == 1
    assert "is not running" in res.stderr


def test_docker_rm_refuses_a_running_container_without_force(api: Api) -> None:
    api.docker("run", "-d", "--name", "busy", "busybox", "sleep", "30")
    res = api.docker("rm", "busy", check=False)
    assert res.returncode == 1
    assert "cannot remove container" in res.stderr and "force" in res.stderr
    assert api.docker("rm", "-f", "busy").stdout == "busy\n"
    assert api.ketch("ps", "-aq").stdout == ""


def test_docker_unknown_container_says_no_such_container(api: Api) -> None:
    res = api.docker("logs", "nothere", check=False)
    assert res.returncode == 1
    assert "No such container: nothere" in res.stderr


def test_docker_images_tag_and_rmi_refused_while_used(api: Api) -> None:
    rows = api.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert rows == ["busybox:latest"]
    api.docker("tag", "busybox", "mybox:1")
    rows = api.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert sorted(rows) == ["busybox:latest", "mybox:1"]
    assert api.docker("image", "inspect", "-f", "{{.Id}}", "mybox:1").stdout.strip() == \
        api.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    assert api.docker("rmi", "mybox:1").stdout == "Untagged: mybox:1\n"
    api.docker("create", "--name", "user", "busybox", "true")
    image_id = api.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    res = api.docker("rmi", image_id, check=False)
    assert res.returncode == 1
    assert "conflict" in res.stderr and "is being used by stopped container" in res.stderr
    assert api.docker("images", "-q").stdout.strip() == image_id[7:19]


def test_docker_run_of_a_missing_image_asks_to_pull(api: Api) -> None:
    # 404 "No such image" makes the CLI pull; with --pull=never it reports it instead
    res = api.docker("run", "--rm", "--pull=never", "nosuchimage:1", "true", check=False)
    assert res.returncode == 125
    assert "No such image: nosuchimage:1" in res.stderr


def test_docker_run_it_through_a_pseudo_terminal(api: Api) -> None:
    import os
    import pty
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: the docker CLI on a terminal
        os.execvpe("docker", ["docker", "run", "--rm", "-it", "busybox", "sh"],
                   api.docker_env())
    seen = bytearray()

    try:
        read_until(fd, seen, b"# ")
        os.write(fd, b"echo TTY-$((6*7))\r")
        read_until(fd, seen, b"TTY-42\r\n")
        assert b"TTY-42\r\n" in seen  # the shell's output, through the raw TTY stream
        os.write(fd, b"exit 7\r")
        read_until(fd, seen, b"\0", timeout=10)  # until the CLI closes the terminal
    finally:
        deadline = time.monotonic() + 20
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        if done[0] == 0:
            os.kill(pid, 9)
            done = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(done[1]) == 7


def test_docker_start_attach_prints_the_output_of_a_created_container(api: Api) -> None:
    api.docker("create", "--name", "later", "busybox", "sh", "-c", "echo started; exit 6")
    res = api.docker("start", "-a", "later", check=False)
    assert res.stdout == "started\n"
    assert res.returncode == 6


def test_docker_attach_to_a_running_container_gets_its_later_output(api: Api) -> None:
    api.docker("run", "-d", "--name", "talker", "busybox", "sh", "-c",
               "sleep 2; echo from-attach; exit 4")
    res = api.docker("attach", "--no-stdin", "talker", check=False)
    assert res.stdout == "from-attach\n"
    assert res.returncode == 4


def _service_counts(api: Api) -> tuple[int, int]:
    """The service's threads and open descriptors."""
    import os

    return (len(os.listdir(f"/proc/{api.proc.pid}/task")),
            len(os.listdir(f"/proc/{api.proc.pid}/fd")))


def _killed_clients_hold_nothing(api: Api, kill_one: Callable[[], None], what: str) -> None:
    """`kill_one()` six times (after two that let the service's worker pool grow to
    what such sessions need): the service holds no more threads and descriptors than
    before them. Each lingering session held a thread and ~5 descriptors; the pool may
    still add a worker (and its database connection) on the way."""
    for _ in range(2):
        kill_one()
    threads, descriptors = _service_counts(api)
    for _ in range(6):
        kill_one()
    wait_for(lambda: (_service_counts(api)[0] <= threads + 1
                      and _service_counts(api)[1] <= descriptors + 3),
             timeout=10, what=f"no more than {threads} + 1 threads and {descriptors} + 3"
             f" descriptors after six more killed {what} (now {_service_counts(api)})")


def test_a_killed_attach_to_a_silent_container_lets_go_of_its_thread_and_connections(
        api: Api) -> None:
    """A client killed while attached to a container that prints nothing: the service
    finds the connection closed and ends the session (before, its worker thread, its
    database connection and both sockets stayed until the container's next output, so
    such attaches piled up: 10 of them, +48 descriptors and +9 threads)."""
    import subprocess

    api.docker("run", "-d", "--name", "silent", "busybox", "sleep", "300")

    def counts() -> tuple[int, int]:
        return _service_counts(api)

    def attach_and_kill() -> None:
        seen = [counts()[1]]

        def attached() -> bool:
            # the service holds the client's connection and conmon's socket: two more
            # descriptors than the fewest seen since the client started (the last
            # session's own may still be closing: above the count read before it)
            seen.append(counts()[1])
            return seen[-1] >= min(seen) + 2

        client = subprocess.Popen(["docker", "attach", "silent"], env=api.docker_env(),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_for(attached, what="the attach to reach the service")
        attached = counts()[1]
        client.kill()
        client.wait()
        wait_for(lambda: counts()[1] <= attached - 2, timeout=10,
                 what="the killed client's session to end")

    _killed_clients_hold_nothing(api, attach_and_kill, "attaches")
    assert api.docker("inspect", "-f", "{{.State.Running}}", "silent").stdout == "true\n"
    api.docker("rm", "-f", "silent")


def test_a_killed_exec_of_a_silent_command_lets_go_of_its_worker_and_the_command_runs_on(
        api: Api) -> None:
    """`docker exec` killed while its command prints nothing: the service ends the
    session's streaming at once and the command runs on, as under dockerd. Before, each
    held a worker thread (of 64), its database connection and its sockets until the
    command's next output or its end: 12 such execs, +132 descriptors and +14 threads,
    and 64 of them left the service answering nothing."""
    import subprocess

    from tests.helpers.host import live_pids

    api.docker("run", "-d", "--name", "silent-exec", "busybox", "sleep", "300")

    def counts() -> tuple[int, int]:
        return _service_counts(api)

    def sleepers() -> int:  # the execs' commands, seen from the host
        return len(live_pids(lambda cmdline: cmdline == b"sleep\x00301\x00"))

    def exec_and_kill() -> None:
        before, running = counts()[1], sleepers()
        client = subprocess.Popen(["docker", "exec", "silent-exec", "sleep", "301"],
                                  env=api.docker_env(), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: sleepers() > running, what="the exec's command to run")
        client.kill()
        client.wait()
        # the session's sockets and pipes go (a worker the pool adds meanwhile may keep
        # a database connection)
        wait_for(lambda: counts()[1] <= before + 3, timeout=10,
                 what=f"the killed client's session to end ({before} + 3 descriptors,"
                 f" now {counts()[1]})")

    _killed_clients_hold_nothing(api, exec_and_kill, "execs")
    top = api.docker("top", "silent-exec").stdout
    assert top.count("sleep 301") == 8, top
    assert api.docker("exec", "silent-exec", "echo", "still-served").stdout == "still-served\n"
    api.docker("rm", "-f", "silent-exec")


def test_a_client_leaving_logs_follow_does_not_disturb_the_service(api: Api) -> None:
    import subprocess
    import time

    api.docker("run", "-d", "--name", "chatty", "busybox", "sh", "-c",
               "while true; do echo tick; sleep 0.1; done")
    follower = subprocess.Popen(["docker", "logs", "-f", "chatty"], env=api.docker_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL)
    assert follower.stdout is not None
    assert follower.stdout.readline() == b"tick\n"
    follower.kill()
    follower.wait()
    follower.stdout.close()
    time.sleep(0.5)  # the service writes on into the closed connection meanwhile
    assert api.docker("ps", "--format", "{{.Names}}").stdout == "chatty\n"
    api.docker("rm", "-f", "chatty")


def test_docker_pause_unpause_rename_and_top(api: Api) -> None:
    api.docker("run", "-d", "--name", "p1", "busybox", "sleep", "30")
    api.docker("pause", "p1")
    assert api.docker("inspect", "-f", "{{.State.Status}}", "p1").stdout == "paused\n"
    res = api.docker("start", "p1", check=False)
    assert res.returncode == 1 and "paused" in res.stderr
    api.docker("unpause", "p1")
    assert api.docker("inspect", "-f", "{{.State.Status}}", "p1").stdout == "running\n"
    api.docker("rename", "p1", "p2")
    assert api.docker("ps", "--format", "{{.Names}}").stdout == "p2\n"
    top = api.docker("top", "p2").stdout.splitlines()
    assert top[0].split()[0] == "UID" and "CMD" in top[0]
    assert top[1].endswith("sleep 30")


def test_docker_container_prune_removes_only_stopped_ones(api: Api) -> None:
    api.docker("run", "-d", "--name", "keep", "busybox", "sleep", "30")
    gone = api.docker("create", "--name", "gone", "busybox", "true").stdout.strip()
    out = api.docker("container", "prune", "-f").stdout
    assert out.startswith(f"Deleted Containers:\n{gone}\n")
    assert api.docker("ps", "-a", "--format", "{{.Names}}").stdout == "keep\n"


def test_docker_history_lists_the_image_layers(api: Api) -> None:
    fmt = "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}"
    rows = api.docker("history", "--format", fmt, "busybox").stdout
    image_id = api.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    assert rows.startswith(image_id[7:19] + "|")
    assert rows == api.ketch("history", "--format", fmt, "busybox").stdout


def test_docker_run_publish_serves_the_containers_page_on_loopback(api: Api) -> None:
    import socket
    import urllib.request

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    api.docker("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "busybox", "sh",
               "-c", "mkdir /w && echo page > /w/index.html && exec httpd -f -p 80 -h /w")
    assert api.docker("ps", "--format", "{{.Ports}}").stdout == f"127.0.0.1:{port}->80/tcp\n"

    def fetch() -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                return r.read()  # type: ignore[no-any-return]
        except OSError:
            return None

    assert wait_for(fetch, what="the published page") == b"page\n"


def test_docker_run_of_a_missing_command_exits_127_and_leaves_nothing(api: Api) -> None:
    res = api.docker("run", "--rm", "busybox", "nope", check=False)
    assert res.returncode == 127
    assert 'exec: "nope": executable file not found in $PATH' in res.stderr
    # said once, by the start's own answer, as with dockerd (the attach stream had it too)
    assert res.stderr.count("executable file not found") == 1, res.stderr
    res = api.docker("run", "--rm", "busybox", "/etc", check=False)
    assert res.returncode == 126
    assert api.docker("ps", "-aq").stdout == ""
