"""Fixtures for the runtime layer: real runc and real conmon, as root, in a private state
root and a private cgroup parent. Every container a test makes is torn down afterwards
and the teardown fails the test if a conmon process, runc state or cgroup is left."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import require_root, require_tool
from tests.helpers.host import conmon_pids, wait_for
from tests.helpers.rootfs import extract_rootfs

from ketch.errors import RuntimeFailure
from ketch.runtime.monitor import (
    ConmonMonitor,
    ContainerPaths,
    ExitStatus,
    StartedContainer,
    write_config,
)
from ketch.runtime.oci import OCIRuntime
from ketch.runtime.spec import ContainerSpec, generate_config

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_dirs(cgroup_path: str) -> list[Path]:
    """Every directory of `cgroup_path` across the mounted hierarchies (v1 and v2)."""
    rel = cgroup_path.strip("/")
    found = []
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        candidates = [CGROUP_ROOT / rel]
    else:
        candidates = [h / rel for h in CGROUP_ROOT.iterdir() if h.is_dir()]
    for path in candidates:
        if path.is_dir():
            found.append(path)
    return found


def session_cgroup_parent(prefix: str) -> Iterator[str]:
    """A cgroup parent for a session's containers, checked empty and removed after."""
    parent = f"/{prefix}-{secrets.token_hex(4)}"
    yield parent
    # runc removes each container's cgroup on delete; the parent is ours to remove.
    leftovers = []
    for path in cgroup_dirs(parent):
        try:
            path.rmdir()
        except OSError:
            leftovers.append(path)
    assert not leftovers, f"cgroups left behind: {leftovers}"


@pytest.fixture(scope="session")
def cgroup_parent() -> Iterator[str]:
    yield from session_cgroup_parent("ketch-test")


@pytest.fixture(scope="session")
def runtime_prereqs() -> None:
    require_root()
    require_tool("runc")
    require_tool("conmon")


@pytest.fixture
def rootfs(busybox_tar: Path, tmp_path: Path) -> Path:
    return extract_rootfs(busybox_tar, tmp_path / "rootfs")


class Harness:
    """Makes, runs and always cleans up containers for one test."""

    def __init__(self, tmp_path: Path, rootfs: Path, cgroup_parent: str) -> None:
        self.tmp_path = tmp_path
        self.rootfs = rootfs
        self.cgroup_parent = cgroup_parent
        self.runtime = OCIRuntime("runc", tmp_path / "state")
        self.monitor = ConmonMonitor(self.runtime)
        self.created: list[ContainerPaths] = []

    def spec(self, args: list[str], **kwargs: Any) -> ContainerSpec:
        kwargs.setdefault("rootfs", self.rootfs)
        kwargs.setdefault("cgroup_parent", self.cgroup_parent)
        return ContainerSpec(id=secrets.token_hex(32), args=args, **kwargs)

    def prepare(self, spec: ContainerSpec, bundle: Path | None = None) -> ContainerPaths:
        base = self.tmp_path / "c" / spec.id[:12]
        paths = ContainerPaths.create(spec.id, bundle or base / "bundle", base / "run")
        write_config(paths.bundle, generate_config(spec))
        self.created.append(paths)
        return paths

    def start(self, args: list[str], **kwargs: Any) -> tuple[ContainerPaths, StartedContainer]:
        monitor_kwargs = {k: kwargs.pop(k) for k in ("stdin", "exit_command", "name",
                                                     "leave_stdin_open") if k in kwargs}
        spec = self.spec(args, **kwargs)
        paths = self.prepare(spec)
        started = self.monitor.start_container(paths, terminal=spec.terminal,
                                               **monitor_kwargs)
        return paths, started

    def run(self, args: list[str], **kwargs: Any) -> tuple[ExitStatus, str, str]:
        """Run to completion; (exit status, stdout, stderr) from the log."""
        paths, _ = self.start(args, **kwargs)
        status = self.monitor.wait_exit(paths, timeout=30)
        out, err = self.output(paths)
        return status, out, err

    def output(self, paths: ContainerPaths) -> tuple[str, str]:
        from ketch.runtime.logs import read_log

        out, err = [], []
        for chunk in read_log(paths.log_path):
            (out if chunk.stream == "stdout" else err).append(chunk.data)
        return b"".join(out).decode(), b"".join(err).decode()

    @staticmethod
    def wait_for(predicate: Any, timeout: float = 10, what: str = "condition") -> None:
        wait_for(predicate, timeout, interval=0.02, what=what)

    def teardown(self) -> None:
        problems = []
        for paths in self.created:
            cid = paths.container_id
            state = None
            with contextlib.suppress(RuntimeFailure):
                state = self.runtime.state(cid)
                if state is not None and state.status == "paused":
                    self.runtime.resume(cid)
                if state is not None and state.status in ("running", "paused", "created"):
                    self.runtime.kill(cid, "KILL", all_processes=True)
            if state is not None or self.monitor.monitor_alive(paths):
                with contextlib.suppress(RuntimeFailure, TimeoutError):
                    self.monitor.wait_exit(paths, timeout=10)
                with contextlib.suppress(TimeoutError):
                    self.monitor.wait_monitor_exit(paths, timeout=10)
            self.monitor.cleanup(paths)
            left = cgroup_dirs(f"{self.cgroup_parent}/{cid}")
            if left:
                problems.append(f"cgroups of {cid[:12]} left: {left}")
        deadline = time.monotonic() + 5
        while (pids := conmon_pids(str(self.tmp_path))) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        if pids:
            problems.append(f"conmon processes left: {pids}")
        states = self.runtime.list()
        if states:
            problems.append(f"runc state left: {[s.id[:12] for s in states]}")
        assert not problems, "; ".join(problems)


@pytest.fixture
def harness(runtime_prereqs: None, tmp_path: Path, rootfs: Path,
            cgroup_parent: str) -> Iterator[Harness]:
    h = Harness(tmp_path, rootfs, cgroup_parent)
    yield h
    h.teardown()
