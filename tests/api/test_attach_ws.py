"""Attaching over a websocket (aiohttp's client, a real websocket client) and through
docker-py's attach_socket."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest
from tests.api.conftest import Api

docker = pytest.importorskip("docker")


async def _ws_session(api: Api, path: str, send: list[bytes], until: bytes,
                      timeout: float = 20) -> tuple[bytes, list[aiohttp.WSMsgType]]:
    got = bytearray()
    kinds: list[aiohttp.WSMsgType] = []
    conn = aiohttp.UnixConnector(path=str(api.sock))
    async with aiohttp.ClientSession(connector=conn) as s, \
            s.ws_connect("http://localhost" + path) as ws:
        for data in send:
            await ws.send_bytes(data)
        deadline = time.monotonic() + timeout
        while until not in got and time.monotonic() < deadline:
            try:
                msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
            kinds.append(msg.type)
            got += msg.data if isinstance(msg.data, bytes) else msg.data.encode()
    return bytes(got), kinds


def test_websocket_attach_carries_stdin_in_and_output_out(api: Api) -> None:
    api.docker("run", "-d", "-i", "--name", "ws1", "busybox", "sh", "-c",
               "while read line; do echo got:$line; done")
    out, kinds = asyncio.run(_ws_session(
        api, "/v1.45/containers/ws1/attach/ws?stream=1&stdin=1&stdout=1&stderr=1",
        [b"hello\n", b"again\n"], until=b"got:again\n"))
    assert out == b"got:hello\ngot:again\n"  # raw, not multiplexed
    assert set(kinds) == {aiohttp.WSMsgType.BINARY}


def test_websocket_attach_replays_logs_and_uses_text_frames_before_1_28(api: Api) -> None:
    api.docker("run", "-d", "--name", "ws2", "busybox", "sh", "-c",
               "echo early; sleep 300")
    deadline = time.monotonic() + 20
    while "early" not in api.docker("logs", "ws2").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    out, kinds = asyncio.run(_ws_session(
        api, "/v1.27/containers/ws2/attach/ws?logs=1&stream=0&stdout=1", [], until=b"\n"))
    assert out == b"early\n"
    assert set(kinds) == {aiohttp.WSMsgType.TEXT}


def test_websocket_attach_to_an_unknown_container_is_404(api: Api) -> None:
    conn = api.http()
    conn.request("GET", "/containers/nosuch/attach/ws?stream=1",
                 headers={"Connection": "Upgrade", "Upgrade": "websocket",
                          "Sec-WebSocket-Version": "13",
                          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    r = conn.getresponse()
    assert r.status == 404
    r.read()
    conn.close()


def test_docker_py_attach_socket_reads_the_multiplexed_output(api: Api) -> None:
    client = api.client()
    c = client.containers.run("busybox", ["sh", "-c", "read x; echo out:$x; echo err >&2"],
                              detach=True, stdin_open=True, name="as1")
    sock = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                  "stream": 1})
    raw: socket.socket = sock._sock  # type: ignore[attr-defined]
    raw.sendall(b"typed\n")
    from docker.utils.socket import frames_iter

    frames = list(frames_iter(sock, tty=False))
    sock.close()
    assert sorted(frames) == [(1, b"out:typed\n"), (2, b"err\n")]
    assert c.wait(timeout=30)["StatusCode"] == 0


def test_docker_py_exec_socket_forwards_stdin(api: Api) -> None:
    client = api.client()
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name="as2")
    eid = client.api.exec_create(c.id, ["sh", "-c", "read x; echo exec:$x"], stdin=True)["Id"]
    sock = client.api.exec_start(eid, socket=True)
    raw: socket.socket = sock._sock  # type: ignore[attr-defined]
    raw.sendall(b"in\n")
    from docker.utils.socket import frames_iter

    frames = list(frames_iter(sock, tty=False))
    sock.close()
    assert frames == [(1, b"exec:in\n")]
    assert client.api.exec_inspect(eid)["ExitCode"] == 0


def test_docker_py_exec_socket_detaches_with_the_detach_keys(api: Api) -> None:
    client = api.client()
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name="as3")
    eid = client.api.exec_create(c.id, ["cat"], stdin=True, tty=True,
                                 detach_keys="ctrl-x,x")["Id"]
    sock = client.api.exec_start(eid, tty=True, socket=True)
    raw: socket.socket = sock._sock  # type: ignore[attr-defined]
    raw.settimeout(15)
    raw.sendall(b"echoed\n")
    seen = b""
    while b"echoed\r\n" not in seen:
        chunk = raw.recv(4096)
        assert chunk, "the exec ended before echoing"
        seen += chunk
    raw.sendall(b"\x18x")  # ctrl-x, x: the session lets go; cat goes on
    while raw.recv(4096):
        pass
    sock.close()
    assert client.api.exec_inspect(eid)["Running"] is True


def test_a_websocket_client_leaving_frees_its_attach_at_once(api: Api) -> None:
    from tests.containers.conftest import wait_for

    api.docker("run", "-d", "--name", "ws3", "busybox", "sleep", "300")

    async def attach_and_leave() -> None:
        conn = aiohttp.UnixConnector(path=str(api.sock))
        async with aiohttp.ClientSession(connector=conn) as s:
            ws = await s.ws_connect("http://localhost/containers/ws3/attach/ws?stream=1"
                                    "&stdout=1&stderr=1")
            wait_for(lambda: attach_sockets() == 1, timeout=10, what="the attach")
            await ws.close()

    def attach_sockets() -> int:
        """The service's connections to conmon attach sockets (seqpacket, its only)."""
        import subprocess

        out = subprocess.run(["ss", "-xp"], capture_output=True, text=True).stdout
        return sum(1 for line in out.splitlines()
                   if line.startswith("u_seq") and f"pid={api.proc.pid}," in line)

    asyncio.run(attach_and_leave())
    # the silent container keeps nothing of the service: its attach session is gone
    wait_for(lambda: attach_sockets() == 0, timeout=10, what="the attach to be released")
    assert api.docker("inspect", "-f", "{{.State.Running}}", "ws3").stdout.strip() == "true"


def test_attach_without_upgrade_streams_the_output_on_a_200_until_the_container_exits(
        api: Api) -> None:
    # dockerd hijacks the connection either way; without `Upgrade: tcp` it answers 200
    # and the multiplexed stream runs until the connection closes
    client = api.client()
    c = client.containers.create("busybox", ["sh", "-c", "read x; echo out:$x; echo err >&2"],
                                 stdin_open=True, name="plain-attach")
    client.api.start(c.id)
    conn = api.http()
    conn.request("POST", f"/v1.45/containers/{c.id}/attach?stream=1&stdout=1&stderr=1")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "application/vnd.docker.multiplexed-stream"
    assert resp.getheader("Transfer-Encoding") is None
    assert resp.getheader("Content-Length") is None
    # the container waits on stdin: give it a line through a second (upgraded) attach
    sock = client.api.attach_socket(c.id, params={"stdin": 1, "stream": 1})
    sock._sock.sendall(b"typed\n")  # type: ignore[attr-defined]
    from docker.utils.socket import frames_iter

    frames = sorted(frames_iter(resp, tty=False))
    sock.close()
    conn.close()
    assert frames == [(1, b"out:typed\n"), (2, b"err\n")]
    assert c.wait(timeout=30)["StatusCode"] == 0
