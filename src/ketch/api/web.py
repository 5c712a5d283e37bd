"""ketch's HTTP/1.1 server: asyncio for the I/O, h11 for the protocol, wsproto for the
frames of a websocket. The Engine API service (`ketch.api`) runs on it.

Why not aiohttp, which the service ran on before: memory. Measured under `python -I -S`
as the service runs (VmRSS): asyncio, json and sqlite3 come to ~21 MiB; `import
aiohttp.web` alone brings the process to 32-33 MiB (its package imports the client side
too: connector, cookies, multipart, yarl, multidict, attrs, `email`, `http.cookies`), and
the service idled at ~38 MiB against its 30 MiB goal. asyncio + h11 + the Engine is ~23
MiB. The handlers used a small part of aiohttp's surface; this module gives them that
part under the same names, and nothing else:

- `Application`: a route table (`add_route(method, "/path/{name}" or "{name:regex}",
  handler)`), middlewares, keys (`AppKey`) for what the handlers share.
- `Request`: method, path, match_info, query and headers (case-insensitive, several
  values per name), the body as `read()` (bounded) or `content` (a stream: `read(n)`,
  `iter_chunked(n)`), `disconnected` (the client closed or half-closed: a long stream
  such as `logs -f` or `events` lets go of what it holds).
- `Response` (a whole body) and `StreamResponse` (`prepare`, `write`, `write_eof`:
  chunked encoding), `force_close`; `StreamResponse.hijack` hands the connection over
  raw (the `101 UPGRADED` of docker's attach and exec, or dockerd's `200` followed by a
  raw stream) as a blocking socket plus what the client already sent after its request.
- `WebSocketResponse`: the handshake, then messages both ways.
- `Server`: serving a listening socket, keep-alive, and a drain on shutdown.

Size: one job, HTTP/1.1 serving for the handlers (the connection's state machine,
bodies both ways, hijack and websocket upgrade, routes, the drain), kept in one module
so the service imports one small thing; h11 does the parsing and framing.

A handler returns its response. One not sent yet is sent whole; a prepared one not
ended is ended (or, after `force_close`, cut: the client sees the stream broken);
after a hijack or an upgrade the connection is the handler's and is closed when it
returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import socket
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Generic, NamedTuple, TypeVar
from urllib.parse import parse_qsl, unquote

import h11

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

T = TypeVar("T")

MAX_HEAD = 256 << 10  # request line and headers (dockerd: Go's 1 MiB; clients send < 8 KiB)
INBOX_LIMIT = 256 << 10  # unread bytes held per connection before reading pauses
KEEPALIVE_SECONDS = 75.0  # an idle keep-alive connection is closed after this
DRAIN_BODY_LIMIT = 64 << 20  # an unread request body up to this is read past, else close
DRAIN_BODY_SECONDS = 10.0  # ... for at most this long
LINGER_SECONDS = 2.0  # after our side is closed, input is read and dropped this long
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HTTPError(Exception):
    """Answered as `{"message": ...}` with `status` (a handler's or the server's)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AppKey(Generic[T]):
    """A typed key of `Application`."""

    def __init__(self, name: str, kind: type[T]) -> None:
        self.name = name
        self.kind = kind

    def __repr__(self) -> str:
        return f"<AppKey {self.name}>"


# -- case-insensitive multi-valued maps: query and headers ----------------------------------
class MultiMap:
    """name -> values, in the order received; `get` gives the first value."""

    def __init__(self, items: Iterable[tuple[str, str]], fold: bool = False) -> None:
        self._fold = fold
        self._items = [(k.lower() if fold else k, v) for k, v in items]

    def _key(self, name: str) -> str:
        return name.lower() if self._fold else name

    def get(self, name: str, default: Any = None) -> Any:
        key = self._key(name)
        for k, v in self._items:
            if k == key:
                return v
        return default

    def getall(self, name: str, default: Any = None) -> list[str]:
        key = self._key(name)
        found = [v for k, v in self._items if k == key]
        if not found and default is not None:
            return list(default)
        return found

    def __getitem__(self, name: str) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return str(v)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def keys(self) -> list[str]:
        return list(dict.fromkeys(k for k, _ in self._items))

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)


# -- requests ----------------------------------------------------------------------------------
class Body:
    """The request body as a stream, read from the event loop."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._buf = b""
        self._eof = False
        self.received = 0

    def at_eof(self) -> bool:
        return self._eof and not self._buf

    async def _more(self) -> None:
        conn = self._conn
        if conn.h11.they_are_waiting_for_100_continue:
            conn.write(conn.h11.send(h11.InformationalResponse(status_code=100, headers=[])))
        try:
            ev = await conn.receive()
        except h11.RemoteProtocolError as e:
            if conn.eof and ("closed connection" in str(e) or "unexpectedly closed" in str(e)):
                raise ConnectionResetError("the client closed the connection during its"
                                           " request body") from None
            raise HTTPError(400, f"malformed request body: {e}") from None
        if isinstance(ev, h11.Data):
            self._buf = self._buf + ev.data if self._buf else bytes(ev.data)
            self.received += len(ev.data)
        else:  # EndOfMessage; or PAUSED after it, for an upgrade request
            self._eof = True

    async def readany(self) -> bytes:
        while not self._buf and not self._eof:
            await self._more()
        data, self._buf = self._buf, b""
        return data

    async def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (all that is left when n < 0); b"" at the end."""
        if n < 0:
            parts = [await self.readany()]
            while not self.at_eof():
                parts.append(await self.readany())
            return b"".join(parts)
        while not self._buf and not self._eof:
            await self._more()
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        while True:
            data = await self.read(n)
            if not data:
                return
            yield data

    async def discard(self, limit: int) -> bool:
        """Read past what is left, up to `limit` bytes: whether the end was reached."""
        seen = 0
        while not self.at_eof():
            seen += len(await self.readany())
            if seen > limit:
                return False
        return True


class Request:
    def __init__(self, conn: _Connection, event: h11.Request, app: Application) -> None:
        self._conn = conn
        self.app = app
        self.method = event.method.decode("ascii", "replace")
        target = event.target.decode("latin-1")
        raw_path, _, self.query_string = target.partition("?")
        self.raw_path = raw_path
        self.path = unquote(raw_path)
        self.version = event.http_version.decode("ascii", "replace")
        self.headers = MultiMap(((k.decode("latin-1"), v.decode("latin-1"))
                                 for k, v in event.headers), fold=True)
        self.match_info: dict[str, str] = {}
        self.content = Body(conn)
        self._query: MultiMap | None = None

    @property
    def query(self) -> MultiMap:
        if self._query is None:
            self._query = MultiMap(parse_qsl(self.query_string, keep_blank_values=True))
        return self._query

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def disconnected(self) -> bool:
        """The client closed the connection, or its sending side (as Go's net/http
        cancels a request's context): nobody reads what is still to come."""
        return self._conn.eof or self._conn.lost

    async def read(self) -> bytes:
        """The whole body, at most the application's `client_max_size`."""
        limit = self.app.client_max_size
        if self.content_length is not None and self.content_length > limit:
            raise HTTPError(413, f"request body too large: more than {limit} bytes")
        parts: list[bytes] = []
        size = 0
        while not self.content.at_eof():
            data = await self.content.readany()
            size += len(data)
            if size > limit:
                raise HTTPError(413, f"request body too large: more than {limit} bytes")
            parts.append(data)
        return b"".join(parts)


# -- responses ---------------------------------------------------------------------------------
def _http_date() -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())


def _phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class StreamResponse:
    """A response whose body is written as it comes (chunked for HTTP/1.1 clients)."""

    def __init__(self, *, status: int = 200, reason: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        # the status line's phrase, as Go's net/http writes it ("404 Not Found"): clients
        # print it (docker-py: '404 Client Error for URL: Not Found')
        self.reason = reason if reason is not None else _phrase(status)
        self.headers: dict[str, str] = dict(headers or {})
        self._conn: _Connection | None = None
        self._eof_sent = False
        self._must_close = False
        self._taken = False  # hijacked or upgraded: the connection is the handler's

    @property
    def prepared(self) -> bool:
        return self._conn is not None

    def force_close(self) -> None:
        """Close the connection after this response (cut it if its body is unfinished)."""
        self._must_close = True

    def _head(self, conn: _Connection) -> list[tuple[str, str]]:
        headers = dict(self.headers)
        headers.setdefault("Server", conn.server.app.server_header)
        headers.setdefault("Date", _http_date())
        if self._must_close:
            headers["Connection"] = "close"
        return list(headers.items())

    async def prepare(self, request: Request) -> None:
        if self._conn is not None:
            return
        conn = request._conn
        self._conn = conn
        conn.check_open()
        reason = (self.reason or "").encode("latin-1")
        conn.write(conn.h11.send(h11.Response(status_code=self.status, reason=reason,
                                              headers=self._head(conn))))
        await conn.drain()

    async def write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            raise RuntimeError("write before prepare")
        if not data:
            return
        conn.check_open()
        try:
            out = conn.h11.send(h11.Data(data=data))
        except h11.LocalProtocolError as e:  # a HEAD's, 204's or 304's body
            raise RuntimeError(f"cannot send a body: {e}") from None
        conn.write(out)
        await conn.drain()

    async def write_eof(self) -> None:
        conn = self._conn
        if conn is None or self._eof_sent:
            return
        self._eof_sent = True
        conn.check_open()
        conn.write(conn.h11.send(h11.EndOfMessage()))
        await conn.drain()

    async def hijack(self, request: Request) -> tuple[socket.socket, bytes]:
        """Send this response's status line and headers raw (no framing: what follows is
        a stream of the handler's, until the connection closes) and hand the connection
        over: a blocking socket, and the bytes the client sent after its request."""
        conn = request._conn
        self._conn = conn
        self._taken = True
        await conn.send_raw_head(self.status, self.reason or "", self._head(conn))
        return conn.take_socket()


class Response(StreamResponse):
    """A response with its whole body."""

    def __init__(self, *, status: int = 200, reason: str | None = None,
                 body: bytes | None = None, text: str | None = None,
                 content_type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status=status, reason=reason, headers=headers)
        if text is not None:
            body = text.encode()
            if content_type is not None and "charset" not in content_type:
                content_type += "; charset=utf-8"
        self.body = body or b""
        if content_type is not None:
            self.headers["Content-Type"] = content_type
        elif self.body and "Content-Type" not in self.headers:
            self.headers["Content-Type"] = "application/octet-stream"

    async def send(self, request: Request) -> None:
        if self.status in (204, 304):
            self.headers.pop("Content-Length", None)
        elif not (request.method == "HEAD" and "Content-Length" in self.headers):
            # (a HEAD's answer may give the length of what a GET would send)
            self.headers["Content-Length"] = str(len(self.body))
        conn = request._conn
        self._conn = conn
        self._eof_sent = True
        conn.check_open()
        events: list[Any] = [h11.Response(status_code=self.status,
                                          reason=(self.reason or "").encode("latin-1"),
                                          headers=self._head(conn))]
        if self.body and request.method != "HEAD" and self.status not in (204, 304):
            events.append(h11.Data(data=self.body))
        events.append(h11.EndOfMessage())
        # one write: a head and body sent apart would wait on the client's delayed ACK
        conn.write(b"".join(conn.h11.send(ev) or b"" for ev in events))
        await conn.drain()


# -- websockets --------------------------------------------------------------------------------
class WSMsgType(enum.IntEnum):
    TEXT = 1
    BINARY = 2
    CLOSE = 8


class WSMessage(NamedTuple):
    type: WSMsgType
    data: Any


class WebSocketResponse(StreamResponse):
    """A websocket (RFC 6455, no extensions) over an upgraded connection: `send_bytes`,
    `send_str`, `async for msg in ws` (text and binary messages until the client closes),
    `close()`."""

    def __init__(self) -> None:
        super().__init__(status=101, reason="Switching Protocols")
        self._ws: Any = None
        self.closed = False

    async def prepare(self, request: Request) -> None:
        import base64
        import hashlib

        from wsproto.connection import Connection, ConnectionType

        key = request.headers.get("Sec-WebSocket-Key")
        if request.method != "GET" or not key or \
                "websocket" not in request.headers.get("Upgrade", "").lower() or \
                request.headers.get("Sec-WebSocket-Version") != "13":
            raise HTTPError(400, "expected a websocket handshake (GET with Upgrade:"
                                 " websocket, Sec-WebSocket-Key, Sec-WebSocket-Version: 13)")
        accept = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
        self.headers.update({"Upgrade": "websocket", "Connection": "Upgrade",
                             "Sec-WebSocket-Accept": accept})
        conn = request._conn
        self._conn = conn
        self._taken = True
        await conn.send_raw_head(self.status, self.reason or "", self._head(conn))
        conn.take_stream()
        self._ws = Connection(ConnectionType.SERVER)

    async def _send(self, event: Any) -> None:
        from wsproto.utilities import LocalProtocolError

        conn = self._conn
        assert conn is not None and self._ws is not None
        if self.closed:
            raise ConnectionResetError("the websocket is closed")
        conn.check_open()
        try:
            data = self._ws.send(event)
        except LocalProtocolError as e:
            raise ConnectionResetError(f"the websocket is closing: {e}") from None
        conn.write(data)
        await conn.drain()

    async def send_bytes(self, data: bytes) -> None:
        from wsproto.events import BytesMessage

        await self._send(BytesMessage(data=data))

    async def send_str(self, data: str) -> None:
        from wsproto.events import TextMessage

        await self._send(TextMessage(data=data))

    async def close(self, code: int = 1000) -> None:
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection

        if self.closed or self._ws is None:
            return
        if self._ws.state is ConnectionState.OPEN:
            try:
                await self._send(CloseConnection(code=code))
            except ConnectionError:
                pass
        self.closed = True

    def __aiter__(self) -> AsyncIterator[WSMessage]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[WSMessage]:
        from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
        from wsproto.utilities import RemoteProtocolError

        conn = self._conn
        assert conn is not None and self._ws is not None
        parts: list[Any] = []
        while not self.closed:
            try:
                for ev in self._ws.events():
                    if isinstance(ev, (TextMessage, BytesMessage)):
                        parts.append(ev.data)
                        if ev.message_finished:
                            if isinstance(ev, TextMessage):
                                yield WSMessage(WSMsgType.TEXT, "".join(parts))
                            else:
                                yield WSMessage(WSMsgType.BINARY, b"".join(parts))
                            parts = []
                    elif isinstance(ev, Ping):
                        await self._send(ev.response())
                    elif isinstance(ev, CloseConnection):
                        with contextlib.suppress(ConnectionError):
                            await self._send(ev.response())
                        self.closed = True
                        return
            except RemoteProtocolError:
                self.closed = True
                return
            data = await conn.read_raw()
            if not data:
                self.closed = True
                return
            self._ws.receive_data(data)


# -- the application: routes and middlewares ---------------------------------------------------
Handler = Callable[[Request], Awaitable[StreamResponse]]
Middleware = Callable[[Request, Handler], Awaitable[StreamResponse]]


def _compile(path: str) -> Any:
    """aiohttp's route syntax: `{name}` is one path segment, `{name:regex}` a regex."""
    import re

    out = ["^"]
    i = 0
    while i < len(path):
        if path[i] == "{":
            depth, j = 1, i + 1
            while depth:  # a regex may hold braces of its own ({1,3})
                depth += {"{": 1, "}": -1}.get(path[j], 0)
                j += 1
            name, _, rx = path[i + 1:j - 1].partition(":")
            out.append(f"(?P<{name}>{rx or '[^{}/]+'})")
            i = j
        else:
            out.append(re.escape(path[i]))
            i += 1
    out.append("$")
    return re.compile("".join(out))


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, Any, Handler]] = []

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self._routes.append((method.upper(), _compile(path), handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        for m, rx, handler in self._routes:
            if m != method and m != "*":
                continue
            found = rx.match(path)
            if found is not None:
                return handler, found.groupdict()
        return None


async def _not_found(request: Request) -> StreamResponse:
    raise HTTPError(404, "page not found")


class Application:
    def __init__(self, middlewares: Iterable[Middleware] = (),
                 client_max_size: int = 1 << 20, server_header: str = "ketch") -> None:
        self.router = Router()
        self.middlewares = list(middlewares)
        self.client_max_size = client_max_size
        self.server_header = server_header
        self._state: dict[AppKey[Any], Any] = {}

    def __setitem__(self, key: AppKey[T], value: T) -> None:
        self._state[key] = value

    def __getitem__(self, key: AppKey[T]) -> T:
        return self._state[key]

    async def handle(self, request: Request) -> StreamResponse:
        found = self.router.resolve(request.method, request.path)
        handler: Handler = _not_found
        if found is not None:
            handler, request.match_info = found
        for mw in reversed(self.middlewares):
            handler = _bind(mw, handler)
        return await handler(request)


def _bind(mw: Middleware, inner: Handler) -> Handler:
    async def call(request: Request) -> StreamResponse:
        return await mw(request, inner)
    return call


def _error(status: int, message: str) -> Response:
    import json

    return Response(status=status, body=json.dumps({"message": message}).encode(),
                    content_type="application/json")


# -- one client connection ---------------------------------------------------------------------
class _Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server.loop
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.transport: asyncio.Transport | None = None
        self.inbox = bytearray()  # received, not yet handed to h11 (or to the stream)
        self.eof = False  # the client closed its sending side (or all of it)
        self.lost = False
        self.busy = False  # a request is being handled
        self.raw = False  # hijacked or upgraded: h11 is out of the picture
        self._reading_paused = False
        self._writing_paused = False
        self._input: asyncio.Future[None] | None = None
        self._drainers: list[asyncio.Future[None]] = []
        self.task: asyncio.Task[None] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # responses go out as whole writes: no Nagle wait for more
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)
        self.task = self.loop.create_task(self._run())

    def data_received(self, data: bytes) -> None:
        self.inbox += data
        if len(self.inbox) > INBOX_LIMIT and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # our side stays open: the response can still go out

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.eof = True
        self.server.connections.discard(self)
        self._wake()
        for f in self._drainers:
            if not f.done():
                f.set_result(None)
        self._drainers.clear()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        for f in self._drainers:
            if not f.done():
                f.set_result(None)
        self._drainers.clear()

    # -- reading -----------------------------------------------------------------------------
    def _wake(self) -> None:
        if self._input is not None and not self._input.done():
            self._input.set_result(None)

    async def _wait_input(self) -> None:
        self._input = self.loop.create_future()
        try:
            await self._input
        finally:
            self._input = None

    def _take_inbox(self) -> bytearray:
        data, self.inbox = self.inbox, bytearray()  # handed over, not copied
        if self._reading_paused and not self.lost and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def receive(self) -> Any:
        """The next h11 event, feeding h11 what arrived as it needs it."""
        while True:
            ev = self.h11.next_event()
            if ev is not h11.NEED_DATA:
                return ev
            if self.inbox:
                self.h11.receive_data(self._take_inbox())  # type: ignore[arg-type]  # any buffer
            elif self.eof:
                self.h11.receive_data(b"")
            else:
                await self._wait_input()

    async def read_raw(self) -> bytes | bytearray:
        """After an upgrade: the next bytes from the client, b"" at its EOF."""
        while not self.inbox:
            if self.eof:
                return b""
            await self._wait_input()
        return self._take_inbox()

    # -- writing -----------------------------------------------------------------------------
    def check_open(self) -> None:
        if self.lost or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the client closed the connection")

    def write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self._writing_paused and not self.lost:
            f = self.loop.create_future()
            self._drainers.append(f)
            await f
        self.check_open()

    async def send_raw_head(self, status: int, reason: str,
                            headers: list[tuple[str, str]]) -> None:
        self.raw = True
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
        self.check_open()
        self.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self.drain()
        # all of it on the wire before anyone writes to the socket directly
        while self.transport is not None and self.transport.get_write_buffer_size():
            self.check_open()
            await asyncio.sleep(0.005)

    def take_stream(self) -> None:
        """Keep the connection on the event loop for `read_raw` and `write`: what the
        client sent past its request comes first."""
        tail, _ = self.h11.trailing_data
        self.inbox[:0] = bytes(tail)

    def take_socket(self) -> tuple[socket.socket, bytes]:
        """The connection as a blocking socket of its own (for a worker thread); the
        event loop stops reading it. Our bytes went out already (`send_raw_head`)."""
        assert self.transport is not None
        self.transport.pause_reading()
        self._reading_paused = True
        tail, _ = self.h11.trailing_data
        tail = bytes(tail) + bytes(self.inbox)
        self.inbox.clear()
        raw = self.transport.get_extra_info("socket")
        fd = os.dup(raw.fileno())
        os.set_blocking(fd, True)
        return socket.socket(fileno=fd), tail

    # -- the request loop --------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while not self.server.closing:
                try:
                    ev = await asyncio.wait_for(self.receive(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    break
                except h11.RemoteProtocolError as e:
                    if not self.lost:  # (a client that half-closed still reads it)
                        await self._refuse(e)
                    break
                if not isinstance(ev, h11.Request):
                    break  # ConnectionClosed
                if not await self._handle(ev):
                    break
                self.h11.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.CancelledError):
            pass
        except Exception:  # a bug of this module's: the log gets it, the client a close
            traceback.print_exc(file=sys.stderr)
        finally:
            if self.raw:
                self.close()
            else:
                await self._linger()

    async def _linger(self) -> None:
        """Close as HTTP servers do: end our side first, then read and drop what the
        client still sends until it closes too (LINGER_SECONDS at most). Closing with
        its bytes unread would reset the connection, and a TCP reset can destroy the
        answer we sent before it arrives (a 400 for a body we did not read)."""
        t = self.transport
        if t is None or t.is_closing():
            return
        try:
            if not self.lost and t.can_write_eof():
                t.write_eof()
                deadline = self.loop.time() + LINGER_SECONDS
                while not self.eof:
                    self._take_inbox()
                    left = deadline - self.loop.time()
                    if left <= 0:
                        break
                    try:
                        await asyncio.wait_for(self._wait_input(), left)
                    except TimeoutError:
                        break
        except (OSError, RuntimeError):
            pass
        except asyncio.CancelledError:
            t.abort()
            raise
        finally:
            self.close()

    async def _refuse(self, e: h11.RemoteProtocolError) -> None:
        resp = _error(e.error_status_hint, f"bad request: {e}")
        resp.force_close()
        try:
            body = resp.body
            resp.headers["Content-Length"] = str(len(body))
            self.write(self.h11.send(h11.Response(status_code=resp.status,
                                                  headers=resp._head(self))))
            self.write(self.h11.send(h11.Data(data=body)))
            self.write(self.h11.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            pass

    async def _handle(self, ev: h11.Request) -> bool:
        """Serve one request: whether the connection can take another."""
        request = Request(self, ev, self.server.app)
        self.busy = True
        try:
            try:
                resp = await self.server.app.handle(request)
            except HTTPError as e:
                resp = _error(e.status, e.message)
            except (ConnectionError, asyncio.CancelledError):
                return False
            except Exception as e:  # a bug below the middlewares
                traceback.print_exc(file=sys.stderr)
                resp = _error(500, f"{type(e).__name__}: {e}")
            if resp._taken or self.raw:
                return False  # the connection was the handler's
            unread = self.h11.their_state is h11.SEND_BODY
            if unread and (request.content_length or 0) - request.content.received > \
                    DRAIN_BODY_LIMIT:
                resp.force_close()  # not worth reading past: this connection ends
            if not resp.prepared:
                if not isinstance(resp, Response):
                    raise RuntimeError("a handler returned a StreamResponse it never prepared")
                await resp.send(request)
            elif not resp._eof_sent:
                if resp._must_close:
                    return False  # cut short: the client sees the body unfinished
                await resp.write_eof()
            if resp._must_close:
                return False
        finally:
            self.busy = False
        if self.h11.their_state is h11.SEND_BODY and \
                not self.h11.they_are_waiting_for_100_continue:
            try:
                if not await asyncio.wait_for(request.content.discard(DRAIN_BODY_LIMIT),
                                              DRAIN_BODY_SECONDS):
                    return False
            except (HTTPError, ConnectionError, TimeoutError):
                return False
        if self.eof and not self.inbox and not self.h11.trailing_data[0]:
            return False  # the client half-closed: the requests it sent are answered
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if self.task is not None:
            self.task.cancel()


class Server:
    """Serves `app` on a listening socket until `shutdown`."""

    def __init__(self, app: Application) -> None:
        self.app = app
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()
        self.closing = False
        self._server: asyncio.AbstractServer | None = None

    async def start(self, sock: socket.socket) -> None:
        self._server = await self.loop.create_server(lambda: _Connection(self), sock=sock)

    async def shutdown(self, timeout: float) -> None:
        """Stop listening, close idle connections, give the requests in progress up to
        `timeout` seconds, then cut what is left."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + timeout
        while True:
            for c in list(self.connections):
                if not c.busy:
                    c.close()
            if not any(c.busy for c in self.connections) or self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        tasks = [c.task for c in self.connections if c.task is not None]
        for c in list(self.connections):
            c.abort()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
