"""The small HTTP/1.1 client that plain-HTTP registries are spoken to with: framing by
Content-Length, chunked encoding and end of connection, keep-alive, and refusal of
responses that are cut short or malformed. Served by a real socket on loopback."""

from __future__ import annotations

import socket
import threading

import pytest

from ketch.distribution.http11 import Connection


def _serve(replies: list[bytes]) -> tuple[str, threading.Thread]:
    """A loopback server that answers each request on one connection with the next reply
    (then closes when the replies run out)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        with conn, srv:
            for reply in replies:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(reply)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return f"127.0.0.1:{srv.getsockname()[1]}", t


def _conn(netloc: str) -> Connection:
    return Connection(netloc, timeout=5, read_timeout=5)


def test_content_length_and_chunked_bodies_on_one_kept_alive_connection() -> None:
    netloc, t = _serve([
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n",
    ])
    c = _conn(netloc)
    c.request("GET", "/v2/")
    r = c.getresponse()
    assert (r.status, r.getheader("x-a"), r.read()) == (200, "1", b"hello")
    c.request("PUT", "/v2/x", body=b"data")
    r = c.getresponse()
    assert (r.status, r.read()) == (201, b"abcdefg")
    c.close()
    t.join(5)


def test_a_body_cut_short_of_its_content_length_is_an_error() -> None:
    netloc, t = _serve([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"])
    c = _conn(netloc)
    c.request("GET", "/blob")
    r = c.getresponse()
    with pytest.raises(ConnectionResetError, match="6 bytes"):
        r.read()
    c.close()
    t.join(5)


@pytest.mark.parametrize("reply, message", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunked"),
    (b"SPDY nonsense\r\n\r\n", "malformed HTTP status line"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (70 << 10) + b"\r\n\r\n", "too long"),
])
def test_malformed_responses_are_refused(reply: bytes, message: str) -> None:
    netloc, t = _serve([reply])
    c = _conn(netloc)
    c.request("GET", "/v2/")
    with pytest.raises(ConnectionError, match=message):
        c.getresponse().read()
    c.close()
    t.join(5)
