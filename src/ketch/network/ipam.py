"""Address management of bridge networks (Docker's default IPAM driver): a network's
subnets from the pool or the user's --subnet (no overlap with another network or a route
the host has), --gateway, --ip-range and --aux-address, and the containers' addresses.
An IPv6 network without an IPv6 --subnet gets a random ULA /64, as Podman's do (Docker
20.10 has no default IPv6 pool and refuses).

Leases are the endpoint records (records.py): every choice here is made inside the
caller's write transaction, so two ketch processes never hand out one address.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os

from ketch.errors import Conflict, InvalidArgument
from ketch.network import records
from ketch.values import contextmanager

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator
    from typing import Any

    from ketch.network.config import NetworkConfig
    from ketch.network.models import Network

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def mac_for(ip: str) -> str:
    # derived from the address like Docker's 02:42:<ip>: a reused address keeps its
    # MAC, so neighbours' ARP caches stay right
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed)


def host_routes() -> list[ipaddress.IPv4Network]:
    """IPv4 networks the host already routes (other than the default route)."""
    out = []
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                fields = line.split()
                dest = int(fields[1], 16)
                mask = int(fields[7], 16)
                if mask == 0:
                    continue
                net = ipaddress.IPv4Network(
                    (ipaddress.IPv4Address(dest.to_bytes(4, "little")),
                     bin(mask).count("1")), strict=False)
                out.append(net)
    except (OSError, StopIteration, ValueError):
        pass
    return out


def host_routes6() -> list[ipaddress.IPv6Network]:
    """IPv6 networks the host already routes (other than the default route)."""
    out = []
    try:
        with open("/proc/net/ipv6_route") as f:
            for line in f:
                fields = line.split()
                prefixlen = int(fields[1], 16)
                if prefixlen == 0:
                    continue
                out.append(ipaddress.IPv6Network((int(fields[0], 16), prefixlen),
                                                 strict=False))
    except (OSError, IndexError, ValueError):
        pass
    return out


@contextmanager
def host_lock() -> Iterator[None]:
    """One lock for every state root on the host (the default bridges' subnets)."""
    os.makedirs("/run/lock", exist_ok=True)
    fd = os.open("/run/lock/ketch-bridges.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- a network's subnets ---------------------------------------------------------------
def subnet4(conn: sqlite3.Connection, config: NetworkConfig, subnet: str | None,
            gateway: str | None) -> tuple[IPNetwork, IPAddress]:
    """The new network's IPv4 subnet (the user's, or the next free one of the pool) and
    gateway (the user's, or the subnet's first address)."""
    taken: list[IPNetwork] = [ipaddress.ip_network(s) for s in records.subnets(conn)]
    if subnet:
        try:
            net = ipaddress.ip_network(subnet, strict=False)
        except ValueError:
            raise InvalidArgument(f"invalid subnet {subnet}") from None
        if net.version != 4:
            raise InvalidArgument(f"subnet {subnet} is not an IPv4 subnet: an IPv6 one needs"
                                  " --ipv6")
        if net.prefixlen > 30:
            raise InvalidArgument(f"subnet {subnet} is too small")
        # a route the host already has (another engine's bridge, a VPN, the LAN)
        # would be shadowed: refused like an overlap with a known network
        if any(net.overlaps(t) for t in taken + host_routes()):
            raise Conflict("Pool overlaps with other one on this address space")
    else:
        net = free_subnet(config, taken)
    if gateway:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise InvalidArgument(f"invalid gateway address {gateway}") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise InvalidArgument(f"no matching subnet for gateway {gateway}")
    else:
        gw = next(net.hosts())
    return net, gw


def free_subnet(config: NetworkConfig, taken: list[IPNetwork]) -> ipaddress.IPv4Network:
    """The first subnet of the pool that overlaps no network and no host route."""
    pool = ipaddress.ip_network(config.pool, strict=False)
    busy = taken + host_routes()
    for candidate in pool.subnets(new_prefix=config.pool_prefixlen):
        if not any(candidate.overlaps(b) for b in busy):
            return candidate  # type: ignore[return-value]  # an IPv4 pool yields IPv4 subnets
    raise Conflict("could not find an available, non-overlapping IPv4 address pool "
                   "among the defaults to assign to the network")


def free_subnet6(taken: list[IPNetwork]) -> ipaddress.IPv6Network:
    """A unique local /64 (RFC 4193: fd00::/8 with random global and subnet IDs, as
    Podman draws them) overlapping no network and no host route."""
    busy = taken + host_routes6()
    for _ in range(64):
        prefix = (0xFD << 56) | int.from_bytes(os.urandom(7), "big")
        candidate = ipaddress.IPv6Network((prefix << 64, 64))
        if not any(candidate.overlaps(b) for b in busy):
            return candidate
    raise Conflict("could not find an available, non-overlapping IPv6 address pool")


def ipam_config(subnet: Any, ip_range: str | None, gateway: str | None,
                aux: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Docker's checks of --ip-range and --aux-address against the subnet; the range
    (normalised) and the auxiliary addresses."""
    rng = ""
    if ip_range:
        try:
            r = ipaddress.ip_network(ip_range, strict=False)
        except ValueError:
            raise InvalidArgument(f"invalid CIDR address: {ip_range}") from None
        if r.version != subnet.version or not r.subnet_of(subnet):
            raise InvalidArgument(f"no matching subnet for range {ip_range}")
        rng = str(r)
    for key, value in aux.items():
        try:
            a = ipaddress.ip_address(value)
        except ValueError:
            raise InvalidArgument(f"invalid aux-address {key}={value}") from None
        if a not in subnet:
            raise InvalidArgument(f"no matching subnet for aux-address {value}")
        if gateway and a == ipaddress.ip_address(gateway):
            raise InvalidArgument(f"aux-address {key}={value} is the gateway's address")
    return rng, {k: str(ipaddress.ip_address(v)) for k, v in aux.items()}


def ipv6_config(subnet6: str, gateway6: str | None, taken: list[Any]) -> tuple[Any, Any]:
    """--ipv6's subnet (not overlapping another network's) and gateway (the subnet's
    first address unless given)."""
    try:
        net = ipaddress.ip_network(subnet6, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {subnet6}") from None
    if net.version != 6:
        raise InvalidArgument(f"invalid IPv6 subnet {subnet6}")
    if net.prefixlen > 124:
        raise InvalidArgument(f"subnet {subnet6} is too small")
    if any(net.overlaps(t) for t in taken):
        raise InvalidArgument("Pool overlaps with other one on this address space")
    if gateway6:
        try:
            gw = ipaddress.ip_address(gateway6)
        except ValueError:
            raise InvalidArgument(f"invalid gateway address {gateway6}") from None
        if gw not in net or gw == net.network_address:
            raise InvalidArgument(f"no matching subnet for gateway {gateway6}")
    else:
        gw = net.network_address + 1
    return net, gw


# -- containers' addresses -------------------------------------------------------------
def address4(conn: sqlite3.Connection, net: Network, requested: str | None) -> str:
    """The endpoint's IPv4 address: the one asked for (--ip), else the next free one."""
    subnet = ipaddress.ip_network(net.subnet)
    gateway = ipaddress.ip_address(net.gateway)
    used = records.leased(conn, net.id)
    if not requested:
        return next_ip(conn, net, subnet, gateway, used)
    if net.pool_subnet:
        raise InvalidArgument("user specified IP address is supported only when connecting"
                              " to networks with user configured subnets")
    try:
        addr = ipaddress.ip_address(requested)
    except ValueError:
        raise InvalidArgument(f"invalid IP address: {requested}") from None
    if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"no configured subnet contains IP address {requested}")
    if addr == gateway or str(addr) in used or str(addr) in net.aux_addresses.values():
        raise Conflict("Address already in use")
    return str(addr)


def next_ip(conn: sqlite3.Connection, net: Network, subnet: IPNetwork, gateway: IPAddress,
            used: set[str]) -> str:
    # round robin from the last address handed out (as CNI host-local does): a
    # just-freed address is not reused at once while neighbours may still cache it
    first = int(subnet.network_address) + 1
    last = int(subnet.broadcast_address) - 1
    if net.ip_range:  # --ip-range: only this part of the subnet is handed out
        rng = ipaddress.ip_network(net.ip_range)
        first = max(first, int(rng.network_address))
        last = min(last, int(rng.broadcast_address))
    used = used | set(net.aux_addresses.values())  # --aux-address: never handed out
    start = first
    previous = records.last_ip(conn, net.id)
    if previous:
        prev = int(ipaddress.ip_address(previous))
        if first <= prev < last:
            start = prev + 1
    size = last - first + 1
    for i in range(size):
        cand = first + (start - first + i) % size
        text = str(ipaddress.ip_address(cand))
        if cand != int(gateway) and text not in used:
            records.set_last_ip(conn, net.id, text)
            return text
    raise Conflict(f"no available IPv4 addresses on this network's address pools: "
                   f"{net.name} ({net.id})")


def address6(conn: sqlite3.Connection, net: Network, requested: str | None) -> str:
    """The endpoint's IPv6 address: the one asked for (--ip6), else the lowest free
    one after the gateway's."""
    subnet = ipaddress.ip_network(net.subnet6)
    gateway = ipaddress.ip_address(net.gateway6)
    used = {ipaddress.ip_address(a) for a in records.leased6(conn, net.id)}
    if requested:
        try:
            addr = ipaddress.ip_address(requested)
        except ValueError:
            raise InvalidArgument(f"invalid IPv6 address: {requested}") from None
        if addr not in subnet or addr == subnet.network_address:
            raise InvalidArgument(f"Invalid address {requested}: It does not belong to"
                                  " any of this network's subnets")
        if addr == gateway or addr in used:
            raise Conflict("Address already in use")
        return str(addr)
    cand = int(subnet.network_address) + 1
    last = int(subnet.broadcast_address)
    while cand <= last:
        addr = ipaddress.ip_address(cand)
        if addr != gateway and addr not in used:
            return str(addr)
        cand += 1
    raise Conflict(f"no available IPv6 addresses on this network's address pools:"
                   f" {net.name} ({net.id})")
