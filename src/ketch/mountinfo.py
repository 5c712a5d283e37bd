"""The mount points of this process's mount namespace, from /proc/self/mountinfo.

One reader for the places that ask "is this path a mount point?" (an overlay already
mounted, a volume's `_data`, the netns directory) and "what is mounted below this
tree?" (a tree deleted must not be deleted through a mount). The mount point is the
fifth field, with space, tab, newline and backslash written as octal escapes (\\040).
A bind mount of a directory of the same filesystem has the same device number as
its parent, so `os.stat` alone cannot tell: the table can.

Standard library only, nothing loaded at import.
"""

from __future__ import annotations

import os


def mount_points() -> list[str]:
    """Every mount point, in the table's order (a path stacked twice is listed twice)."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            table = f.read()
    except OSError:
        return []
    points = []
    for line in table.splitlines():
        fields = line.split(b" ", 5)
        if len(fields) < 5:
            continue
        point = fields[4]
        if b"\\" in point:
            point = point.decode("unicode_escape").encode("latin-1")
        points.append(os.fsdecode(point))
    return points


def is_mount_point(path: str | os.PathLike[str]) -> bool:
    """Whether something is mounted on `path` (symlinks in it resolved first)."""
    return os.path.realpath(path) in mount_points()


def mount_points_under(path: str) -> set[str]:
    """The mount points strictly below `path`."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    return {p for p in mount_points() if p.startswith(prefix)}
