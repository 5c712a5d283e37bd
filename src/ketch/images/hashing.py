"""sha256 for small inputs without OpenSSL, and chain IDs computed with it.

`hashlib` loads OpenSSL, which costs milliseconds at every start of a command that
merely looks things up (a fully cached `build` computes a few dozen digests of a few
hundred bytes: cache keys, file headers, chain IDs). CPython's own `_sha256` gives the
same digests and loads in a fraction of that; content of any size still goes through
`hashlib`, whose OpenSSL code is several times faster on large inputs.
"""

from __future__ import annotations

try:
    from _sha256 import sha256 as small_sha256
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import sha256 as small_sha256

__all__ = ["chain_ids", "small_sha256"]


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)),
    as ketch.oci.digest.chain_ids, which hashes through OpenSSL."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else
                   "sha256:" + small_sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out
