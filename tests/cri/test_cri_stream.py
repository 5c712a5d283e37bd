"""The CRI's streaming calls (Exec, Attach, PortForward) as a kubelet or kubectl uses them:
the RPC returns a URL on the runtime's streaming server, and a WebSocket client speaking
the channel.k8s.io framing (aiohttp's) connects to it. The tests on `any_runtime` pass on
containerd's CRI plugin too, whose streaming server is the kubelet's own library."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import aiohttp
import grpc
import pytest
from tests.conftest import ketch_command
from tests.cri.conftest import Cri, Served
from tests.cri.test_cri_pods import _container, _pulled, _sandbox
from tests.helpers.ports import free_port

V4 = "v4.channel.k8s.io"

pytestmark = pytest.mark.xdist_group("cri")  # one worker, one set of servers


@pytest.fixture
def busybox(any_runtime: Served, cri_images: dict[str, str]) -> str:
    return _pulled(any_runtime, cri_images["busybox"])


class Streamed:
    """What a stream delivered: the bytes per channel, and the v4 status."""

    def __init__(self, channels: dict[int, bytes], protocol: str) -> None:
        self.channels = channels
        self.protocol = protocol

    def out(self, channel: int) -> bytes:
        return self.channels.get(channel, b"")

    @property
    def status(self) -> dict:
        return json.loads(self.channels[3])


async def _talk(url: str, sends: Iterable[bytes] = (), protocols: tuple[str, ...] = (V4,),
                until: bytes | None = None, timeout: float = 30) -> Streamed:
    """Connect, send each message (channel byte first) once the server has spoken, and
    collect what comes back until the server closes (or `until` shows on a channel)."""
    got: dict[int, bytearray] = {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, protocols=protocols) as ws:
            pending = list(sends)
            async with asyncio.timeout(timeout):
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        break
                    got.setdefault(msg.data[0], bytearray()).extend(msg.data[1:])
                    while pending:  # the first message says the stream is up
                        await ws.send_bytes(pending.pop(0))
                        await asyncio.sleep(0.2)
                    if until is not None and any(until in v for v in got.values()):
                        break
            return Streamed({k: bytes(v) for k, v in got.items()}, ws.protocol or "")


def talk(url: str, *args, **kw) -> Streamed:  # type: ignore[no-untyped-def]
    return asyncio.run(_talk(url, *args, **kw))


def _running(served: Served, image: str, logs: Path, name: str, command: list[str],
             **kw) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    cri = served.cri
    rt = served.runtime
    config = _sandbox(served, name, logs)
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    cid = rt.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config,
        config=_container(served, name, image, command, **kw))).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=cid))
    return pod_id, cid


def _serving_page(served: Served, image: str, logs: Path, name: str, page: str
                  ) -> tuple[str, str]:
    """A sandbox whose container serves `page` on the pod's 127.0.0.1:8080 (busybox
    httpd), once the page answers from inside: (sandbox id, container id)."""
    pod_id, cid = _running(
        served, image, logs, name,
        ["sh", "-c", f"mkdir -p /www && echo {page} > /www/index.html"
         " && exec httpd -f -p 127.0.0.1:8080 -h /www"])
    ready = ["wget", "-qO-", "http://127.0.0.1:8080/"]
    deadline = time.monotonic() + 20
    while served.runtime.ExecSync(served.cri.ExecSyncRequest(
            container_id=cid, cmd=ready, timeout=5)).exit_code != 0:
        assert time.monotonic() < deadline, "httpd did not come up"
        time.sleep(0.2)
    return pod_id, cid


def _remove(served: Served, pod_id: str) -> None:
    cri = served.cri
    stop = cri.StopPodSandboxRequest(pod_sandbox_id=pod_id)
    try:
        served.runtime.StopPodSandbox(stop)
    except grpc.RpcError as e:
        # containerd 1.6's shim can drop its connection while it kills a container that
        # has just ended ("failed to kill container ...: ttrpc: closed"); the kubelet
        # retries a failed stop at its next sync, and so does this, for containerd only
        if served.name != "containerd" or "ttrpc: closed" not in str(e.details()):
            raise
        served.runtime.StopPodSandbox(stop)
    served.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def test_exec_streams_output_and_the_exit_status_and_a_token_is_used_once(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, cid = _running(any_runtime, busybox, tmp_path / "logs", "ex", ["sleep", "300"])

    url = rt.Exec(cri.ExecRequest(container_id=cid, cmd=["echo", "hello-stream"],
                                  stdout=True, stderr=True)).url
    assert url.startswith("http://127.0.0.1:"), url
    done = talk(url)
    assert done.protocol == V4
    assert done.out(1) == b"hello-stream\n"
    assert done.status["status"] == "Success"

    # the URL was good for one connection
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        talk(url)
    assert err.value.status == 404

    failed = talk(rt.Exec(cri.ExecRequest(container_id=cid, cmd=["sh", "-c", "echo oops >&2;"
                                                                  " exit 3"],
                                          stdout=True, stderr=True)).url)
    assert failed.out(2) == b"oops\n"
    assert failed.status["status"] == "Failure"
    assert failed.status["reason"] == "NonZeroExitCode"
    assert failed.status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]

    # the older protocol: the same channels, a failure's message alone on channel 3
    older = talk(rt.Exec(cri.ExecRequest(container_id=cid, cmd=["sh", "-c", "exit 4"],
                                         stdout=True)).url, protocols=("channel.k8s.io",))
    assert older.protocol == "channel.k8s.io"
    assert older.out(3).startswith(b"command terminated with non-zero exit code")
    assert older.out(3).endswith(b"exit code 4")

    # stdin on channel 0
    echoed = talk(rt.Exec(cri.ExecRequest(container_id=cid, cmd=["sh", "-c",
                                                                 "read x; echo got:$x"],
                                          stdin=True, stdout=True, stderr=True)).url,
                  [b"\x00hello-in\n"])
    assert echoed.out(1) == b"got:hello-in\n"
    assert echoed.status["status"] == "Success"
    _remove(any_runtime, pod_id)


def test_exec_with_a_tty_takes_the_terminal_size_from_the_resize_channel(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, cid = _running(any_runtime, busybox, tmp_path / "logs", "tty", ["sleep", "300"])
    url = rt.Exec(cri.ExecRequest(container_id=cid, cmd=["sh"], tty=True, stdin=True,
                                  stdout=True)).url
    size = json.dumps({"Width": 101, "Height": 33}).encode()
    done = talk(url, [b"\x04" + size, b"\x00stty size; exit 5\n"])
    assert b"33 101" in done.out(1)
    assert 2 not in done.channels  # a terminal has one output stream
    assert done.status["details"]["causes"] == [{"reason": "ExitCode", "message": "5"}]

    # a terminal with a separate stderr is refused at the RPC
    with pytest.raises(grpc.RpcError) as err:
        rt.Exec(cri.ExecRequest(container_id=cid, cmd=["sh"], tty=True, stdout=True,
                                stderr=True))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tty and stderr cannot both be true" in err.value.details()
    _remove(any_runtime, pod_id)


def test_attach_reaches_a_container_reading_its_stdin(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, cid = _running(any_runtime, busybox, tmp_path / "logs", "reader",
                           ["sh", "-c", "read x; echo attached:$x; sleep 1"], stdin=True)
    url = rt.Attach(cri.AttachRequest(container_id=cid, stdin=True, stdout=True,
                                      stderr=True)).url
    done = talk(url, [b"\x00over-attach\n"], until=b"attached:over-attach\n")
    assert b"attached:over-attach\n" in done.out(1)
    _remove(any_runtime, pod_id)


def test_port_forward_reaches_a_server_on_the_pods_localhost(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, cid = _serving_page(any_runtime, busybox, tmp_path / "logs", "pf",
                                "forwarded-page")

    url = rt.PortForward(cri.PortForwardRequest(pod_sandbox_id=pod_id, port=[8080])).url
    done = talk(url, [b"\x00GET / HTTP/1.0\r\n\r\n"], until=b"forwarded-page\n")
    data = done.out(0)
    assert data[:2] == struct.pack("<H", 8080)  # the channel opens with its port
    assert data[2:].startswith(b"HTTP/1.")
    assert data.endswith(b"forwarded-page\n")
    assert done.out(1) == struct.pack("<H", 8080)  # no error

    # nothing listens on 8081: the port's error channel says so
    refused = talk(rt.PortForward(cri.PortForwardRequest(pod_sandbox_id=pod_id,
                                                         port=[8081])).url,
                   [b"\x00GET / HTTP/1.0\r\n\r\n"], timeout=20)
    assert refused.out(0) == struct.pack("<H", 8081)
    assert refused.out(1).startswith(struct.pack("<H", 8081))
    assert b"8081" in refused.out(1)[2:]
    _remove(any_runtime, pod_id)


def test_streaming_calls_for_unknown_containers_and_sandboxes_are_not_found(
        any_runtime: Served) -> None:
    cri = any_runtime.cri
    rt = any_runtime.runtime
    calls = [
        lambda: rt.Exec(cri.ExecRequest(container_id="nope", cmd=["true"], stdout=True)),
        lambda: rt.Attach(cri.AttachRequest(container_id="nope", stdout=True)),
        lambda: rt.PortForward(cri.PortForwardRequest(pod_sandbox_id="nope", port=[80])),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()


def test_stream_server_listens_on_the_stream_address_and_refuses_plain_gets_and_bad_ports(
        private_cri_server: Cri, cri_images: dict[str, str], tmp_path: Path) -> None:
    cri_server = private_cri_server  # restarted with other options
    busybox = _pulled(cri_server, cri_images["busybox"])
    cri_server.stop()
    port = free_port("127.0.0.1")
    cri_server.command = lambda: [  # type: ignore[method-assign]
        *ketch_command(), "--root", str(cri_server.root), "--run-root",
        str(cri_server.root / "run"), "system", "cri", "--listen", f"unix://{cri_server.sock}",
        "--stream-address", f"127.0.0.1:{port}"]
    cri_server.proc = cri_server._start()
    cri = cri_server.cri
    pod_id, cid = _running(cri_server, busybox, tmp_path / "logs", "addr", ["sleep", "300"])
    url = cri_server.runtime.Exec(cri.ExecRequest(container_id=cid, cmd=["true"],
                                                  stdout=True)).url
    assert url.startswith(f"http://127.0.0.1:{port}/exec/"), url

    async def plain() -> tuple[int, str]:  # neither a WebSocket nor an SPDY upgrade
        async with aiohttp.ClientSession() as s, s.get(url, headers={
                "X-Stream-Protocol-Version": "v4.channel.k8s.io"}) as r:
            return r.status, await r.text()
    assert asyncio.run(plain()) == (400, "unable to upgrade: missing upgrade headers in"
                                    " request (WebSocket or SPDY/3.1)\n")

    with pytest.raises(grpc.RpcError) as err:
        cri_server.runtime.PortForward(cri.PortForwardRequest(pod_sandbox_id=pod_id,
                                                              port=[70000]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "invalid port 70000: a port is 1 to 65535"
    _remove(cri_server, pod_id)


def test_a_bad_stream_address_is_a_one_line_error(ketch_root: Path, tmp_path: Path) -> None:
    r = subprocess.run([*ketch_command(), "--root", str(ketch_root), "system", "cri",
                        "--listen", f"unix://{tmp_path}/c.sock", "--stream-address",
                        "nonsense"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "Error: invalid --stream-address 'nonsense': expected HOST:PORT"
        " (127.0.0.1:0 picks a free port)"]
    assert not (tmp_path / "c.sock").exists()


def test_a_socket_path_that_cannot_be_bound_is_a_one_line_error(ketch_root: Path) -> None:
    r = subprocess.run([*ketch_command(), "--root", str(ketch_root), "system", "cri",
                        "--listen", "unix:///proc/ketch-cri.sock"], capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stderr) == (1, "Error: cannot listen on /proc/ketch-cri.sock:"
                                        " No such file or directory\n")


def test_a_file_at_the_socket_path_is_kept_and_refused_in_one_line(ketch_root: Path,
                                                                   tmp_path: Path) -> None:
    """What is at the path and is not a socket is the user's: refused, and kept (the
    server used to remove whatever was there)."""
    (tmp_path / "run").mkdir()
    kept = tmp_path / "run" / "cri.sock"
    kept.write_text("not a socket\n")
    r = subprocess.run([*ketch_command(), "--root", str(ketch_root), "system", "cri",
                        "--listen", f"unix://{kept}"], capture_output=True, text=True,
                       timeout=30)  # (the old server removed the file and served on)
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", f"Error: cannot listen on {kept}: it exists and is not a socket\n")
    assert kept.read_text() == "not a socket\n"
    assert [p.name for p in kept.parent.iterdir()] == ["cri.sock"]  # no staging socket


def test_a_second_server_on_the_socket_of_a_running_one_is_refused(cri_server: Cri) -> None:
    """The socket of a running server stays its own: a second `ketch system cri` on
    the same path says so in one line and leaves it, and the first keeps answering
    (the second used to remove the first's socket and serve in its place)."""
    before = os.lstat(cri_server.sock).st_ino
    second = subprocess.Popen(cri_server.command(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        out, err = second.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        second.kill()
        second.communicate()
        raise AssertionError("a second server took the socket over and served") from None
    assert (second.returncode, err) == (
        1, f"Error: cannot listen on {cri_server.sock}: another service is using it\n")
    assert os.lstat(cri_server.sock).st_ino == before
    version = cri_server.runtime.Version(cri_server.cri.VersionRequest())
    assert version.runtime_name == "ketch"


@pytest.mark.parametrize(("uri", "stream", "error"), [
    ("", "nonsense", "invalid --stream-address 'nonsense'"),
    ("tcp://127.0.0.1:1", "", "invalid --listen 'tcp://127.0.0.1:1'"),
    ("unix://cri.sock", "", "the socket path must be absolute"),
])
def test_the_server_refuses_bad_addresses_before_it_loads_grpc(
        ketch_root: Path, uri: str, stream: str, error: str) -> None:
    # the program `ketch system cri` execs, under -X importtime (its imports on stderr)
    import ketch

    src = os.path.dirname(os.path.dirname(ketch.__file__))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ketch.cri.__main__ import main;"
            " sys.exit(main(sys.argv[2:]))")
    r = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", code, src,
                        str(ketch_root), str(ketch_root / "run"), uri, stream],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    loaded = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    assert not {"grpc", "aiohttp", "ketch.cri.server"} & loaded
    messages = [line for line in lines if not line.startswith("import time:")]
    assert len(messages) == 1 and messages[0].startswith("Error: ") and error in messages[0]


def test_tokens_are_used_once_and_expire() -> None:
    from ketch.cri.stream import Tokens

    tokens = Tokens(ttl=0.2)
    tok = tokens.issue("exec", "request")
    assert tokens.consume("attach", tok) is None  # for another kind of stream: gone too
    tok = tokens.issue("exec", "request")
    assert tokens.consume("exec", tok) == "request"
    assert tokens.consume("exec", tok) is None
    late = tokens.issue("exec", "request")
    time.sleep(0.3)
    assert tokens.consume("exec", late) is None
