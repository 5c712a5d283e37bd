"""Docker's stream formats: the 8-byte multiplexed frames (logs and attach of a container
without a TTY) and hijacked connections (attach: `101 UPGRADED` when the client asked
for `Upgrade: tcp`, else `200 OK` and the same raw stream until the connection closes,
as dockerd answers both).

A hijacked connection leaves the server's hands after the 101 response (`ketch.api.web`'s
`StreamResponse.hijack`): the event loop stops reading it and a worker thread copies
between the socket and the container's monitor with blocking I/O, as the attach session
in `ketch.containers` expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import struct
import threading

from ketch.api import web

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import IO, Any


MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"
STDOUT, STDERR = 1, 2
_HEADER = struct.Struct(">BxxxL")


def frame(stream: int, data: bytes) -> bytes:
    """One multiplexed frame: [stream, 0, 0, 0, size (big-endian u32)] + payload."""
    return _HEADER.pack(stream, len(data)) + data


def wants_upgrade(request: web.Request) -> bool:
    connection = request.headers.get("Connection", "").lower()
    return "upgrade" in connection and request.headers.get("Upgrade", "").lower() == "tcp"


class Hijacked:
    """A client connection taken over after `101 UPGRADED`: `write` sends bytes (from any
    thread), `stdin_fd()` gives a readable fd with what the client sends."""

    def __init__(self, request: web.Request, tty: bool, upgrade: bool = True) -> None:
        self.request = request
        self.tty = tty
        self.upgrade = upgrade
        self.sock: socket.socket | None = None
        self._tail = b""
        self._pipe_threads: list[threading.Thread] = []
        self._closed = False

    async def accept(self) -> web.StreamResponse:
        media = RAW if self.tty else MULTIPLEXED
        if self.upgrade:
            resp = web.StreamResponse(status=101, reason="UPGRADED", headers={
                "Content-Type": media, "Connection": "Upgrade", "Upgrade": "tcp"})
        else:
            # neither a length nor chunking: the body is the raw stream, ended by closing
            # the connection
            resp = web.StreamResponse(status=200, reason="OK", headers={
                "Content-Type": media, "Connection": "close"})
        # what the client sent after its request (before the upgrade was answered)
        # belongs to the container's stdin
        self.sock, self._tail = await resp.hijack(self.request)
        return resp

    # -- called from the worker thread ---------------------------------------------------
    def write(self, stream: int, data: bytes) -> None:
        if not data or self.sock is None:
            return
        self.sock.sendall(data if self.tty else frame(stream, data))

    def stdout(self, data: bytes) -> None:
        self.write(STDOUT, data)

    def stderr(self, data: bytes) -> None:
        self.write(STDERR, data)

    def stdin_fd(self) -> int:
        """The client's input: the socket itself, or a pipe fed by the early bytes and
        then the socket when the client sent some before the upgrade was answered."""
        assert self.sock is not None
        if not self._tail:
            return self.sock.fileno()
        r, w = os.pipe()
        sock, tail = self.sock, self._tail

        def copy() -> None:
            # a buffered writer's write and flush go on after a short write (a signal
            # can cut a pipe write short), where a bare os.write would drop the rest
            # (closing the writer closes `w`, also after a failed flush)
            try:
                with open(w, "wb") as pipe:
                    pipe.write(tail)
                    pipe.flush()
                    while data := sock.recv(65536):
                        pipe.write(data)
                        pipe.flush()
            except OSError:
                pass

        t = threading.Thread(target=copy, name="ketch-api-stdin", daemon=True)
        t.start()
        self._pipe_threads.append(t)
        return r

    def on_peer_gone(self, callback: Callable[[], Any]) -> None:
        """Call `callback` once, from a thread of its own, if the client closes its end of
        the connection entirely (killed, or gone) before the stream ends: an attach that
        sends nothing (a silent container) would otherwise only find out at the
        container's next output, and hold its worker thread and database connection
        until then. A client that only ends its input (the docker CLI shuts its write side
        when its stdin ends) is not gone: poll reports POLLHUP on a unix socket only when
        both directions are shut."""
        assert self.sock is not None
        fd = self.sock.fileno()

        def watch() -> None:
            import select

            p = select.poll()
            p.register(fd, 0)  # (POLLHUP and POLLERR are reported whatever is asked)
            while not self._closed:
                # a timeout, not a wake-up: closing a descriptor does not end a poll on it
                if p.poll(500) and not self._closed:
                    callback()
                    return

        threading.Thread(target=watch, name="ketch-api-peer", daemon=True).start()

    def shutdown(self) -> None:
        """End the connection (the service is stopping): the copying thread sees EOF."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        """The stream ended: tell the client (EOF) and let go of the connection."""
        if self._closed:
            return
        self._closed = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
            self.sock.close()
        # the server closes its side of the connection when the handler returns


class BodyReader(io.RawIOBase):
    """A request body as a blocking binary file, for a worker thread (the Engine reads
    tar streams): each read waits for the event loop to hand over the next bytes."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self.content = request.content
        self.loop = loop

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = asyncio.run_coroutine_threadsafe(self.content.read(len(b)), self.loop).result()
        n = len(data)
        b[:n] = data
        return n


async def send_file_from(resp: web.StreamResponse, produce: Callable[[IO[bytes]], Any],
                         run: Callable[[Callable[[], Any]], Awaitable[Any]]) -> None:
    """Send what `produce(out)` writes (in a worker thread, through a pipe) as the body
    of the prepared `resp`. A client that leaves breaks the pipe, which ends `produce`;
    an error of `produce` after the headers went out can only cut the body short."""
    r, w = os.pipe()
    out = open(w, "wb")

    def job() -> Any:
        try:
            return produce(out)
        finally:
            with contextlib.suppress(OSError):
                out.close()

    task = asyncio.ensure_future(run(job))
    try:
        while True:
            data = await asyncio.to_thread(os.read, r, 1 << 16)
            if not data:
                break
            await resp.write(data)
    finally:
        os.close(r)
        try:
            await task
        except Exception:  # noqa: BLE001 - the body is cut short; the client sees it
            resp.force_close()
