"""The CRI's streaming calls over SPDY/3.1, the transport kubectl, client-go and the
kubelet's proxy use: the client is a small Go program (tests/cri/spdyclient) on
moby/spdystream, the SPDY library client-go's transport is built on, doing the HTTP
upgrade and the stream choreography of client-go's remotecommand (v4..v1.channel.k8s.io)
and portforward (portforward.k8s.io) clients. The tests on `any_runtime` pass on
containerd's CRI plugin too, whose streaming server is the kubelet's own library."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import require
from tests.cri.conftest import Served
from tests.cri.test_cri_stream import _remove, _running, busybox  # noqa: F401 - a fixture

HERE = Path(__file__).parent / "spdyclient"
SPDYSTREAM = Path("/usr/share/gocode/src/github.com/moby/spdystream")
V4 = "v4.channel.k8s.io"


@pytest.fixture(scope="session")
def spdy_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Go client, built once per session, offline, from Debian's packaged sources."""
    go = shutil.which("go")
    require(go is not None, "golang-go (scripts/install-deps.sh)")
    require(SPDYSTREAM.is_dir(), "golang-github-docker-spdystream-dev (scripts/install-deps.sh)")
    out = tmp_path_factory.mktemp("spdyclient")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode",
           "GOCACHE": str(out / "cache"), "GOPROXY": "off", "GOFLAGS": "",
           "CGO_ENABLED": "0"}
    r = subprocess.run([go, "build", "-o", str(out / "spdyclient"), "."], cwd=HERE, env=env,
                       capture_output=True, text=True, timeout=300)
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
                    flags=("-stdout", "-stderr")))
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
                    "resize:101x33", "sleep:300", "stdin:stty size\n", "wait:33 101",
                    "resize:90x20", "sleep:300", "stdin:stty size; exit 5\n",
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


def test_port_forward_over_spdy_carries_concurrent_connections_to_the_pod(
        any_runtime: Served, busybox: str, spdy_client: Path, tmp_path: Path) -> None:  # noqa: F811
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, cid = _running(
        any_runtime, busybox, tmp_path / "logs", "spf",
        ["sh", "-c", "mkdir -p /www && echo spdy-page > /www/index.html"
         " && exec httpd -f -p 127.0.0.1:8080 -h /www"])
    ready = ["wget", "-qO-", "http://127.0.0.1:8080/"]
    deadline = time.monotonic() + 20
    while rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=ready, timeout=5)
                      ).exit_code != 0:
        assert time.monotonic() < deadline, "httpd did not come up"
        time.sleep(0.2)

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
