"""The one definition of the registry's on-disk layout.

    blobs/sha256/<hex>                                  every blob and manifest, once
    repositories/<name>/_layers/sha256/<hex>            link: the repository may serve it
    repositories/<name>/_manifests/revisions/sha256/<hex>/type   the manifest's media type
    repositories/<name>/_manifests/tags/<tag>            the digest the tag points at
    repositories/<name>/_uploads/<uuid>/data             an upload in progress

Per-repository links into one global blob store give deduplication and cheap
cross-repository mounts; a blob is only served for a repository that links it.
Paths are driver paths: "/"-separated and relative to the driver's root.
"""

from __future__ import annotations

BLOBS = "blobs/sha256"
REPOSITORIES = "repositories"
TMP = "tmp"


def blob(digest: str) -> str:
    return f"{BLOBS}/{_hex(digest)}"


def repo(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, digest: str) -> str:
    return f"{repo(name)}/_layers/sha256/{_hex(digest)}"


def revisions(name: str) -> str:
    return f"{repo(name)}/_manifests/revisions/sha256"


def revision(name: str, digest: str) -> str:
    return f"{revisions(name)}/{_hex(digest)}"


def revision_type(name: str, digest: str) -> str:
    return f"{revision(name, digest)}/type"


def tags(name: str) -> str:
    return f"{repo(name)}/_manifests/tags"


def tag(name: str, tag: str) -> str:
    return f"{tags(name)}/{tag}"


def upload(name: str, uuid: str) -> str:
    return f"{repo(name)}/_uploads/{uuid}"


def upload_data(name: str, uuid: str) -> str:
    return f"{upload(name, uuid)}/data"


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64:
        raise ValueError(f"unsupported digest {digest}")
    return hexpart
