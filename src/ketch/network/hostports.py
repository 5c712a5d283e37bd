"""Published ports on the host side: choosing host ports (`-p 8080:80`, ranges, random
ones from the local port range), checking them against ketch's records and against
whatever else on the host holds them, the userland proxy that serves IPv6 host
addresses, and the conntrack clean-up a datagram port needs when it goes away."""

from __future__ import annotations

import _socket  # not `socket`: its constants become enums at import (ms of `run -p`)
import errno
import os
import sys

from ketch.errors import Conflict, InvalidArgument, KetchError
from ketch.network import procs, records
from ketch.network.models import PortBinding
from ketch.network.netlink import delete_conntrack

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from _socket import socket
    from collections.abc import Iterable

    from ketch.network.models import Network

    Sockets = list[tuple[socket, PortBinding]]

HELPERS = os.path.dirname(os.path.abspath(__file__))


def allocate(conn: sqlite3.Connection, container_id: str, net: Network, container_ip: str,
             wanted: list[PortBinding], port_range: tuple[int, int]
             ) -> tuple[list[PortBinding], Sockets]:
    """Choose and record host ports. Runs inside the write transaction, so the
    records of every other ketch process are final while we look at them; a real
    bind test catches ports held by anything else on the host. Ports on IPv6 host
    addresses come back with their bound socket, for the userland proxy.

    On a network with IPv6, a port published on every address (`-p 8080:80`, `-P`)
    also listens on [::] at the same host port, as Docker's with ip6tables does."""
    resolved: list[PortBinding] = []
    sockets: Sockets = []
    if not wanted:
        return resolved, sockets
    taken = records.port_holders(conn)
    lo, hi = port_range
    from ketch.network.options import HOST_BINDING_IPV4

    default_ip = net.option(HOST_BINDING_IPV4, "")
    if default_ip:  # the network's host_binding_ipv4: where `-p 8080:80` listens
        wanted = [PortBinding(container_port=b.container_port, protocol=b.protocol,
                              host_ip=b.host_ip or default_ip, host_port=b.host_port,
                              host_port_end=b.host_port_end) for b in wanted]
    try:
        for b in wanted:
            if b.host_port and not b.host_port_end:
                candidates: Iterable[int] = [b.host_port]
            elif b.host_port:
                candidates = range(b.host_port, b.host_port_end + 1)
            else:
                import random

                offset = random.randrange(hi - lo + 1)
                candidates = (lo + (offset + i) % (hi - lo + 1) for i in range(hi - lo + 1))
            explicit = bool(b.host_port) and not b.host_port_end
            # the [::] twin of a port published on every IPv4 address
            hosts = [b.host_ip, "::"] if (net.ipv6 and not b.host_ip
                                          and b.protocol != "sctp") else [b.host_ip]
            chosen = None
            for port in candidates:
                bound: Sockets = []
                try:
                    for host_ip in hosts:
                        at = PortBinding(b.container_port, b.protocol, host_ip, port)
                        if _records_conflict(taken.get((b.protocol, port), ()), host_ip):
                            raise OSError(errno.EADDRINUSE, "port is already allocated")
                        sock = _probe(host_ip, b.protocol, port, keep=at.family == 6)
                        if sock is not None:
                            bound.append((sock, at))
                except OSError as e:
                    for s, _b in bound:
                        s.close()
                    if explicit or e.errno != errno.EADDRINUSE:
                        raise _bind_error(at, port, e) from None
                    continue
                chosen = port
                sockets += bound
                break
            if chosen is None:
                if not b.host_port:
                    raise Conflict("all ports are allocated")
                raise Conflict(f"Bind for {_where(b, b.host_port)}-{b.host_port_end} "
                               "failed: port is already allocated")
            for host_ip in hosts:
                res = PortBinding(b.container_port, b.protocol, host_ip, chosen)
                taken.setdefault((b.protocol, chosen), []).append(host_ip)
                resolved.append(res)
                records.insert_port(conn, container_id, net.id, container_ip, res)
    except BaseException:
        for s, _b in sockets:
            s.close()
        raise
    return resolved, sockets


def start_proxy(run_dir: str, container_id: str, container_ip: str,
                sockets: Sockets) -> tuple[int, str]:
    """The userland proxy for the bound sockets (closed here, the proxy has them) to
    `container_ip` (IPv4 or IPv6); returns its pid and start time."""
    specs = [f"{3 + i}:{b.protocol}:{b.container_port}" for i, (_s, b) in enumerate(sockets)]
    argv = [sys.executable, "-I", "-S", f"{HELPERS}/proxy.py",
            "--target", container_ip, *specs]
    try:
        return procs.spawn_detached(argv, [s for s, _b in sockets],
                                    f"{run_dir}/proxy-{container_id[:12]}.log")
    finally:
        for s, _b in sockets:
            s.close()


def forget_flows(protocol: str, container_ip: str, container_port: int) -> None:
    """Drop the conntrack entries still pointing at a published UDP/SCTP port, so the
    next container on that host port gets the traffic. Best effort: without
    nf_conntrack_netlink the entries simply time out."""
    try:
        delete_conntrack(17 if protocol == "udp" else 132, container_ip, container_port)
    except OSError:
        pass


def _records_conflict(existing: Iterable[str], host_ip: str) -> bool:
    fam = 6 if ":" in host_ip else 4
    for other in existing:
        if (6 if ":" in other else 4) != fam:
            continue
        if other == host_ip or other in ("", "::") or host_ip in ("", "::"):
            return True
    return False


def _probe(host_ip: str, protocol: str, port: int, keep: bool) -> socket | None:
    """Bind the port to see whether anything on the host holds it. With `keep` (ports
    served by the userland proxy) the bound socket is returned for the proxy to use."""
    if protocol == "sctp":
        return None  # no portable bind test; ketch's own records still apply
    family = _socket.AF_INET6 if ":" in host_ip else _socket.AF_INET
    kind = _socket.SOCK_STREAM if protocol == "tcp" else _socket.SOCK_DGRAM
    sock = _socket.socket(family, kind)
    try:
        if family == _socket.AF_INET6:
            sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
        if kind == _socket.SOCK_STREAM:
            # ignore connections lingering in TIME_WAIT; a listener still conflicts
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind((host_ip or ("::" if family == _socket.AF_INET6 else "0.0.0.0"), port))
        if keep:
            if kind == _socket.SOCK_STREAM:
                sock.listen(128)
            return sock
    except BaseException:
        sock.close()
        raise
    sock.close()
    return None


def _where(b: PortBinding, port: int) -> str:
    return PortBinding(b.container_port, b.protocol, b.host_ip, port).host_address()


def _bind_error(b: PortBinding, port: int, e: OSError) -> KetchError:
    if e.errno == errno.EADDRINUSE:
        return Conflict(f"Bind for {_where(b, port)} failed: port is already allocated")
    return InvalidArgument(f"Bind for {_where(b, port)} failed: {e.strerror or e}")
