"""The CRI's streaming server: where the URLs that Exec, Attach and PortForward return
lead, as the kubelet's own streaming server (k8s.io/kubelet/pkg/cri/streaming) serves them.

An RPC checks its request and stores it under a one-use token that expires after a
minute (the kubelet's default cache TTL); the client then opens
`http://HOST:PORT/{exec,attach,portforward}/TOKEN` on this server, run on an event loop
in a thread of the CRI server process, bound to 127.0.0.1 by default. Each connection's
request head is looked at first: an SPDY/3.1 upgrade is served here (cri/spdy.py), any
other request goes on to an aiohttp application (WebSocket, and the refusals).

WebSocket, with the channel.k8s.io framing (each message starts with its channel's
number). Exec and attach: `v4.channel.k8s.io` (channel 0 stdin, 1 stdout, 2 stderr, 3
the outcome as a JSON metav1.Status with the exit code, 4 terminal resize as JSON
`{"Width":..,"Height":..}`) and the older `channel.k8s.io` (the same channels; 3
carries only an error's text). Port forward: `v4.channel.k8s.io` (or no subprotocol), a
data and an error channel per port (0 and 1 for the first), each opening with the port
as two little-endian bytes.

SPDY/3.1 (`Upgrade: SPDY/3.1`; what kubectl, client-go and the kubelet's proxy use), the
version picked from the client's `X-Stream-Protocol-Version` values in its order (none
known: 403 naming the accepted ones in `X-Accepted-Stream-Protocol-Versions`). Exec and
attach: v4, v3, v2 and v1 `channel.k8s.io`; the client opens one stream per standard
stream, told apart by the `streamType` header (error, stdin, stdout, stderr, and resize
for a terminal from v3 on); the command starts once all have come (at most 30 s); the
outcome goes on the error stream (v4: the JSON Status; before: a failure's text only),
each output stream ends with FIN. Port forward: `portforward.k8s.io`; for each forwarded
connection the client opens an error and a data stream carrying the same `requestID` and
`port` headers; the pair is connected to the port inside the pod, and a failure is
written on its error stream. One SPDY connection carries any number of such pairs until
the client closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import struct
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from aiohttp import WSMsgType, web

from ketch.cri.addresses import parse_address
from ketch.cri.common import Engines
from ketch.cri.spdyserve import Head, SpdyServer
from ketch.cri.streamops import (
    ERROR,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    STREAM_CREATION_TIMEOUT,
    V1,
    V4,
    Ops,
    forward_error,
    outcome,
    resizing,
)
from ketch.errors import InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ketch.engine import Engine

TOKEN_TTL = 60.0  # seconds, the kubelet's default streaming cache TTL
MAX_IN_FLIGHT = 1000  # requests waiting for their connection, as the kubelet's cache

MAX_HEAD = 65536  # a longer request head goes on to aiohttp, which refuses it


class TooMany(KetchError):
    """More requests waiting for their connection than the cache holds."""


class Tokens:
    """One-use tokens for stored requests, each valid for TOKEN_TTL seconds."""

    def __init__(self, ttl: float = TOKEN_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, str, Any]] = {}

    def _expire(self, now: float) -> None:
        for tok in [t for t, (until, _, _) in self._items.items() if until <= now]:
            del self._items[tok]

    def issue(self, kind: str, request: Any) -> str:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            if len(self._items) >= MAX_IN_FLIGHT:
                raise TooMany("maximum number of in-flight requests exceeded")
            tok = secrets.token_urlsafe(8)
            while tok in self._items:
                tok = secrets.token_urlsafe(8)
            self._items[tok] = (now + self.ttl, kind, request)
            return tok

    def consume(self, kind: str, tok: str) -> Any | None:
        """The request stored under `tok` for `kind`, once; None when unknown, used or
        expired."""
        with self._lock:
            item = self._items.pop(tok, None)
        if item is None or item[0] <= time.monotonic() or item[1] != kind:
            return None
        return item[2]


class StreamServer:
    """The HTTP server behind the streaming URLs, on its own event loop thread."""

    def __init__(self, engines: Engines, address: str | None = None) -> None:
        self.engines = engines
        self.host, port = parse_address(address)
        self.tokens = Tokens()
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="cri-stream")
        self.loop = asyncio.new_event_loop()
        self._sessions: set[asyncio.Task[None]] = set()
        self.spdy = SpdyServer(self)
        app = web.Application()
        app.router.add_get("/exec/{token}", self._exec)
        app.router.add_get("/attach/{token}", self._attach)
        app.router.add_get("/portforward/{token}", self._portforward)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        self.loop.run_until_complete(self._runner.setup())
        try:
            self._listener = self.loop.run_until_complete(self.loop.create_server(
                lambda: _Front(self), self.host, port, reuse_address=True))
        except OSError as e:
            self.loop.run_until_complete(self._runner.cleanup())
            self.loop.close()
            raise InvalidArgument(f"cannot serve streams on {self.host}:{port}:"
                                  f" {e.strerror}") from None
        sockets = self._listener.sockets
        self.port = sockets[0].getsockname()[1] if sockets else port
        self._thread = threading.Thread(target=self.loop.run_forever, name="cri-stream",
                                        daemon=True)
        self._thread.start()

    def url(self, kind: str, request: Any) -> str:
        tok = self.tokens.issue(kind, request)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/{kind}/{tok}"

    def stop(self) -> None:
        async def down() -> None:
            self._listener.close()
            for task in list(self._sessions):
                task.cancel()
            await self._runner.cleanup()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(down(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- plumbing ----------------------------------------------------------------------
    async def run(self, fn: Callable[[Engine], Any]) -> Any:
        return await self.loop.run_in_executor(self.pool, lambda: fn(self.engines.get()))

    async def _open(self, request: web.Request, kind: str, protocols: tuple[str, ...]
                    ) -> tuple[web.WebSocketResponse, Any] | web.Response:
        stored = self.tokens.consume(kind, request.match_info["token"])
        if stored is None:
            return web.Response(status=404, text="404 page not found\n")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=400, text="unable to upgrade: missing upgrade headers"
                                " in request (WebSocket or SPDY/3.1)\n")
        ws = web.WebSocketResponse(protocols=protocols, max_msg_size=0)
        await ws.prepare(request)
        return ws, stored

    # -- exec and attach ---------------------------------------------------------------
    def exec_ops(self, req: Any) -> Ops:
        cmd = list(req.cmd)
        cid = req.container_id
        eid: list[str] = []

        def prepare(e: Engine) -> None:  # before the client's resizes are read
            eid.append(e.containers.exec_create(cid, cmd, tty=req.tty, stdin=req.stdin,
                                                stdout=req.stdout, stderr=req.stderr))

        def start(e: Engine, out: Any, err: Any, fd: int | None) -> int | None:
            return e.containers.exec_start(eid[0], stdout=out, stderr=err, stdin=fd)

        def resize(e: Engine, h: int, w: int) -> None:
            e.containers.exec_resize(eid[0], h, w)

        return Ops(cmd, start, resize, prepare=prepare)

    def attach_ops(self, req: Any) -> Ops:
        cid = req.container_id
        held: dict[str, Any] = {}

        def start(e: Engine, out: Any, err: Any, fd: int | None) -> int | None:
            held["session"] = session = e.containers.attach_session(cid)
            try:
                e.containers.pump(session, out, err, fd)
            finally:
                session.close()
            return 0

        def resize(e: Engine, h: int, w: int) -> None:
            e.containers.resize(cid, h, w)

        def gone() -> None:
            if "session" in held:
                held["session"].interrupt()

        return Ops([], start, resize, gone)

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        opened = await self._open(request, "exec", (V4, V1))
        if isinstance(opened, web.Response):
            return opened
        ws, req = opened
        await self._remote(ws, req, self.exec_ops(req))
        return ws

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        opened = await self._open(request, "attach", (V4, V1))
        if isinstance(opened, web.Response):
            return opened
        ws, req = opened
        await self._remote(ws, req, self.attach_ops(req))
        return ws

    async def _remote(self, ws: web.WebSocketResponse, req: Any, ops: Ops) -> None:
        """Run an exec or attach with the websocket as its streams."""
        loop = asyncio.get_running_loop()
        v4 = ws.ws_protocol == V4

        def sender(channel: int) -> Callable[[bytes], None]:
            def send(data: bytes) -> None:  # from a worker thread
                if data and not ws.closed:
                    asyncio.run_coroutine_threadsafe(
                        ws.send_bytes(bytes([channel]) + data), loop).result()
            return send

        # the connection is up: an empty message on the first channel written to
        first = STDOUT if req.stdout else STDERR if req.stderr else ERROR
        await ws.send_bytes(bytes([first]))
        stdin_r: int | None = None
        stdin_w: int | None = None
        if req.stdin:
            stdin_r, stdin_w = os.pipe()

        async def read_client() -> None:
            try:
                async for msg in ws:
                    if msg.type != WSMsgType.BINARY or not msg.data:
                        continue
                    channel, data = msg.data[0], msg.data[1:]
                    if channel == STDIN and stdin_w is not None and data:
                        await loop.run_in_executor(self.pool, os.write, stdin_w, data)
                    elif channel == RESIZE and req.tty:
                        with contextlib.suppress(ValueError, KetchError):
                            size = json.loads(data)
                            h, w = int(size.get("Height", 0)), int(size.get("Width", 0))
                            await self.run(resizing(ops.resize, h, w))
            except OSError:
                pass
            finally:
                if stdin_w is not None:
                    with contextlib.suppress(OSError):
                        os.close(stdin_w)
                if ws.closed and ops.gone is not None:
                    ops.gone()  # the client left: let go of an attach session now

        out = sender(STDOUT) if req.stdout else None
        err = sender(STDERR) if req.stderr and not req.tty else None
        code: int | None = None
        error = ""
        reader: asyncio.Future[None] | None = None
        try:
            if ops.prepare is not None:
                await self.run(ops.prepare)
            reader = asyncio.ensure_future(read_client())
            code = await self.run(lambda e: ops.start(e, out, err, stdin_r))
        except KetchError as exc:
            error = exc.message
        except (OSError, RuntimeError, ConnectionError):
            pass  # the client went away
        except Exception as exc:  # a bug: logged, reported on the error channel
            traceback.print_exc(file=sys.stderr)
            error = f"{type(exc).__name__}: {exc}"
        try:
            if v4:
                await ws.send_bytes(bytes([ERROR]) + json.dumps(
                    outcome(code, ops.cmd, error)).encode())
            elif error or code:  # the older protocol: a failure's message alone
                text = outcome(code, ops.cmd, error)["message"]
                await ws.send_bytes(bytes([ERROR]) + text.encode())
        except (ConnectionError, RuntimeError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await ws.close()
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
            elif stdin_w is not None:
                os.close(stdin_w)
            if stdin_r is not None:
                os.close(stdin_r)

    # -- port forward ------------------------------------------------------------------
    async def _portforward(self, request: web.Request) -> web.StreamResponse:
        opened = await self._open(request, "portforward", (V4,))
        if isinstance(opened, web.Response):
            return opened
        ws, req = opened
        ports = [int(p) for p in req.port]
        pod_id = req.pod_sandbox_id
        writers: dict[int, asyncio.StreamWriter] = {}
        for i, port in enumerate(ports):  # each channel opens with its port
            prefix = struct.pack("<H", port)
            await ws.send_bytes(bytes([2 * i]) + prefix)
            await ws.send_bytes(bytes([2 * i + 1]) + prefix)

        async def forward(i: int, port: int) -> None:
            try:
                sock = await self.run(lambda e: e.pod_connect(pod_id, port))
                sock.setblocking(False)
                reader, writer = await asyncio.open_connection(sock=sock)
            except (OSError, KetchError) as exc:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_bytes(bytes([2 * i + 1])
                                        + forward_error(port, pod_id, exc).encode())
                return
            writers[i] = writer
            try:
                while data := await reader.read(65536):
                    await ws.send_bytes(bytes([2 * i]) + data)
            except (ConnectionError, RuntimeError):
                pass
            finally:
                writer.close()

        async def from_client() -> None:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                channel, data = msg.data[0], msg.data[1:]
                if channel % 2 == 0 and data:
                    for _ in range(200):  # the connection may still be on its way
                        if channel // 2 in writers:
                            break
                        await asyncio.sleep(0.01)
                    writer = writers.get(channel // 2)
                    if writer is not None:
                        writer.write(data)
                        with contextlib.suppress(ConnectionError):
                            await writer.drain()

        client = asyncio.ensure_future(from_client())
        try:
            await asyncio.gather(*(forward(i, p) for i, p in enumerate(ports)))
        finally:
            client.cancel()
            with contextlib.suppress(BaseException):
                await client
            with contextlib.suppress(Exception):
                await ws.close()
        return ws

class _Front(asyncio.Protocol):
    """Reads a connection's request head, then hands the connection to the SPDY server
    or to aiohttp (with the bytes read so far)."""

    def __init__(self, server: StreamServer) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.timer = self.server.loop.call_later(STREAM_CREATION_TIMEOUT, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 and len(self.buf) <= MAX_HEAD:
            return
        if self.timer is not None:
            self.timer.cancel()
        transport = self.transport
        assert transport is not None
        head = Head(bytes(self.buf[:end])) if end >= 0 else None
        if head is not None and head.spdy_upgrade:
            reader = asyncio.StreamReader(limit=MAX_HEAD)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            reader.feed_data(bytes(self.buf[end + 4:]))
            writer = asyncio.StreamWriter(transport, protocol, reader, self.server.loop)
            task = asyncio.ensure_future(self.server.spdy.serve(head, reader, writer))
            self.server._sessions.add(task)
            task.add_done_callback(self.server._sessions.discard)
            return
        factory = self.server._runner.server
        if factory is None:
            transport.close()
            return
        handler = factory()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        handler.data_received(bytes(self.buf))
