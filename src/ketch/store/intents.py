"""Intent records: how a daemonless engine finishes or undoes the work of a killed process.

Docker's daemon outlives a killed client and cleans up after it; ketch has no daemon, so
every operation whose interruption would leave something behind (staging in tmp/, a
paused container, a half-started container with its mounts, processes and network)
writes an intent row first, naming its owner (pid and the process start time from
/proc/PID/stat, so a reused pid is never taken for the owner), and deletes the row when
it is done. Any later ketch process that finds a row whose owner is dead claims it (one
UPDATE, so two finders never both act) and hands it to the service named by the kind's
prefix (`containers.start` → the container service), which rolls it back or forward.
A recovery that is itself killed leaves the row claimed by a dead process: the next
finder takes it over, so handlers must be idempotent.

Finding nothing costs one query on a table that is empty almost always; the commands
on the hot path (`ps`, `run`) pay that and no import beyond the SQLite binding.
"""

from __future__ import annotations

import os
import time

from ketch.procstat import start_time
from ketch.store.db import Database, sqlite3

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL,
    started TEXT NOT NULL,
    created REAL NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
)
"""


_self: tuple[int, str] | None = None


def me() -> tuple[int, str]:
    """This process as an owner: (pid, start time). Recomputed after a fork."""
    global _self
    pid = os.getpid()
    if _self is None or _self[0] != pid:
        _self = (pid, start_time(pid) or "")
    return _self


def owner_tag() -> str:
    """`<pid>.<start time>`: what staging names in tmp/ carry to name their owner."""
    pid, started = me()
    return f"{pid}.{started}"


def alive(pid: int, started: str) -> bool:
    if pid == os.getpid() and started == me()[1]:
        return True
    return start_time(pid) == started


class Intent:
    __slots__ = ("id", "kind", "subject", "pid", "started", "created", "data")

    def __init__(self, row: sqlite3.Row) -> None:
        from ketch.fastjson import loads

        self.id: int = row["id"]
        self.kind: str = row["kind"]
        self.subject: str = row["subject"]
        self.pid: int = row["pid"]
        self.started: str = row["started"]
        self.created: float = row["created"]
        self.data: dict[str, Any] = loads(row["data"])

    @property
    def owner_alive(self) -> bool:
        return alive(self.pid, self.started)

    def describe(self) -> str:
        what = f"{self.kind} {self.subject}".strip()
        return f"{what} (process {self.pid}, {_age(time.time() - self.created)} ago)"

    def __repr__(self) -> str:
        return f"Intent({self.id}, {self.kind!r}, {self.subject!r}, pid={self.pid})"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)}s"
    if seconds < 7200:
        return f"{int(seconds // 60)}m"
    return f"{int(seconds // 3600)}h"


class Intents:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _schema(self) -> None:
        self.db.ensure_schema("intents", SCHEMA)

    def begin(self, kind: str, subject: str = "", data: dict[str, Any] | None = None) -> int:
        """Write the intent down (committed before the caller does anything)."""
        from ketch.fastjson import dumps

        self._schema()
        pid, started = me()
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO intents (kind, subject, pid, started, created, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (kind, subject, pid, started, time.time(), dumps(data or {})))
            return int(cur.lastrowid or 0)

    def end(self, intent_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM intents WHERE id=?", (intent_id,))

    def held(self, kind: str, subject: str = "", data: dict[str, Any] | None = None
             ) -> _Held:
        """`with intents.held(kind, subject):` — the row lives exactly as long as the
        block (an exception ends it too: the caller's own undo ran)."""
        return _Held(self, kind, subject, data)

    def pending(self) -> list[Intent]:
        """Every intent row; one query (no schema work when the table is missing)."""
        try:
            rows = self.db.conn.execute("SELECT * FROM intents ORDER BY id").fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
        return [Intent(r) for r in rows]

    def orphaned(self) -> list[Intent]:
        return [i for i in self.pending() if not i.owner_alive]

    def claim(self, intent: Intent) -> bool:
        """Take over a dead owner's intent; False if another process was first."""
        pid, started = me()
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE intents SET pid=?, started=? WHERE id=? AND pid=? AND started=?",
                (pid, started, intent.id, intent.pid, intent.started))
            return cur.rowcount == 1


class _Held:
    def __init__(self, intents: Intents, kind: str, subject: str,
                 data: dict[str, Any] | None) -> None:
        self.intents = intents
        self.args = (kind, subject, data)
        self.id = 0

    def __enter__(self) -> int:
        self.id = self.intents.begin(*self.args)
        return self.id

    def __exit__(self, *exc: object) -> None:
        self.intents.end(self.id)

