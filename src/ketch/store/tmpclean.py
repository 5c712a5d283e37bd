"""Removal of staging files that a killed ketch process left in tmp/.

Staging names carry the writer's pid (`blob-<pid>-...`, `layer-<pid>-...`); an entry
whose pid is no longer alive can only be debris.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_tmp(tmp: Path) -> int:
    removed = 0
    if not tmp.is_dir():
        return 0
    for entry in tmp.iterdir():
        parts = entry.name.split("-")
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed
