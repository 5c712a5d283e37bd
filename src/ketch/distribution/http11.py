"""A small HTTP/1.1 client connection for plain-HTTP registries (loopback, insecure).

`http.client` brings `email` (header parsing), `ssl`, `socket`'s enums and selectors:
tens of milliseconds a pull of an image that is already present (one manifest request)
would spend importing. This speaks the part of HTTP/1.1 a registry client needs, on the
`_socket` module alone: requests with a bytes, file or empty body, and responses framed
by Content-Length, chunked encoding or the end of the connection, kept alive between
requests. The interface is the part of `http.client.HTTPConnection`/`HTTPResponse` that
the transport uses; https goes through `http.client` as before.
"""

from __future__ import annotations

import _socket
import os

TYPE_CHECKING = False  # `typing` costs milliseconds at start
if TYPE_CHECKING:
    from typing import Any

HEAD_LIMIT = 64 << 10  # status line plus headers
RECV = 256 << 10


class RemoteDisconnected(ConnectionResetError):
    """The server closed a (kept-alive) connection before answering."""


class CannotSendRequest(ConnectionError):
    """The previous response on this connection has not been read to its end."""


class Headers:
    """Response headers: case-insensitive `get`, the first value of a repeated name."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs
        self._first: dict[str, str] = {}
        for k, v in pairs:
            self._first.setdefault(k.lower(), v)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for k, v in self._pairs if k.lower() == low]

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __getitem__(self, name: str) -> str | None:
        return self._first.get(name.lower())


class Connection:
    """One connection to `netloc` ("host:port", "[v6]:port"), opened on first use."""

    def __init__(self, netloc: str, *, timeout: float, read_timeout: float) -> None:
        self.netloc = netloc
        if netloc.startswith("["):
            host, _, rest = netloc[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = netloc.partition(":")
        self.host = host
        self.port = int(port) if port else 80
        self.timeout = timeout
        self.read_timeout = read_timeout
        self.up = False  # connected: a timeout after this is the server not sending
        self.sock: Any = None
        self._buf = bytearray()
        self._response: Response | None = None

    # -- connection ------------------------------------------------------------------------
    def connect(self) -> None:
        self.up = False
        infos = _resolve(self.host, self.port, self.timeout)
        last: OSError | None = None
        for family, kind, proto, _, addr in infos:
            sock = _socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.timeout)
                sock.connect(addr)
            except OSError as e:
                sock.close()
                last = e
                continue
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            sock.settimeout(self.read_timeout)
            self.sock = sock
            self._buf.clear()
            self.up = True
            return
        raise last or OSError(f"lookup {self.host}: no such host")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._response = None
        self._buf.clear()

    # -- a request --------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> None:
        if self._response is not None and not self._response.done:
            raise CannotSendRequest("the previous response was not read to its end")
        if self.sock is None:
            self.connect()
        hdrs = dict(headers or {})
        lower = {k.lower() for k in hdrs}
        chunked = False
        if body is None:
            data = b""
        elif isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
            if "content-length" not in lower:
                hdrs["Content-Length"] = str(len(data))
        else:
            data = b""
            if "content-length" not in lower:
                try:
                    size = os.fstat(body.fileno()).st_size - body.tell()
                    hdrs["Content-Length"] = str(size)
                except (AttributeError, OSError, ValueError):
                    chunked = True
                    hdrs["Transfer-Encoding"] = "chunked"
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.netloc}"]
        if "accept-encoding" not in lower:
            lines.append("Accept-Encoding: identity")
        lines += [f"{k}: {v}" for k, v in hdrs.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sock = self.sock
        if len(data) <= 64 << 10:
            sock.sendall(head + data)
        else:
            sock.sendall(head)
            sock.sendall(data)
        if body is not None and not data:
            while chunk := body.read(1 << 20):
                if chunked:
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                else:
                    sock.sendall(chunk)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        self._method = method

    def getresponse(self) -> Response:
        while True:
            status_line = self._line()
            if not status_line:
                self.close()
                raise RemoteDisconnected("remote end closed connection without response")
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                self.close()
                raise ConnectionError(f"malformed HTTP status line {status_line[:80]!r}")
            status = int(parts[1])
            reason = parts[2].decode("latin-1").strip() if len(parts) > 2 else ""
            pairs: list[tuple[str, str]] = []
            size = len(status_line)
            while True:
                line = self._line()
                size += len(line)
                if size > HEAD_LIMIT:
                    self.close()
                    raise ConnectionError("HTTP response headers too long")
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                pairs.append((name.strip(), value.strip()))
            if 100 <= status < 200 and status != 101:
                continue  # an interim response (100 Continue): the real one follows
            break
        headers = Headers(pairs)
        resp = Response(self, status, reason, headers, self._method)
        self._response = resp
        return resp

    # -- reading ----------------------------------------------------------------------------
    def _fill(self) -> bool:
        chunk = self.sock.recv(RECV)
        if not chunk:
            return False
        self._buf += chunk
        return True

    def _line(self) -> bytes:
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[:i + 1])
                del self._buf[:i + 1]
                return line
            if len(self._buf) > HEAD_LIMIT:
                raise ConnectionError("HTTP line too long")
            if not self._fill():
                line = bytes(self._buf)
                self._buf.clear()
                return line

    def _readinto(self, view: memoryview) -> int:
        """Up to len(view) bytes: buffered ones first, else one recv straight into it."""
        if self._buf:
            n = min(len(view), len(self._buf))
            view[:n] = self._buf[:n]
            del self._buf[:n]
            return n
        return int(self.sock.recv_into(view))


class Response:
    """A response whose body is read with `read`/`readinto` (framed as the server said)."""

    def __init__(self, conn: Connection, status: int, reason: str, headers: Headers,
                 method: str) -> None:
        self._conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        self.done = False
        self._chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self._chunk_left = 0
        self._close = (headers.get("Connection") or "").lower() == "close"
        length = headers.get("Content-Length")
        self._left: int | None = None
        if method == "HEAD" or status in (204, 304):
            self._left = 0
        elif not self._chunked and length is not None:
            try:
                self._left = max(0, int(length))
            except ValueError:
                self._close = True
        if self._left is None and not self._chunked:
            self._close = True  # the body ends with the connection
        if self._left == 0:
            self._finish()

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def _finish(self) -> None:
        self.done = True
        if self._close:
            self._conn.close()

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        if self.done or not len(view):
            return 0
        conn = self._conn
        if self._chunked:
            if self._chunk_left == 0:
                size_line = conn._line()
                try:
                    self._chunk_left = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    conn.close()
                    raise ConnectionError("malformed chunked encoding") from None
                if self._chunk_left == 0:
                    while conn._line() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self._finish()
                    return 0
            n = conn._readinto(view[:self._chunk_left])
            if not n:
                conn.close()
                raise ConnectionResetError("connection closed in the middle of a chunk")
            self._chunk_left -= n
            if self._chunk_left == 0:
                conn._line()  # the CRLF after the chunk
            return n
        if self._left is None:
            n = conn._readinto(view)
            if not n:
                self._finish()
            return n
        n = conn._readinto(view[:self._left])
        if not n:
            conn.close()
            self.done = True
            raise ConnectionResetError(f"connection closed with {self._left} bytes of"
                                       " the response body still to come")
        self._left -= n
        if self._left == 0:
            self._finish()
        return n

    def read(self, amt: int | None = None) -> bytes:
        if amt is not None and amt >= 0:
            buf = bytearray(amt)
            n = self.readinto(buf)
            return bytes(buf[:n])
        out = bytearray()
        buf = bytearray(RECV)
        while n := self.readinto(buf):
            out += buf[:n]
        return bytes(out)

    def close(self) -> None:
        if not self.done:
            self._conn.close()
            self.done = True


def _resolve(host: str, port: int, timeout: float) -> list[Any]:
    """Addresses for host:port; an IP literal without a lookup, a name with one that
    fails after `timeout` instead of hanging when no DNS server answers."""
    if host.isascii():
        # As bytes: a str host goes through the idna codec, an import of its own.
        try:
            return _socket.getaddrinfo(host.encode(), port, 0, _socket.SOCK_STREAM, 0,
                                       _socket.AI_NUMERICHOST)
        except OSError:
            pass
    import threading

    result: list[Any] = []

    def run() -> None:
        try:
            result.append(_socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM))
        except OSError as e:
            result.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if not result:
        raise OSError(f"lookup {host}: timed out")
    if isinstance(result[0], OSError):
        raise OSError(f"lookup {host}: no such host")
    return result[0]
