"""SPDY/3.1, the server's side of a session: framing, header compression, streams and
flow control, on asyncio streams. Kubernetes' SPDY transport (client-go, kubectl, the
kubelet's proxy to a runtime's streaming URL) still speaks it; the CRI streaming server
(cri/stream.py) puts exec, attach and port-forward on it.

Written here by hand because PyPI has no maintained SPDY library: python-spdylay (last
release 2012) binds the abandoned spdylay C library, and spdy-py 0.2.0 (2021, one
release) only parses frames, with no header compression on the way out and no
sessions. The facts below are the SPDY/3.1 draft's (and what moby/spdystream, the Go
library under client-go, does on the wire).

Frames. A control frame: bit 1, version (15 bits, 3), type (16), flags (8), length (24),
then `length` bytes. A data frame: bit 0, stream ID (31), flags (8), length (24), data.
Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are a count and then name/value pairs,
every number a 32-bit big-endian, several values of one name joined by NUL; each
direction of a session compresses them with one zlib stream that starts from the
SPDY/3 dictionary and is sync-flushed after every block.

Streams. The client opens odd-numbered streams with SYN_STREAM (FIN: it sends nothing
more; UNIDIRECTIONAL: nothing may be sent back); the server accepts one with SYN_REPLY
or refuses it with RST_STREAM. Either side half-closes with FIN on its last frame; a
stream is done when both have, or when either resets it.

Flow control. Each stream, and (new in 3.1) the session as a whole, starts with a
64 KiB window per direction; DATA spends it and WINDOW_UPDATE (stream 0: the session)
gives it back, SETTINGS INITIAL_WINDOW_SIZE changes the streams' starting size. This
side returns window as the application consumes data, so a peer that keeps to its
windows never outruns a slow consumer; and it keeps to the peer's windows once the peer
shows it keeps accounts (any SETTINGS or WINDOW_UPDATE frame). moby/spdystream, the
peer Kubernetes uses, sends neither and ignores both: it is given data without waiting,
as the kubelet's own server (spdystream too) gives it, and what it sends us is taken in
whatever amount, with the socket's back-pressure (reading stops) when too much waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections import deque

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
SETTINGS_INITIAL_WINDOW_SIZE = 7

# RST_STREAM status codes
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
UNSUPPORTED_VERSION = 4
CANCEL = 5
INTERNAL_ERROR = 6
FLOW_CONTROL_ERROR = 7
STREAM_IN_USE = 8
STREAM_ALREADY_CLOSED = 9
FRAME_TOO_LARGE = 11
# GOAWAY status codes
GOAWAY_OK = 0
GOAWAY_PROTOCOL_ERROR = 1

DEFAULT_WINDOW = 65536
MAX_WINDOW = 0x7FFFFFFF
MAX_CHUNK = 32768  # the most one DATA frame of ours carries
MAX_CONTROL = 1 << 20  # a larger control frame ends the session
MAX_HEADER_BLOCK = 1 << 20  # decompressed
BUFFERED_LIMIT = 4 << 20  # unread bytes held for the application before reading stops


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (1423 bytes): common header names and
    values as 32-bit length-prefixed strings, then a run of frequent value fragments."""
    words = (
        "options head post put delete trace accept accept-charset accept-encoding"
        " accept-language accept-ranges age allow authorization cache-control connection"
        " content-base content-encoding content-language content-length content-location"
        " content-md5 content-range content-type date etag expect expires from host"
        " if-match if-modified-since if-none-match if-range if-unmodified-since"
        " last-modified location max-forwards pragma proxy-authenticate"
        " proxy-authorization range referer retry-after server te trailer"
        " transfer-encoding upgrade user-agent vary via warning www-authenticate method"
        " get status |200 OK| version HTTP/1.1 url public set-cookie keep-alive origin")
    out = bytearray()
    for part in words.split("|"):
        pieces = [part] if part == "200 OK" else part.split()
        for w in pieces:
            out += struct.pack(">I", len(w)) + w.encode()
    out += (
        b"100101201202205206300302303304305306307402405406407408409410411412413414415416"
        b"417502504505203 Non-Authoritative Information204 No Content"
        b"301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found"
        b"500 Internal Server Error501 Not Implemented503 Service Unavailable"
        b"Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00"
        b" Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        b"chunked,text/html,image/png,image/jpg,image/gif,application/xml,"
        b"application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
        b"gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return bytes(out)


DICTIONARY = _dictionary()


class ProtocolError(Exception):
    """The peer broke the protocol: the session ends with GOAWAY."""


# -- header blocks ---------------------------------------------------------------------
Headers = dict[str, list[str]]


def encode_headers(headers: Headers) -> bytes:
    out = bytearray(struct.pack(">I", len(headers)))
    for name, values in headers.items():
        n = name.lower().encode()
        v = "\0".join(values).encode()
        out += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
    return bytes(out)


def decode_headers(block: bytes) -> Headers:
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        pos = 4
        headers: Headers = {}
        for _ in range(count):
            name, pos = _string(block, pos)
            value, pos = _string(block, pos)
            if name != name.lower() or not name or name in headers:
                raise ProtocolError(f"bad header name {name!r}")
            headers[name] = value.split("\0")
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"malformed header block: {e}") from None
    return headers


def _string(block: bytes, pos: int) -> tuple[str, int]:
    """A length-prefixed string of a header block at `pos`, and the position after it."""
    (n,) = struct.unpack_from(">I", block, pos)
    if pos + 4 + n > len(block):
        raise ProtocolError("truncated header block")
    return block[pos + 4:pos + 4 + n].decode(), pos + 4 + n


class Stream:
    """One SPDY stream as the application sees it: read() until b"" (the peer's FIN, a
    reset, or the session's end), write(), close() (our FIN), reset()."""

    def __init__(self, session: Session, sid: int, headers: Headers, fin: bool,
                 unidirectional: bool) -> None:
        self.session = session
        self.id = sid
        self.headers = headers
        self.remote_closed = fin
        self.local_closed = unidirectional
        self.reset_status: int | None = None
        self.send_window = session.initial_send_window
        self._chunks: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._window_open = asyncio.Event()
        self._window_open.set()
        self._unacked = 0  # consumed but not yet returned to the peer's window
        if fin:
            self._ready.set()

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    @property
    def done(self) -> bool:
        return self.reset_status is not None or (self.remote_closed and self.local_closed)

    # -- from the session -----------------------------------------------------------
    def _feed(self, data: bytes, fin: bool) -> None:
        if data:
            self._chunks.append(data)
        if fin:
            self.remote_closed = True
        self._ready.set()

    def _reset(self, status: int) -> None:
        if self.reset_status is None:
            self.reset_status = status
        self.remote_closed = True
        self.local_closed = True
        self._ready.set()
        self._window_open.set()

    # -- for the application -----------------------------------------------------------
    async def read(self) -> bytes:
        while not self._chunks:
            if self.remote_closed or self.session.closed:
                return b""
            self._ready.clear()
            await self._ready.wait()
        data = self._chunks.popleft()
        self.session._consumed(self, len(data))
        return data

    async def write(self, data: bytes) -> None:
        """Send `data`; ConnectionError when the stream or the session is gone."""
        view = memoryview(data)
        while view:
            if self.local_closed or self.session.closed:
                raise ConnectionResetError(f"SPDY stream {self.id} is closed")
            n = min(len(view), MAX_CHUNK)
            if self.session.peer_counts_windows:
                n = min(n, self.send_window, self.session.send_window)
                if n <= 0:
                    self._window_open.clear()
                    self.session._window_waiters.add(self)
                    await self._window_open.wait()
                    continue
                self.send_window -= n
                self.session.send_window -= n
            self.session._send_data(self.id, 0, bytes(view[:n]))
            view = view[n:]
            await self.session.drain()

    async def close(self) -> None:
        """Half-close: nothing more will be sent on this stream."""
        if self.local_closed or self.session.closed:
            self.local_closed = True
            return
        self.local_closed = True
        self.session._send_data(self.id, FLAG_FIN, b"")
        self.session._forget_if_done(self)
        await self.session.drain()

    def reset(self, status: int = CANCEL) -> None:
        if self.reset_status is None and not self.session.closed:
            self.session._send_control(RST_STREAM, 0, struct.pack(">II", self.id, status))
        self._reset(status)
        self.session._forget_if_done(self)


class Session:
    """The server's side of one SPDY/3.1 connection. `on_stream` is called (in the
    reading task) for each stream the client opens and returns whether to accept it; an
    accepted stream is answered with SYN_REPLY, a refused one with RST_STREAM."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_stream: Callable[[Stream], bool]) -> None:
        self.reader = reader
        self.writer = writer
        self.on_stream = on_stream
        self.streams: dict[int, Stream] = {}
        self.closed = False
        self.peer_went_away = False
        self.peer_counts_windows = False
        self.initial_send_window = DEFAULT_WINDOW
        self.send_window = DEFAULT_WINDOW
        self.last_stream_id = 0  # the highest the client opened
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                         zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._window_waiters: set[Stream] = set()
        self._buffered = 0
        self._unread_room = asyncio.Event()
        self._unread_room.set()
        self._session_unacked = 0
        self._done = asyncio.get_running_loop().create_future()

    # -- sending -----------------------------------------------------------------------
    def _send_control(self, kind: int, flags: int, payload: bytes) -> None:
        if self.closed:
            return
        self.writer.write(struct.pack(">HHI", 0x8000 | VERSION, kind,
                                      (flags << 24) | len(payload)) + payload)

    def _send_data(self, sid: int, flags: int, data: bytes) -> None:
        if self.closed:
            return
        self.writer.write(struct.pack(">II", sid, (flags << 24) | len(data)) + data)

    def _header_block(self, headers: Headers) -> bytes:
        raw = encode_headers(headers)
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def reply(self, stream: Stream, headers: Headers | None = None) -> None:
        self._send_control(SYN_REPLY, 0, struct.pack(">I", stream.id)
                           + self._header_block(headers or {}))

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("the SPDY session is closed")
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as e:
            self._lost()
            raise ConnectionResetError(str(e)) from None

    async def go_away(self, status: int = GOAWAY_OK) -> None:
        """Tell the client no more streams are taken, and end the session."""
        if not self.closed:
            self._send_control(GOAWAY, 0, struct.pack(">II", self.last_stream_id, status))
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.writer.drain()
        self._lost()
        self.writer.close()

    async def wait_closed(self, timeout: float | None) -> None:
        """Until the client ends the session (GOAWAY, or its side of the connection), at
        most `timeout` seconds (None: no limit)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._done), timeout)

    def _lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in list(self.streams.values()):
            stream._reset(CANCEL)
        self.streams.clear()
        for stream in self._window_waiters:
            stream._window_open.set()
        self._window_waiters.clear()
        self._unread_room.set()
        if not self._done.done():
            self._done.set_result(None)

    def _forget_if_done(self, stream: Stream) -> None:
        if stream.done and self.streams.get(stream.id) is stream:
            del self.streams[stream.id]

    # -- flow control: what the application consumed goes back to the peer ---------------
    def _consumed(self, stream: Stream, n: int) -> None:
        self._buffered -= n
        if self._buffered < BUFFERED_LIMIT:
            self._unread_room.set()
        stream._unacked += n
        self._session_unacked += n
        if self.closed:
            return
        if stream._unacked >= DEFAULT_WINDOW // 2 and not stream.remote_closed:
            self._send_control(WINDOW_UPDATE, 0, struct.pack(">II", stream.id,
                                                             stream._unacked))
            stream._unacked = 0
        if self._session_unacked >= DEFAULT_WINDOW // 2:
            self._send_control(WINDOW_UPDATE, 0, struct.pack(">II", 0,
                                                             self._session_unacked))
            self._session_unacked = 0

    def _open_windows(self) -> None:
        for stream in list(self._window_waiters):
            if stream.send_window > 0 and self.send_window > 0 or stream.done:
                self._window_waiters.discard(stream)
                stream._window_open.set()

    # -- reading -----------------------------------------------------------------------
    async def serve(self) -> None:
        """Read frames until the connection ends; then every stream reads as ended."""
        try:
            while not self.closed:
                await self._unread_room.wait()
                head = await self.reader.readexactly(8)
                if head[0] & 0x80:
                    version, kind, word = struct.unpack(">HHI", head)
                    flags, length = word >> 24, word & 0xFFFFFF
                    if length > MAX_CONTROL:
                        raise ProtocolError(f"control frame of {length} bytes")
                    payload = await self.reader.readexactly(length)
                    if version & 0x7FFF != VERSION:
                        raise ProtocolError(f"SPDY version {version & 0x7FFF}")
                    self._control(kind, flags, payload)
                else:
                    sid, word = struct.unpack(">II", head)
                    flags, length = word >> 24, word & 0xFFFFFF
                    data = await self.reader.readexactly(length)
                    self._data(sid & 0x7FFFFFFF, flags, data)
        except ProtocolError:
            await self.go_away(GOAWAY_PROTOCOL_ERROR)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._lost()

    def _control(self, kind: int, flags: int, payload: bytes) -> None:
        if kind == SYN_STREAM:
            self._syn_stream(flags, payload)
        elif kind == RST_STREAM:
            if len(payload) != 8:
                raise ProtocolError("RST_STREAM of the wrong size")
            sid, status = struct.unpack(">II", payload)
            stream = self.streams.pop(sid & 0x7FFFFFFF, None)
            if stream is not None:
                self._window_waiters.discard(stream)
                stream._reset(status)
        elif kind == HEADERS:
            if len(payload) < 4:
                raise ProtocolError("HEADERS too short")
            (sid,) = struct.unpack_from(">I", payload)
            self._inflated(payload[4:])  # keeps the decompressor in step
            stream = self.streams.get(sid & 0x7FFFFFFF)
            if stream is not None and flags & FLAG_FIN:
                stream._feed(b"", True)
                self._forget_if_done(stream)
        elif kind == SETTINGS:
            self._settings(payload)
        elif kind == PING:
            if len(payload) != 4:
                raise ProtocolError("PING of the wrong size")
            (pid,) = struct.unpack(">I", payload)
            if pid % 2 == 1:  # the client's: answered with the same ID
                self._send_control(PING, 0, payload)
        elif kind == GOAWAY:
            self.peer_went_away = True
            if not self._done.done():
                self._done.set_result(None)
        elif kind == WINDOW_UPDATE:
            if len(payload) != 8:
                raise ProtocolError("WINDOW_UPDATE of the wrong size")
            sid, delta = struct.unpack(">II", payload)
            sid &= 0x7FFFFFFF
            delta &= 0x7FFFFFFF
            self.peer_counts_windows = True
            if sid == 0:
                self.send_window = min(self.send_window + delta, MAX_WINDOW)
            elif (stream := self.streams.get(sid)) is not None:
                if stream.send_window + delta > MAX_WINDOW:
                    stream.reset(FLOW_CONTROL_ERROR)
                else:
                    stream.send_window += delta
            self._open_windows()
        elif kind == SYN_REPLY:
            raise ProtocolError("SYN_REPLY to a stream this server never opened")
        # other types (CREDENTIAL, unknown): ignored, as the draft asks

    def _inflated(self, block: bytes) -> bytes:
        try:
            raw = self._inflate.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise ProtocolError(f"header block: {e}") from None
        if self._inflate.unconsumed_tail:
            raise ProtocolError("header block too large")
        return raw

    def _syn_stream(self, flags: int, payload: bytes) -> None:
        if len(payload) < 10:
            raise ProtocolError("SYN_STREAM too short")
        sid, _assoc = struct.unpack_from(">II", payload)
        sid &= 0x7FFFFFFF
        headers = decode_headers(self._inflated(payload[10:]))
        if sid % 2 == 0 or sid <= self.last_stream_id:
            raise ProtocolError(f"stream ID {sid} out of order")
        self.last_stream_id = sid
        if self.peer_went_away:
            self._send_control(RST_STREAM, 0, struct.pack(">II", sid, REFUSED_STREAM))
            return
        stream = Stream(self, sid, headers, bool(flags & FLAG_FIN),
                        bool(flags & FLAG_UNIDIRECTIONAL))
        self.streams[sid] = stream
        if self.on_stream(stream):
            self.reply(stream)
        else:
            del self.streams[sid]
            self._send_control(RST_STREAM, 0, struct.pack(">II", sid, REFUSED_STREAM))
            stream._reset(REFUSED_STREAM)

    def _settings(self, payload: bytes) -> None:
        if len(payload) < 4:
            raise ProtocolError("SETTINGS too short")
        (count,) = struct.unpack_from(">I", payload)
        if len(payload) != 4 + 8 * count:
            raise ProtocolError("SETTINGS of the wrong size")
        self.peer_counts_windows = True
        for i in range(count):
            word, value = struct.unpack_from(">II", payload, 4 + 8 * i)
            if word & 0xFFFFFF == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError("initial window too large")
                delta = value - self.initial_send_window
                self.initial_send_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
        self._open_windows()

    def _data(self, sid: int, flags: int, data: bytes) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            if sid == 0:
                raise ProtocolError("DATA on stream 0")
            if sid > self.last_stream_id or sid % 2 == 0:  # never opened
                self._send_control(RST_STREAM, 0, struct.pack(">II", sid, INVALID_STREAM))
            return  # late frames of a stream already reset or finished: dropped
        if stream.remote_closed:
            stream.reset(STREAM_ALREADY_CLOSED)
            return
        self._buffered += len(data)
        if self._buffered >= BUFFERED_LIMIT:
            self._unread_room.clear()
        stream._feed(data, bool(flags & FLAG_FIN))
        if flags & FLAG_FIN:
            self._forget_if_done(stream)


async def serve_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        on_stream: Callable[[Stream], bool],
                        run: Callable[[Session], Awaitable[None]]) -> None:
    """Run a session: frames are read while `run(session)` does the application's part;
    the connection is closed when `run` returns."""
    session = Session(reader, writer, on_stream)
    reading = asyncio.ensure_future(session.serve())
    try:
        await run(session)
    finally:
        await session.go_away()
        reading.cancel()
        with contextlib.suppress(BaseException):
            await reading
