"""`diff`: what a container changed, read from its overlay upper dir against the image's
layers (moby's overlay change walk)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from _typeshed import StrPath

# Files the runtime creates in a container's root as mount points: Docker keeps them in a
# per-container init layer, so they are no change the user made.
_MOUNTPOINT_FILES = {"etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv"}
_MOUNTPOINT_DIRS = {"proc", "sys", "dev"}
_OPAQUE = "trusted.overlay.opaque"


def _is_whiteout(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _in_lowers(lowers: Sequence[StrPath], parts: list[str]) -> os.stat_result | None:
    """What the image (overlay lower dirs, topmost first) has at `parts`, or None."""
    import stat

    for lower in lowers:
        cur = lower
        masks_below = False
        for i, part in enumerate(parts):
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except (FileNotFoundError, NotADirectoryError):
                break  # not in this layer: the layers below decide, unless masked
            if _is_whiteout(st):
                return None
            if i == len(parts) - 1:
                return st
            if not stat.S_ISDIR(st.st_mode):
                return None  # a file hides everything below its name
            if _opaque(cur):
                masks_below = True
        if masks_below:
            return None
    return None


def _opaque(path: StrPath) -> bool:
    try:
        return os.getxattr(path, _OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def upper_changes(upper: StrPath, lowers: Sequence[StrPath]) -> list[tuple[int, str]]:
    """moby's overlay changes: whiteouts are deletions, entries the image lacks are
    additions, the rest modifications; a directory counts only if its own metadata
    changed or something directly in it was added or deleted."""
    import stat

    changes: dict[str, int] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(upper, rel) if rel else upper))
        except OSError:
            continue
        for e in entries:
            path = f"{rel}/{e.name}" if rel else e.name
            st = e.stat(follow_symlinks=False)
            if _is_whiteout(st):
                changes[path] = 2
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            lower = _in_lowers(lowers, path.split("/"))
            if lower is None:
                if path in _MOUNTPOINT_FILES and stat.S_ISREG(st.st_mode) and not st.st_size:
                    continue
                if path in _MOUNTPOINT_DIRS and is_dir and not any(os.scandir(e.path)):
                    continue
                changes[path] = 1
            elif not (is_dir and stat.S_ISDIR(lower.st_mode)
                      and (st.st_mode, st.st_uid, st.st_gid)
                      == (lower.st_mode, lower.st_uid, lower.st_gid)
                      and not _opaque(e.path)):
                changes[path] = 0
            if is_dir:
                stack.append(path)
    for path, kind in list(changes.items()):
        parent = path.rpartition("/")[0]
        if kind in (1, 2) and parent and parent not in changes:
            changes[parent] = 0
    return sorted(((k, "/" + p) for p, k in changes.items()), key=lambda c: c[1])
