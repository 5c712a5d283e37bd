"""Fixtures shared by the whole suite.

Every test that touches state gets its own temporary ketch root; nothing is written
under /var/lib/ketch. Under CI=true a missing prerequisite fails instead of skipping.

The suite runs in parallel (pytest-xdist, scripts/test.sh): every fixture here is per
test or per worker process, and what workers share (the node image cache, host ports,
test subnets, the host's ip_forward setting) is locked or split between them.
"""

from __future__ import annotations

import atexit
import itertools
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.rootfs import write_busybox_rootfs_tar

IN_CI = os.environ.get("CI") == "true"

# ketch's settings in the caller's environment (a developer's exported KETCH_RUN_ROOT,
# DOCKER_HOST) would point the tests' commands at the caller's own state and daemons:
# each test says what it means itself, so none of them is inherited.
for _name in ("KETCH_ROOT", "KETCH_RUN_ROOT", "KETCH_BRIDGE_NAME", "KETCH_BRIDGE_SUBNET",
              "KETCH_DEBUG", "KETCH_EVENTS_MAX_BYTES", "KETCH_INSECURE_REGISTRIES",
              "KETCH_NETWORK_CONFIG", "KETCH_NETWORK_MTU", "KETCH_NETWORK_POOL",
              "KETCH_REGISTRY_READ_TIMEOUT", "DOCKER_HOST", "DOCKER_CONTEXT"):
    os.environ.pop(_name, None)


def worker_index() -> int | None:
    """This xdist worker's number (gw3 → 3), or None outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else None


_network_tokens = itertools.count(random.randrange(4096))


def network_token() -> str:
    """Four hex digits that name one test's bridges, veths and iptables chains
    (`kt<token>n<8 hex>` fills an interface name's 15 characters). Random tokens
    collided: a run makes ~1,500 state roots, and two alive at once on different
    workers drew the same token about one run in ten; each then removed the other's
    chains and links (a network isolation test saw its DROP rules vanish). The first
    digit is the worker's index, the other three a counter: no two tests of one run
    share a token (up to 15 workers)."""
    n = worker_index()
    first = n if n is not None and n < 15 else 15
    return f"{first:x}{next(_network_tokens) % 4096:03x}"


_IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
_ip_forward_before = pytest.StashKey[str]()




def pytest_configure(config: pytest.Config) -> None:
    _own_docker_config()
    if hasattr(config, "workerinput"):
        return
    # Setting up a bridge network turns on IPv4 forwarding (as Docker does). The host is
    # put back the way the test run found it, once, by the main process after every
    # worker is done (a worker restoring it would switch it off under the others).
    try:
        config.stash[_ip_forward_before] = _IP_FORWARD.read_text().strip()
    except OSError:
        pass


_DOCKER_CONFIG_PREFIX = "ketch-tests-docker-config-"


def _own_docker_config() -> None:
    """Nor is the machine's docker config (~/.docker/config.json: the logins a `docker
    login` or `ketch login` stored there) read or written by a test: the run has an
    empty one of its own, which xdist's workers inherit (a re-pull's import test failed
    on a machine where a login had left `{"auths": {}}` behind). Set here, not when
    this module is imported: the benches import it and run podman, which refuses a
    DOCKER_CONFIG without a config.json."""
    if os.path.basename(os.environ.get("DOCKER_CONFIG", "")).startswith(_DOCKER_CONFIG_PREFIX):
        return  # the main process's, in a worker
    directory = tempfile.mkdtemp(prefix=_DOCKER_CONFIG_PREFIX)
    atexit.register(shutil.rmtree, directory, True)
    os.environ["DOCKER_CONFIG"] = directory


def pytest_unconfigure(config: pytest.Config) -> None:
    before = config.stash.get(_ip_forward_before, None)
    if before is not None and os.geteuid() == 0:
        try:
            _IP_FORWARD.write_text(before)
        except OSError:
            pass


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup` (scripts/test.sh) the tests of one module that share a
    module-scoped fixture (a state root with busybox and its own bridge, an API server)
    go to one worker as an xdist group, so that fixture is made once, not once on every
    worker that got one of its tests (a root costs about 0.35 s of CPU to make and tear
    down, a server more). Tests that name a group of their own keep it. (Runs before
    xdist's own hook, which turns the marker into the `@group` suffix of the test ID.)"""
    for item in items:
        if any(item.iter_markers("xdist_group")):
            continue
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


_GROUPS_LOST = pytest.StashKey[str]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """On an xdist worker under `--dist loadgroup`: the groups must have reached the
    scheduler. xdist passes a test's group as an `@NAME` suffix of its node ID; pytest
    9.2's node IDs no longer take that suffix (pytest-dev/pytest-xdist#1386), and the
    groups were then lost without a word: every worker made the module roots, API, CRI
    and containerd servers for itself, ~50 CPU-seconds a run. Its grouped tests fail
    instead (pytest_runtest_setup), saying why."""
    config = session.config
    if not hasattr(config, "workerinput") or not config.getvalue("loadgroup"):
        return
    for item in session.items:
        if any(item.iter_markers("xdist_group")):
            if "@" not in item.nodeid:
                config.stash[_GROUPS_LOST] = (
                    f"pytest-xdist did not give {item.nodeid} its xdist_group: this pytest"
                    " and pytest-xdist do not keep a group on one worker (see pyproject.toml)")
            return


def pytest_runtest_setup(item: pytest.Item) -> None:
    lost = item.config.stash.get(_GROUPS_LOST, None)
    if lost is not None and any(item.iter_markers("xdist_group")):
        pytest.fail(lost, pytrace=False)


_LAUNCHER: list[str] = []


def ketch_command() -> list[str]:
    """The argv prefix that runs the `ketch` CLI as users run it: the `-I -S` launcher
    that scripts/install-deps.sh installs (src/ketch/launcher.py), rendered once per
    process into a temporary directory and pointing at the ketch package these tests
    import (the checkout's src/), not at whatever is installed."""
    if not _LAUNCHER:
        import ketch

        src = os.path.dirname(os.path.dirname(os.path.abspath(ketch.__file__)))
        where = tempfile.mkdtemp(prefix="ketch-test-launcher-")
        atexit.register(shutil.rmtree, where, True)
        target = os.path.join(where, "ketch")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        subprocess.run([sys.executable, "-m", "ketch.launcher", target], env=env, cwd=where,
                       check=True, capture_output=True)
        text = Path(target).read_text()
        assert f"sys.path += [{src!r}" in text, f"the launcher does not use {src}:\n{text}"
        _LAUNCHER.append(target)
    return list(_LAUNCHER)


def require(condition: bool, what: str) -> None:
    """Skip locally, fail under CI, when a prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing prerequisite under CI: {what}")
    pytest.skip(f"missing prerequisite: {what}")


def require_root() -> None:
    require(os.geteuid() == 0, "tests must run as root")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uncompressed rootfs tarball with busybox-static and its applets."""
    require(shutil.which("busybox") is not None or os.path.exists("/bin/busybox"),
            "busybox-static is not installed")
    return write_busybox_rootfs_tar(tmp_path_factory.mktemp("images") / "busybox-rootfs.tar")


def import_image(root: Path, tar: Path, ref: str, *changes: str) -> str:
    """`ketch import [--change C]... TAR REF` for a test's set-up, through the Engine in
    this process (no interpreter start-up per test; the import command itself is tested
    through the CLI in tests/images). Returns the image ID."""
    from ketch.engine import Engine

    with Engine(root, root / "run") as engine, open(tar, "rb") as f:
        return engine.images.import_tar(f, changes=list(changes), ref=ref).id


def isolated_network_config(root: Path) -> None:
    """Give a state root its own bridge, subnets and iptables chains (network.toml), so
    tests never touch a user's `ketch0` bridge or KETCH chains, nor each other's."""
    from tests.network.helpers import SubnetPicker

    tok = network_token()
    pick = SubnetPicker()
    (root / "network.toml").write_text(
        "[network]\n"
        f'bridge_name = "kt{tok}b0"\n'
        f'bridge_subnet = "{pick()}"\n'
        f'pool = "{pick()}"\n'
        "pool_prefixlen = 26\n"
        f'bridge_prefix = "kt{tok}n"\n'
        f'veth_prefix = "kt{tok}v"\n'
        f'chain_prefix = "KT{tok.upper()}"\n'
        "dns_upstreams = []\n")


def teardown_root(root: Path, run_root: Path) -> None:
    """Remove every container of a test root and the kernel objects of its network.

    Free for a root that started nothing: without a database there is nothing to
    remove, and the kernel objects of a root's network (bridges, chains, DNS processes,
    namespaces) are only ever made after its network service has created its run
    directory, so without that directory there is nothing to uninstall (and no
    iptables-save to run)."""
    if not (root / "ketch.db").exists():
        return
    networked = (run_root / "network").is_dir()
    from ketch.engine import Engine

    try:
        engine = Engine(root, run_root)
    except Exception:
        return
    try:
        for pod in engine.pods.records.all():  # their infra containers go with them
            try:
                engine.pods.remove(pod.id, force=True)
            except Exception:
                pass
        for rec in engine.containers.records.all():
            try:
                engine.containers.remove(rec.id, force=True, volumes=True)
            except Exception:
                pass
        if networked:  # (removing the containers above may create the directory)
            try:
                engine.networks.uninstall()
            except Exception:
                pass
    finally:
        engine.close()


@pytest.fixture
def ketch_root(tmp_path: Path) -> Iterator[Path]:
    """A fresh, empty state root for one test, with its own network names; everything
    the test started there is removed afterwards."""
    root = tmp_path / "ketch-root"
    root.mkdir()
    isolated_network_config(root)
    yield root
    teardown_root(root, root / "run")


class KetchCLI:
    """Runs the real `ketch` command line against one state root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, input: bytes | str | None = None, check: bool = True,
                 timeout: float = 120, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        full_env["KETCH_ROOT"] = str(self.root)
        full_env.setdefault("KETCH_RUN_ROOT", str(self.root / "run"))
        if env:
            full_env.update(env)
        data = input.decode() if isinstance(input, bytes) else input
        proc = subprocess.run(
            [*ketch_command(), *args], input=data, capture_output=True,
            text=True, timeout=timeout, env=full_env,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"ketch {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def inspected(self, name: str) -> dict[str, Any]:
        """`inspect NAME`'s document for one container, made by the Engine calls the
        command makes (recovery first), here in this process: for a test that polls a
        container's state while it waits, where a check through the CLI costs a process
        start-up (~20 ms of CPU against ~1). What the `inspect` command prints is tested
        through the CLI."""
        from ketch.engine import Engine

        with Engine(self.root, self.root / "run") as engine:
            engine.recover()
            return engine.containers.inspect(name)


@pytest.fixture
def ketch(ketch_root: Path) -> KetchCLI:
    return KetchCLI(ketch_root)
