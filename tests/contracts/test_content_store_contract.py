"""The content store contract: blobs addressed by their sha256 digest.

Every implementation in tests/contracts/conftest.py CONTENT_STORES passes these."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from ketch.errors import DigestMismatch, InvalidArgument, NotFound
from ketch.store.content import ContentStore


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tmp_entries(store: ContentStore) -> list[str]:
    return sorted(os.listdir(store.tmp))


def test_put_returns_the_sha256_digest_and_get_returns_the_same_bytes(
        content_store: ContentStore) -> None:
    data = b"hello, content\n" * 1000
    d = content_store.put(data)
    assert d == digest_of(data)
    assert content_store.exists(d)
    assert content_store.read(d) == data
    with content_store.open(d) as f:
        assert f.read() == data
    assert content_store.size(d) == len(data)
    assert list(content_store.walk()) == [d]


def test_putting_the_same_content_twice_stores_one_blob(content_store: ContentStore) -> None:
    a = content_store.put(b"same")
    b, n = content_store.put_stream(io.BytesIO(b"same"))
    assert (a, n) == (b, 4)
    assert list(content_store.walk()) == [a]
    assert tmp_entries(content_store) == []


def test_a_stream_larger_than_one_chunk_is_stored_whole(content_store: ContentStore) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    d, n = content_store.put_stream(io.BytesIO(data), digest_of(data), len(data))
    assert (d, n) == (digest_of(data), len(data))
    assert content_store.read(d) == data


def test_content_that_does_not_match_its_expected_digest_is_refused_and_not_kept(
        content_store: ContentStore) -> None:
    wrong = digest_of(b"other")
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        content_store.put(b"payload", expected=wrong)
    assert not content_store.exists(wrong)
    assert not content_store.exists(digest_of(b"payload"))
    assert list(content_store.walk()) == []
    assert tmp_entries(content_store) == []


def test_content_shorter_than_its_expected_size_is_refused_and_not_kept(
        content_store: ContentStore) -> None:
    data = b"truncated"
    with pytest.raises(DigestMismatch, match="size mismatch"):
        content_store.put_stream(io.BytesIO(data), size=len(data) + 5)
    assert list(content_store.walk()) == []
    assert tmp_entries(content_store) == []


def test_a_blob_being_written_is_not_visible_until_commit(content_store: ContentStore) -> None:
    data = b"partial" * 100
    d = digest_of(data)
    with content_store.writer() as w:
        w.write(data[:300])
        assert not content_store.exists(d)
        with pytest.raises(NotFound):
            content_store.open(d)
        w.write(data[300:])
        assert not content_store.exists(d)
        assert list(content_store.walk()) == []
        assert w.commit(d, len(data)) == d
    assert content_store.read(d) == data
    assert tmp_entries(content_store) == []


def test_an_abandoned_writer_leaves_nothing_behind(content_store: ContentStore) -> None:
    with pytest.raises(RuntimeError), content_store.writer() as w:
        w.write(b"half a blob")
        raise RuntimeError("the download broke")
    assert list(content_store.walk()) == []
    assert tmp_entries(content_store) == []


def _write_blob(root: str, data: bytes, barrier: Any, results: Any) -> None:
    store = ContentStore(Path(root))
    with store.writer() as w:
        w.write(data[: len(data) // 2])
        barrier.wait(10)  # every writer is half-way through before any commits
        w.write(data[len(data) // 2:])
        results.put(w.commit(digest_of(data), len(data)))


def test_concurrent_writers_of_one_digest_all_succeed_with_one_intact_blob(
        content_store: ContentStore) -> None:
    data = os.urandom(1 << 20)
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    writers = [ctx.Process(target=_write_blob,
                           args=(str(content_store.root), data, barrier, results))
               for _ in range(4)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(30)
    assert [p.exitcode for p in writers] == [0] * 4
    assert [results.get(timeout=5) for _ in writers] == [digest_of(data)] * 4
    assert list(content_store.walk()) == [digest_of(data)]
    assert content_store.read(digest_of(data)) == data
    assert tmp_entries(content_store) == []


def test_delete_removes_a_blob_and_is_idempotent(content_store: ContentStore) -> None:
    d = content_store.put(b"doomed")
    keep = content_store.put(b"kept")
    content_store.delete(d)
    content_store.delete(d)
    assert not content_store.exists(d)
    assert list(content_store.walk()) == [keep]


def test_a_missing_blob_is_not_found_for_every_read(content_store: ContentStore) -> None:
    d = digest_of(b"never stored")
    assert not content_store.exists(d)
    for op in (lambda: content_store.open(d), lambda: content_store.read(d),
               lambda: content_store.size(d)):
        with pytest.raises(NotFound, match="not found"):
            op()


@pytest.mark.parametrize("bad", ["sha256:abc", "sha256:" + "G" * 64, "md5:" + "0" * 32,
                                 "sha256:../../" + "0" * 58, ""])
def test_a_malformed_digest_is_refused_before_touching_the_filesystem(
        content_store: ContentStore, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid digest"):
        content_store.exists(bad)
    with pytest.raises(InvalidArgument, match="invalid digest"):
        content_store.delete(bad)
    with pytest.raises(InvalidArgument, match="invalid digest"):
        content_store.put(b"x", expected=bad)
    assert tmp_entries(content_store) == []


def test_a_digest_in_an_algorithm_the_store_does_not_keep_is_refused_as_unsupported(
        content_store: ContentStore) -> None:
    data = b"named by sha512"
    d = "sha512:" + hashlib.sha512(data).hexdigest()
    for op in (lambda: content_store.exists(d), lambda: content_store.open(d),
               lambda: content_store.put(data, expected=d),
               lambda: content_store.put_stream(io.BytesIO(data), d)):
        with pytest.raises(NotFound, match="unsupported digest algorithm in sha512:"):
            op()
    with pytest.raises(NotFound, match="unsupported digest algorithm"), \
            content_store.writer() as w:
        w.write(data)
        w.commit(d)
    assert list(content_store.walk()) == []
    assert tmp_entries(content_store) == []
