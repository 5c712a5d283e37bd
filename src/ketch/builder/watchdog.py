"""Undo what a killed build left behind: RUN containers, COPY mounts, staging dirs.

ketch has no daemon that outlives a `ketch build` killed with SIGKILL, so the build
forks a small watchdog before it creates anything that must not outlive it. The build
tells it, over a pipe, what it is about to create and what it has cleaned up itself;
when the pipe reaches end-of-file (the build exited, however it exited) the watchdog
removes whatever is still registered. It runs in its own session, so the Ctrl-C that
interrupts the build does not interrupt the cleanup.

The forked watchdog never touches the database: a copy of a process that has SQLite
connections open must not use SQLite (it inherits the parent's record of which locks
the process holds, not the locks themselves, and reads or writes beside other
processes without them: sqlite.org's "How To Corrupt" 2.6; interrupted builds left a
"database disk image is malformed" here). Mounts and directories it removes itself;
the containers it leaves to a fresh `ketch rm -f -v` it execs.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


class Watchdog:
    """The watchdog of one build on the state root `root` (and `run_root`)."""

    def __init__(self, root: str, run_root: str) -> None:
        self.root = root
        self.run_root = run_root
        self._fd: int | None = None
        self._pid = 0

    def _start(self) -> None:
        r, w = os.pipe()  # both ends close-on-exec: conmon and runc never inherit them
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; exercised by the SIGKILL test
            try:
                os.close(w)
                _child(r, self.root, self.run_root)
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


def _child(r: int, root: str, run_root: str) -> None:  # pragma: no cover
    os.setsid()
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, signal.SIG_IGN)  # (and so in the `ketch rm` it may exec)
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
    _cleanup_files(pending)
    if pending["container"]:
        from ketch.launcher import self_command

        argv = [*self_command(), "--root", root, "--run-root", run_root, "rm", "-f", "-v",
                *sorted(pending["container"])]
        os.closerange(3, 65536)  # (the parent's database among them)
        os.execv(argv[0], argv)


def _cleanup_files(pending: dict[str, set[str]]) -> None:  # pragma: no cover
    if not pending["mount"] and not pending["dir"]:
        return
    from ketch.containers.rootfs import unmount
    from ketch.store.trash import delete_tree

    for mnt in pending["mount"]:
        with contextlib.suppress(Exception):
            unmount(Path(mnt))
            os.rmdir(mnt)
    for d in pending["dir"]:
        delete_tree(d)
