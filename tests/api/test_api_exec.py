"""Exec through the Engine API: the docker CLI 28, docker-py 7 and raw HTTP."""

from __future__ import annotations

import json
import os
import struct
import time

import pytest
from tests.api.conftest import Api
from tests.containers.conftest import wait_for
from tests.helpers.terminal import read_until


def _running(api: Api, name: str) -> str:
    api.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    return name


def test_docker_exec_keeps_stdout_stderr_apart_and_returns_the_exit_code(api: Api) -> None:
    _running(api, "ex1")
    res = api.docker("exec", "-e", "GREETING=hi", "-w", "/etc", "ex1", "sh", "-c",
                     'echo "$GREETING $(pwd)"; echo oops >&2; exit 5', check=False)
    assert res.stdout == "hi /etc\n"
    assert res.stderr == "oops\n"
    assert res.returncode == 5


def test_docker_exec_of_a_missing_command_or_a_non_executable_exits_126(api: Api) -> None:
    # as against dockerd: the exec's recorded exit code is 126 for any start failure
    _running(api, "ex2")
    res = api.docker("exec", "ex2", "no-such-command", check=False)
    assert res.returncode == 126
    assert "no-such-command" in res.stdout + res.stderr
    res = api.docker("exec", "ex2", "/etc/passwd", check=False)
    assert res.returncode == 126


def test_docker_exec_interactive_forwards_stdin_until_eof(api: Api) -> None:
    _running(api, "ex3")
    res = api.docker("exec", "-i", "ex3", "sh", "-c", "tr a-z A-Z; echo done",
                     input="hello exec\n")
    assert res.stdout == "HELLO EXEC\ndone\n"


def test_docker_exec_detached_runs_on_and_prints_nothing(api: Api) -> None:
    _running(api, "ex4")
    res = api.docker("exec", "-d", "ex4", "sh", "-c", "sleep 0.3; echo later > /tmp/mark")
    assert res.stdout == "" and res.stderr == ""
    wait_for(lambda: api.docker("exec", "ex4", "cat", "/tmp/mark", check=False).stdout
             == "later\n", timeout=15, what="the detached exec to write its file")


def test_docker_exec_refuses_a_stopped_container(api: Api) -> None:
    api.docker("create", "--name", "ex5", "busybox", "true")
    res = api.docker("exec", "ex5", "true", check=False)
    assert res.returncode != 0
    assert "is not running" in res.stderr


def test_docker_exec_it_through_a_pseudo_terminal_gets_its_size(api: Api) -> None:
    import fcntl
    import pty
    import termios

    _running(api, "ex6")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the docker CLI on a 33x101 terminal
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        os.execvpe("docker", ["docker", "exec", "-it", "ex6", "sh"], api.docker_env())
    seen = bytearray()

    try:
        read_until(fd, seen, b"# ")
        os.write(fd, b"stty size; echo TTY-$((6*7))\r")
        read_until(fd, seen, b"TTY-42\r\n")
        assert b"33 101\r\n" in seen
        assert b"TTY-42\r\n" in seen
        # the terminal changes size: the CLI resizes the exec's TTY (POST /exec/ID/resize)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        deadline = time.monotonic() + 15
        while b"40 120\r\n" not in seen and time.monotonic() < deadline:
            time.sleep(0.3)
            os.write(fd, b"stty size\r")
            read_until(fd, seen, b"40 120\r\n", timeout=1)
        assert b"40 120\r\n" in seen
        os.write(fd, b"exit 3\r")
        read_until(fd, seen, b"\0", timeout=10)
    finally:
        deadline = time.monotonic() + 20
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        if done[0] == 0:
            os.kill(pid, 9)
            done = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(done[1]) == 3


def test_docker_py_exec_run_plain_streamed_and_demuxed(api: Api) -> None:
    client = api.client()
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name="ex7")
    res = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 2"])
    assert res.exit_code == 2
    assert sorted(res.output.splitlines()) == [b"err", b"out"]
    res = c.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
    assert res.output == (b"out\n", b"err\n")
    res = c.exec_run(["sh", "-c", "for i in 1 2 3; do echo $i; done"], stream=True)
    assert b"".join(res.output) == b"1\n2\n3\n"
    res = c.exec_run(["sh", "-c", "echo tty"], tty=True)
    assert res.output == b"tty\r\n" and res.exit_code == 0


def test_docker_py_exec_inspect_reports_the_session(api: Api) -> None:
    client = api.client()
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name="ex8")
    eid = client.api.exec_create(c.id, ["sh", "-c", "exit 9"])["Id"]
    before = client.api.exec_inspect(eid)
    assert before["Running"] is False and before["ExitCode"] is None
    assert before["ProcessConfig"]["entrypoint"] == "sh"
    assert before["ContainerID"] == c.id
    assert client.api.exec_start(eid, detach=True) == ""  # no stray newline
    wait_for(lambda: client.api.exec_inspect(eid)["ExitCode"] == 9, timeout=15,
             what="the detached exec's exit code")
    after = client.api.exec_inspect(eid)
    assert after["Running"] is False and after["Pid"] > 0
    with pytest.raises(Exception) as exc:
        client.api.exec_start(eid, detach=True)
    assert exc.value.response.status_code == 409  # type: ignore[attr-defined]


def test_exec_start_without_upgrade_streams_the_output_in_the_body(api: Api) -> None:
    _running(api, "ex9")
    conn = api.http()
    conn.request("POST", "/v1.45/containers/ex9/exec",
                 json.dumps({"Cmd": ["sh", "-c", "echo a; echo b >&2"], "AttachStdout": True,
                             "AttachStderr": True}),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 201
    eid = json.loads(r.read())["Id"]
    conn.request("POST", f"/v1.45/exec/{eid}/start", json.dumps({"Detach": False}),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200
    assert r.getheader("Content-Type") == "application/vnd.docker.multiplexed-stream"
    body = r.read()
    frames = []
    while body:
        kind, size = struct.unpack(">BxxxL", body[:8])
        frames.append((kind, body[8:8 + size]))
        body = body[8 + size:]
    assert sorted(frames) == [(1, b"a\n"), (2, b"b\n")]
    conn.close()


def test_exec_bad_input_unknown_id_404_malformed_json_400(api: Api) -> None:
    _running(api, "ex10")
    conn = api.http()
    for method, path in (("GET", "/exec/" + "0" * 64 + "/json"),
                         ("POST", "/exec/nosuch/start"), ("POST", "/exec/nosuch/resize")):
        conn.request(method, path, "{}" if method == "POST" else None,
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 404, path
        assert json.loads(r.read())["message"].startswith("No such exec instance")
    for body in ('{"Cmd": ["true"', '{"Cmd": "true", "Tty": "yes"}', '{"Cmd": [1]}'):
        conn.request("POST", "/containers/ex10/exec", body,
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 400, body
        assert "message" in json.loads(r.read())
    conn.request("POST", "/containers/nosuch/exec", '{"Cmd": ["true"]}',
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 404
    r.read()
    conn.request("POST", "/containers/ex10/exec", '{"Cmd": []}',
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 400
    assert json.loads(r.read())["message"] == "No exec command specified"
    conn.close()


def test_container_inspect_lists_the_running_exec_sessions(api: Api) -> None:
    client = api.client()
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name="ex11")
    eid = client.api.exec_create(c.id, ["sleep", "3"])["Id"]
    client.api.exec_start(eid, detach=True)
    c.reload()
    assert c.attrs["ExecIDs"] == [eid]
    assert client.api.exec_inspect(eid)["Running"] is True
    wait_for(lambda: client.api.exec_inspect(eid)["Running"] is False, timeout=15,
             what="the exec to end")
    c.reload()
    assert c.attrs["ExecIDs"] is None


def test_exec_start_in_a_container_stopped_since_the_create_is_409(api: Api) -> None:
    client = api.client()
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name="ex12")
    eid = client.api.exec_create(c.id, ["true"])["Id"]
    c.kill()
    c.wait(timeout=30)
    import docker

    # its sessions went with its runtime state, as dockerd forgets them at the exit
    with pytest.raises(docker.errors.NotFound) as exc:
        client.api.exec_start(eid)
    assert "No such exec instance" in str(exc.value)


def test_a_plain_stdin_goes_in_whole_through_the_api_whatever_bytes_it_holds(
        api: Api) -> None:
    # without a terminal the detach keys (ctrl-p ctrl-q) are not looked for, as dockerd
    # copies such a stdin as it is: `docker exec -i db psql < dump.sql`
    _running(api, "plain")
    data = ("x" * 1000 + "\x10\x11") * 100
    assert api.docker("exec", "-i", "plain", "wc", "-c", input=data).stdout.strip() == \
        str(len(data))
    assert api.docker("run", "--rm", "-i", "busybox", "wc", "-c", input=data
                      ).stdout.strip() == str(len(data))
