"""Fixtures for the pod tests: the container tests' state root (busybox, its own bridge
and chains, leak checks after each test), plus `pk`: the CLI on it, with every pod the
test made removed first when the test ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.containers.conftest import (  # noqa: F401 (fixtures)
    TrackingCLI,
    container_prereqs,
    image_root,
    ketch,
)
from tests.helpers.host import wait_for


@pytest.fixture
def pk(ketch: TrackingCLI) -> Iterator[TrackingCLI]:  # noqa: F811
    yield ketch
    pods = ketch("pod", "ps", "-q", "--no-trunc", check=False).stdout.split()
    if pods:
        ketch("pod", "rm", "-f", *pods, check=False)
    ketch.ids.update(ketch("ps", "-aq", "--no-trunc", check=False).stdout.split())


def state(cli: TrackingCLI, name: str) -> str:
    return cli("inspect", "-f", "{{.State.Status}}", name).stdout.strip()


def wait_state(cli: TrackingCLI, name: str, want: str, timeout: float = 20) -> None:
    wait_for(lambda: state(cli, name) == want, timeout=timeout,
             what=f"{name} to be {want}")


def infra_of(cli: TrackingCLI, pod: str) -> str:
    return cli("pod", "inspect", "-f", "{{.InfraContainerID}}", pod).stdout.strip()
