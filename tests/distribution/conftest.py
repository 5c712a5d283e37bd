"""Registries on 127.0.0.1 ephemeral ports for the distribution tests: ketch's own
(`ketch registry serve` as a subprocess, or in-process for HTTP-level tests) and
Debian's `docker-registry` as an interop peer. Only loopback traffic."""

from __future__ import annotations

import http.client
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import (
    KetchCLI,
    isolated_network_config,
    ketch_command,
    require_tool,
    teardown_root,
)
from tests.helpers.ports import free_port

from ketch.registry.auth import Htpasswd
from ketch.registry.server import RegistryServer


@dataclass
class Served:
    host: str  # "127.0.0.1:PORT", the domain image names use
    root: Path
    proc: subprocess.Popen[bytes] | None = None  # the `ketch registry serve` process


def _wait_for_v2(host: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"registry exited early with {proc.returncode}")
        try:
            c = http.client.HTTPConnection(host, timeout=2)
            c.request("GET", "/v2/")
            c.getresponse().read()
            c.close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"registry on {host} did not come up")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def write_htpasswd(path: Path, user: str, password: str, cost: int = 5) -> Path:
    """A bcrypt htpasswd file, as `htpasswd -B` writes it (its default cost is 5; each
    check at cost 12 takes a quarter of a second of CPU)."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    path.write_text(f"{user}:{hashed}\n")
    return path


@pytest.fixture
def ketch_registry(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start `ketch registry serve` on an ephemeral port; stopped after the test. For the
    tests of the command and its process (signals, memory, options); the others use
    `inproc_registry`."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(htpasswd: Path | None = None, auth: str = "basic",
              extra: tuple[str, ...] = ()) -> Served:
        root = tmp_path / f"registry-{len(procs)}"
        cmd = [*ketch_command(), "registry", "serve", "--addr", "127.0.0.1:0",
               "--root", str(root), "--quiet", *extra]
        if htpasswd:
            cmd += ["--htpasswd", str(htpasswd), "--auth", auth]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("listening on "), line
        host = line.removeprefix("listening on ")
        if htpasswd is None:
            _wait_for_v2(host, proc)
        return Served(host, root, proc)

    yield start
    for p in procs:
        if p.poll() is None:
            _stop(p)


@pytest.fixture
def inproc_registry(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """ketch's registry in a thread of the test process: the server `ketch registry serve`
    runs, over HTTP on loopback, without a process start (its imports are ~0.2 s of CPU,
    and the suite starts dozens)."""
    servers: list[RegistryServer] = []

    def start(htpasswd: Path | None = None, auth: str = "basic") -> Served:
        root = tmp_path / f"inproc-{len(servers)}"
        srv = RegistryServer(("127.0.0.1", 0), root,
                             Htpasswd(htpasswd) if htpasswd else None, quiet=True,
                             token_auth=auth == "token")
        servers.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return Served(f"127.0.0.1:{srv.server_address[1]}", root)

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def docker_registry(tmp_path: Path) -> Iterator[Served]:
    """Debian's docker-registry (CNCF distribution) on an ephemeral loopback port."""
    binary = require_tool("docker-registry")
    root = tmp_path / "docker-registry"
    root.mkdir()
    port = free_port()
    cfg = tmp_path / "docker-registry.yml"
    cfg.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        "storage:\n  filesystem:\n    rootdirectory: " + str(root) + "\n"
        "  delete:\n    enabled: true\n"
        "http:\n  addr: 127.0.0.1:" + str(port) + "\n")
    env = dict(os.environ)
    proc = subprocess.Popen([binary, "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        _wait_for_v2(f"127.0.0.1:{port}", proc)
        yield Served(f"127.0.0.1:{port}", root)
    finally:
        _stop(proc)


@pytest.fixture
def other_root(tmp_path: Path) -> Iterator[Callable[[str], KetchCLI]]:
    """More state roots (the pulling side), isolated and torn down like `ketch_root`."""
    roots: list[Path] = []

    def make(name: str) -> KetchCLI:
        root = tmp_path / name
        root.mkdir()
        isolated_network_config(root)
        roots.append(root)
        return KetchCLI(root)

    yield make
    for r in roots:
        teardown_root(r, r / "run")
