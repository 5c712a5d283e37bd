"""ketch.oci.digest hashes small inputs without OpenSSL: its digests and chain IDs must
be exactly those of hashlib and the image spec, or cached builds would miss (or, worse,
hit the wrong image)."""

from __future__ import annotations

import hashlib

from ketch.oci.digest import chain_ids, small_sha256


def test_small_sha256_is_sha256() -> None:
    for data in (b"", b"abc", b"x" * 1000, bytes(range(256)) * 300):
        assert small_sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    h = small_sha256()
    h.update(b"ab")
    h.update(b"c")
    assert h.hexdigest() == hashlib.sha256(b"abc").hexdigest()


def test_chain_ids_follow_the_image_spec() -> None:
    diff_ids = ["sha256:" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(5)]
    expected: list[str] = []
    for d in diff_ids:  # ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))
        expected.append(d if not expected else
                        "sha256:" + hashlib.sha256(f"{expected[-1]} {d}".encode()).hexdigest())
    for n in range(len(diff_ids) + 1):
        assert chain_ids(diff_ids[:n]) == expected[:n]
    assert chain_ids(diff_ids[:1]) == diff_ids[:1]
