"""Checksums of COPY/ADD sources for the build cache, tarsum-like and mtime-free.

Docker's classic builder keys a COPY step on a tarsum of the copied files: per file a
sha256 over its tar header fields (name, mode, uid, gid, size, type, link target) and
its content, never its mtime; a directory is a hash over its entries' hashes; several
sources are a hash over theirs (`file:`, `dir:`, `multi:` prefixes). ketch computes the
same shape of digest from the files in place.

Hashing content is the only expensive part, so content digests are remembered in
ketch.db keyed by what a change to the file would alter (path, device, inode, size,
mtime and ctime in nanoseconds): an unchanged rebuild only stats the files. Files
modified within the last second are not remembered, so two writes inside one clock tick
can never leave a stale digest behind (git's "racy clean" problem).
"""

from __future__ import annotations

import os
import stat
import time

# Headers and directory digests are small: no OpenSSL for them (see oci/digest.py).
from ketch.images.hashing import small_sha256

TYPE_CHECKING = False  # `typing` and `pathlib` cost milliseconds at start
if TYPE_CHECKING:
    from pathlib import Path

    from ketch.builder.context import Source, SourceRoot
    from ketch.store.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS build_checksums (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL
);
"""

_RACY_NS = 1_000_000_000
_CHUNK = 1 << 20


def _type_char(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "0"
    if stat.S_ISDIR(mode):
        return "5"
    if stat.S_ISLNK(mode):
        return "2"
    if stat.S_ISCHR(mode):
        return "3"
    if stat.S_ISBLK(mode):
        return "4"
    if stat.S_ISFIFO(mode):
        return "6"
    return "?"


_SMALL_FILE = 1 << 20


def hash_file(path: Path | str, size: int | None = None) -> str:
    if size is not None and size < _SMALL_FILE:
        # CPython's own sha256: no OpenSSL to load for the few small files of a typical
        # context (same digest)
        from ketch.images.hashing import small_sha256 as sha256
    else:
        from hashlib import sha256  # OpenSSL's: several times faster on large files

    h = sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class ChecksumCache:
    """Content digests of files under one directory, remembered by stat identity.

    `persistent=False` (a context unpacked from a tarball into a temporary directory,
    or another stage's root) keeps digests in memory only: those inodes never return.
    """

    def __init__(self, db: Database | None, root: Path, *, persistent: bool = True) -> None:
        self.db = db if persistent else None
        self.root = str(root)
        self._known: dict[str, tuple[int, int, int, int, int, str]] | None = None
        self._new: list[tuple[str, int, int, int, int, int, str]] = []
        self._now_ns = time.time_ns()

    def _load(self) -> dict[str, tuple[int, int, int, int, int, str]]:
        if self._known is None:
            self._known = {}
            if self.db is not None:
                self.db.ensure_schema("build_checksums", SCHEMA)
                # "/" sorts just before "0": this range is exactly the paths below root.
                rows = self.db.conn.execute(
                    "SELECT path, dev, ino, size, mtime_ns, ctime_ns, digest FROM"
                    " build_checksums WHERE path > ? AND path < ?",
                    (self.root + "/", self.root + "0"))
                for r in rows:
                    self._known[r[0]] = (r[1], r[2], r[3], r[4], r[5], r[6])
        return self._known

    def content(self, path: str, st: os.stat_result) -> str:
        """sha256 hex of a regular file's content, from the cache when its stat matches."""
        known = self._load()
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        hit = known.get(path)
        if hit is not None and hit[:5] == ident:
            return hit[5]
        digest = hash_file(path, st.st_size)
        known[path] = (*ident, digest)
        if self.db is not None and self._now_ns - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS:
            self._new.append((path, *ident, digest))
        return digest

    def flush(self) -> None:
        """Remember the digests computed since the last flush (one transaction)."""
        if not self._new or self.db is None:
            return
        rows, self._new = self._new, []
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO build_checksums(path, dev, ino, size, mtime_ns, ctime_ns, digest)"
                " VALUES(?,?,?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET dev=excluded.dev,"
                " ino=excluded.ino, size=excluded.size, mtime_ns=excluded.mtime_ns,"
                " ctime_ns=excluded.ctime_ns, digest=excluded.digest", rows)


def forget(db: Database) -> int:
    """Drop every remembered digest (`ketch builder prune`); returns how many."""
    db.ensure_schema("build_checksums", SCHEMA)
    with db.transaction() as conn:
        return conn.execute("DELETE FROM build_checksums").rowcount


def entry_digest(name: str, st: os.stat_result, host_path: str, cache: ChecksumCache) -> str:
    """One tar entry's checksum: its header fields (mtime excluded) and its content."""
    mode = st.st_mode
    kind = _type_char(mode)
    size = st.st_size if kind == "0" else 0
    link = os.readlink(host_path) if kind == "2" else ""
    dev = f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}" if kind in "34" else ""
    content = cache.content(host_path, st) if kind == "0" else ""
    header = (f"name={name}\0mode={stat.S_IMODE(mode):o}\0uid={st.st_uid}\0gid={st.st_gid}"
              f"\0size={size}\0type={kind}\0linkname={link}\0dev={dev}\0{content}")
    return small_sha256(header.encode("utf-8", "surrogateescape")).hexdigest()


def source_digest(root: SourceRoot, src: Source, cache: ChecksumCache) -> str:
    """`file:<hex>` for a file, `dir:<hex>` over every entry of a directory."""
    if not src.is_dir:
        return "file:" + entry_digest(os.path.basename(src.rel) or src.rel, src.st,
                                      str(src.path), cache)
    h = small_sha256()
    h.update(entry_digest(".", src.st, str(src.path), cache).encode())
    base = str(src.path)
    prefix_len = 0 if src.rel in ("", ".") else len(src.rel) + 1
    for rel in root.below(src.rel):
        host = os.path.join(base, rel[prefix_len:]) if prefix_len else os.path.join(base, rel)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            continue  # removed while we walked: not part of what gets copied either
        h.update(b",")
        h.update(entry_digest(rel[prefix_len:], st, host, cache).encode())
    return "dir:" + h.hexdigest()


def sources_digest(root: SourceRoot, sources: list[Source], cache: ChecksumCache) -> str:
    digests = [source_digest(root, s, cache) for s in sources]
    if len(digests) == 1:
        return digests[0]
    return "multi:" + small_sha256(",".join(digests).encode()).hexdigest()
