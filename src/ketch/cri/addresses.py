"""The CRI server's two addresses, the gRPC socket (`--listen`) and the streaming
server's HOST:PORT (`--stream-address`): checked by the server's program before it
imports gRPC and aiohttp (a typo should not cost that), and again where they are used."""

from __future__ import annotations

import os

from ketch.errors import InvalidArgument

DEFAULT_SOCKET = "/run/ketch/cri.sock"
DEFAULT_STREAM_ADDRESS = "127.0.0.1:0"


def socket_path(uri: str | None) -> str:
    if not uri:
        return DEFAULT_SOCKET
    if not uri.startswith("unix://") or len(uri) <= len("unix://"):
        raise InvalidArgument(f"invalid --listen {uri!r}: the CRI is served on a unix socket"
                              " (unix:///path/to/cri.sock)")
    path = uri[len("unix://"):]
    if not os.path.isabs(path):
        raise InvalidArgument(f"invalid --listen {uri!r}: the socket path must be absolute")
    return path


def parse_address(address: str | None) -> tuple[str, int]:
    text = address or DEFAULT_STREAM_ADDRESS
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"invalid --stream-address {text!r}: expected HOST:PORT"
                              " (127.0.0.1:0 picks a free port)")
    return host, int(port)
