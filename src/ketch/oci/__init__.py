"""OCI image-spec and Docker schema2 models: media types, digests, descriptors, manifests.

Names load on first use (PEP 562): `ketch.oci.digest` is on every command's path, the
dataclasses of `ketch.oci.model` only on the paths that read manifests.
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing `typing` costs milliseconds on every command's path
if TYPE_CHECKING:
    from typing import Any

    from ketch.oci.digest import Digest, sha256_bytes, validate_digest
    from ketch.oci.media import MediaType
    from ketch.oci.model import (
        Descriptor,
        ImageConfig,
        Index,
        Manifest,
        Platform,
        host_platform,
    )

# The PATH a Linux container gets, and a built image's config, when its image sets none
# (Docker's default: the builder writes it into the config, the daemon into the process).
# Here rather than in a model module: the builder's cached path and `run` read it.
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_WHERE = {
    "Digest": "digest", "sha256_bytes": "digest", "validate_digest": "digest",
    "MediaType": "media",
    "Descriptor": "model", "ImageConfig": "model", "Index": "model", "Manifest": "model",
    "Platform": "model", "host_platform": "model",
}

__all__ = [
    "DEFAULT_PATH_ENV",
    "Descriptor",
    "Digest",
    "ImageConfig",
    "Index",
    "Manifest",
    "MediaType",
    "Platform",
    "host_platform",
    "sha256_bytes",
    "validate_digest",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ketch.oci' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"ketch.oci.{module}"), name)
