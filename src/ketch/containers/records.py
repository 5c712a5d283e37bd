"""Container records in ketch.db.

`config` and `host_config` are kept in the Engine API's own JSON shapes (Config,
HostConfig), so `inspect`, the API server and the CLI all read the same thing. Names are
UNIQUE in SQLite: two `run --name x` at once cannot both win.
"""

from __future__ import annotations

import os

from ketch.errors import Conflict, ContainerNotFound
from ketch.fastjson import dumps, loads
from ketch.store.db import Database, find_row, sqlite3
from ketch.values import field, from_fields, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL,
    image_name TEXT NOT NULL,
    created REAL NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL DEFAULT 0,
    finished_at REAL NOT NULL DEFAULT 0,
    restart_count INTEGER NOT NULL DEFAULT 0,
    config TEXT NOT NULL,
    host_config TEXT NOT NULL,
    chain_ids TEXT NOT NULL,
    network TEXT NOT NULL DEFAULT '{}',
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS containers_image ON containers(image_id);
-- The run root (runc state, conmon pid files, exit files, network namespaces) that the
-- containers of this state root live under: one row (ContainerRecords.claim_run_root).
CREATE TABLE IF NOT EXISTS run_root (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    path TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS container_exits (
    id TEXT PRIMARY KEY,
    exit_code INTEGER NOT NULL,
    at REAL NOT NULL
);
"""

# Exit codes of auto-removed containers are kept this long for a late `wait` (an
# attached `run --rm` may find the record gone); Podman keeps its exit-code table for
# five minutes for the same reason.
EXIT_CODE_KEEP = 300.0

STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")


@value
class ContainerRecord:
    """One row of `containers`; the fields are its columns, in order (`insert` writes
    `__dict__` as is)."""

    id: str
    name: str
    image_id: str
    image_name: str
    created: float
    state: str
    pid: int
    exit_code: int
    error: str
    started_at: float
    finished_at: float
    restart_count: int
    config: dict[str, Any]
    host_config: dict[str, Any]
    chain_ids: list[str]
    network: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ContainerRecord(id={self.id!r}, name={self.name!r}, state={self.state!r})"

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused", "restarting")


_JSON_FIELDS = ("config", "host_config", "chain_ids", "network", "extra")


def _row(row: sqlite3.Row) -> ContainerRecord:
    return _record(dict(row))


def _record(d: dict[str, Any]) -> ContainerRecord:
    for k in _JSON_FIELDS:
        d[k] = loads(d[k])
    return from_fields(ContainerRecord, d)


class ContainerRecords:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("containers", SCHEMA)

    def claim_run_root(self, run_root: str) -> None:
        """Make sure the containers of this state root are looked after under `run_root`.

        A running container's state is in the run root it was started under; a command
        given another one finds no state there and would record the container as exited
        (137) while its process goes on running, unmanaged. So the state root remembers
        its run root (on first use), and a command with a different one is refused while
        a container still lives under the recorded one, as Podman refuses a configuration
        that does not match its database. When none does (all stopped, or the old run
        root went with a reboot), the new run root is taken over. One read when it
        matches."""
        row = self.db.conn.execute("SELECT path FROM run_root WHERE id=1").fetchone()
        if row is not None and row[0] == run_root:
            return
        with self.db.transaction() as conn:
            row = conn.execute("SELECT path FROM run_root WHERE id=1").fetchone()
            if row is not None and row[0] != run_root:
                old = row[0]
                for (cid,) in conn.execute("SELECT id FROM containers WHERE state IN"
                                           " ('running', 'paused', 'restarting')"):
                    if os.path.isdir(os.path.join(old, "containers", cid)):
                        raise Conflict(
                            f"containers of {os.path.dirname(self.db.path)} are running"
                            f" under the run root {old}, not {run_root}: use --run-root"
                            f" {old} (or KETCH_RUN_ROOT), or stop them first")
            conn.execute("INSERT OR REPLACE INTO run_root (id, path) VALUES (1, ?)",
                         (run_root,))

    def insert(self, rec: ContainerRecord,
               check: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Insert the record; `check` runs first in the same write transaction (the image
        service's reservation: its image still exists, so `rmi` cannot slip between)."""
        d = rec.__dict__.copy()
        for k in _JSON_FIELDS:
            d[k] = dumps(d[k])
        cols = ",".join(d)
        try:
            with self.db.transaction() as conn:
                if check is not None:
                    check(conn)
                conn.execute(f"INSERT INTO containers({cols}) VALUES({','.join('?' * len(d))})",
                             tuple(d.values()))
        except sqlite3.IntegrityError:
            other = self.db.conn.execute("SELECT id FROM containers WHERE name=?",
                                         (rec.name,)).fetchone()
            oid = other["id"] if other else "?"
            raise Conflict(
                f'Conflict. The container name "/{rec.name}" is already in use by container'
                f' "{oid}". You have to remove (or rename) that container to be able to reuse'
                " that name.") from None

    def update(self, cid: str, **fields: Any) -> None:
        if not fields:
            return
        vals = []
        for k, v in fields.items():
            vals.append(dumps(v) if k in _JSON_FIELDS else v)
        sets = ",".join(f"{k}=?" for k in fields)
        try:
            with self.db.transaction() as conn:
                conn.execute(f"UPDATE containers SET {sets} WHERE id=?", (*vals, cid))
        except sqlite3.IntegrityError:
            other = self.db.conn.execute("SELECT id FROM containers WHERE name=?",
                                         (fields.get("name"),)).fetchone()
            oid = other["id"] if other else "?"
            raise Conflict(
                f'Conflict. The container name "/{fields.get("name")}" is already in use by'
                f' container "{oid}". You have to remove (or rename) that container to be'
                " able to reuse that name.") from None

    def delete(self, cid: str, *, exit_code: int | None = None) -> None:
        """Delete the record; `exit_code` is kept for `take_exit_code` a while."""
        import time

        with self.db.transaction() as conn:
            conn.execute("DELETE FROM containers WHERE id=?", (cid,))
            if exit_code is not None:
                now = time.time()
                conn.execute("DELETE FROM container_exits WHERE at < ?",
                             (now - EXIT_CODE_KEEP,))
                conn.execute("INSERT OR REPLACE INTO container_exits VALUES(?,?,?)",
                             (cid, exit_code, now))

    def take_exit_code(self, cid: str) -> int | None:
        """The exit code a deleted auto-remove container left, once."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT exit_code FROM container_exits WHERE id=?",
                               (cid,)).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM container_exits WHERE id=?", (cid,))
            return int(row["exit_code"])

    def get(self, cid: str) -> ContainerRecord | None:
        row = self.db.conn.execute("SELECT * FROM containers WHERE id=?", (cid,)).fetchone()
        return _row(row) if row else None

    def all(self) -> list[ContainerRecord]:
        # plain tuples zipped with the column names: `dict(row)` of a sqlite3.Row looks
        # each of the 17 names up by a case-insensitive scan of the columns, a quarter
        # of `ps -a`'s instructions with 100 containers (callgrind)
        cur = self.db.conn.cursor()
        cur.row_factory = None
        cur.execute("SELECT * FROM containers ORDER BY created DESC")
        names = [c[0] for c in cur.description]
        return [_record(dict(zip(names, t, strict=True))) for t in cur]

    def find(self, name_or_id: str) -> ContainerRecord:
        """Docker's lookup order: full ID, exact name, then unique ID prefix."""
        key = name_or_id.lstrip("/") if name_or_id.startswith("/") else name_or_id
        if not key:
            raise ContainerNotFound(name_or_id)
        row = find_row(self.db.conn, "containers", key, "container")
        if row is None:
            raise ContainerNotFound(name_or_id)
        return _row(row)

    def names_taken(self) -> _TakenNames:
        """A set-like view of the names in use, asked one name at a time."""
        return _TakenNames(self.db)

    def users_of_image(self, image_id: str) -> list[tuple[str, bool]]:
        return [(r["id"], r["state"] in ("running", "paused", "restarting"))
                for r in self.db.conn.execute(
                    "SELECT id, state FROM containers WHERE image_id=?", (image_id,))]

    def chains_in_use(self) -> set[str]:
        out: set[str] = set()
        for r in self.db.conn.execute("SELECT chain_ids FROM containers"):
            out.update(loads(r["chain_ids"]))
        return out

    def state_counts(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in self.db.conn.execute(
            "SELECT state, COUNT(*) AS n FROM containers GROUP BY state")}


class _TakenNames:
    """`name in taken` as one indexed lookup, instead of loading every record."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __contains__(self, name: object) -> bool:
        return self.db.conn.execute("SELECT 1 FROM containers WHERE name=?",
                                    (name,)).fetchone() is not None
