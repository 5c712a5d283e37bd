"""Helper processes that outlive the ketch command that started them (the per-network
DNS service, the IPv6 port proxy): started detached, found again by pid + start time.

Double fork, so the helper is never a zombie child of a long-lived ketch process (the
API server) and belongs to no terminal session. The pid alone is not an identity
(pids are reused), so every record keeps the process start time from /proc too.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    fields = data.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def alive(pid: int | None, started: str | None) -> bool:
    return bool(pid) and started is not None and start_time(pid or 0) == started


def spawn_detached(argv: Sequence[str], sockets: Sequence[socket.socket],
                   log_path: Path | None = None) -> tuple[int, str]:
    """Start argv detached with `sockets` as fds 3, 4, ...; returns (pid, start time)."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(read_end)
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                _exec_helper(argv, sockets, log_path)
            os.write(write_end, str(grandchild).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    data = b""
    while chunk := os.read(read_end, 64):
        data += chunk
    os.close(read_end)
    if not data:
        raise OSError("could not start helper process " + argv[0])
    pid = int(data)
    started = start_time(pid) or ""
    return pid, started


def _exec_helper(argv: Sequence[str], sockets: Sequence[socket.socket],
                 log_path: Path | None) -> None:
    try:
        # move the sockets out of the way first: one of them may sit on fd 3 or 4
        high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100) for s in sockets]
        devnull = os.open("/dev/null", os.O_RDWR)
        err = devnull
        if log_path is not None:
            err = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err, 2)
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i)  # dup2 clears close-on-exec on the new descriptor
        os.closerange(3 + len(high), 65536)
        os.execv(argv[0], list(argv))
    finally:
        os._exit(127)


def stop(pid: int | None, started: str | None, timeout: float = 2.0) -> None:
    """SIGTERM, wait for the exit, SIGKILL if it lingers. Quiet if already gone."""
    if not pid or not alive(pid, started):
        return
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if not alive(pid, started):  # the pid may have been reused since the check
            return
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        killed = False
        deadline = time.monotonic() + timeout
        while alive(pid, started):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if killed:
                    return
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                killed = True
                deadline = time.monotonic() + 1.0
                continue
            # the pidfd turns readable once the process exits
            select.select([pidfd], [], [], min(remaining, 0.05))
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
