"""The DNS service of one user-defined network (Docker's embedded DNS, Podman's
aardvark-dns): answers container names and aliases on the network from ketch.db and
forwards every other query to the upstream resolvers.

Runs as its own process, `python -I -S dnsd.py ...`, one per network that has
containers. The network service binds the UDP and TCP sockets on <gateway>:53 before
starting it and passes them in as fds 3 and 4, so a query sent the moment a container
starts waits in the socket buffer instead of being refused. It exits on SIGTERM, and on
its own once the network has no endpoints left.

Memory is the constraint here (one process per network): only the interpreter's
low-level modules are imported (`_socket`, `select`, `_signal`, `_thread`; `socket`,
`signal`, `selectors`, `argparse` and `ipaddress` would pull in enum and friends), which
keeps the process near 11 MB instead of 15.
"""

from __future__ import annotations

import _signal
import _socket
import _thread
import os
import select
import sys
import time
from struct import Struct, pack, unpack_from

try:  # the extension itself: the sqlite3 package would import datetime (see store/db.py)
    import _sqlite3 as sqlite3
except ImportError:  # pragma: no cover
    import sqlite3  # type: ignore[no-redef]  # the same module under its public name

if __package__:
    from ketch.network import schema
else:  # started as a file (`python -I -S dnsd.py`): the package is not on the path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import schema  # type: ignore[no-redef]  # the same module, loaded by its file name

TTL = 60  # short: a restarted container may come back with another address
FORWARD_TIMEOUT = 2.0
MAX_PENDING = 256
IDLE_CHECK_SECONDS = 10.0

QTYPE_A = 1
QTYPE_PTR = 12
QTYPE_AAAA = 28
QTYPE_ANY = 255
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_REFUSED = 5
REVERSE_SUFFIX = ".in-addr.arpa"

HEADER = Struct("!HHHHHH")


class Query:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.id, self.flags, qdcount, _an, _ns, _ar = HEADER.unpack_from(data)
        if qdcount != 1 or (self.flags >> 11) & 0xF != 0:
            raise ValueError("only standard queries with one question are answered here")
        labels = []
        offset = HEADER.size
        while True:
            length = data[offset]
            if length == 0:
                offset += 1
                break
            if length & 0xC0:
                raise ValueError("compressed question")
            labels.append(data[offset + 1: offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
        self.qtype, self.qclass = unpack_from("!HH", data, offset)
        self.question = data[HEADER.size: offset + 4]
        self.name = ".".join(labels).lower()

    def reply(self, rcode: int, answers: list[bytes], authoritative: bool = True) -> bytes:
        # QR set, opcode 0, RD copied from the query, RA set
        flags = 0x8000 | (self.flags & 0x0100) | 0x0080 | rcode
        if authoritative:
            flags |= 0x0400
        return HEADER.pack(self.id, flags, 1, len(answers), 0, 0) + self.question + b"".join(answers)


def record(rtype: int, rdata: bytes) -> bytes:
    # 0xC00C: a compression pointer to the question name at offset 12
    return pack("!HHHIH", 0xC00C, rtype, 1, TTL, len(rdata)) + rdata


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        raw = label.encode("ascii", "replace")[:63]
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def ip_to_int(ip: str) -> int:
    return int.from_bytes(_socket.inet_aton(ip), "big")


class Records:
    """Reads ketch.db on every query: the tables are tiny and indexed, and nothing has
    to tell this process when containers come and go."""

    def __init__(self, db_path: str, network_id: str, subnet: str) -> None:
        self.conn = sqlite3.connect(db_path, timeout=5, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA query_only=ON")
        self.conn.execute("PRAGMA cache_size=-256")
        self.lock = _thread.allocate_lock()
        self.network_id = network_id
        base, _, bits = subnet.partition("/")
        self.mask = (0xFFFFFFFF << (32 - int(bits))) & 0xFFFFFFFF
        self.net = ip_to_int(base) & self.mask

    def in_subnet(self, ip: str) -> bool:
        try:
            return ip_to_int(ip) & self.mask == self.net
        except OSError:
            return False

    def query(self, sql: str, args: tuple[str, ...]) -> list[tuple[str, ...]]:
        with self.lock:
            return self.conn.execute(sql, args).fetchall()

    def addresses(self, name: str) -> list[str]:
        rows = self.query(schema.NAME_ADDRESSES, (self.network_id, name))
        return [r[0] for r in rows]

    def addresses6(self, name: str) -> list[str]:
        """The IPv6 addresses of `name`'s containers (networks made with --ipv6)."""
        rows = self.query(schema.NAME_ADDRESSES6, (self.network_id, name))
        return [r[0] for r in rows]

    def name_of(self, ip: str) -> str | None:
        rows = self.query(schema.NAME_OF_ADDRESS, (self.network_id, ip))
        return rows[0][0] if rows else None

    def upstreams_for(self, client_ip: str) -> list[str]:
        rows = self.query(schema.CLIENT_UPSTREAMS, (self.network_id, client_ip))
        return [s for s in rows[0][0].split(",") if s] if rows and rows[0][0] else []

    def endpoint_count(self) -> int:
        rows = self.query(schema.ENDPOINT_COUNT, (self.network_id,))
        return int(rows[0][0])


class Resolver:
    def __init__(self, records: Records, upstreams: list[str]) -> None:
        self.records = records
        self.upstreams = upstreams

    def answer(self, q: Query, client_ip: str) -> bytes | None:
        """The reply to send, or None when the query must be forwarded."""
        if not self.records.in_subnet(client_ip):
            # only this network's containers may ask: the gateway address is reachable
            # from other networks and from the host's neighbours too
            return q.reply(RCODE_REFUSED, [], authoritative=False)
        return self.local_answer(q)

    def local_answer(self, q: Query) -> bytes | None:
        """The reply when the name is ours; None when the query must be forwarded."""
        name = q.name
        if name.endswith(REVERSE_SUFFIX):
            if q.qtype not in (QTYPE_PTR, QTYPE_ANY):
                return None
            ip = ".".join(reversed(name[: -len(REVERSE_SUFFIX)].split(".")))
            if ip.count(".") != 3 or not self.records.in_subnet(ip):
                return None
            target = self.records.name_of(ip)
            if target is None:
                return q.reply(RCODE_NXDOMAIN, [])
            return q.reply(0, [record(QTYPE_PTR, encode_name(target))])
        ips = self.records.addresses(name)
        if not ips:
            return None
        if q.qtype in (QTYPE_A, QTYPE_ANY):
            # rotate so that containers sharing an alias share the load
            start = os.urandom(1)[0] % len(ips)
            ips = ips[start:] + ips[:start]
            return q.reply(0, [record(QTYPE_A, _socket.inet_aton(ip)) for ip in ips])
        if q.qtype == QTYPE_AAAA:
            return q.reply(0, [record(QTYPE_AAAA, _socket.inet_pton(_socket.AF_INET6, ip))
                               for ip in self.records.addresses6(name)])
        return q.reply(0, [])  # a name we own, without records of that type

    def upstreams_for(self, client_ip: str) -> list[str]:
        return self.records.upstreams_for(client_ip) or list(self.upstreams)


class Pending:
    __slots__ = ("query", "client", "servers", "sock", "deadline")

    def __init__(self, query: Query, client: tuple[str, int], servers: list[str]) -> None:
        self.query = query
        self.client = client
        self.servers = servers
        self.sock: _socket.socket | None = None
        self.deadline = 0.0


class Server:
    def __init__(self, udp: _socket.socket, tcp: _socket.socket, resolver: Resolver) -> None:
        self.udp = udp
        self.tcp = tcp
        self.resolver = resolver
        self.poll = select.epoll()
        self.pending: dict[int, Pending] = {}

    def serve(self) -> None:
        self.udp.setblocking(False)
        self.tcp.setblocking(False)
        self.poll.register(self.udp.fileno(), select.EPOLLIN)
        self.poll.register(self.tcp.fileno(), select.EPOLLIN)
        next_check = time.monotonic() + IDLE_CHECK_SECONDS
        while True:
            for fd, _events in self.poll.poll(0.5):
                if fd == self.udp.fileno():
                    self.on_udp()
                elif fd == self.tcp.fileno():
                    self.on_accept()
                else:
                    self.on_upstream(fd)
            now = time.monotonic()
            for fd, p in list(self.pending.items()):
                if now >= p.deadline:
                    self.drop(fd)
                    self.forward(p)
            if now >= next_check:
                next_check = now + IDLE_CHECK_SECONDS
                try:
                    if self.resolver.records.endpoint_count() == 0:
                        return
                except sqlite3.Error:
                    pass

    def on_udp(self) -> None:
        try:
            data, client = self.udp.recvfrom(4096)
        except BlockingIOError:
            return
        try:
            q = Query(data)
        except (ValueError, IndexError):
            return
        try:
            answer = self.resolver.answer(q, client[0])
        except sqlite3.Error:
            answer = q.reply(RCODE_SERVFAIL, [], authoritative=False)
        if answer is not None:
            self.udp.sendto(answer, client)
        elif len(self.pending) >= MAX_PENDING:
            self.udp.sendto(q.reply(RCODE_SERVFAIL, [], authoritative=False), client)
        else:
            self.forward(Pending(q, client, self.resolver.upstreams_for(client[0])))

    def forward(self, p: Pending) -> None:
        while p.servers:
            server = p.servers.pop(0)
            family = _socket.AF_INET6 if ":" in server else _socket.AF_INET
            sock = _socket.socket(family, _socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.connect((server, 53))
                sock.send(p.query.data)
            except OSError:
                sock.close()
                continue
            p.sock = sock
            p.deadline = time.monotonic() + FORWARD_TIMEOUT
            self.pending[sock.fileno()] = p
            self.poll.register(sock.fileno(), select.EPOLLIN)
            return
        self.udp.sendto(p.query.reply(RCODE_SERVFAIL, [], authoritative=False), p.client)

    def on_upstream(self, fd: int) -> None:
        p = self.pending.get(fd)
        if p is None or p.sock is None:
            return
        try:
            data = p.sock.recv(4096)
        except OSError:
            data = b""
        self.drop(fd)
        if len(data) < HEADER.size or data[:2] != p.query.data[:2]:
            self.forward(p)
        else:
            self.udp.sendto(data, p.client)

    def drop(self, fd: int) -> None:
        p = self.pending.pop(fd, None)
        try:
            self.poll.unregister(fd)
        except OSError:
            pass
        if p is not None and p.sock is not None:
            p.sock.close()

    def on_accept(self) -> None:
        try:
            fd, addr = self.tcp._accept()  # type: ignore[attr-defined]  # socket's undocumented accept that returns the fd, skipping a socket object
        except BlockingIOError:
            return
        conn = _socket.socket(self.tcp.family, _socket.SOCK_STREAM, 0, fd)
        _thread.start_new_thread(self.tcp_client, (conn, addr[0]))

    def tcp_client(self, conn: _socket.socket, client_ip: str) -> None:
        try:
            conn.settimeout(10)
            while True:
                head = recv_exact(conn, 2)
                data = recv_exact(conn, unpack_from("!H", head)[0]) if head else b""
                if not data:
                    return
                try:
                    q = Query(data)
                    answer = self.resolver.answer(q, client_ip)
                except (ValueError, IndexError, sqlite3.Error):
                    return
                if answer is None:
                    answer = (tcp_forward(data, self.resolver.upstreams_for(client_ip))
                              or q.reply(RCODE_SERVFAIL, [], authoritative=False))
                conn.sendall(pack("!H", len(answer)) + answer)
        except OSError:
            return
        finally:
            conn.close()


def recv_exact(conn: _socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return b""
        buf += chunk
    return buf


def tcp_forward(data: bytes, servers: list[str]) -> bytes | None:
    for server in servers:
        family = _socket.AF_INET6 if ":" in server else _socket.AF_INET
        up = _socket.socket(family, _socket.SOCK_STREAM)
        try:
            up.settimeout(FORWARD_TIMEOUT)
            up.connect((server, 53))
            up.sendall(pack("!H", len(data)) + data)
            head = recv_exact(up, 2)
            reply = recv_exact(up, unpack_from("!H", head)[0]) if head else b""
            if reply:
                return reply
        except OSError:
            continue
        finally:
            up.close()
    return None


def parse_args(argv: list[str]) -> dict[str, str]:
    args = {}
    for i in range(0, len(argv) - 1, 2):
        if not argv[i].startswith("--"):
            raise SystemExit(f"dnsd: unexpected argument {argv[i]!r}")
        args[argv[i][2:]] = argv[i + 1]
    for key in ("db", "network", "subnet"):
        if key not in args:
            raise SystemExit(f"dnsd: --{key} is required")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    udp = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM, 0, int(args.get("udp-fd", "3")))
    tcp = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM, 0, int(args.get("tcp-fd", "4")))
    records = Records(args["db"], args["network"], args["subnet"])
    upstreams = [s for s in args.get("upstream", "").split(",") if s]

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)  # interrupts epoll.poll in the main thread

    _signal.signal(_signal.SIGTERM, stop)
    _signal.signal(_signal.SIGINT, stop)
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
    Server(udp, tcp, Resolver(records, upstreams)).serve()
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main(sys.argv[1:]))
