"""Docker's port grammar: `-p`/`--publish`, `--expose`, `-P`, and how ports print.

Pure functions, no I/O. The grammar and error messages follow the Docker CLI
(docker/go-connections `nat.ParsePortSpec`): `[ip:][hostPort[-end]:]containerPort[-end][/proto]`,
IPv6 host addresses in brackets, a host range with a single container port meaning
"any free port of this range".
"""

from __future__ import annotations

from ketch.errors import InvalidArgument
from ketch.network.models import PortBinding

# (no re, ipaddress or collections.abc at import: `pod create -p` and `create -p` load
# this module, and only a host address needs ipaddress)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

PROTOCOLS = ("tcp", "udp", "sctp")


def _port_number(text: str) -> int:
    # Go's ParseUint(s, 10, 16): ASCII digits only (no sign, spaces or underscores),
    # < 65536
    if not (text.isascii() and text.isdigit()):
        raise ValueError(text)
    value = int(text)
    if value > 65535:
        raise ValueError(text)
    return value


def parse_port_range(text: str) -> tuple[int, int]:
    """`80` -> (80, 80); `8000-8010` -> (8000, 8010). ValueError when malformed."""
    if not text:
        raise ValueError("empty string specified for ports")
    if "-" not in text:
        port = _port_number(text)
        return port, port
    start_s, _, end_s = text.partition("-")
    start, end = _port_number(start_s), _port_number(end_s)
    if end < start:
        raise ValueError(f"invalid range specified for port: {text}")
    return start, end


def _split_parts(spec: str) -> tuple[str, str, str]:
    parts = spec.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    # everything before the last two colons is the IP, so bare IPv6 (::1:80:80) works
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def _split_proto(text: str) -> tuple[str, str]:
    port, _, proto = text.partition("/")
    if not port:
        return "", ""
    return port, (proto or "tcp")


def is_dotted_quad(text: str) -> bool:
    """An IPv4 address as ipaddress writes it (four decimal octets, no leading zeros),
    told without importing ipaddress (and functools and collections with it)."""
    octets = text.split(".")
    return len(octets) == 4 and all(o.isascii() and o.isdigit() and int(o) < 256
                                    and (o == "0" or o[0] != "0") for o in octets)


def _normalize_ip(raw: str) -> str:
    ip = raw
    if ip.startswith("["):
        if not ip.endswith("]"):
            raise InvalidArgument(f"invalid IP address {raw}: missing ']' in address")
        ip = ip[1:-1]
    if is_dotted_quad(ip):  # (the common case, `-p 127.0.0.1:8080:80`)
        return "" if ip == "0.0.0.0" else ip
    import ipaddress

    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidArgument(f"invalid IP address: {ip}") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    # 0.0.0.0 and "" mean the same thing: every IPv4 address of the host
    return "" if str(addr) == "0.0.0.0" else str(addr)


def parse_publish(spec: str) -> list[PortBinding]:
    """Parse one `-p` value into bindings, one per container port.

    >>> parse_publish("127.0.0.1:3000-3001:80-81/udp")[1]
    PortBinding(container_port=81, protocol='udp', host_ip='127.0.0.1', host_port=3001, host_port_end=0)
    """
    raw_ip, host_part, container_part = _split_parts(spec)
    container_s, proto = _split_proto(container_part)
    if not container_s:
        raise InvalidArgument(f"no port specified: {spec}<empty>")
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {proto}")
    host_ip = _normalize_ip(raw_ip) if raw_ip else ""
    try:
        c_start, c_end = parse_port_range(container_s)
    except ValueError:
        raise InvalidArgument(f"invalid containerPort: {container_s}") from None
    if c_start == 0:
        raise InvalidArgument(f"invalid containerPort: {container_s}")
    h_start = h_end = 0
    if host_part:
        try:
            h_start, h_end = parse_port_range(host_part)
        except ValueError:
            raise InvalidArgument(f"invalid hostPort: {host_part}") from None
        if (c_end - c_start) != (h_end - h_start) and c_end != c_start:
            raise InvalidArgument(
                "invalid ranges specified for container and host Ports: "
                f"{container_s} and {host_part}")
    count = c_end - c_start + 1
    out: list[PortBinding] = []
    for i in range(count):
        if count == 1 and h_end != h_start:
            # a single container port with a host range: any free port of the range
            out.append(PortBinding(c_start, proto, host_ip, h_start, h_end))
        else:
            out.append(PortBinding(c_start + i, proto, host_ip, h_start + i if h_start else 0))
    return out


def parse_publish_all(specs: Iterable[str]) -> list[PortBinding]:
    """Several `-p` values, in order, duplicates removed."""
    out: list[PortBinding] = []
    for spec in specs:
        for b in parse_publish(spec):
            if b not in out:
                out.append(b)
    return out


def parse_expose(spec: str) -> list[str]:
    """`--expose 80`, `--expose 8000-8002/udp` -> ["8000/udp", "8001/udp", "8002/udp"]."""
    if ":" in spec:
        raise InvalidArgument(f"invalid port format for --expose: {spec}")
    port_s, proto = _split_proto(spec)
    proto = proto.lower()
    try:
        start, end = parse_port_range(port_s)
    except ValueError as e:
        raise InvalidArgument(f"invalid range format for --expose: {spec}, error: {e}") from None
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {proto}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def split_port_key(key: str) -> tuple[int, str]:
    """`"80/tcp"` (an image's ExposedPorts key) -> (80, "tcp"); a bare `"80"` is tcp."""
    port_s, proto = _split_proto(key)
    try:
        port = _port_number(port_s)
    except ValueError:
        raise InvalidArgument(f"invalid exposed port: {key}") from None
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {proto}")
    return port, proto


def publish_all(exposed_ports: Iterable[str],
                existing: Iterable[PortBinding] = ()) -> list[PortBinding]:
    """`-P`: every exposed port not already published gets a random host port."""
    taken = {(b.container_port, b.protocol) for b in existing}
    out: list[PortBinding] = []
    for key in exposed_ports:
        port, proto = split_port_key(key)
        if (port, proto) in taken:
            continue
        taken.add((port, proto))
        out.append(PortBinding(port, proto))
    return out


# -- display ---------------------------------------------------------------------------

def port_map(bindings: Iterable[PortBinding],
             exposed: Iterable[str] = ()) -> dict[str, list[dict[str, str]] | None]:
    """NetworkSettings.Ports: {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "3000"}]},
    exposed-only ports map to None."""
    out: dict[str, list[dict[str, str]] | None] = {}
    for key in exposed:
        port, proto = split_port_key(key)
        out.setdefault(f"{port}/{proto}", None)
    for b in bindings:
        entry = out.get(b.port_key) or []
        entry.append({"HostIp": b.display_ip, "HostPort": str(b.host_port)})
        out[b.port_key] = entry
    return out


def format_port_lines(bindings: Iterable[PortBinding], port: str | None = None) -> list[str]:
    """`docker port CONTAINER [PORT]`: "80/tcp -> 0.0.0.0:3000", or only the host
    addresses when a port is asked for."""
    wanted: tuple[int, str] | None = None
    if port:
        wanted = split_port_key(port)
    lines = []
    for b in sorted(bindings, key=lambda b: (b.container_port, b.protocol, b.family,
                                             b.host_ip, b.host_port)):
        if wanted is not None:
            if (b.container_port, b.protocol) == wanted:
                lines.append(b.host_address())
        else:
            lines.append(f"{b.port_key} -> {b.host_address()}")
    return lines


def format_ports(bindings: Iterable[PortBinding], exposed: Iterable[str] = ()) -> str:
    """The PORTS column of `docker ps`, by the Docker CLI's rules: runs of ports
    published on the same number inside and out collapse (`0.0.0.0:80-82->80-82/tcp`),
    exposed-only ports collapse per protocol (`443-444/tcp`), and mappings to another
    host port are listed one by one at the end."""
    from ketch.fmt.ports import displayable_ports

    entries: list[dict[str, str | int]] = [
        {"IP": b.display_ip, "PrivatePort": b.container_port, "PublicPort": b.host_port,
         "Type": b.protocol} for b in bindings]
    published = {(b["PrivatePort"], b["Type"]) for b in entries}
    for key in exposed:
        port, proto = split_port_key(key)
        if (port, proto) not in published:
            entries.append({"PrivatePort": port, "Type": proto})
    return displayable_ports(entries)
