"""Fixtures for the contract suites: each interface with more than one user gets one
suite of behaviour, run against every implementation through a parametrized fixture
(as tests/distribution/test_storage_driver.py does for the registry's storage driver).

A new implementation joins a suite by adding itself to the table of its fixture here.
Everything is real: a temporary state root, real runc/crun, conmon and overlayfs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import require_root, require_tool
from tests.helpers.rootfs import extract_rootfs

from ketch.layers.store import LayerStore
from ketch.runtime.oci import OCIRuntime
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


# crun 1.8 refuses a host whose cgroup v1 hierarchies have the unified one mounted beside
# them ("hybrid"); that run is an expected, named failure there, not a skip.
CRUN_HYBRID_CGROUPS = "crun 1.8 does not support this host's hybrid cgroup layout"


def hybrid_cgroups() -> bool:
    root = Path("/sys/fs/cgroup")
    return not (root / "cgroup.controllers").exists() and (root / "unified").is_dir()


RUNTIMES = ("crun", "runc")


@pytest.fixture(scope="session")
def contract_rootfs(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One busybox rootfs for every container of the session (read-only in its spec)."""
    return extract_rootfs(busybox_tar, tmp_path_factory.mktemp("contract") / "rootfs")


@pytest.fixture(params=RUNTIMES)
def runtime_name(request: pytest.FixtureRequest) -> str:
    require_root()
    require_tool("conmon")
    require_tool(request.param)
    if request.param == "crun" and hybrid_cgroups():
        request.applymarker(pytest.mark.xfail(reason=CRUN_HYBRID_CGROUPS, strict=True))
    return request.param


def runtime_version(runtime: OCIRuntime) -> str:
    out = subprocess.run([runtime.path, "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0] if out.stdout else ""


def copy_rootfs(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest
