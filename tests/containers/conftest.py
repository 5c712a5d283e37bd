"""Fixtures for container tests: real runc, conmon and overlayfs, as root.

Each test module gets one state root with the offline busybox image imported; `ketch`
runs the CLI against it. Every container a test makes is tracked by ID (a --cidfile is
added to `run`/`create` when the test gives none), and after each test all containers
are removed and the test fails if any overlay mount, conmon process, runc state or
cgroup of those containers is left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import (
    KetchCLI,
    import_image,
    isolated_network_config,
    ketch_command,
    require,
    require_root,
    require_tool,
    teardown_root,
)
from tests.helpers.host import conmon_pids, mounts_under, wait_for

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "ketch"


def cgroups_of(cid: str) -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    candidates = [CGROUP_ROOT / CGROUP_PARENT / cid]
    candidates += [h / CGROUP_PARENT / cid for h in CGROUP_ROOT.iterdir() if h.is_dir()]
    return [p for p in candidates if p.is_dir()]


def leaks(root: Path, ids: set[str]) -> list[str]:
    """What is left of containers that should be gone: mounts, monitors, state, cgroups.

    `<run root>/netns` itself stays mounted on purpose (the network service keeps its
    namespace files there, as `ip netns` keeps /run/netns); what is mounted on the files
    inside it, like every overlay, belongs to one container.
    """
    netns_dir = str(root / "run" / "netns")
    found = [f"mount {m}" for m in mounts_under(root) if m != netns_dir]
    found += [f"conmon pid {p}" for p in conmon_pids(str(root))]
    runc_root = root / "run" / "runc"
    if runc_root.is_dir():
        found += [f"runc state {p.name}" for p in runc_root.iterdir() if p.is_dir()]
    for cid in ids:
        found += [f"cgroup {p}" for p in cgroups_of(cid)]
    return found


def made_in(root: Path) -> dict[str, list[str]]:
    """What a refused `run`/`create` must not have made, read in this process (no CLI
    start-up, where `ps -aq` and `volume ls -q` cost one each): container records and
    volumes."""
    from ketch.engine import Engine

    with Engine(root, root / "run") as engine:
        return {"containers": [rec.id for rec in engine.containers.records.all()],
                "volumes": [v["Name"] for v in engine.volumes.list()]}


NOTHING_MADE: dict[str, list[str]] = {"containers": [], "volumes": []}


class TrackingCLI(KetchCLI):
    """KetchCLI that remembers the ID of every container `run`/`create` made."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.ids: set[str] = set()
        self._n = 0

    def __call__(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        args_l = list(args)
        cidfile = None
        if args_l and args_l[0] in ("run", "create") and not any(
                a == "--cidfile" or a.startswith("--cidfile=") for a in args_l):
            self._n += 1
            cidfile = self.root / f"cid-{os.getpid()}-{self._n}"
            args_l[1:1] = ["--cidfile", str(cidfile)]
        try:
            return super().__call__(*args_l, **kw)
        finally:
            if cidfile is not None:
                self.note_cidfile(cidfile)

    def note_cidfile(self, path: Path) -> None:
        try:
            cid = path.read_text().strip()
        except FileNotFoundError:
            return
        if cid:
            self.ids.add(cid)
        path.unlink()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KETCH_ROOT"] = str(self.root)
        env["KETCH_RUN_ROOT"] = str(self.root / "run")
        return env

    def argv(self, *args: str) -> list[str]:
        return [*ketch_command(), *args]

    def remove_everything(self) -> None:
        """`rm -f -v` every container, then `volume prune -a`: the same Engine calls
        those commands make, here in this process (the test's own commands went through
        the CLI; its clean-up is not what is under test). A removal that fails is left
        for the leak check that follows to report."""
        from ketch.engine import Engine
        from ketch.errors import KetchError

        with Engine(self.root, self.root / "run") as engine:
            engine.recover()
            for rec in engine.containers.records.all():
                self.ids.add(rec.id)
                try:
                    engine.containers.remove(rec.id, force=True, volumes=True)
                except KetchError:
                    pass
            try:
                engine.volumes.prune(all=True, filters={})
            except KetchError:
                pass


@pytest.fixture(scope="session")
def container_prereqs() -> None:
    require_root()
    for tool in ("runc", "conmon"):
        require_tool(tool)
    require(Path("/proc/filesystems").read_text().find("overlay") >= 0,
            "the kernel has no overlayfs")


@contextlib.contextmanager
def busybox_root(tmp_path_factory: pytest.TempPathFactory,
                 busybox_tar: Path) -> Iterator[TrackingCLI]:
    """A state root holding the busybox image (`busybox`, CMD ["sh"]) with its own
    bridge, subnets and chains (never the host's `ketch0`, nor another worker's), and
    the CLI on it; at the end every container there is removed and must leave nothing
    behind, and the root goes."""
    with tracked_busybox_root(tmp_path_factory, busybox_tar, "ketch-ctr") as cli:
        yield cli


@contextlib.contextmanager
def tracked_busybox_root(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path,
                         name: str) -> Iterator[TrackingCLI]:
    """busybox_root's root, made under `name`: its CLI, and at the end its containers
    removed, checked for leaks, and the root taken down."""
    root = tmp_path_factory.mktemp(name)
    isolated_network_config(root)
    cli = TrackingCLI(root)
    import_image(root, busybox_tar, "busybox", 'CMD ["sh"]')
    yield cli
    cli.remove_everything()
    wait_for(lambda: not leaks(root, cli.ids), timeout=20, what="the module's containers to go")
    teardown_root(root, root / "run")
    from ketch.containers.rootfs import unmount

    unmount(root / "run" / "netns")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path,
               container_prereqs: None) -> Iterator[Path]:
    """A busybox_root per test module; each test's `ketch` cleans up after itself."""
    with busybox_root(tmp_path_factory, busybox_tar) as cli:
        yield cli.root


@pytest.fixture
def ketch(image_root: Path) -> Iterator[TrackingCLI]:
    """The CLI on this module's root; everything the test made is removed afterwards and
    must leave nothing behind."""
    cli = TrackingCLI(image_root)
    yield cli
    cli.remove_everything()
    left: list[str] = []

    def clean() -> bool:
        left[:] = leaks(image_root, cli.ids)
        return not left

    try:
        wait_for(clean, timeout=20, what="containers to be cleaned up")
    except AssertionError:
        pytest.fail(f"left behind after the test: {left}")


@pytest.fixture
def run_d(ketch: TrackingCLI) -> Callable[..., str]:
    """`run -d ARGS...` → the full container ID."""

    def run(*args: str) -> str:
        cid = ketch("run", "-d", *args).stdout.strip()
        ketch.ids.add(cid)
        return cid

    return run


def wait_for_pid1(ketch: TrackingCLI, name: str, command: str) -> None:
    """Wait until the container's PID 1 runs `command` (its /proc comm). `run -d`
    returns once runc has let the process go (as docker's does), which can be before
    runc's init has exec'd the command; a signal in between reaches the init, which
    exits 2, and `top` lists `runc init` (a test that signals or lists at once waits
    for this first)."""
    pid = int(ketch("inspect", "-f", "{{.State.Pid}}", name).stdout)
    comm = Path(f"/proc/{pid}/comm")
    wait_for(lambda: comm.read_text().strip() == command[:15], what=f"{command} to run")
