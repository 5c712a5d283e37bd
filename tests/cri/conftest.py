"""The CRI server (`ketch system cri`) on a temporary socket and state root, and the
generated CRI v1 gRPC stubs as the client (the kubelet's own protocol)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import ketch_command, require, require_root
from tests.distribution.conftest import ketch_registry  # noqa: F401 - a fixture

try:
    import grpc
    from cri_api.v1 import api_pb2 as cri
    from cri_api.v1 import api_pb2_grpc
except ImportError:  # pragma: no cover - the dependency is in pyproject
    grpc = None


class Cri:
    def __init__(self, root: Path, sock: Path, log: Path) -> None:
        self.root = root
        self.sock = sock
        self.log = log
        self.cri = cri
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            proc = subprocess.Popen([*ketch_command(), "--root", str(self.root), "--run-root",
                                     str(self.root / "run"), "system", "cri", "--listen",
                                     f"unix://{self.sock}"], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while not self.sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None and self.sock.exists(), self.log.read_text()
        self.channel = grpc.insecure_channel(f"unix://{self.sock}")
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)
        grpc.channel_ready_future(self.channel).result(timeout=20)
        return proc

    def stop(self) -> None:
        self.channel.close()
        _stop(self.proc)

    def restart(self) -> None:
        """A new server process on the same state root."""
        self.stop()
        self.proc = self._start()

    def ketch(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ketch_command(), "--root", str(self.root), "--run-root",
                               str(self.root / "run"), *args], capture_output=True,
                              text=True, timeout=120, check=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def cri_server(ketch_root: Path, tmp_path: Path) -> Iterator[Cri]:
    require_root()
    require(grpc is not None, "grpcio and container-runtime-interface-api (pyproject)")
    served = Cri(ketch_root, tmp_path / "cri.sock", tmp_path / "cri.log")
    try:
        yield served
        assert served.proc.poll() is None, "the CRI server died during the test"
    finally:
        served.stop()
    assert not served.sock.exists(), "the CRI server left its socket behind"
    text = served.log.read_text()
    assert "Traceback" not in text, text
