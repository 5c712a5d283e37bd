"""Image, tag and layer records in ketch.db.

An image is identified by the digest of its config JSON (Docker's image ID). Its
manifest (kept as a blob) names the layer blobs; `layers` records one row per chain ID
with the blob it came from and where it is unpacked. Tags map full normalised
references (`docker.io/library/node:latest`) to image IDs.

A layer's `size` is dockerd's: the bytes its unpacked tree holds (regular files, each
inode once, and symlink targets), which `images`, `history` and `system df` show. The
length of its uncompressed tar, which `save` writes ahead of the decompressed stream,
is kept beside it in `layer_tar_sizes`; a layer recorded before that table (whose
`size` was the tar's length) has no row there.
"""

from __future__ import annotations

import time

from ketch.fastjson import dumps, loads
from ketch.store.db import Database, sqlite3
from ketch.values import field, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    added REAL NOT NULL,
    parent TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    cache_key TEXT
);
CREATE INDEX IF NOT EXISTS images_cache ON images(parent, cache_key);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id),
    added REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS repo_digests (
    name TEXT NOT NULL,
    image_id TEXT NOT NULL REFERENCES images(id),
    PRIMARY KEY (name, image_id)
);
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    parent TEXT,
    blob_digest TEXT,
    media_type TEXT,
    blob_size INTEGER,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS layer_tar_sizes (
    chain_id TEXT PRIMARY KEY,
    tar_size INTEGER NOT NULL
);
"""


@value
class ImageRecord:
    id: str
    manifest_digest: str
    manifest_media_type: str
    created: float
    size: int
    added: float
    parent: str | None
    labels: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    cache_key: str | None = None

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]


@value
class LayerRecord:
    chain_id: str
    diff_id: str
    parent: str | None
    blob_digest: str | None
    media_type: str | None
    blob_size: int | None
    size: int
    tar_size: int | None = None  # None: recorded before, `size` is the tar's length


_LAYER_ROWS = ("SELECT layers.*, layer_tar_sizes.tar_size FROM layers"
               " LEFT JOIN layer_tar_sizes USING(chain_id)")


class ImageRecords:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("images", SCHEMA)

    # -- images -----------------------------------------------------------------
    def _from_row(self, row: sqlite3.Row, tags: list[str], digests: list[str]) -> ImageRecord:
        return ImageRecord(row["id"], row["manifest_digest"], row["manifest_media_type"],
                           row["created"], row["size"], row["added"], row["parent"],
                           loads(row["labels"]), tags, digests, row["cache_key"])

    def get(self, image_id: str) -> ImageRecord | None:
        row = self.db.conn.execute("SELECT * FROM images WHERE id=?", (image_id,)).fetchone()
        if row is None:
            return None
        return self._from_row(row, self.tags_of(image_id), self.digests_of(image_id))

    def all(self) -> list[ImageRecord]:
        conn = self.db.conn
        tags: dict[str, list[str]] = {}
        for r in conn.execute("SELECT name, image_id FROM tags ORDER BY added DESC, name"):
            tags.setdefault(r["image_id"], []).append(r["name"])
        digests: dict[str, list[str]] = {}
        for r in conn.execute("SELECT name, image_id FROM repo_digests ORDER BY name"):
            digests.setdefault(r["image_id"], []).append(r["name"])
        rows = conn.execute("SELECT * FROM images ORDER BY created DESC, added DESC").fetchall()
        return [self._from_row(r, tags.get(r["id"], []), digests.get(r["id"], [])) for r in rows]

    def ids(self) -> list[str]:
        return [r["id"] for r in self.db.conn.execute("SELECT id FROM images")]

    def ids_with_prefix(self, hex_prefix: str) -> list[str]:
        rows = self.db.conn.execute(
            "SELECT id FROM images WHERE id >= ? AND id < ? LIMIT 2",
            (f"sha256:{hex_prefix}", f"sha256:{hex_prefix}\U0010ffff")).fetchall()
        return [r["id"] for r in rows]

    def add(self, conn: sqlite3.Connection, rec: ImageRecord) -> None:
        conn.execute(
            "INSERT INTO images(id, manifest_digest, manifest_media_type, created, size, added,"
            " parent, labels, cache_key) VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE"
            " SET manifest_digest=excluded.manifest_digest,"
            " manifest_media_type=excluded.manifest_media_type,"
            " parent=COALESCE(images.parent, excluded.parent),"
            " cache_key=COALESCE(images.cache_key, excluded.cache_key)",
            (rec.id, rec.manifest_digest, rec.manifest_media_type, rec.created, rec.size,
             rec.added, rec.parent, dumps(rec.labels), rec.cache_key))

    def delete(self, conn: sqlite3.Connection, image_id: str) -> None:
        conn.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
        conn.execute("DELETE FROM repo_digests WHERE image_id=?", (image_id,))
        conn.execute("DELETE FROM images WHERE id=?", (image_id,))

    def cached_child(self, parent: str | None, cache_key: str) -> str | None:
        if parent is None:
            row = self.db.conn.execute(
                "SELECT id FROM images WHERE parent IS NULL AND cache_key=?"
                " ORDER BY added DESC LIMIT 1", (cache_key,)).fetchone()
        else:
            row = self.db.conn.execute(
                "SELECT id FROM images WHERE parent=? AND cache_key=?"
                " ORDER BY added DESC LIMIT 1", (parent, cache_key)).fetchone()
        return row["id"] if row else None

    def forget_cache_keys(self) -> int:
        """No image is a build step's cache entry any more (`builder prune -a`)."""
        with self.db.transaction() as conn:
            return conn.execute("UPDATE images SET cache_key=NULL"
                                " WHERE cache_key IS NOT NULL").rowcount

    def children(self, image_id: str) -> list[str]:
        return [r["id"] for r in self.db.conn.execute(
            "SELECT id FROM images WHERE parent=?", (image_id,))]

    # -- tags -------------------------------------------------------------------
    def tags_of(self, image_id: str) -> list[str]:
        return [r["name"] for r in self.db.conn.execute(
            "SELECT name FROM tags WHERE image_id=? ORDER BY added DESC, name", (image_id,))]

    def digests_of(self, image_id: str) -> list[str]:
        return [r["name"] for r in self.db.conn.execute(
            "SELECT name FROM repo_digests WHERE image_id=? ORDER BY name", (image_id,))]

    def lookup_tag(self, name: str) -> str | None:
        row = self.db.conn.execute("SELECT image_id FROM tags WHERE name=?", (name,)).fetchone()
        return row["image_id"] if row else None

    def lookup_digest(self, name: str) -> str | None:
        row = self.db.conn.execute(
            "SELECT image_id FROM repo_digests WHERE name=?", (name,)).fetchone()
        return row["image_id"] if row else None

    def set_tag(self, conn: sqlite3.Connection, name: str, image_id: str) -> str | None:
        """Point `name` at `image_id`; returns the image the tag was moved away from."""
        row = conn.execute("SELECT image_id FROM tags WHERE name=?", (name,)).fetchone()
        conn.execute(
            "INSERT INTO tags(name, image_id, added) VALUES(?,?,?) ON CONFLICT(name) DO UPDATE"
            " SET image_id=excluded.image_id, added=excluded.added",
            (name, image_id, time.time()))
        if row and row["image_id"] != image_id:
            return row["image_id"]
        return None

    def add_digest(self, conn: sqlite3.Connection, name: str, image_id: str) -> None:
        conn.execute("INSERT OR IGNORE INTO repo_digests(name, image_id) VALUES(?,?)",
                     (name, image_id))

    def remove_tag(self, conn: sqlite3.Connection, name: str) -> None:
        conn.execute("DELETE FROM tags WHERE name=?", (name,))
        conn.execute("DELETE FROM repo_digests WHERE name=?", (name,))

    def remove_digest(self, conn: sqlite3.Connection, name: str) -> None:
        conn.execute("DELETE FROM repo_digests WHERE name=?", (name,))

    def remove_repo_digests(self, conn: sqlite3.Connection, image_id: str, repo: str) -> None:
        # A range, not LIKE: "_" is a LIKE wildcard and legal in repository names.
        conn.execute("DELETE FROM repo_digests WHERE image_id=? AND name >= ? AND name < ?",
                     (image_id, repo + "@", repo + "A"))

    def tags_in_repository(self, repo: str) -> list[tuple[str, str]]:
        """(tag name, image ID) for every tag of `repo` (a full repository name)."""
        # ":" sorts just before ";", and a repository path never contains ":".
        return [(r["name"], r["image_id"]) for r in self.db.conn.execute(
            "SELECT name, image_id FROM tags WHERE name >= ? AND name < ? ORDER BY name",
            (repo + ":", repo + ";"))]

    def last_tag_time(self, image_id: str) -> float | None:
        row = self.db.conn.execute("SELECT MAX(added) AS t FROM tags WHERE image_id=?",
                                   (image_id,)).fetchone()
        return row["t"] if row and row["t"] is not None else None

    # -- layers -----------------------------------------------------------------
    def layer(self, chain_id: str) -> LayerRecord | None:
        row = self.db.conn.execute(f"{_LAYER_ROWS} WHERE layers.chain_id=?",
                                   (chain_id,)).fetchone()
        return LayerRecord(**dict(row)) if row else None

    def add_layer(self, conn: sqlite3.Connection, rec: LayerRecord) -> None:
        conn.execute(
            "INSERT INTO layers(chain_id, diff_id, parent, blob_digest, media_type, blob_size,"
            " size) VALUES(?,?,?,?,?,?,?) ON CONFLICT(chain_id) DO UPDATE SET"
            " blob_digest=COALESCE(layers.blob_digest, excluded.blob_digest),"
            " media_type=COALESCE(layers.media_type, excluded.media_type),"
            " blob_size=COALESCE(layers.blob_size, excluded.blob_size)",
            (rec.chain_id, rec.diff_id, rec.parent, rec.blob_digest, rec.media_type,
             rec.blob_size, rec.size))
        if rec.tar_size is not None:
            conn.execute("INSERT OR IGNORE INTO layer_tar_sizes VALUES(?,?)",
                         (rec.chain_id, rec.tar_size))

    def all_layers(self) -> list[LayerRecord]:
        return [LayerRecord(**dict(r)) for r in self.db.conn.execute(_LAYER_ROWS)]

    def delete_layer(self, conn: sqlite3.Connection, chain_id: str) -> None:
        conn.execute("DELETE FROM layers WHERE chain_id=?", (chain_id,))
        conn.execute("DELETE FROM layer_tar_sizes WHERE chain_id=?", (chain_id,))


def labels_of(config: dict[str, Any]) -> dict[str, str]:
    return dict((config.get("config") or {}).get("Labels") or {})
