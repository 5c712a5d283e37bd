"""The one SQLite database (ketch.db) that every ketch process shares.

WAL mode and a busy timeout let several ketch processes work at once; writers take
`BEGIN IMMEDIATE` so two of them never interleave a read-modify-write. Each service
owns its tables and creates them through `ensure_schema`, so no module reaches into
another's schema.

The SQLite binding is the `_sqlite3` extension itself, not the `sqlite3` package: the
package's `dbapi2` imports `datetime` only to register date/time adapters and
converters, which ketch never uses (it stores times as numbers and strings), and that
import is about a tenth of a short command's CPU time (`python3 -I -S -X importtime -c
"import sqlite3"`: ~4-6 ms of `datetime` and `dbapi2`, against ~1.5 ms for `_sqlite3`).
The extension holds everything ketch calls (`connect`, `Row`, `Connection`, the
exception classes, which are the very classes `sqlite3` re-exports). Other modules take
the binding from here (`from ketch.store.db import sqlite3`), so the choice is made
once; an interpreter without the extension module falls back to the package.
"""

from __future__ import annotations

import os
import sys
from _thread import _local as thread_local  # threading.local, without importing threading

from ketch.ids import LOWER_HEX
from ketch.values import contextmanager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from types import ModuleType
    from typing import Any


def _load_binding() -> ModuleType:
    """`_sqlite3`, loaded without `functools`.

    The extension's initialisation imports `functools` for one name, `lru_cache`, with
    which each connection makes its statement cache; `functools` imports `collections`,
    `types`, `operator`, `reprlib` and `keyword`: 9.2 of the 12.5 million instructions
    that loading the extension costs (callgrind, `python -I -S -c "import os, _sqlite3"`
    against `import os`), a sixth of a whole `ketch image inspect`. When no one has
    imported `functools` yet, the extension is given a module of that name holding
    `lru_cache` alone, made on the C cache that functools' own `lru_cache` wraps
    (`_functools._lru_cache_wrapper`; its statistics type is not needed by a cache
    nobody asks for statistics), and the name is freed again at once, so a later
    `import functools` gets the real module."""
    if "functools" in sys.modules:
        import _sqlite3

        return _sqlite3
    from _functools import _lru_cache_wrapper

    def lru_cache(maxsize: int | None = 128, typed: bool = False) -> Any:
        return lambda func: _lru_cache_wrapper(func, maxsize, typed, None)

    stand_in = type(sys)("functools")
    stand_in.lru_cache = lru_cache  # type: ignore[attr-defined]  # a module object made here to stand in for functools
    sys.modules["functools"] = stand_in
    try:
        import _sqlite3
    finally:
        if sys.modules.get("functools") is stand_in:
            del sys.modules["functools"]
    return _sqlite3


if TYPE_CHECKING:
    import _sqlite3 as sqlite3
else:
    try:
        sqlite3 = _load_binding()
    except ImportError:  # pragma: no cover - an interpreter that ships only the package
        import sqlite3

BUSY_TIMEOUT_MS = 30_000


class Database:
    def __init__(self, path: str | Path) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._local = thread_local()
        self._schemas_done: set[str] = set()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            # `timeout` is SQLite's busy timeout already (sqlite3_busy_timeout): no PRAGMA
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                _enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; commits on success, rolls back on any exception."""
        conn = self.conn
        if conn.in_transaction:  # nested use joins the outer transaction
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def ensure_schema(self, name: str, ddl: str) -> None:
        """Create a service's tables once per process (idempotent DDL: IF NOT EXISTS)."""
        if name in self._schemas_done:
            return
        conn = self.conn
        if conn.in_transaction:
            # executescript would commit the caller's transaction first: a service made
            # lazily inside a transaction creates its tables as part of it instead.
            for statement in ddl.split(";"):
                if statement.strip():
                    conn.execute(statement)
        else:
            conn.executescript(ddl)
        self._schemas_done.add(name)

    def close(self, *, exiting: bool = False) -> None:
        """Close this thread's connection.

        `exiting`: the process ends right after (`os._exit`, the CLI's way out). The last
        connection to close makes SQLite checkpoint the WAL and delete the WAL and its
        shared-memory file, so the next command creates both again: two file creations
        and two unlinks a command, 1.8 of the 15.9 ms of a `ketch image inspect` on an
        ext4 that has freed many inodes lately (the allocator skips them), and work on
        any disk. An exiting process folds the WAL into the database file instead
        (`wal_checkpoint(TRUNCATE)`: the WAL is left empty, so the next open has nothing
        to recover) and leaves the connection for the process's end, which keeps both
        files. When another connection is using the WAL the checkpoint would have to
        wait; it does not (busy timeout 0), and the connection is closed as usual."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return
        if exiting and not conn.in_transaction:
            try:
                conn.execute("PRAGMA busy_timeout=0")
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.Error:
                busy = 1
            if not busy:
                return  # still referenced by self._local: closed by the process's end
        conn.close()
        self._local.conn = None


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch a new database to WAL (persistent: done once per database file).

    The switch needs the database to itself and SQLite does not wait for it through the
    busy handler, so two ketch processes opening a fresh root at once would see
    "database is locked": retry until the busy timeout instead.
    """
    import time

    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.002
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def find_row(conn: sqlite3.Connection, table: str, key: str, kind: str
             ) -> sqlite3.Row | None:
    """Docker's (and Podman's) lookup of a record by reference: full ID, then exact name,
    then a unique ID prefix (AmbiguousID, naming `kind`, when several match). `table`
    is one of ketch's own tables, with `id` and `name` columns."""
    row = conn.execute(f"SELECT * FROM {table} WHERE id=?", (key,)).fetchone()
    if row is None:
        row = conn.execute(f"SELECT * FROM {table} WHERE name=?", (key,)).fetchone()
    if row is None and LOWER_HEX.issuperset(key):
        rows = conn.execute(f"SELECT * FROM {table} WHERE id >= ? AND id < ? LIMIT 2",
                            (key, key + "g")).fetchall()
        if len(rows) > 1:
            from ketch.errors import AmbiguousID

            raise AmbiguousID(key, kind)
        row = rows[0] if rows else None
    return row
