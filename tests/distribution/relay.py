"""A TCP relay on 127.0.0.1 in front of a loopback registry, to shape what a client
receives: a limited rate (so a download takes a known while), or a connection that stops
sending after some bytes and stays open (a registry that stalls)."""

from __future__ import annotations

import socket
import threading
import time


class Relay:
    """`Relay(upstream, rate=..., stall_after=...)`; clients connect to `host`.

    `rate`: bytes per second from the registry to each client connection.
    `stall_after`: after this many bytes of one connection's responses, relay nothing
    more on it (the sockets stay open until `close`).
    """

    def __init__(self, upstream: str, *, rate: float | None = None,
                 stall_after: int | None = None) -> None:
        up_host, _, up_port = upstream.rpartition(":")
        self.upstream = (up_host, int(up_port))
        self.rate = rate
        self.stall_after = stall_after
        self.stalled = threading.Event()  # set once a connection stopped relaying
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._spawn(self._accept)

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._socks += [client, server]
            self._spawn(self._pump, client, server, False)
            self._spawn(self._pump, server, client, True)

    def _pump(self, src: socket.socket, dst: socket.socket, shaped: bool) -> None:
        sent = 0
        start = time.monotonic()
        try:
            while not self._stop.is_set():
                data = src.recv(64 << 10)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if shaped and self.stall_after is not None and (
                        sent + len(data) > self.stall_after):
                    dst.sendall(data[:self.stall_after - sent])
                    self.stalled.set()
                    self._stop.wait()  # hold the connection open, send nothing more
                    return
                dst.sendall(data)
                sent += len(data)
                if shaped and self.rate:
                    ahead = sent / self.rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            return

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        except OSError:
            pass
        self._listener.close()
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
