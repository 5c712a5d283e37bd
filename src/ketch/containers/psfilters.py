"""The `ps` filters that look at what a container is connected to: network, volume,
publish, expose and is-task, with dockerd's meanings. `network` is a network's name or a
prefix of its ID; `volume` a volume's name, a bind mount's source or a mount's
destination; `publish` a host port and `expose` a container port of the container's
listed ports, each PORT[/PROTO] or a range (tcp unless said); ketch runs no swarm tasks,
so `is-task=true` matches nothing."""

from __future__ import annotations

from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

KEYS = ("network", "volume", "publish", "expose", "is-task")


def _ports(kind: str, specs: list[str]) -> set[str]:
    """{"80/tcp", ...} of PORT[/PROTO] and START-END[/PROTO] values."""
    out: set[str] = set()
    for spec in specs:
        port, _, proto = spec.partition("/")
        start, dash, end = port.partition("-")
        bounds = []
        for n in (start, end) if dash else (start,):
            if not (n.isascii() and n.isdigit()) or int(n) > 65535:
                raise InvalidArgument(f"error while looking up for {kind} {spec}:"
                                      f' strconv.ParseUint: parsing "{n}": invalid syntax')
            bounds.append(int(n))
        if bounds[-1] < bounds[0]:
            raise InvalidArgument(f"error while looking up for {kind} {spec}: invalid range"
                                  f" specified for the Port: {port}")
        out.update(f"{p}/{proto or 'tcp'}" for p in range(bounds[0], bounds[-1] + 1))
    return out


def compile_filters(filters: dict[str, list[str]]) -> Callable[[dict[str, Any]], bool] | None:
    """A test of a `ps` list entry (Ports, Mounts, NetworkSettings.Networks) for the
    filters above, or None when none is given. Bad values are refused here, before any
    container is looked at."""
    if not any(k in filters for k in KEYS):
        return None
    task = filters.get("is-task", [])
    for value in task:
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'is-task={value}'")
    no_tasks = any(v.lower() in ("true", "1") for v in task)
    networks = filters.get("network")
    volumes = filters.get("volume")
    publish = _ports("publish", filters.get("publish", []))
    expose = _ports("expose", filters.get("expose", []))

    def test(item: dict[str, Any]) -> bool:
        if no_tasks:
            return False
        if networks is not None:
            nets = item["NetworkSettings"]["Networks"] or {}
            if not any(n in nets or any((ep or {}).get("NetworkID", "").startswith(n)
                                        for ep in nets.values()) for n in networks if n):
                return False
        if volumes is not None:
            seen = set()
            for m in item["Mounts"] or []:
                seen.add(m.get("Name") or m.get("Source"))
                seen.add(m.get("Destination"))
            if not seen.intersection(volumes):
                return False
        if publish or expose:
            for p in item["Ports"] or []:
                proto = p.get("Type") or "tcp"
                if (p.get("PublicPort") and f"{p['PublicPort']}/{proto}" in publish
                        or f"{p.get('PrivatePort')}/{proto}" in expose):
                    break
            else:
                return False
        return True

    return test
