"""Digests: `algorithm:hex`, sha256 only for content we write, validated on the way in."""

from __future__ import annotations

from ketch.errors import InvalidArgument

_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX = frozenset("0123456789abcdef")

Digest = str


def validate_digest(d: str) -> str:
    algorithm, _, hexpart = d.partition(":")
    if len(hexpart) != _HEX_LENGTH.get(algorithm) or not _LOWER_HEX.issuperset(hexpart):
        raise InvalidArgument(f"invalid digest {d!r}: expected sha256:<64 hex characters>")
    return d


def sha256_bytes(data: bytes) -> str:
    import hashlib  # on first use: loading OpenSSL costs start-up time

    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(d: str) -> str:
    return d.split(":", 1)[1] if ":" in d else d


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append(sha256_bytes(f"{out[-1]} {d}".encode()))
    return out
