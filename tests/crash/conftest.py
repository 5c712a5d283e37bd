"""Fixtures for the crash tests: a state root with busybox and its own network names,
a way to SIGKILL a ketch command at a chosen moment, and an inventory of everything a
killed operation could leave behind (mounts, processes, runtime state, veths, netns
files, iptables rules, leases, staging files, intent rows)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

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
from tests.helpers.host import conmon_pids, mounts_under


@pytest.fixture(scope="session")
def crash_prereqs() -> None:
    require_root()
    for tool in ("runc", "conmon", "iptables-save"):
        require_tool(tool)
    require("overlay" in Path("/proc/filesystems").read_text(), "the kernel has no overlayfs")


@pytest.fixture
def croot(tmp_path: Path, crash_prereqs: None, busybox_tar: Path) -> Iterator[KetchCLI]:
    """A state root with the busybox image; everything in it is removed afterwards."""
    root = tmp_path / "root"
    root.mkdir()
    isolated_network_config(root)
    cli = KetchCLI(root)
    import_image(root, busybox_tar, "busybox", 'CMD ["sh"]')
    yield cli
    teardown_root(root, root / "run")
    from ketch.containers.rootfs import unmount

    unmount(root / "run" / "netns")


def env_of(cli: KetchCLI) -> dict[str, str]:
    return dict(os.environ, KETCH_ROOT=str(cli.root), KETCH_RUN_ROOT=str(cli.root / "run"))


def kill_after(cli: KetchCLI, args: list[str], delay: float,
               stdin: IO[bytes] | None = None) -> bool:
    """Start `ketch ARGS`, SIGKILL it after `delay` seconds; True if it was still running
    (it was killed, not finished). With `stdin`, that file is fed through a pipe."""
    proc = subprocess.Popen([*ketch_command(), *args],
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env_of(cli))
    deadline = time.monotonic() + delay
    if stdin is not None:
        assert proc.stdin is not None
        try:
            while time.monotonic() < deadline:
                chunk = stdin.read(1 << 18)
                if not chunk:
                    break
                proc.stdin.write(chunk)
        except BrokenPipeError:
            pass
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
    return running


def kill_when(cli: KetchCLI, args: list[str], ready: Callable[[], bool], extra: float,
              timeout: float = 60) -> bool:
    """Start `ketch ARGS`, SIGKILL it `extra` seconds after `ready()` first holds; True if
    it was still running then."""
    proc = subprocess.Popen([*ketch_command(), *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env_of(cli))
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(extra)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return running


def start_stage(cli: KetchCLI, stage: str) -> Callable[[], bool]:
    """A predicate that holds once a starting container reached `stage`: "record" (its
    row exists), "mount" (its overlay is mounted), "netns" (its namespace file exists),
    "conmon" (its monitor runs), "runtime" (runc has its state)."""
    root = cli.root

    def check() -> bool:
        if stage == "record":
            return bool(_db_rows(root, "SELECT id FROM containers"))
        if stage == "mount":
            return any(m.endswith("/merged") for m in mounts_under(root / "containers"))
        if stage == "netns":
            d = root / "run" / "netns"
            return d.is_dir() and any(d.iterdir())
        if stage == "conmon":
            return bool(conmon_pids(str(root)))
        if stage == "runtime":
            d = root / "run" / "runc"
            return d.is_dir() and any(p.is_dir() for p in d.iterdir())
        raise ValueError(stage)

    return check


def network_names(root: Path) -> dict[str, str]:
    with open(root / "network.toml", "rb") as f:
        return tomllib.load(f)["network"]


def _db_rows(root: Path, query: str) -> list[tuple[object, ...]]:
    try:
        conn = sqlite3.connect(root / "ketch.db")
        try:
            return conn.execute(query).fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return []


def leftovers(cli: KetchCLI, keep: set[str] = frozenset()) -> list[str]:
    """Everything of containers other than `keep` (IDs) and of killed operations that is
    still there: the inventory the crash tests require to be empty."""
    root = cli.root
    names = network_names(root)
    found: list[str] = []
    netns_dir = root / "run" / "netns"
    found += [f"mount {m}" for m in mounts_under(root)
              if m != str(netns_dir) and not any(k in m for k in keep)]
    found += [f"conmon {p}" for p in conmon_pids(str(root))
              if not any(k in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
                         for k in keep)]
    runc_root = root / "run" / "runc"
    if runc_root.is_dir():
        found += [f"runc state {p.name}" for p in runc_root.iterdir()
                  if p.is_dir() and p.name not in keep]
    if netns_dir.is_dir():
        # (a pod infra's IPC and UTS namespaces are pinned there too, as ID-ipc, ID-uts)
        found += [f"netns {p.name}" for p in netns_dir.iterdir()
                  if p.name.partition("-")[0] not in keep]
    ours = {r[0] for r in _db_rows(root, "SELECT container_id FROM net_sandboxes")}
    veths = [n for n in os.listdir("/sys/class/net") if n.startswith(names["veth_prefix"])]
    endpoints = _db_rows(root, "SELECT container_id, host_ifname, ip FROM net_endpoints")
    kept_veths = {r[1] for r in endpoints if r[0] in keep}
    kept_ips = {r[2] for r in endpoints if r[0] in keep}
    found += [f"veth {v}" for v in veths if v not in kept_veths]
    found += [f"lease {r[0]} {r[2]}" for r in endpoints if r[0] not in keep]
    found += [f"port {r[0]} {r[1]}" for r in _db_rows(
        root, "SELECT container_id, host_port FROM net_ports") if r[0] not in keep]
    found += [f"sandbox {c}" for c in ours if c not in keep]
    save = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True)
    found += [f"rule {line}" for line in save.stdout.splitlines()
              if names["chain_prefix"] in line and "-j DNAT" in line
              and not any(f"{ip}:" in line for ip in kept_ips)]
    tmp = root / "tmp"
    if tmp.is_dir():
        found += [f"tmp {p.name}" for p in tmp.iterdir()]
    found += [f"intent {r}" for r in _db_rows(root, "SELECT kind, subject FROM intents")]
    return found


def assert_no_leftovers(cli: KetchCLI, keep: set[str] = frozenset(),
                        timeout: float = 10) -> None:
    """`leftovers` is empty, allowing a monitor that is exiting a moment to go."""
    deadline = time.monotonic() + timeout
    while True:
        found = leftovers(cli, keep)
        if not found:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: {found}")
        time.sleep(0.1)


def store_state(cli: KetchCLI) -> tuple[set[str], set[str]]:
    """(blob digests, unpacked layer chain IDs) on disk."""
    blobs = {p.name for p in (cli.root / "blobs" / "sha256").glob("*")}
    layers = {p.name for p in (cli.root / "layers").glob("*") if p.is_dir()}
    return blobs, layers


def assert_usable(cli: KetchCLI) -> None:
    """`images`, `ps -a` and `system df` answer after a crash."""
    cli("images")
    cli("ps", "-a")
    cli("system", "df")
