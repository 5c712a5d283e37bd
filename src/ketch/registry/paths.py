"""The one definition of the registry's on-disk layout.

    blobs/sha256/<hex>                                  every blob and manifest, once
    repositories/<name>/_layers/sha256/<hex>            link: the repository may serve it
    repositories/<name>/_manifests/revisions/sha256/<hex>/type   the manifest's media type
    repositories/<name>/_manifests/tags/<tag>            the digest the tag points at
    repositories/<name>/_uploads/<uuid>/data             an upload in progress

Per-repository links into one global blob store give deduplication and cheap
cross-repository mounts; a blob is only served for a repository that links it.
"""

from __future__ import annotations

from pathlib import Path


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.repositories = root / "repositories"
        self.tmp = root / "tmp"

    def blob(self, digest: str) -> Path:
        return self.blobs / _hex(digest)

    def repo(self, name: str) -> Path:
        return self.repositories / name

    def layer_link(self, name: str, digest: str) -> Path:
        return self.repo(name) / "_layers" / "sha256" / _hex(digest)

    def revisions(self, name: str) -> Path:
        return self.repo(name) / "_manifests" / "revisions" / "sha256"

    def revision(self, name: str, digest: str) -> Path:
        return self.revisions(name) / _hex(digest)

    def tags(self, name: str) -> Path:
        return self.repo(name) / "_manifests" / "tags"

    def tag(self, name: str, tag: str) -> Path:
        return self.tags(name) / tag

    def upload(self, name: str, uuid: str) -> Path:
        return self.repo(name) / "_uploads" / uuid


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64:
        raise ValueError(f"unsupported digest {digest}")
    return hexpart
