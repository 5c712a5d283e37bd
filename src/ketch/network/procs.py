"""Helper processes that outlive the ketch command that started them (the per-network
DNS service, the IPv6 port proxy): started detached, found again by pid + start time.

Double fork, so the helper is never a zombie child of a long-lived ketch process (the
API server) and belongs to no terminal session. The pid alone is not an identity
(pids are reused), so every record keeps the process start time from /proc too.
"""

from __future__ import annotations

import _signal  # not `signal` (its enums): stopping a helper is on `rm -f`'s way
import errno
import fcntl
import os
import select
import time

from ketch.procstat import alive, start_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket
    from collections.abc import Sequence

    from _typeshed import StrPath

__all__ = ["alive", "spawn_detached", "start_time", "stop"]


def spawn_detached(argv: Sequence[str], sockets: Sequence[socket],
                   log_path: StrPath | None = None) -> tuple[int, str]:
    """Start argv detached with `sockets` as fds 3, 4, ...; returns (pid, start time).

    Returns once the helper has exec'd (a close-on-exec pipe tells), so the pid names
    the helper program and not a copy of this process that has not yet replaced itself;
    an exec that fails is raised here with its errno.
    """
    pid_read, pid_write = os.pipe()
    exec_read, exec_write = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        try:
            os.close(pid_read)
            os.close(exec_read)
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                os.close(pid_write)
                _exec_helper(argv, sockets, log_path, exec_write)
            os.write(pid_write, str(grandchild).encode())
        finally:
            os._exit(0)
    os.close(pid_write)
    os.close(exec_write)
    os.waitpid(child, 0)
    try:
        data = _read_all(pid_read)
        failure = _read_all(exec_read)  # EOF once the exec succeeded
    finally:
        os.close(pid_read)
        os.close(exec_read)
    if not data:
        raise OSError("could not start helper process " + argv[0])
    if failure:
        code = int(failure)
        raise OSError(code, f"cannot run {argv[0]}: {os.strerror(code)}")
    pid = int(data)
    started = start_time(pid) or ""
    return pid, started


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 64):
        data += chunk
    return data


def _exec_helper(argv: Sequence[str], sockets: Sequence[socket],
                 log_path: StrPath | None, status_fd: int) -> None:
    """In the grandchild: set up fds 0-2 and the sockets, then exec. Never returns; a
    failure before or at the exec is written to `status_fd` as an errno."""
    status = status_fd
    code = errno.EIO  # unless the failure says better
    try:
        # move the sockets out of the way first: one of them may sit on fd 3 or 4
        high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100) for s in sockets]
        status = fcntl.fcntl(status_fd, fcntl.F_DUPFD_CLOEXEC, 100)
        devnull = os.open("/dev/null", os.O_RDWR)
        err = devnull
        if log_path is not None:
            err = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err, 2)
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i)  # dup2 clears close-on-exec on the new descriptor
        first_free = 3 + len(high)
        status = os.dup2(status, first_free, inheritable=False)
        os.closerange(first_free + 1, 65536)
        os.execv(argv[0], list(argv))
    except OSError as e:
        code = e.errno or code
    finally:
        try:
            os.write(status, str(code).encode())
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
        _signal.pidfd_send_signal(pidfd, _signal.SIGTERM)
        killed = False
        deadline = time.monotonic() + timeout
        while alive(pid, started):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if killed:
                    return
                _signal.pidfd_send_signal(pidfd, _signal.SIGKILL)
                killed = True
                deadline = time.monotonic() + 1.0
                continue
            # the pidfd turns readable once the process exits
            select.select([pidfd], [], [], min(remaining, 0.05))
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
