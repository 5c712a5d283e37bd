"""A userland port proxy for ports published on IPv6 host addresses (`-p [::1]:3000:80`).

IPv4 host addresses, 127.0.0.1 included, are served by kernel DNAT (firewall.py),
which is several times faster than any copy loop. IPv6 host addresses need what
Docker's docker-proxy does: accept, connect to the container, copy bytes. The target is
the container's IPv6 address on a network with IPv6 (the kernel has no route_localnet
for [::1], so DNAT could not serve it), else its IPv4 one (the kernel cannot NAT an IPv6
connection to an IPv4 one).

Runs as its own process (`python -I -S proxy.py`, standard library only), one per
container that has such ports. The network service binds the listening sockets (so a
port conflict is reported before the container starts) and passes them in.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time

UDP_IDLE_SECONDS = 60.0
BUFFER = 65536


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(BUFFER)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _serve_client(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def serve_tcp(listener: socket.socket, target: tuple[str, int]) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_serve_client, args=(client, target), daemon=True).start()


def serve_udp(listener: socket.socket, target: tuple[str, int]) -> None:
    """One connected socket towards the container per client address, so replies find
    their way back; idle ones are closed after a minute."""
    flows: dict[object, tuple[socket.socket, list[float]]] = {}
    lock = threading.Lock()

    def replies(client: object, up: socket.socket, seen: list[float]) -> None:
        up.settimeout(5)
        while True:
            try:
                data = up.recv(BUFFER)
            except TimeoutError:
                if time.monotonic() - seen[0] > UDP_IDLE_SECONDS:
                    break
                continue
            except OSError:
                break
            seen[0] = time.monotonic()
            try:
                listener.sendto(data, client)  # type: ignore[call-overload]  # client is the address recvfrom gave
            except OSError:
                pass
        with lock:
            flows.pop(client, None)
        up.close()

    while True:
        try:
            data, client = listener.recvfrom(BUFFER)
        except OSError:
            return
        with lock:
            flow = flows.get(client)
            if flow is None:
                family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
                up = socket.socket(family, socket.SOCK_DGRAM)
                up.connect(target)
                flow = (up, [time.monotonic()])
                flows[client] = flow
                threading.Thread(target=replies, args=(client, up, flow[1]),
                                 daemon=True).start()
        flow[1][0] = time.monotonic()
        try:
            flow[0].send(data)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ketch userland port proxy")
    ap.add_argument("--target", required=True, help="container IPv4 or IPv6 address")
    ap.add_argument("listeners", nargs="+", help="FD:PROTO:CONTAINER_PORT")
    args = ap.parse_args(argv)

    threads = []
    for spec in args.listeners:
        fd_s, proto, port_s = spec.split(":")
        sock = socket.socket(fileno=int(fd_s))
        sock.setblocking(True)
        fn = serve_tcp if proto == "tcp" else serve_udp
        t = threading.Thread(target=fn, args=(sock, (args.target, int(port_s))), daemon=True)
        t.start()
        threads.append(t)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while not done.wait(3600):
        pass
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
