"""Undo what a killed build left behind: RUN containers, COPY mounts, staging dirs.

ketch has no daemon that outlives a `ketch build` killed with SIGKILL, so the build
forks a small watchdog before it creates anything that must not outlive it. The build
tells it, over a pipe, what it is about to create and what it has cleaned up itself;
when the pipe reaches end-of-file (the build exited, however it exited) the watchdog
removes whatever is still registered. It runs in its own session, so the Ctrl-C that
interrupts the build does not interrupt the cleanup.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ketch.builder.host import Closable


class Watchdog:
    """`reopen` gives the child, after fork, its own handle on the state (a new
    database connection: the parent's must not be shared across fork)."""

    def __init__(self, reopen: Callable[[], Closable]) -> None:
        self.reopen = reopen
        self._fd: int | None = None
        self._pid = 0

    def _start(self) -> None:
        r, w = os.pipe()  # both ends close-on-exec: conmon and runc never inherit them
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; exercised by the SIGKILL test
            try:
                os.close(w)
                _child(r, self.reopen)
            finally:
                os._exit(0)
        os.close(r)
        self._fd = w
        self._pid = pid

    def start(self) -> None:
        if self._fd is None:
            self._start()

    def _send(self, line: str) -> None:
        if self._fd is None:
            self._start()
        assert self._fd is not None
        data = (line + "\n").encode("utf-8", "surrogateescape")
        while data:
            n = os.write(self._fd, data)
            data = data[n:]

    def add(self, kind: str, value: str) -> None:
        self._send(f"+{kind} {value}")

    def done(self, kind: str, value: str) -> None:
        if self._fd is not None:
            self._send(f"-{kind} {value}")

    def close(self) -> None:
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        # The child exits as soon as it has nothing left to clean; reap it.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)


def _child(r: int, reopen: Callable[[], Closable]) -> None:  # pragma: no cover
    os.setsid()
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    pending: dict[str, set[str]] = {"container": set(), "mount": set(), "dir": set()}
    buf = b""
    with os.fdopen(r, "rb", buffering=0) as f:
        while True:
            chunk = f.read(65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "surrogateescape")
                kind, _, value = line[1:].partition(" ")
                if kind not in pending:
                    continue
                if line.startswith("+"):
                    pending[kind].add(value)
                else:
                    pending[kind].discard(value)
    if not any(pending.values()):
        return
    _cleanup(pending, reopen)


def _cleanup(pending: dict[str, set[str]], reopen: Callable[[], Closable]) -> None:  # pragma: no cover
    from ketch.store.trash import delete_tree

    if pending["container"]:
        engine = reopen()
        for cid in pending["container"]:
            with contextlib.suppress(Exception):
                engine.containers.remove(cid, force=True, volumes=True)
        engine.close()
    from ketch.containers.rootfs import unmount

    for mnt in pending["mount"]:
        with contextlib.suppress(Exception):
            unmount(Path(mnt))
            os.rmdir(mnt)
    for d in pending["dir"]:
        delete_tree(d)
