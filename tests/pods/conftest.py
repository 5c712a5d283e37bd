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

# how often a condition read with a CLI command is polled (each poll is a ketch process)
CLI_POLL = 0.2


def remove_pods(cli: TrackingCLI) -> None:
    """`pod rm -f` of every pod of the root, through the Engine in this process (the
    test's own commands went through the CLI; its clean-up is not what is under test);
    the IDs of all containers are kept for the leak check that follows."""
    from ketch.engine import Engine
    from ketch.errors import KetchError

    with Engine(cli.root, cli.root / "run") as engine:
        cli.ids.update(rec.id for rec in engine.containers.records.all())
        for pod in engine.pods.records.all():
            try:
                engine.pods.remove(pod.id, force=True)
            except KetchError:  # left for the leak check to report
                pass


@pytest.fixture
def pk(ketch: TrackingCLI) -> Iterator[TrackingCLI]:  # noqa: F811
    yield ketch
    remove_pods(ketch)


def state(cli: TrackingCLI, name: str) -> str:
    return cli("inspect", "-f", "{{.State.Status}}", name).stdout.strip()


def wait_state(cli: TrackingCLI, name: str, want: str, timeout: float = 20) -> None:
    if want == "exited":  # `wait` blocks until it stops: one command instead of polling
        cli("wait", name, timeout=timeout)
        assert state(cli, name) == want
        return
    wait_for(lambda: state(cli, name) == want, timeout=timeout, interval=CLI_POLL,
             what=f"{name} to be {want}")


def infra_of(cli: TrackingCLI, pod: str) -> str:
    return cli("pod", "inspect", "-f", "{{.InfraContainerID}}", pod).stdout.strip()
