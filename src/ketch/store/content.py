"""Content-addressed blobs under `blobs/sha256/<hex>` (OCI image-layout compatible).

A blob is written to `tmp/`, hashed while it streams, fsynced, verified against the
digest and size the caller expects, and only then renamed into place. Nothing
unverified is ever stored under a digest, and a crash leaves at most a temp file
that `clean_tmp` removes.

Paths are strings (`os.path`, `os`): pathlib imports fnmatch, re and urllib.parse, several
milliseconds that `image inspect` and `create`, which only read a blob or two, should not
pay. `root` may be any path-like.
"""

from __future__ import annotations

import os

from ketch.errors import DigestMismatch, NotFound
from ketch.oci.digest import hex_of, validate_digest
from ketch.values import contextmanager

CHUNK = 1 << 20

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO


class BlobWriter:
    """A file in tmp/ that hashes what is written; `commit` verifies and renames it."""

    def __init__(self, store: ContentStore) -> None:
        # Imported here, not at start-up: commands that only read never need them.
        import hashlib
        import tempfile

        from ketch.store.intents import owner_tag

        self._store = store
        fd, name = tempfile.mkstemp(prefix=f"blob-{owner_tag()}-", dir=store.tmp)
        self.path = name
        self._f = os.fdopen(fd, "wb", buffering=CHUNK)
        self._h = hashlib.sha256()
        self.size = 0
        self._done = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._f.write(data)
        self._h.update(data)
        self.size += len(data)
        return len(data)

    def copy_from(self, src: BinaryIO, limit: int | None = None) -> None:
        remaining = limit
        while remaining is None or remaining > 0:
            n = CHUNK if remaining is None else min(CHUNK, remaining)
            chunk = src.read(n)
            if not chunk:
                break
            self.write(chunk)
            if remaining is not None:
                remaining -= len(chunk)

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()

    def commit(self, expected: str | None = None, size: int | None = None) -> str:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        digest = self.digest
        try:
            if expected is not None:
                # Malformed, or in an algorithm the store does not keep: bad input, not
                # a mismatch of the content.
                self._store.path(expected)
            if expected is not None and expected != digest:
                raise DigestMismatch(
                    f"content digest mismatch: expected {expected}, got {digest}")
            if size is not None and size != self.size:
                raise DigestMismatch(
                    f"content size mismatch for {digest}: expected {size}, got {self.size}")
            final = self._store.path(digest)
            if os.path.exists(final):
                os.unlink(self.path)
            else:
                os.rename(self.path, final)
            self._done = True
            return digest
        finally:
            if not self._done:
                _unlink(self.path)
                self._done = True

    def abort(self) -> None:
        if not self._done:
            self._f.close()
            _unlink(self.path)
            self._done = True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class ContentStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self.blobs = os.path.join(self.root, "blobs", "sha256")
        self.tmp = os.path.join(self.root, "tmp")
        os.makedirs(self.blobs, exist_ok=True)
        if not os.path.isdir(self.tmp):
            os.makedirs(self.tmp, exist_ok=True)
            from ketch.store.topdir import ensure_top_dir

            ensure_top_dir(self.tmp)  # new trees away from deleted ones (store/topdir.py)

    def path(self, digest: str) -> str:
        validate_digest(digest)
        if not digest.startswith("sha256:"):
            raise NotFound(f"unsupported digest algorithm in {digest}")
        return os.path.join(self.blobs, hex_of(digest))

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    @contextmanager
    def writer(self) -> Iterator[BlobWriter]:
        w = BlobWriter(self)
        try:
            yield w
        finally:
            w.abort()

    def put(self, data: bytes, expected: str | None = None) -> str:
        if expected is not None:
            self.path(expected)  # refused before any byte is written
        with self.writer() as w:
            w.write(data)
            return w.commit(expected, len(data) if expected else None)

    def put_stream(self, src: BinaryIO, expected: str | None = None,
                   size: int | None = None) -> tuple[str, int]:
        if expected is not None:
            self.path(expected)  # refused before any byte is written
        with self.writer() as w:
            w.copy_from(src, size)
            n = w.size
            return w.commit(expected, size), n

    def adopt(self, path: str | os.PathLike[str], digest: str) -> None:
        """Move a file under tmp/ into the store as `digest`.

        Only for bytes whose digest the caller has just computed itself (a layer tar that
        was unpacked and hashed in the same read): it saves copying and hashing a large
        file a second time. The file is fsynced before the rename, as `commit` does.
        """
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(path, self.path(digest))

    def delete(self, digest: str) -> None:
        _unlink(self.path(digest))

    def walk(self) -> Iterator[str]:
        for name in os.listdir(self.blobs):
            yield "sha256:" + name
