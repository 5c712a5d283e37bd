"""The service's HTTP/1.1 handling on the wire (ketch.api.web): keep-alive and pipelining,
half-closing clients, Expect: 100-continue, malformed requests and bodies that do not
match their length. Raw sockets, as a client library would smooth these over."""

from __future__ import annotations

import json
import socket

from tests.api.conftest import Api


def _connect(api: Api) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(str(api.sock))
    return s


def _read_all(s: socket.socket) -> bytes:
    data = bytearray()
    while chunk := s.recv(65536):
        data += chunk
    return bytes(data)


def _responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each Content-Length-framed response in `data`."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        size = int(headers.get("content-length", "0"))
        out.append((int(lines[0].split()[1]), rest[:size]))
        data = rest[size:]
    return out


def _ping_ok(api: Api) -> bool:
    conn = api.http()
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().read() == b"OK"
    finally:
        conn.close()


def test_pipelined_requests_on_one_connection_are_answered_in_order(api: Api) -> None:
    s = _connect(api)
    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n"
              b"GET /v1.45/containers/nope/json HTTP/1.1\r\nHost: d\r\n\r\n"
              b"GET /version HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    got = _responses(_read_all(s))
    s.close()
    assert [status for status, _ in got] == [200, 404, 200]
    assert got[0][1] == b"OK"
    assert json.loads(got[1][1]) == {"message": "No such container: nope"}
    assert json.loads(got[2][1])["ApiVersion"] == "1.45"


def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(api: Api
                                                                           ) -> None:
    s = _connect(api)
    s.sendall(b"GET /version HTTP/1.1\r\nHost: d\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    got = _responses(_read_all(s))
    s.close()
    assert len(got) == 1 and got[0][0] == 200
    assert json.loads(got[0][1])["ApiVersion"] == "1.45"


def test_expect_100_continue_gets_the_go_ahead_before_the_body(api: Api) -> None:
    body = json.dumps({"Name": "continued"}).encode()
    s = _connect(api)
    s.sendall(b"POST /v1.45/volumes/create HTTP/1.1\r\nHost: d\r\n"
              b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    first = s.recv(65536)
    assert first.startswith(b"HTTP/1.1 100 ")
    s.sendall(body)
    s.shutdown(socket.SHUT_WR)
    got = _responses(_read_all(s))
    s.close()
    assert got[0][0] == 201 and json.loads(got[0][1])["Name"] == "continued"
    assert api.ketch("volume", "rm", "continued").returncode == 0


def test_a_malformed_request_is_400_and_the_service_serves_on(api: Api) -> None:
    for raw in (b"NOT HTTP AT ALL\r\n\r\n",
                b"GET /_ping HTTP/1.1\r\nHost: d\r\nContent-Length: x\r\n\r\n",
                b"GET /_ping HTTP/1.1\r\nHost: d\r\nBad Header\r\n\r\n"):
        s = _connect(api)
        s.sendall(raw)
        got = _responses(_read_all(s))
        s.close()
        assert got[0][0] == 400, raw
        assert json.loads(got[0][1])["message"].startswith("bad request:")
    assert _ping_ok(api)


def test_a_body_shorter_than_its_length_creates_nothing(api: Api) -> None:
    body = json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode()
    s = _connect(api)
    s.sendall(b"POST /containers/create?name=cut HTTP/1.1\r\nHost: d\r\n"
              b"Content-Type: application/json\r\n"
              b"Content-Length: " + str(len(body) + 50).encode() + b"\r\n\r\n" + body)
    s.shutdown(socket.SHUT_WR)  # and nothing more comes
    assert _read_all(s) == b""
    s.close()
    assert api.ketch("ps", "-aq").stdout == ""
    assert _ping_ok(api)


def test_a_body_longer_than_its_length_is_refused_past_the_length(api: Api) -> None:
    body = json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode()
    s = _connect(api)
    s.sendall(b"POST /containers/create?name=long HTTP/1.1\r\nHost: d\r\n"
              b"Content-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body +
              b"trailing garbage\r\n\r\n")
    got = _responses(_read_all(s))
    s.close()
    # what the length covers is the request; the rest is read as the next one: a 400
    assert [status for status, _ in got] == [201, 400]
    assert api.ketch("ps", "-a", "--format", "{{.Names}}").stdout == "long\n"


def test_a_body_larger_than_64_mib_is_413_and_creates_nothing(api: Api) -> None:
    s = _connect(api)
    # the length alone is enough for the answer: no need to send (or read) 64 MiB
    s.sendall(b"POST /containers/create?name=huge HTTP/1.1\r\nHost: d\r\n"
              b"Content-Type: application/json\r\n"
              b"Content-Length: " + str((64 << 20) + 1).encode() + b"\r\n\r\n")
    got = _responses(_read_all(s))
    s.close()
    assert got[0][0] == 413
    assert "too large" in json.loads(got[0][1])["message"]
    assert api.ketch("ps", "-aq").stdout == ""
