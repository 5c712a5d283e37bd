"""OCI image-spec and Docker schema2 models: media types, digests, descriptors, manifests."""

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
