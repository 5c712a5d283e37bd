"""What the builder needs from the composition root, as a Protocol.

The Engine runs a build by handing itself over as this narrow view: the state paths,
the stores, the image and container services, pulling a base image. The builder never
imports `ketch.engine`.

Imported only for type checking (no run-time cost).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ketch.containers.service import ContainerService
from ketch.images.service import ImageService
from ketch.layers.store import LayerStore
from ketch.store.content import ContentStore
from ketch.store.db import Database
from ketch.store.images import ImageRecords

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any



class BuildHost(Protocol):
    db: Database

    @property
    def root(self) -> Path: ...
    @property
    def run_root(self) -> Path: ...
    @property
    def content(self) -> ContentStore: ...
    @property
    def records(self) -> ImageRecords: ...
    @property
    def layers(self) -> LayerStore: ...
    @property
    def images(self) -> ImageService: ...
    @property
    def containers(self) -> ContainerService: ...

    def pull(self, name: str, *, quiet: bool = False) -> Iterator[Any]: ...
