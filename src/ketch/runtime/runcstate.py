"""What runc keeps in its state directory about one container that ketch reads without
starting runc: the processes of the cgroup runc recorded for it.

`runc ps` is a Go process start (~10 ms) for a file read and a directory walk; `top`
asked it on every call. Standard library only (and ketch.fastjson), so `top` can ask
without loading the runtime driver's module.
"""

from __future__ import annotations

import os


def cgroup_pids(state_root: str, container_id: str) -> set[int] | None:
    """The processes of the container's cgroup and the cgroups below it, as `runc ps`
    lists them: the devices hierarchy on cgroup v1 (the one runc reads), the unified
    one on v2, from `cgroup_paths` in runc's state.json under `state_root`. None when
    the state does not say (no such file, another runtime's format): ask the runtime."""
    from ketch.fastjson import loads

    try:
        with open(f"{state_root}/{container_id}/state.json", "rb") as f:
            paths = loads(f.read()).get("cgroup_paths") or {}
    except (OSError, ValueError, AttributeError):
        return None
    top = paths.get("devices") or paths.get("")
    if not isinstance(top, str) or not top.startswith("/sys/fs/cgroup/") \
            or not os.path.isdir(top):
        return None
    pids: set[int] = set()
    try:
        for where, _dirs, _files in os.walk(top):
            with open(f"{where}/cgroup.procs") as f:
                pids.update(int(p) for p in f.read().split())
    except (OSError, ValueError):
        return None
    return pids
