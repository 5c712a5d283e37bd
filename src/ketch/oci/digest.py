"""Digests: `algorithm:hex`, sha256 only for content we write, validated on the way in."""

from __future__ import annotations

from ketch.errors import InvalidArgument
from ketch.ids import LOWER_HEX

# Small inputs (chain IDs, cache keys, file headers) hash through CPython's own sha256:
# `hashlib` loads OpenSSL, which costs milliseconds at the start of every command that
# merely looks things up. Content of any size goes through hashlib (sha256_bytes),
# whose OpenSSL code is several times faster on large inputs.
try:
    from _sha256 import sha256 as small_sha256
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import sha256 as small_sha256

_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}

Digest = str


def validate_digest(d: str) -> str:
    algorithm, _, hexpart = d.partition(":")
    if len(hexpart) != _HEX_LENGTH.get(algorithm) or not LOWER_HEX.issuperset(hexpart):
        raise InvalidArgument(f"invalid digest {d!r}: expected sha256:<64 hex characters>")
    return d


def sha256_bytes(data: bytes) -> str:
    import hashlib  # on first use: loading OpenSSL costs start-up time

    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(d: str) -> str:
    return d.split(":", 1)[1] if ":" in d else d


def chain_of(parent: str | None, diff_id: str) -> str:
    """The chain ID of a layer with DiffID `diff_id` on the layer whose chain ID is
    `parent`: the DiffID itself for a base layer, else sha256("<parent> <diff_id>")."""
    if parent is None:
        return diff_id
    return "sha256:" + small_sha256(f"{parent} {diff_id}".encode()).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        out.append(chain_of(out[-1] if out else None, d))
    return out
