"""The one definition of the registry's on-disk layout.

    blobs/<algorithm>/<hex>                             every blob and manifest, once
    repositories/<name>/_layers/<algorithm>/<hex>       link: the repository may serve it
    repositories/<name>/_manifests/revisions/<algorithm>/<hex>/type   its media type
    repositories/<name>/_manifests/tags/<tag>            the digest the tag points at
    repositories/<name>/_uploads/<uuid>/data             an upload in progress

Per-repository links into one global blob store give deduplication and cheap
cross-repository mounts; a blob is only served for a repository that links it.
Paths are driver paths: "/"-separated and relative to the driver's root. The
algorithm is sha256 or sha512 (the two the distribution spec names); content pushed
under one is stored under that one.
"""

from __future__ import annotations

ALGORITHMS = {"sha256": 64, "sha512": 128}
BLOBS = "blobs"
REPOSITORIES = "repositories"
TMP = "tmp"


def blob(digest: str) -> str:
    return f"{BLOBS}/{_hex(digest)}"


def blobs(algorithm: str) -> str:
    return f"{BLOBS}/{algorithm}"


def repo(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, digest: str) -> str:
    return f"{repo(name)}/_layers/{_hex(digest)}"


def revisions(name: str, algorithm: str) -> str:
    return f"{repo(name)}/_manifests/revisions/{algorithm}"


def revision(name: str, digest: str) -> str:
    return f"{repo(name)}/_manifests/revisions/{_hex(digest)}"


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
    """"algorithm/hex" of a digest: the two path components it is stored under."""
    algo, _, hexpart = digest.partition(":")
    if ALGORITHMS.get(algo) != len(hexpart) or "/" in hexpart or "." in hexpart:
        raise ValueError(f"unsupported digest {digest}")
    return f"{algo}/{hexpart}"
