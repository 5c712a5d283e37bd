"""Free host ports for tests that run in parallel.

A port that was free a moment ago is only safe to hand to a server if no other test
process can pick it in between: each xdist worker takes ports from its own slice of
20000-31999, below the kernel's ephemeral range (32768-60999 by default), so neither
another worker nor an outgoing connection's local port can take it in the meantime.
"""

from __future__ import annotations

import random
import socket

LOW, HIGH = 20000, 32000
SLICE = 1000


def port_range() -> range:
    """The ports this process may hand out."""
    from tests.conftest import worker_index

    n = worker_index()
    if n is None or n >= (HIGH - LOW) // SLICE:
        return range(LOW, HIGH)
    return range(LOW + n * SLICE, LOW + (n + 1) * SLICE)


def _bindable(host: str, port: int, kind: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "0.0.0.0", kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing on the host has bound (on `host`, all IPv4 addresses by default)."""
    ports = port_range()
    for _ in range(200):
        port = random.choice(ports)
        if _bindable(host, port, kind):
            return port
    raise RuntimeError("no free port")


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free TCP ports."""
    ports = port_range()
    for _ in range(200):
        start = random.randrange(ports.start, ports.stop - count)
        if all(_bindable("0.0.0.0", p, socket.SOCK_STREAM) for p in range(start, start + count)):
            return start
    raise RuntimeError("no free port range")
