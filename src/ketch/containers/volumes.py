"""Named and anonymous volumes: directories under `volumes/<name>/_data`, as Docker's
local driver keeps them."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ketch.errors import Conflict, InvalidArgument, NotFound

if TYPE_CHECKING:
    from ketch.engine import Engine

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class VolumeStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dir = engine.root / "volumes"

    def path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise InvalidArgument(
                f'"{name}" includes invalid characters for a local volume name, only'
                ' "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
        return self.dir / name

    def ensure(self, name: str) -> Path:
        data = self.path(name) / "_data"
        data.mkdir(parents=True, exist_ok=True)
        return data

    def create(self, name: str | None = None, *, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None) -> dict[str, Any]:
        import json
        import os

        if options:
            raise InvalidArgument("invalid option key: the local driver of ketch takes no"
                                  f" options ({', '.join(sorted(options))})")
        name = name or os.urandom(32).hex()
        existed = (self.path(name) / "_data").is_dir()
        self.ensure(name)
        if labels and not existed:
            meta = self.path(name) / "labels.json"
            tmp = meta.with_suffix(".tmp")
            tmp.write_text(json.dumps(labels))
            os.replace(tmp, meta)
        return self.inspect(name)

    def labels(self, name: str) -> dict[str, str] | None:
        import json

        try:
            return json.loads((self.path(name) / "labels.json").read_text()) or None
        except (OSError, ValueError):
            return None

    def inspect(self, name: str) -> dict[str, Any]:
        p = self.path(name)
        if not p.is_dir():
            raise NotFound(f"get {name}: no such volume")
        import time

        # the local driver's format: RFC 3339 in seconds, local time
        created = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(p.stat().st_mtime))
        created = created[:-2] + ":" + created[-2:]
        return {"CreatedAt": created.replace("+00:00", "Z"), "Driver": "local",
                "Labels": self.labels(name), "Mountpoint": str(p / "_data"), "Name": name,
                "Options": None, "Scope": "local"}

    def list(self) -> list[dict[str, Any]]:
        if not self.dir.is_dir():
            return []
        return [self.inspect(p.name) for p in sorted(self.dir.iterdir()) if p.is_dir()]

    def in_use(self, name: str) -> list[str]:
        users = []
        for r in self.engine.containers.records.all():
            binds = [b.split(":")[0] for b in r.host_config.get("Binds") or []]
            mounts = [m.get("Source") for m in r.host_config.get("Mounts") or []]
            anon = list((r.extra.get("anon_volumes") or {}).values())
            if name in binds or name in mounts or name in anon:
                users.append(r.id)
        return users

    def remove(self, name: str, *, force: bool = False, missing_ok: bool = False) -> None:
        p = self.path(name)
        if not p.is_dir():
            if missing_ok:
                return
            raise NotFound(f"get {name}: no such volume")
        users = self.in_use(name)
        if users and not force:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        shutil.rmtree(p)

    @staticmethod
    def is_anonymous(name: str) -> bool:
        """Anonymous volumes get 64 hex digits for a name, as Docker's do."""
        return len(name) == 64 and all(c in "0123456789abcdef" for c in name)

    def prune(self, *, all: bool = False,
              keep: Callable[[dict[str, Any]], bool] | None = None) -> tuple[list[str], int]:
        """Remove unused volumes: anonymous ones only (Docker 23+) unless `all`; `keep`
        spares volumes a filter excludes."""
        removed, space = [], 0
        for v in self.list():
            if not all and not self.is_anonymous(v["Name"]):
                continue
            if keep is not None and keep(v):
                continue
            if self.in_use(v["Name"]):
                continue
            for f in Path(v["Mountpoint"]).rglob("*"):
                if f.is_file() and not f.is_symlink():
                    space += f.stat().st_size
            self.remove(v["Name"])
            removed.append(v["Name"])
        return removed, space
