"""Fixtures for the kube tests: the container tests' state root (busybox, its own bridge
and chains, leak checks after each test), plus `kk`: the CLI on it with helpers to write
YAML and to play it; every pod and volume a test made is removed when it ends."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.containers.conftest import (  # noqa: F401 (fixtures)
    TrackingCLI,
    container_prereqs,
    image_root,
    ketch,
)
from tests.pods.conftest import remove_pods


class KubeCLI:
    """The CLI on one root, with a folder for the test's YAML files."""

    def __init__(self, cli: TrackingCLI, folder: Path) -> None:
        self.cli = cli
        self.root = cli.root
        self.folder = folder

    def __call__(self, *args: str, **kw: object):  # type: ignore[no-untyped-def]
        return self.cli(*args, **kw)  # type: ignore[arg-type]

    def yaml(self, text: str, name: str = "app.yaml") -> Path:
        path = self.folder / name
        path.write_text(textwrap.dedent(text))
        return path

    def exec(self, container: str, script: str) -> str:
        return self.cli("exec", container, "sh", "-c", script).stdout

    def pods(self) -> list[str]:
        return self("pod", "ps", "--format", "{{.Name}}").stdout.split()

    def containers(self) -> list[str]:
        return sorted(self("ps", "-a", "--format", "{{.Names}}").stdout.split())


@pytest.fixture
def kk(ketch: TrackingCLI, tmp_path: Path) -> Iterator[KubeCLI]:  # noqa: F811
    yield KubeCLI(ketch, tmp_path)
    remove_pods(ketch)
