"""Layer compression for `push`: the format and level a user asks for, the media type a
compressed layer gets in each manifest flavour, streaming compressors (gzip by ISA-L on
every core for big layers, zstd by the `zstandard` package, both imported only when a
layer is compressed), and the store's memory of compressed blobs already sent.

ketch keeps layers it made (import, commit, build) uncompressed, as their DiffID names
them. A push compresses them on the way out and remembers, per (DiffID, format, level),
the digest and size of what it sent and the repositories that received it: the next
push of that layer asks the registry for that digest (HEAD) or mounts it from one of
those repositories instead of compressing and sending it again. Layers that arrived
compressed (pulled) are pushed as they are.
"""

from __future__ import annotations

import hashlib
import time

from ketch.errors import InvalidArgument
from ketch.oci.media import MediaType
from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import BinaryIO

    from ketch.store.db import Database

FORMATS = ("gzip", "zstd", "none")
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
UNCOMPRESSED = frozenset({MediaType.OCI_LAYER, DOCKER_LAYER})
# Podman's accepted ranges: gzip as Go's compress/gzip (0 stores, 9 is best), zstd 1-22.
LEVELS = {"gzip": range(0, 10), "zstd": range(1, 23)}
CHUNK = 1 << 20
# Below this a layer is gzipped by one thread: starting the pool costs more than it saves.
THREADED_GZIP_MIN = 8 << 20


class InvalidCompression(InvalidArgument):
    """A bad --compression-format/--compression-level: a usage error, exit 125 as
    Podman and the docker CLI give for a bad flag value."""

    exit_code = 125
    exit_code_is_specific = True


@value(frozen=True)
class Compression:
    """What a push does to uncompressed layers; `level` None is the format's default."""

    format: str = "gzip"
    level: int | None = None

    @property
    def key(self) -> str:
        """The level as the store records it ("" for the default)."""
        return "" if self.level is None else str(self.level)


def parse(fmt: str | None, level: int | str | None) -> Compression:
    """Validate `--compression-format` and `--compression-level`."""
    fmt = (fmt or "gzip").lower()
    if fmt not in FORMATS:
        raise InvalidCompression(f'unsupported compression format "{fmt}": use gzip, zstd'
                              " or none")
    if level is None or level == "":
        return Compression(fmt, None)
    try:
        n = int(level)
    except (TypeError, ValueError):
        raise InvalidCompression(f'invalid compression level "{level}": not a number') from None
    if fmt == "none":
        raise InvalidCompression("--compression-level needs --compression-format gzip or zstd")
    allowed = LEVELS[fmt]
    if n not in allowed:
        raise InvalidCompression(f"compression level {n} is out of range for {fmt}"
                              f" ({allowed.start}-{allowed.stop - 1})")
    return Compression(fmt, n)


def layer_media_type(manifest_media_type: str, fmt: str) -> str:
    """The media type of a layer in `fmt` inside a manifest of `manifest_media_type`.
    Docker's schema2 has no zstd layer type: a zstd push is an OCI manifest."""
    if manifest_media_type == MediaType.DOCKER_MANIFEST and fmt != "zstd":
        return MediaType.DOCKER_LAYER_GZIP if fmt == "gzip" else DOCKER_LAYER
    return {"gzip": MediaType.OCI_LAYER_GZIP, "zstd": MediaType.OCI_LAYER_ZSTD,
            "none": MediaType.OCI_LAYER}[fmt]


def isal_level(level: int | None) -> int:
    """ISA-L has four levels (0-3); Podman's 0-9 gzip scale maps onto them in thirds.
    The default is ISA-L's 1, its fastest that still compresses like gzip -6."""
    if level is None:
        return 1
    return min(3, (level + 2) // 3)


class _Sink:
    """A file-like target collecting what a compressor writes (from its own thread)."""

    def __init__(self) -> None:
        from collections import deque

        self.parts: deque[bytes] = deque()

    def write(self, data: bytes) -> int:
        if data:
            self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        while self.parts:
            yield self.parts.popleft()


class CompressedStream:
    """Compressed bytes of `src` as a readable stream without a length (an HTTP client
    sends it chunked), hashed and counted as they pass; `read_bytes` counts the
    uncompressed input consumed (for progress), `done` says the end was reached."""

    def __init__(self, src: BinaryIO, compression: Compression, size_hint: int,
                 on_read: Callable[[int], None] | None = None) -> None:
        self.src = src
        self.compression = compression
        self.size_hint = size_hint
        self.on_read = on_read
        self.sha = hashlib.sha256()
        self.size = 0
        self.read_bytes = 0
        self.done = False
        self._parts: Iterator[bytes] | None = None
        self._pending = b""

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()

    def _out(self, data: bytes) -> bytes:
        self.sha.update(data)
        self.size += len(data)
        return data

    def _chunks(self) -> Iterator[bytes]:
        while chunk := self.src.read(CHUNK):
            self.read_bytes += len(chunk)
            yield chunk
            if self.on_read is not None:
                self.on_read(self.read_bytes)

    def read(self, n: int = -1) -> bytes:
        """Up to `n` compressed bytes (all that is left when `n` < 0); b"" at the end."""
        if self._parts is None:
            self._parts = self._produce()
        while not self._pending or (n < 0 and not self.done):
            part = next(self._parts, None)
            if part is None:
                break
            self._pending += part
        if n < 0 or len(self._pending) <= n:
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:n], self._pending[n:]
        return data

    def _produce(self) -> Iterator[bytes]:
        fmt = self.compression.format
        if fmt == "gzip":
            yield from self._gzip()
        elif fmt == "zstd":
            yield from self._zstd()
        else:
            for chunk in self._chunks():
                yield self._out(chunk)
        self.done = True

    def _gzip(self) -> Iterator[bytes]:
        level = isal_level(self.compression.level)
        sink = _Sink()
        if self.size_hint >= THREADED_GZIP_MIN:
            from isal import igzip_threaded

            # Blocks are deflated on every core and written in order by a writer thread.
            gz = igzip_threaded.open(sink, "wb", compresslevel=level, threads=-1)
        else:
            from isal import igzip

            gz = igzip.GzipFile(fileobj=sink, mode="wb", compresslevel=level, mtime=0)
        try:
            for chunk in self._chunks():
                gz.write(chunk)
                for part in sink.drain():
                    yield self._out(part)
        finally:
            gz.close()
        for part in sink.drain():
            yield self._out(part)

    def _zstd(self) -> Iterator[bytes]:
        import zstandard

        level = self.compression.level if self.compression.level is not None else 3
        threads = -1 if self.size_hint >= THREADED_GZIP_MIN else 0
        cobj = zstandard.ZstdCompressor(level=level, threads=threads).compressobj(
            size=self.size_hint if self.size_hint > 0 else -1)
        for chunk in self._chunks():
            data = cobj.compress(chunk)
            if data:
                yield self._out(data)
        data = cobj.flush()
        if data:
            yield self._out(data)


SCHEMA = """
CREATE TABLE IF NOT EXISTS pushed_blobs (
    diff_id TEXT NOT NULL,
    format TEXT NOT NULL,
    level TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (diff_id, format, level)
);
CREATE TABLE IF NOT EXISTS blob_repositories (
    digest TEXT NOT NULL,
    registry TEXT NOT NULL,
    repository TEXT NOT NULL,
    added REAL NOT NULL,
    PRIMARY KEY (digest, registry, repository)
)
"""


class CompressedBlobs:
    """The store's record of compressed layer blobs ketch has pushed, and of the
    repositories that hold each blob a push sent (the mount sources of later pushes)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("pushed_blobs", SCHEMA)

    def forget_unused(self) -> None:
        """Drop what no longer helps a push: compressed blobs of layers the store no
        longer has, and the repositories of blobs that are neither such a compressed
        blob nor a stored layer's own. Run at each push, so the tables stay as large as
        the layers present (and what the pushes since sent), not the whole history."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM pushed_blobs WHERE diff_id NOT IN"
                         " (SELECT diff_id FROM layers)")
            conn.execute("DELETE FROM blob_repositories WHERE digest NOT IN"
                         " (SELECT digest FROM pushed_blobs) AND digest NOT IN"
                         " (SELECT blob_digest FROM layers WHERE blob_digest IS NOT NULL)")

    def lookup(self, diff_id: str, compression: Compression) -> tuple[str, int] | None:
        row = self.db.conn.execute(
            "SELECT digest, size FROM pushed_blobs WHERE diff_id=? AND format=? AND level=?",
            (diff_id, compression.format, compression.key)).fetchone()
        return (row[0], row[1]) if row else None

    def remember(self, diff_id: str, compression: Compression, digest: str,
                 size: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO pushed_blobs VALUES (?, ?, ?, ?, ?)",
                         (diff_id, compression.format, compression.key, digest, size))

    def note_repository(self, digest: str, registry: str, repository: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO blob_repositories VALUES (?, ?, ?, ?)",
                         (digest, registry, repository, time.time()))

    def repository(self, digest: str, registry: str, exclude: str) -> str | None:
        """The repository of `registry` that most recently received `digest`."""
        row = self.db.conn.execute(
            "SELECT repository FROM blob_repositories WHERE digest=? AND registry=?"
            " AND repository<>? ORDER BY added DESC LIMIT 1",
            (digest, registry, exclude)).fetchone()
        return row[0] if row else None
