"""Fixtures for the contract suites: each interface with more than one user gets one
suite of behaviour, run against every implementation through a parametrized fixture
(as tests/distribution/test_storage_driver.py does for the registry's storage driver).

A new implementation joins a suite by adding itself to the table of its fixture here.
Everything is real: a temporary state root, real runc/crun, conmon and overlayfs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import require_root, require_tool
from tests.helpers.rootfs import extract_rootfs
from tests.runtime.conftest import Harness, session_cgroup_parent

from ketch.errors import RuntimeFailure
from ketch.layers.store import LayerStore
from ketch.runtime.monitor import ConmonMonitor, ContainerPaths, StartedContainer
from ketch.runtime.oci import OCIRuntime
from ketch.runtime.spec import ContainerSpec
from ketch.store.content import ContentStore
from ketch.store.db import Database
from ketch.store.images import ImageRecords

CONTENT_STORES: dict[str, Callable[[Path], ContentStore]] = {"filesystem": ContentStore}


@pytest.fixture(params=sorted(CONTENT_STORES))
def content_store(request: pytest.FixtureRequest, tmp_path: Path) -> ContentStore:
    return CONTENT_STORES[request.param](tmp_path / "root")


def _overlay_layer_store(root: Path) -> LayerStore:
    db = Database(root / "ketch.db")
    records = ImageRecords(db)
    return LayerStore(root, db, records, ContentStore(root))


LAYER_STORES: dict[str, Callable[[Path], LayerStore]] = {"overlay": _overlay_layer_store}


@pytest.fixture(params=sorted(LAYER_STORES))
def layer_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LayerStore]:
    store = LAYER_STORES[request.param](tmp_path / "root")
    yield store
    store.db.conn.close()


# crun 1.8 refuses to create containers on a host whose cgroup v1 hierarchies have the
# unified one mounted beside them ("hybrid"): where it says so, the test is an expected,
# named failure (pytest.xfail), not a skip; what needs no container still runs.
CRUN_HYBRID_CGROUPS = "crun 1.8 does not support this host's hybrid cgroup layout"


def hybrid_cgroups() -> bool:
    root = Path("/sys/fs/cgroup")
    return not (root / "cgroup.controllers").exists() and (root / "unified").is_dir()


RUNTIMES = ("crun", "runc")


@pytest.fixture(scope="session")
def contract_rootfs(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One busybox rootfs for every container of the session (mounted read-only)."""
    return extract_rootfs(busybox_tar, tmp_path_factory.mktemp("contract") / "rootfs")


@pytest.fixture(scope="session")
def contract_cgroup_parent() -> Iterator[str]:
    yield from session_cgroup_parent("ketch-contract")


class ContractHarness(Harness):
    """tests/runtime's harness (create, start, always clean up and check for leftovers)
    over a chosen OCI runtime, on the shared read-only rootfs."""

    def __init__(self, tmp_path: Path, rootfs: Path, cgroup_parent: str,
                 runtime: str) -> None:
        super().__init__(tmp_path, rootfs, cgroup_parent)
        self.runtime = OCIRuntime(runtime, tmp_path / "state")
        self.monitor = ConmonMonitor(self.runtime)

    def spec(self, args: list[str], **kwargs: Any) -> ContainerSpec:
        kwargs.setdefault("readonly_rootfs", True)
        return super().spec(args, **kwargs)

    @contextlib.contextmanager
    def _known_refusals(self) -> Iterator[None]:
        try:
            yield
        except RuntimeFailure as e:
            if "hybrid mode not supported" in str(e) and hybrid_cgroups():
                pytest.xfail(CRUN_HYBRID_CGROUPS)
            raise

    def create(self, paths: ContainerPaths) -> StartedContainer:
        """conmon runs `<runtime> create`: the container waits in "created"."""
        with self._known_refusals():
            return self.monitor.create_container(paths)

    def start(self, args: list[str], **kwargs: Any) -> tuple[ContainerPaths, StartedContainer]:
        with self._known_refusals():
            return super().start(args, **kwargs)


def _harness(request: pytest.FixtureRequest, runtime: str, tmp_path: Path, rootfs: Path,
             cgroup_parent: str) -> Iterator[ContractHarness]:
    require_root()
    require_tool("conmon")
    require_tool(runtime)
    h = ContractHarness(tmp_path, rootfs, cgroup_parent, runtime)
    yield h
    h.teardown()


@pytest.fixture(params=RUNTIMES)
def runtime_harness(request: pytest.FixtureRequest, tmp_path: Path, contract_rootfs: Path,
                    contract_cgroup_parent: str) -> Iterator[ContractHarness]:
    """A harness per OCI runtime: the runtime contract runs against each."""
    yield from _harness(request, request.param, tmp_path, contract_rootfs,
                        contract_cgroup_parent)


MONITORS = {"conmon": "runc"}  # monitor name -> the runtime it drives in the suite


@pytest.fixture(params=sorted(MONITORS))
def monitor_harness(request: pytest.FixtureRequest, tmp_path: Path, contract_rootfs: Path,
                    contract_cgroup_parent: str) -> Iterator[ContractHarness]:
    """A harness per container monitor: the monitor contract runs against each."""
    yield from _harness(request, MONITORS[request.param], tmp_path, contract_rootfs,
                        contract_cgroup_parent)
