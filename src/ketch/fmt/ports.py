"""The PORTS column of `ps`, grouped as the Docker CLI groups it.

Works on the Engine API's port entries (`{"IP", "PrivatePort", "PublicPort", "Type"}`,
as `GET /containers/json` returns them), so `ps` can format without loading the
network package. Kept free of heavy imports: it is on the `ps` path.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any


def _ip_order(ip: str) -> tuple[int, int, str]:
    """No address, then IPv4 in numeric order, then IPv6 (by text, as Docker orders
    all of them); without the ipaddress module, which `ps` cannot afford to load."""
    if not ip:
        return (0, 0, "")
    octets = ip.split(".")
    if len(octets) == 4 and all(o.isdigit() for o in octets):
        return (1, int.from_bytes(bytes(int(o) & 0xFF for o in octets), "big"), "")
    return (2, 0, ip)


def _host_port(ip: str, port: str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def displayable_ports(ports: Iterable[Mapping[str, Any]]) -> str:
    """`0.0.0.0:80-82->80-82/tcp, 443-444/tcp, 0.0.0.0:3000->8080/tcp`: runs of ports
    published on the same number inside and out collapse per address and protocol,
    exposed-only ports collapse per protocol, and ports published on another host
    port are listed one by one at the end (the Docker CLI's DisplayablePorts)."""
    items: dict[tuple[int, str, int, str], None] = {}  # ordered set: a repeat prints once
    for p in ports:
        public = int(p.get("PublicPort") or 0)
        ip = (p.get("IP") or "0.0.0.0") if public else ""
        items[(int(p["PrivatePort"]), ip, public, p.get("Type") or "tcp")] = None
    ordered = sorted(items, key=lambda t: (t[0], _ip_order(t[1]), t[2], t[3]))

    def group_text(key: tuple[str, str], first: int, last: int) -> str:
        ip, proto = key
        span = str(first) if first == last else f"{first}-{last}"
        return f"{_host_port(ip, span)}->{span}/{proto}" if ip else f"{span}/{proto}"

    groups: dict[tuple[str, str], list[int]] = {}  # insertion order = creation order
    result: list[str] = []
    mappings: list[str] = []
    for cport, ip, hport, proto in ordered:
        if ip and hport != cport:
            mappings.append(f"{_host_port(ip, str(hport))}->{cport}/{proto}")
            continue
        key = (ip, proto)
        group = groups.get(key)
        if group is None:
            groups[key] = [cport, cport]
        elif cport == group[1] + 1:
            group[1] = cport
        else:
            result.append(group_text(key, group[0], group[1]))
            groups[key] = [cport, cport]
    result += [group_text(k, g[0], g[1]) for k, g in groups.items()]
    return ", ".join(result + mappings)
