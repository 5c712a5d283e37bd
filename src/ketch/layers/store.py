"""Layers unpacked once, by chain ID, under `layers/<chain-hex>/diff`.

A layer is unpacked into tmp/ while its DiffID is computed from the same stream, checked
against the DiffID the image config promises, and only then renamed into place and
recorded. A per-layer file lock keeps two ketch processes from unpacking the same layer
at once; the second simply finds it done.

The store keeps its paths as strings and makes `pathlib.Path`s only where its interface
returns them (`dir`, `tmp`, `path`; `lower_dirs`, which every container start asks for,
gives strings): pathlib imports fnmatch, re and urllib.parse, milliseconds that `run`,
`image inspect` and `create` should not pay.
"""

from __future__ import annotations

import os

from ketch.errors import DigestMismatch, NotFound
from ketch.oci.digest import chain_of, hex_of
from ketch.store.images import LayerRecord
from ketch.values import contextmanager

# `typing` costs milliseconds at start, and the store classes arrive with the Engine.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import BinaryIO

    from ketch.store.content import ContentStore
    from ketch.store.db import Database
    from ketch.store.images import ImageRecords


def _discard(root: str, path: str | os.PathLike[str]) -> None:
    """Into the trash, deleted later by a background emptier (`ketch.store.trash`)."""
    from ketch.store.trash import discard

    discard(root, os.fspath(path))


def _as_path(path: str) -> Path:
    from pathlib import Path

    return Path(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _check_chain(chain_id: str, parent: str | None, diff_id: str) -> None:
    if chain_of(parent, diff_id) != chain_id:
        raise DigestMismatch(
            f"layer {chain_id} is not the chain ID of diff ID {diff_id} on "
            f"{parent or 'no parent'}")


class LayerStore:
    def __init__(self, root: str | os.PathLike[str], db: Database, records: ImageRecords,
                 content: ContentStore) -> None:
        self.root = os.fspath(root)
        self.dir_path = os.path.join(self.root, "layers")
        self.tmp_path = os.path.join(self.root, "tmp")
        os.makedirs(self.dir_path, exist_ok=True)
        self.db = db
        self.records = records
        self.content = content

    @property
    def dir(self) -> Path:
        return _as_path(self.dir_path)

    @property
    def tmp(self) -> Path:
        return _as_path(self.tmp_path)

    def diff_dir(self, chain_id: str) -> str:
        """The layer's unpacked tree, as a string (`path` without pathlib)."""
        return os.path.join(self.dir_path, hex_of(chain_id), "diff")

    def path(self, chain_id: str) -> Path:
        return _as_path(self.diff_dir(chain_id))

    def has(self, chain_id: str) -> bool:
        return os.path.isdir(self.diff_dir(chain_id)) and self.records.layer(chain_id) is not None

    def lower_dirs(self, chain_ids: list[str]) -> list[str]:
        """Overlay lowerdir order: topmost layer first."""
        out = []
        for c in reversed(chain_ids):
            p = self.diff_dir(c)
            if not os.path.isdir(p):
                raise NotFound(f"layer {c} is not unpacked")
            out.append(p)
        return out

    def _lock_path(self, name: str) -> str:
        return os.path.join(self.dir_path, f"{name}.lock")

    @contextmanager
    def _lock(self, chain_id: str) -> Iterator[None]:
        fd = os.open(self._lock_path(hex_of(chain_id)), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            import fcntl  # on first use: a cached build only asks whether layers exist

            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def unpack(self, stream: BinaryIO, *, chain_id: str, diff_id: str | None,
               parent: str | None, blob_digest: str | None, media_type: str | None,
               blob_size: int | None,
               before_commit: Callable[[], None] | None = None) -> LayerRecord:
        """Unpack a (possibly compressed) layer stream as `chain_id` on top of `parent`.

        `diff_id` is what the stream must hash to (None: whatever it hashes to). Either
        way the layer is recorded only when `chain_id` is the chain ID of that DiffID on
        `parent`: nothing is ever filed under an ID that does not describe it.
        `before_commit` runs once the DiffID matched, before the layer is renamed into
        place; it raises to keep the layer out (a pull waits there for its blob's
        digest check).
        """
        import tempfile

        from ketch.archive import extract
        from ketch.store.intents import owner_tag

        with self._lock(chain_id):
            existing = self.records.layer(chain_id)
            if existing is not None and os.path.isdir(self.diff_dir(chain_id)):
                return existing
            from ketch.store.topdir import ensure_top_dir

            ensure_top_dir(self.tmp_path)  # the tree away from deleted ones (store/topdir.py)
            staging = tempfile.mkdtemp(prefix=f"layer-{owner_tag()}-", dir=self.tmp_path)
            try:
                # extract() hashes the decompressed stream (the DiffID) as it unpacks it.
                stats = extract(stream, os.path.join(staging, "diff"), whiteouts="overlay")
                if diff_id is not None and stats.diff_id != diff_id:
                    raise DigestMismatch(
                        f"layer content does not match its diff ID: expected {diff_id},"
                        f" got {stats.diff_id}")
                _check_chain(chain_id, parent, stats.diff_id)
                if before_commit is not None:
                    before_commit()
                rec = LayerRecord(chain_id, diff_id or stats.diff_id, parent, blob_digest,
                                  media_type, blob_size, stats.content_size,
                                  stats.uncompressed_size)
                final = os.path.join(self.dir_path, hex_of(chain_id))
                if os.path.exists(final):
                    _discard(self.root, final)
                os.rename(staging, final)
                with self.db.transaction() as conn:
                    self.records.add_layer(conn, rec)
                return rec
            finally:
                if os.path.exists(staging):
                    _discard(self.root, staging)
                    self.empty_trash()

    def unpack_blob(self, blob_digest: str, media_type: str | None, *, chain_id: str,
                    diff_id: str, parent: str | None) -> LayerRecord:
        with self.content.open(blob_digest) as f:
            return self.unpack(f, chain_id=chain_id, diff_id=diff_id, parent=parent,
                               blob_digest=blob_digest, media_type=media_type,
                               blob_size=self.content.size(blob_digest))

    def adopt_dir(self, tree: str | os.PathLike[str], *, chain_id: str, diff_id: str, parent: str | None,
                  blob_digest: str | None, media_type: str | None, blob_size: int | None,
                  size: int, tar_size: int | None = None) -> LayerRecord:
        """Move an already-unpacked tree (same filesystem) into place as a layer."""
        _check_chain(chain_id, parent, diff_id)
        with self._lock(chain_id):
            existing = self.records.layer(chain_id)
            if existing is not None and os.path.isdir(self.diff_dir(chain_id)):
                _discard(self.root, tree)
                return existing
            final = os.path.join(self.dir_path, hex_of(chain_id))
            if os.path.exists(final):
                _discard(self.root, final)
            os.mkdir(final)
            os.rename(tree, os.path.join(final, "diff"))
            rec = LayerRecord(chain_id, diff_id, parent, blob_digest, media_type, blob_size,
                              size, tar_size)
            with self.db.transaction() as conn:
                self.records.add_layer(conn, rec)
            return rec

    def remove(self, chain_id: str) -> None:
        with self._lock(chain_id):
            with self.db.transaction() as conn:
                self.records.delete_layer(conn, chain_id)
            _discard(self.root, os.path.join(self.dir_path, hex_of(chain_id)))
        _unlink(self._lock_path(hex_of(chain_id)))

    def empty_trash(self) -> None:
        """Start deleting what was discarded, in the background (after removals)."""
        from ketch.store.trash import empty_in_background

        empty_in_background(self.root)

    def sweep_unrecorded(self) -> int:
        """Remove layer directories that have no record: a kill between the rename into
        place and the record leaves them. Their lock is taken first, so a layer being
        unpacked right now is never touched."""
        import fcntl

        recorded = {hex_of(lr.chain_id) for lr in self.records.all_layers()}
        removed = 0
        for entry in os.scandir(self.dir_path):
            name = entry.name
            if name in recorded or not entry.is_dir() or len(name) != 64:
                continue
            fd = os.open(self._lock_path(name), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if self.records.layer("sha256:" + name) is None:
                    _discard(self.root, entry.path)
                    _unlink(self._lock_path(name))
                    removed += 1
            finally:
                os.close(fd)
        return removed

    def disk_usage(self, chain_id: str) -> int:
        rec = self.records.layer(chain_id)
        return rec.size if rec else 0
