"""sha256 for small inputs without OpenSSL, and chain IDs; both live in ketch.oci.digest
(this module keeps the names importable for the builder)."""

from __future__ import annotations

from ketch.oci.digest import chain_ids, small_sha256

__all__ = ["chain_ids", "small_sha256"]
