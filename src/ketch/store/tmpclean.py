"""Removal of staging entries that a killed ketch process left in tmp/.

Staging names carry their writer: `<kind>-<pid>.<start time>-...` (see
`ketch.store.intents.owner_tag`; older names carry the pid alone). An entry whose
writer is no longer alive can only be debris.
"""

from __future__ import annotations

import os
from pathlib import Path

from ketch.store.intents import alive
from ketch.store.trash import delete_tree


def _owner(name: str) -> tuple[int, str | None] | None:
    parts = name.split("-")
    if len(parts) < 2:
        return None
    pid, _, started = parts[1].partition(".")
    if not pid.isdigit():
        return None
    return int(pid), (started or None)


def _owner_alive(pid: int, started: str | None) -> bool:
    if started is not None:
        return alive(pid, started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        delete_tree(str(entry))
    else:
        entry.unlink(missing_ok=True)


def clean_tmp(tmp: str | os.PathLike[str], owner: tuple[int, str] | None = None) -> int:
    """Remove staging whose writer is dead (with `owner`: only that writer's, which the
    caller knows is dead). Returns how many entries went."""
    removed = 0
    try:
        entries = list(os.scandir(tmp))
    except OSError:
        return 0
    for entry in entries:
        who = _owner(entry.name)
        if who is None:
            continue
        if owner is not None:
            if who != owner:
                continue
        elif who[0] == os.getpid() or _owner_alive(*who):
            continue
        _remove(Path(entry.path))
        removed += 1
    return removed


def debris(tmp: str | os.PathLike[str]) -> list[Path]:
    """Staging entries whose writer is dead (for `system check`)."""
    out = []
    try:
        entries = list(os.scandir(tmp))
    except OSError:
        return []
    for entry in entries:
        who = _owner(entry.name)
        if who is not None and who[0] != os.getpid() and not _owner_alive(*who):
            out.append(Path(entry.path))
    return out
