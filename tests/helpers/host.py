"""What tests look at on the host, in one place: polling for a condition, mounts left
under a directory, live conmon monitors, and a small HTTP server on the host (free ports
are tests/helpers/ports.py).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# A check that runs a `ketch` command costs a process start-up (tens of ms of CPU, more
# on a loaded machine); polled every 50 ms it would keep most of a core busy for as long
# as the test waits, and the suite runs several tests per core. So between two checks a
# poll waits at least POLL_SHARE times as long as the last check took: a check of a file
# or of /proc still runs every `interval`, a CLI check uses at most a quarter of the time
# it waits (and backs off further when the machine is slow), never pausing longer than
# POLL_MAX_PAUSE.
POLL_SHARE = 3.0
POLL_MAX_PAUSE = 0.5


def poll_pause(interval: float, check_took: float) -> float:
    """How long to sleep before the next check (see POLL_SHARE)."""
    return max(interval, min(POLL_SHARE * check_took, POLL_MAX_PAUSE))


def wait_for(cond: Callable[[], Any], timeout: float = 15, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll `cond` until it returns something truthy (returned); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        began = time.monotonic()
        value = cond()
        if value:
            return value
        now = time.monotonic()
        if now > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        # the last check is made at the deadline, not a pause after it
        time.sleep(max(0.0, min(poll_pause(interval, now - began), deadline - now)))


def fetch(url: str, timeout: float = 30) -> str:
    """The body of `url`, retried until the server answers (it may take a moment to
    listen) or `timeout` runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()  # type: ignore[no-any-return]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def mounts_under(*paths: Path) -> list[str]:
    """Mount points (this process's view) at or below any of `paths`."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4]
            if any(target.startswith(str(p)) for p in paths):
                found.append(target)
    return found


def live_pids(match) -> list[int]:  # type: ignore[no-untyped-def]
    """Live (not zombie) processes whose NUL-separated command line satisfies `match`.
    (Read through bare descriptors rather than pathlib: the leak checks scan /proc after
    every container test, and this way costs half the CPU, 0.9 against 1.9 ms over 169
    processes.)"""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if not match(_read_proc(f"/proc/{name}/cmdline")):
                continue  # (most processes: their state is not read at all)
            stat = _read_proc(f"/proc/{name}/stat")
        except OSError:
            continue
        if stat.rsplit(b")", 1)[-1].split()[0] not in (b"Z", b"X"):
            pids.append(int(name))
    return pids


def has_open(pid: int, path: str | Path) -> bool:
    """Whether process `pid` has `path` open (a command waiting on that lock file, or
    one that has opened the database)."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == str(path):
                return True
        except OSError:
            pass
    return False


def _read_proc(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def conmon_pids(marker: str) -> list[int]:
    """Live (not zombie) conmon processes whose command line mentions `marker`, e.g. a
    test's state root."""
    return live_pids(lambda cmdline: cmdline.split(b"\0", 1)[0].endswith(b"conmon")
                     and marker.encode() in cmdline)


@contextlib.contextmanager
def serve_http(address: str = "127.0.0.1", *, directory: Path | None = None,
               body: bytes = b"") -> Iterator[http.server.HTTPServer]:
    """An HTTP server on the host, on a free port of `address`, for the duration: files
    from `directory`, or `body` for every GET. `server.server_port` is its port."""
    if directory is not None:
        root = str(directory)

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, directory=root, **kw)

            def log_message(self, *a: object) -> None:
                pass
    else:
        class Handler(http.server.BaseHTTPRequestHandler):  # type: ignore[no-redef]
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def interruptible() -> None:
    """A `preexec_fn`: SIGINT and SIGQUIT as a terminal gives them to the child. A child
    inherits ignored signals, and under xdist the worker that starts it may have them
    ignored (seen under load): a test's Ctrl-C must reach the command it sends it to."""
    import signal

    for s in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(s, signal.SIG_DFL)
