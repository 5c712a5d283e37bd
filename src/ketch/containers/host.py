"""What the container service needs from the composition root, as a Protocol.

The Engine builds the container service and hands itself over as this narrow view: the
paths, the stores and the sibling services a container's lifecycle uses. The container
package never imports `ketch.engine`, and a command that only lists containers never
builds the image or network services (they are created on first use).

Imported only for type checking (no run-time cost).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ketch.containers.records import ContainerRecord
from ketch.containers.service import ContainerService
from ketch.containers.volumes import VolumeStore
from ketch.images.service import ImageService
from ketch.layers.store import LayerStore
from ketch.network.service import NetworkService
from ketch.store.db import Database
from ketch.store.images import ImageRecords
from ketch.store.intents import Intents

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    # pods build on containers (a pod's members are containers); the lifecycle only
    # calls back into the pod service, so the arrow exists for the type checker alone
    from ketch.pods.service import PodService


class ContainerHost(Protocol):
    root_dir: str
    run_root_dir: str
    db: Database

    @property
    def root(self) -> Path: ...
    @property
    def run_root(self) -> Path: ...
    @property
    def records(self) -> ImageRecords: ...
    @property
    def layers(self) -> LayerStore: ...
    @property
    def images(self) -> ImageService: ...
    @property
    def networks(self) -> NetworkService: ...
    @property
    def containers(self) -> ContainerService: ...
    @property
    def volumes(self) -> VolumeStore: ...
    @property
    def intents(self) -> Intents: ...
    @property
    def pods(self) -> PodService: ...

    def network_setup(self, rec: ContainerRecord) -> dict[str, Any]: ...
    def reopen(self) -> ContainerHost: ...
    def __enter__(self) -> ContainerHost: ...
    def __exit__(self, *exc: object) -> None: ...
    def network_teardown(self, rec: ContainerRecord) -> None: ...
