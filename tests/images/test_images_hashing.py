"""ketch.images.hashing hashes small inputs without OpenSSL: its digests and chain IDs
must be exactly those of hashlib and ketch.oci.digest, or cached builds would miss (or,
worse, hit the wrong image)."""

from __future__ import annotations

import hashlib

from ketch.images.hashing import chain_ids, small_sha256
from ketch.oci.digest import chain_ids as oci_chain_ids


def test_small_sha256_is_sha256() -> None:
    for data in (b"", b"abc", b"x" * 1000, bytes(range(256)) * 300):
        assert small_sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    h = small_sha256()
    h.update(b"ab")
    h.update(b"c")
    assert h.hexdigest() == hashlib.sha256(b"abc").hexdigest()


def test_chain_ids_match_the_spec_implementation() -> None:
    diff_ids = ["sha256:" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(5)]
    for n in range(len(diff_ids) + 1):
        assert chain_ids(diff_ids[:n]) == oci_chain_ids(diff_ids[:n])
    assert chain_ids(diff_ids[:1]) == diff_ids[:1]
