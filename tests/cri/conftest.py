"""The CRI server (`ketch system cri`) on a temporary socket and state root, and the
generated CRI v1 gRPC stubs as the client (the kubelet's own protocol)."""

from __future__ import annotations

import os
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
    def __init__(self, root: Path, sock: Path, proc: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.sock = sock
        self.proc = proc
        self.channel = grpc.insecure_channel(f"unix://{sock}")
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)
        self.cri = cri

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
def cri_server(tmp_path: Path) -> Iterator[Cri]:
    require_root()
    require(grpc is not None, "grpcio and container-runtime-interface-api (pyproject)")
    root = tmp_path / "root"
    root.mkdir()
    sock = tmp_path / "cri.sock"
    log = open(tmp_path / "cri.log", "wb")
    proc = subprocess.Popen([*ketch_command(), "--root", str(root), "--run-root",
                             str(root / "run"), "system", "cri", "--listen",
                             f"unix://{sock}"], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None and sock.exists(), (tmp_path / "cri.log").read_text()
        served = Cri(root, sock, proc)
        grpc.channel_ready_future(served.channel).result(timeout=20)
        yield served
        served.channel.close()
        assert proc.poll() is None, "the CRI server died during the test"
    finally:
        _stop(proc)
        log.close()
    assert not sock.exists(), "the CRI server left its socket behind"
    text = (tmp_path / "cri.log").read_text()
    assert "Traceback" not in text, text
    assert os.path.isdir(root)
