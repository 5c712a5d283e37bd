"""Layers unpacked once, by chain ID, under `layers/<chain-hex>/diff`.

A layer is unpacked into tmp/ while its DiffID is computed from the same stream, checked
against the DiffID the image config promises, and only then renamed into place and
recorded. A per-layer file lock keeps two ketch processes from unpacking the same layer
at once; the second simply finds it done.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ketch.errors import DigestMismatch, NotFound
from ketch.oci.digest import hex_of
from ketch.store.content import ContentStore
from ketch.store.db import Database
from ketch.store.images import ImageRecords, LayerRecord

CHUNK = 1 << 20


class HashingReader:
    """Passes reads through while hashing and counting them."""

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._h = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        self._h.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


class LayerStore:
    def __init__(self, root: Path, db: Database, records: ImageRecords,
                 content: ContentStore) -> None:
        self.dir = root / "layers"
        self.tmp = root / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = db
        self.records = records
        self.content = content

    def path(self, chain_id: str) -> Path:
        return self.dir / hex_of(chain_id) / "diff"

    def has(self, chain_id: str) -> bool:
        return self.path(chain_id).is_dir() and self.records.layer(chain_id) is not None

    def lower_dirs(self, chain_ids: list[str]) -> list[Path]:
        """Overlay lowerdir order: topmost layer first."""
        out = []
        for c in reversed(chain_ids):
            p = self.path(c)
            if not p.is_dir():
                raise NotFound(f"layer {c} is not unpacked")
            out.append(p)
        return out

    @contextmanager
    def _lock(self, chain_id: str) -> Iterator[None]:
        fd = os.open(self.dir / f"{hex_of(chain_id)}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def unpack(self, stream: BinaryIO, *, chain_id: str, diff_id: str | None,
               parent: str | None, blob_digest: str | None, media_type: str | None,
               blob_size: int | None) -> LayerRecord:
        """Unpack a (possibly compressed) layer stream as `chain_id` on top of `parent`.

        When `diff_id` is None the caller does not know it yet (a fresh layer); the
        chain ID must then be computed by the caller afterwards, so use `unpack_new`.
        """
        from ketch.archive import extract, open_decompressed

        with self._lock(chain_id):
            existing = self.records.layer(chain_id)
            if existing is not None and self.path(chain_id).is_dir():
                return existing
            staging = Path(tempfile.mkdtemp(prefix=f"layer-{os.getpid()}-", dir=self.tmp))
            try:
                reader = HashingReader(open_decompressed(stream))
                (staging / "diff").mkdir()
                extract(reader, staging / "diff", whiteouts="overlay")
                reader.drain()
                if diff_id is not None and reader.digest != diff_id:
                    raise DigestMismatch(
                        f"layer content does not match its diff ID: expected {diff_id},"
                        f" got {reader.digest}")
                rec = LayerRecord(chain_id, diff_id or reader.digest, parent, blob_digest,
                                  media_type, blob_size, reader.size)
                final = self.dir / hex_of(chain_id)
                if final.exists():
                    shutil.rmtree(final)
                os.rename(staging, final)
                with self.db.transaction() as conn:
                    self.records.add_layer(conn, rec)
                return rec
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)

    def unpack_blob(self, blob_digest: str, media_type: str | None, *, chain_id: str,
                    diff_id: str, parent: str | None) -> LayerRecord:
        with self.content.open(blob_digest) as f:
            return self.unpack(f, chain_id=chain_id, diff_id=diff_id, parent=parent,
                               blob_digest=blob_digest, media_type=media_type,
                               blob_size=self.content.size(blob_digest))

    def adopt_dir(self, tree: Path, *, chain_id: str, diff_id: str, parent: str | None,
                  blob_digest: str | None, media_type: str | None, blob_size: int | None,
                  size: int) -> LayerRecord:
        """Move an already-unpacked tree (same filesystem) into place as a layer."""
        with self._lock(chain_id):
            existing = self.records.layer(chain_id)
            if existing is not None and self.path(chain_id).is_dir():
                shutil.rmtree(tree, ignore_errors=True)
                return existing
            final = self.dir / hex_of(chain_id)
            if final.exists():
                shutil.rmtree(final)
            final.mkdir()
            os.rename(tree, final / "diff")
            rec = LayerRecord(chain_id, diff_id, parent, blob_digest, media_type, blob_size,
                              size)
            with self.db.transaction() as conn:
                self.records.add_layer(conn, rec)
            return rec

    def remove(self, chain_id: str) -> None:
        with self._lock(chain_id):
            with self.db.transaction() as conn:
                self.records.delete_layer(conn, chain_id)
            shutil.rmtree(self.dir / hex_of(chain_id), ignore_errors=True)
        (self.dir / f"{hex_of(chain_id)}.lock").unlink(missing_ok=True)

    def disk_usage(self, chain_id: str) -> int:
        rec = self.records.layer(chain_id)
        return rec.size if rec else 0
