"""The CRI's streaming calls over SPDY/3.1, the transport kubectl, client-go and the
kubelet's proxy use: the client is a small Go program (tests/cri/spdyclient) on
moby/spdystream, the SPDY library client-go's transport is built on, doing the HTTP
upgrade and the stream choreography of client-go's remotecommand (v4..v1.channel.k8s.io)
and portforward (portforward.k8s.io) clients. The tests on `any_runtime` pass on
containerd's CRI plugin too, whose streaming server is the kubelet's own library."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.conftest import require
from tests.cri.conftest import Cri, Served
from tests.cri.test_cri_pods import _pulled
from tests.cri.test_cri_stream import (  # noqa: F401 - busybox is a fixture
    _remove,
    _running,
    _serving_page,
    busybox,
)
from tests.helpers.gobuild import SPDY_CLIENT, SPDYSTREAM, go_build

V4 = "v4.channel.k8s.io"

pytestmark = pytest.mark.xdist_group("cri")  # one worker, one set of servers


@pytest.fixture(scope="session")
def spdy_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Go client, built once per session, offline, from Debian's packaged sources."""
    require(shutil.which("go") is not None, "golang-go (scripts/install-deps.sh)")
    require(SPDYSTREAM.is_dir(), "golang-github-docker-spdystream-dev (scripts/install-deps.sh)")
    out = tmp_path_factory.mktemp("spdyclient")
    r = go_build(SPDY_CLIENT, out / "spdyclient")
    assert r.returncode == 0, r.stderr
    yield out / "spdyclient"
    shutil.rmtree(out, ignore_errors=True)


class Report(dict):
    def bytes(self, key: str) -> bytes:
        return base64.b64decode(self.get(key) or "")

    @property
    def status(self) -> dict:
        return json.loads(self.bytes("error"))


def spdy(client: Path, mode: str, url: str, *args: str, flags: tuple[str, ...] = (),
         timeout: float = 90) -> Report:
    r = subprocess.run([str(client), *flags, mode, url, *args], capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    report = Report(json.loads(r.stdout))
    return report


def _ok(report: Report) -> Report:
    assert not report.get("failure"), report
    assert report["status"] == 101, report
    return report


def test_exec_over_spdy_streams_stdin_stdout_stderr_and_the_exit_status(
        any_runtime: Served, busybox: str, spdy_client: Path, tmp_path: Path) -> None:  # noqa: F811
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, cid = _running(any_runtime, busybox, tmp_path / "logs", "sx", ["sleep", "300"])

    def url(cmd: list[str], **kw: bool) -> str:
        return rt.Exec(cri.ExecRequest(container_id=cid, cmd=cmd, **kw)).url

    done = _ok(spdy(spdy_client, "exec", url(["echo", "hello-spdy"], stdout=True, stderr=True),
                    flags=("-stdout", "-stderr", "-method", "POST")))  # as kubectl exec
    assert done["protocol"] == V4
    assert done.bytes("stdout") == b"hello-spdy\n"
    assert done.bytes("stderr") == b""
    assert done.status["status"] == "Success"

    failed = _ok(spdy(spdy_client, "exec", url(["sh", "-c", "echo oops >&2; exit 3"],
                                               stdout=True, stderr=True),
                      flags=("-stdout", "-stderr")))
    assert failed.bytes("stderr") == b"oops\n"
    assert failed.status["status"] == "Failure"
    assert failed.status["reason"] == "NonZeroExitCode"
    assert failed.status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]

    # stdin: data, then the client's half-close is the command's end of input; and a
    # connection-level ping is answered on the way
    echoed = _ok(spdy(spdy_client, "exec", url(["sh", "-c", "read x; echo got:$x; cat"],
                                               stdin=True, stdout=True),
                      "stdin:hello-in\n", "ping", "stdin:rest", "eof",
                      flags=("-stdin", "-stdout")))
    assert echoed["pinged"] is True
    assert echoed.bytes("stdout") == b"got:hello-in\nrest"
    assert echoed.status["status"] == "Success"

    # the client's order of preference picks among the versions the server knows; the
    # versions before v4 report a failure's message alone, and nothing on success
    older = _ok(spdy(spdy_client, "exec", url(["sh", "-c", "exit 4"], stdout=True),
                     flags=("-stdout", "-protocols",
                            "v9.channel.k8s.io,v3.channel.k8s.io,v4.channel.k8s.io")))
    assert older["protocol"] == "v3.channel.k8s.io"
    text = older.bytes("error")
    assert text.startswith(b"command terminated with non-zero exit code"), text
    assert text.endswith(b"exit code 4"), text
    quiet = _ok(spdy(spdy_client, "exec", url(["true"], stdout=True),
                     flags=("-stdout", "-protocols", "v2.channel.k8s.io")))
    assert quiet["protocol"] == "v2.channel.k8s.io"
    assert quiet.bytes("error") == b""
    _remove(any_runtime, pod_id)


def test_exec_over_spdy_moves_megabytes_both_ways_without_stalling(
        any_runtime: Served, busybox: str, spdy_client: Path, tmp_path: Path) -> None:  # noqa: F811
    """Far past SPDY's 64 KiB initial windows, with a client (spdystream) that never
    sends WINDOW_UPDATE and ignores the server's."""
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, cid = _running(any_runtime, busybox, tmp_path / "logs", "big", ["sleep", "300"])
    out = _ok(spdy(spdy_client, "exec", rt.Exec(cri.ExecRequest(
        container_id=cid, cmd=["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' y"],
        stdout=True)).url, flags=("-stdout",)))
    assert out.bytes("stdout") == b"y" * 3_000_000
    assert out.status["status"] == "Success"

    up = _ok(spdy(spdy_client, "exec", rt.Exec(cri.ExecRequest(
        container_id=cid, cmd=["wc", "-c"], stdin=True, stdout=True)).url, "eof",
        flags=("-stdin", "-stdout", "-upload", "1000000")))
    assert up["stdin_sent"] == 1_000_000
    assert up.bytes("stdout").strip() == b"1000000"
    _remove(any_runtime, pod_id)


def test_exec_with_a_tty_over_spdy_follows_the_resize_stream(
        any_runtime: Served, busybox: str, spdy_client: Path, tmp_path: Path) -> None:  # noqa: F811
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, cid = _running(any_runtime, busybox, tmp_path / "logs", "stty", ["sleep", "300"])
    url = rt.Exec(cri.ExecRequest(container_id=cid, cmd=["sh"], tty=True, stdin=True,
                                  stdout=True)).url
    done = _ok(spdy(spdy_client, "exec", url,
                    "resize:101x33", "sleep:1000", "stdin:stty size\n", "wait:33 101",
                    "resize:90x20", "sleep:1000", "stdin:stty size; exit 5\n",
                    flags=("-tty", "-stdin", "-stdout")))
    out = done.bytes("stdout")
    assert b"33 101" in out
    assert b"20 90" in out
    assert out.index(b"33 101") < out.index(b"20 90")
    assert done.status["details"]["causes"] == [{"reason": "ExitCode", "message": "5"}]
    _remove(any_runtime, pod_id)


def test_attach_over_spdy_reaches_a_container_reading_its_stdin(
        any_runtime: Served, busybox: str, spdy_client: Path, tmp_path: Path) -> None:  # noqa: F811
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, cid = _running(any_runtime, busybox, tmp_path / "logs", "att",
                           ["sh", "-c", "read x; echo attached:$x; sleep 1"], stdin=True)
    url = rt.Attach(cri.AttachRequest(container_id=cid, stdin=True, stdout=True,
                                      stderr=True)).url
    done = _ok(spdy(spdy_client, "exec", url, "stdin:over-spdy\n", "wait:attached:over-spdy",
                    flags=("-stdin", "-stdout", "-stderr")))
    assert b"attached:over-spdy\n" in done.bytes("stdout")
    _remove(any_runtime, pod_id)


def test_attach_over_spdy_lets_go_when_the_client_leaves_and_the_container_runs_on(
        any_runtime: Served, busybox: str, spdy_client: Path, tmp_path: Path) -> None:  # noqa: F811
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, cid = _running(any_runtime, busybox, tmp_path / "logs", "loop",
                           ["sh", "-c", "while read x; do echo got:$x; done"], stdin=True)
    for word in ("first", "second"):
        url = rt.Attach(cri.AttachRequest(container_id=cid, stdin=True, stdout=True,
                                          stderr=True)).url
        done = _ok(spdy(spdy_client, "exec", url, f"stdin:{word}\n", f"wait:got:{word}",
                        "quit", flags=("-stdin", "-stdout", "-stderr")))
        assert f"got:{word}\n".encode() in done.bytes("stdout")
    status = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid)).status
    assert status.state == cri.CONTAINER_RUNNING
    _remove(any_runtime, pod_id)


def test_attach_over_spdy_ending_its_input_closes_only_a_stdin_once_containers_stdin(
        any_runtime: Served, busybox: str, spdy_client: Path, tmp_path: Path) -> None:  # noqa: F811
    cri = any_runtime.cri
    rt = any_runtime.runtime
    script = ["sh", "-c", "while read x; do echo got:$x; done; echo input-ended"]
    pod_id, once = _running(any_runtime, busybox, tmp_path / "logs", "once", script,
                            stdin=True, stdin_once=True)
    done = _ok(spdy(spdy_client, "exec", rt.Attach(cri.AttachRequest(
        container_id=once, stdin=True, stdout=True)).url,
        "stdin:one\n", "wait:got:one", "eof", "wait:input-ended", "quit",
        flags=("-stdin", "-stdout")))
    assert done.bytes("stdout") == b"got:one\ninput-ended\n"
    _remove(any_runtime, pod_id)

    pod_id, kept = _running(any_runtime, busybox, tmp_path / "logs2", "kept", script,
                            stdin=True)
    for word in ("one", "two"):
        _ok(spdy(spdy_client, "exec", rt.Attach(cri.AttachRequest(
            container_id=kept, stdin=True, stdout=True)).url,
            f"stdin:{word}\n", f"wait:got:{word}", "eof", "sleep:500", "quit",
            flags=("-stdin", "-stdout")))
    status = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=kept)).status
    assert status.state == cri.CONTAINER_RUNNING
    _remove(any_runtime, pod_id)


def test_port_forward_over_spdy_carries_concurrent_connections_to_the_pod(
        any_runtime: Served, busybox: str, spdy_client: Path, tmp_path: Path) -> None:  # noqa: F811
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, cid = _serving_page(any_runtime, busybox, tmp_path / "logs", "spf", "spdy-page")

    url = rt.PortForward(cri.PortForwardRequest(pod_sandbox_id=pod_id, port=[8080])).url
    done = _ok(spdy(spdy_client, "portforward", url, flags=(
        "-protocols", "portforward.k8s.io", "-port", "8080", "-count", "3",
        "-send", "GET / HTTP/1.0\r\n\r\n")))
    assert done["protocol"] == "portforward.k8s.io"
    assert len(done["forwards"]) == 3
    for fwd in done["forwards"]:
        data = base64.b64decode(fwd["data"])
        assert data.startswith(b"HTTP/1."), data
        assert data.endswith(b"spdy-page\n"), data
        assert not fwd["error"], base64.b64decode(fwd["error"])

    # nothing listens on 8081: the pair's error stream says so
    refused = _ok(spdy(spdy_client, "portforward", rt.PortForward(cri.PortForwardRequest(
        pod_sandbox_id=pod_id, port=[8081])).url, flags=(
        "-protocols", "portforward.k8s.io", "-port", "8081", "-send", "GET /\r\n\r\n")))
    fwd = refused["forwards"][0]
    assert not fwd["data"]
    error = base64.b64decode(fwd["error"])
    assert error.startswith(b"error forwarding port 8081 to pod"), error
    _remove(any_runtime, pod_id)


def test_spdy_upgrades_with_an_unknown_token_or_protocol_are_refused(
        any_runtime: Served, busybox: str, spdy_client: Path, tmp_path: Path) -> None:  # noqa: F811
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, cid = _running(any_runtime, busybox, tmp_path / "logs", "ref", ["sleep", "300"])
    url = rt.Exec(cri.ExecRequest(container_id=cid, cmd=["true"], stdout=True)).url
    wrong = spdy(spdy_client, "exec", url, flags=("-stdout", "-protocols", "v9.example"))
    assert wrong["status"] == 403
    accepted = wrong["headers"]["x-accepted-stream-protocol-versions"].split(",")
    assert V4 in accepted
    assert "unable to negotiate protocol" in wrong["body"]
    # the token went with that request
    again = spdy(spdy_client, "exec", url, flags=("-stdout",))
    assert again["status"] == 404

    pf = rt.PortForward(cri.PortForwardRequest(pod_sandbox_id=pod_id, port=[80])).url
    notpf = spdy(spdy_client, "portforward", pf, flags=("-protocols", V4, "-port", "80"))
    assert notpf["status"] == 403
    assert notpf["headers"]["x-accepted-stream-protocol-versions"] == "portforward.k8s.io"
    _remove(any_runtime, pod_id)


# -- ketch alone ---------------------------------------------------------------------------
# What follows asks more of the server than containerd's (spdystream) does: SPDY/3.1's
# flow control, which spdystream leaves out, and stricter refusals.

def test_spdy_upgrades_without_a_protocol_version_or_to_unknown_paths_are_refused(
        cri_server: Cri, cri_images: dict[str, str], spdy_client: Path,
        tmp_path: Path) -> None:
    image = _pulled(cri_server, cri_images["busybox"])
    cri = cri_server.cri
    rt = cri_server.runtime
    pod_id, cid = _running(cri_server, image, tmp_path / "logs", "nov", ["sleep", "300"])
    url = rt.Exec(cri.ExecRequest(container_id=cid, cmd=["true"], stdout=True)).url
    bare = spdy(spdy_client, "exec", url, flags=("-stdout", "-protocols", ""))
    assert (bare["status"], bare["body"]) == (
        400, "unable to upgrade: X-Stream-Protocol-Version is required\n")
    base = url.rsplit("/", 2)[0]
    lost = spdy(spdy_client, "exec", f"{base}/logs/abc", flags=("-stdout",))
    assert (lost["status"], lost["body"]) == (404, "404 page not found\n")

    # a stream of a type the request did not ask for is refused; the rest goes on
    extra = _ok(spdy(spdy_client, "exec", rt.Exec(cri.ExecRequest(
        container_id=cid, cmd=["echo", "still-here"], stdout=True)).url,
        flags=("-stdout", "-stream", "stdin")))
    assert extra["refused"] == ["stdin"]
    assert extra.bytes("stdout") == b"still-here\n"
    assert extra.status["status"] == "Success"

    # a port-forward connection for a port the request did not name
    pf = rt.PortForward(cri.PortForwardRequest(pod_sandbox_id=pod_id, port=[8080])).url
    other = _ok(spdy(spdy_client, "portforward", pf, flags=(
        "-protocols", "portforward.k8s.io", "-port", "22")))
    assert base64.b64decode(other["forwards"][0]["error"]) == (
        f"error forwarding port 22 to pod {pod_id}: port 22 was not asked for in the"
        " request").encode()
    _remove(cri_server, pod_id)


class RawSpdy:
    """A client written from the SPDY/3.1 draft, for what spdystream does not do: keep
    to the windows and give them back."""

    def __init__(self, url: str, protocol: str) -> None:
        u = urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=20)
        self.sock.sendall(
            f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: Upgrade\r\n"
            f"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, self.buf
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        from ketch.cri.spdy import DICTIONARY  # the draft's dictionary, as data

        self.deflate = zlib.compressobj(zdict=DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=DICTIONARY)

    def close(self) -> None:
        self.sock.close()

    def control(self, kind: int, payload: bytes, flags: int = 0, version: int = 3) -> None:
        self.sock.sendall(struct.pack(">HHI", 0x8000 | version, kind,
                                      flags << 24 | len(payload)) + payload)

    def open(self, sid: int, **headers: str) -> None:
        block = struct.pack(">I", len(headers))
        for name, value in headers.items():
            block += struct.pack(">I", len(name)) + name.lower().encode()
            block += struct.pack(">I", len(value)) + value.encode()
        packed = self.deflate.compress(block) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.control(1, struct.pack(">IIBB", sid, 0, 0, 0) + packed)

    def data(self, sid: int, data: bytes, fin: bool = False) -> None:
        self.sock.sendall(struct.pack(">II", sid, int(fin) << 24 | len(data)) + data)

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self, timeout: float = 20) -> tuple | None:
        """('control', type, flags, payload) or ('data', stream, flags, data); None when
        nothing comes for `timeout` seconds."""
        self.sock.settimeout(timeout)
        try:
            head = self._exactly(8)
        except TimeoutError:
            return None
        self.sock.settimeout(20)
        word, flags_len = struct.unpack(">II", head)
        body = self._exactly(flags_len & 0xFFFFFF)
        if word & 0x80000000:
            kind = word & 0xFFFF
            if kind in (1, 2):  # the header blocks keep the decompressor in step
                self.inflate.decompress(body[10 if kind == 1 else 4:])
            return ("control", kind, flags_len >> 24, body)
        return ("data", word, flags_len >> 24, body)


def test_spdy_flow_control_holds_output_to_the_clients_window_and_returns_its_own(
        cri_server: Cri, cri_images: dict[str, str], tmp_path: Path) -> None:
    image = _pulled(cri_server, cri_images["busybox"])
    cri = cri_server.cri
    rt = cri_server.runtime
    pod_id, cid = _running(cri_server, image, tmp_path / "logs", "flow", ["sleep", "300"])

    # output: no more than the 4 KiB window this client announces, until it grants more
    client = RawSpdy(rt.Exec(cri.ExecRequest(container_id=cid, stdout=True, cmd=[
        "sh", "-c", "head -c 200000 /dev/zero | tr '\\0' z"])).url, V4)
    client.control(4, struct.pack(">III", 1, 7, 4096))  # SETTINGS INITIAL_WINDOW_SIZE
    client.control(6, struct.pack(">I", 1))  # PING 1
    client.open(1, streamType="error")
    client.open(3, streamType="stdout")
    got: dict[int, bytes] = {1: b"", 3: b""}
    ended: set[int] = set()
    pings: list[bytes] = []

    def take(f: tuple | None) -> None:
        assert f is not None, (len(got[3]), got[1])
        if f[0] == "data":
            got[f[1]] += f[3]
            if f[2] & 1:
                ended.add(f[1])
        elif f[1] == 6:
            pings.append(f[3])

    while len(got[3]) < 4096:
        take(client.frame())
    while (f := client.frame(timeout=1.5)) is not None:  # and then nothing more
        take(f)
    assert got[3] == b"z" * 4096
    assert pings == [struct.pack(">I", 1)]  # the PING came back
    client.control(9, struct.pack(">II", 3, 1_000_000))  # WINDOW_UPDATE stream 3
    client.control(9, struct.pack(">II", 0, 1_000_000))  # and the session
    while ended != {1, 3}:
        take(client.frame())
    assert got[3] == b"z" * 200000
    assert json.loads(got[1])["status"] == "Success"
    client.close()

    # input: a client keeping to the server's 64 KiB windows gets them back as the
    # command reads
    client = RawSpdy(rt.Exec(cri.ExecRequest(container_id=cid, cmd=["wc", "-c"], stdin=True,
                                             stdout=True)).url, V4)
    client.open(1, streamType="error")
    client.open(3, streamType="stdin")
    client.open(5, streamType="stdout")
    stream_window = session_window = 65536
    sent, total = 0, 300_000
    out = b""
    while sent < total:
        n = min(16384, total - sent, stream_window, session_window)
        if n > 0:
            client.data(3, b"q" * n)
            sent += n
            stream_window -= n
            session_window -= n
            continue
        f = client.frame()
        assert f is not None, f"stalled after {sent} bytes: no WINDOW_UPDATE"
        if f[0] == "control" and f[1] == 9:
            sid, delta = struct.unpack(">II", f[3])
            if sid == 3:
                stream_window += delta
            elif sid == 0:
                session_window += delta
    client.data(3, b"", fin=True)
    while not out.endswith(b"\n"):
        f = client.frame()
        assert f is not None, out
        if f[0] == "data" and f[1] == 5:
            out += f[3]
    assert out.strip() == b"300000"
    client.close()

    # a frame of another SPDY version ends the session with GOAWAY (PROTOCOL_ERROR)
    client = RawSpdy(rt.Exec(cri.ExecRequest(container_id=cid, cmd=["true"], stdout=True)
                             ).url, V4)
    client.control(6, struct.pack(">I", 1), version=2)
    f = client.frame()
    assert f is not None and f[:2] == ("control", 7), f
    assert struct.unpack(">II", f[3]) == (0, 1)
    with pytest.raises(EOFError):
        client.frame()
    client.close()
    _remove(cri_server, pod_id)
