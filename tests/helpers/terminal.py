"""Reading a pseudo-terminal's output in tests that drive a client through `pty.fork`."""

from __future__ import annotations

import os
import select
import time


def read_until(fd: int, seen: bytearray, marker: bytes, timeout: float = 20) -> None:
    """Append what the terminal `fd` prints to `seen` until `marker` is in it, the
    terminal closes, or `timeout` seconds pass (the caller asserts on `seen`)."""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen.extend(os.read(fd, 4096))
            except OSError:
                return
