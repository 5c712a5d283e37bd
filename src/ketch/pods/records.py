"""Pod records in ketch.db: one row per pod; its containers point at it by ID
(HostConfig `_Pod` for members, `_PodInfra` for the infra container). Names are UNIQUE
in SQLite, so two `pod create --name x` at once cannot both win."""

from __future__ import annotations

from ketch.errors import Conflict, NotFound
from ketch.fastjson import dumps, loads
from ketch.store.db import Database, find_row, sqlite3
from ketch.values import field, from_fields, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS pods (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    infra_id TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}',
    config TEXT NOT NULL DEFAULT '{}'
);
"""


class PodNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no pod with name or ID {name} found: no such pod")


@value
class PodRecord:
    """One row of `pods`. `config` keeps what the pod was created with: Hostname,
    PortBindings (Engine API shape), Network, ExtraHosts."""

    id: str
    name: str
    created: float
    infra_id: str
    labels: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:12]


Pod = PodRecord  # the name library users and ketch.kube know it by


def _row(row: sqlite3.Row) -> PodRecord:
    d = dict(row)
    d["labels"] = loads(d["labels"])
    d["config"] = loads(d["config"])
    return from_fields(PodRecord, d)


class PodRecords:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("pods", SCHEMA)

    def insert(self, rec: PodRecord) -> None:
        try:
            with self.db.transaction() as conn:
                conn.execute("INSERT INTO pods(id,name,created,infra_id,labels,config)"
                             " VALUES(?,?,?,?,?,?)",
                             (rec.id, rec.name, rec.created, rec.infra_id,
                              dumps(rec.labels), dumps(rec.config)))
        except sqlite3.IntegrityError:
            raise Conflict(f'adding pod to state: name "{rec.name}" is in use: pod already'
                           " exists") from None

    def set_infra(self, pod_id: str, infra_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE pods SET infra_id=? WHERE id=?", (infra_id, pod_id))

    def delete(self, pod_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM pods WHERE id=?", (pod_id,))

    def get(self, pod_id: str) -> PodRecord | None:
        row = self.db.conn.execute("SELECT * FROM pods WHERE id=?", (pod_id,)).fetchone()
        return _row(row) if row else None

    def all(self) -> list[PodRecord]:
        return [_row(r) for r in self.db.conn.execute("SELECT * FROM pods ORDER BY created DESC")]

    def names(self) -> set[str]:
        return {r["name"] for r in self.db.conn.execute("SELECT name FROM pods")}

    def find(self, name_or_id: str) -> PodRecord:
        """Podman's lookup: full ID, exact name, then unique ID prefix."""
        key = name_or_id
        if not key:
            raise PodNotFound(name_or_id)
        row = find_row(self.db.conn, "pods", key, "pod")
        if row is None:
            raise PodNotFound(name_or_id)
        return _row(row)
