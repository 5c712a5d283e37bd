"""Fixtures for the Engine API tests: a state root with the offline busybox image, the
service (`ketch system service`) on a temporary unix socket in front of it, and the
real clients: the docker CLI and docker-py.

The service runs as a subprocess for the whole module and is stopped with SIGTERM at
the end; after each test every container is removed and nothing of them may be left
(mounts, monitors, runtime state).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import (
    ketch_command,
    require,
    require_root,
    require_tool,
)
from tests.containers.conftest import TrackingCLI, leaks, tracked_busybox_root, wait_for


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket: raw requests where a client would hide the
    status, headers or framing."""

    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def start_service(root: Path, uri: str, *extra: str,
                  env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    full = dict(os.environ)
    full.update(env or {})
    # the service's output goes to a file: a pipe nobody reads could fill and stall it
    with open(root / "service.log", "ab") as log:
        return subprocess.Popen(
            [*ketch_command(), "--root", str(root), "--run-root",
             str(root / "run"), "system", "service", uri, *extra],
            env=full, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def ping(path: str) -> bool:
    try:
        conn = UnixHTTPConnection(path, timeout=2)
        conn.request("GET", "/_ping")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()
    if proc.stderr:
        proc.stderr.close()


class Api:
    """The running service: its socket, the ketch CLI on the same root and the
    docker CLI pointed at the socket."""

    def __init__(self, root: Path, sock: Path, proc: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.sock = sock
        self.proc = proc
        self.ketch = TrackingCLI(root)
        self.docker_config = root / "docker-config"
        self.docker_config.mkdir(exist_ok=True)

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def docker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"DOCKER_HOST": self.url, "DOCKER_BUILDKIT": "0",
                    "DOCKER_CONFIG": str(self.docker_config)})
        env.pop("DOCKER_CONTEXT", None)
        return env

    def docker(self, *args: str, input: str | None = None, check: bool = True,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", *args], input=input, capture_output=True,
                              text=True, timeout=timeout, env=self.docker_env(),
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def http(self) -> UnixHTTPConnection:
        return UnixHTTPConnection(str(self.sock))

    def client(self):  # type: ignore[no-untyped-def]
        import docker

        return docker.DockerClient(base_url=self.url, timeout=60)


@pytest.fixture(scope="session")
def api_prereqs() -> None:
    require_root()
    for tool in ("runc", "conmon", "docker"):
        require_tool(tool)
    require(Path("/proc/filesystems").read_text().find("overlay") >= 0,
            "the kernel has no overlayfs")


@pytest.fixture(scope="module")
def api_root(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path,
             api_prereqs: None) -> Iterator[Path]:
    with tracked_busybox_root(tmp_path_factory, busybox_tar, "ketch-api") as cli:
        yield cli.root


@pytest.fixture(scope="module")
def service(api_root: Path) -> Iterator[Api]:
    sock = api_root / "api.sock"
    proc = start_service(api_root, f"unix://{sock}", "--time", "0")
    try:
        wait_for(lambda: proc.poll() is not None or ping(str(sock)), timeout=20,
                 what="the service to answer")
        assert proc.poll() is None, (api_root / "service.log").read_text()
        yield Api(api_root, sock, proc)
    finally:
        stop_service(proc)
    assert not sock.exists(), "the service left its socket behind"
    log = (api_root / "service.log").read_text()
    assert "Traceback" not in log, log


@pytest.fixture
def api(service: Api) -> Iterator[Api]:
    """The module's service; every container is gone after the test."""
    yield service
    assert service.proc.poll() is None, "the service died during the test"
    service.ketch.remove_everything()
    wait_for(lambda: not leaks(service.root, service.ketch.ids), timeout=20,
             what="the test's containers to go")

