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

_WHERE = {
    "Digest": "digest", "sha256_bytes": "digest", "validate_digest": "digest",
    "MediaType": "media",
    "Descriptor": "model", "ImageConfig": "model", "Index": "model", "Manifest": "model",
    "Platform": "model", "host_platform": "model",
}

__all__ = [
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
