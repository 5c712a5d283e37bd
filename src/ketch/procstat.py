"""Naming a process for good: its pid and its start time.

A pid alone can be reused once its process is gone; the pid together with the start
time in /proc/PID/stat (field 22, clock ticks after boot) cannot. ketch records both for
the processes it leaves running without a parent that waits for them (the owners of
intents, the log keeper, health timers, restart waiters, the network's helpers) and
compares both before it signals one. A pidfd opened on a pid whose start time still
matches is that process for as long as the descriptor is open.

Standard library only, and nothing loaded at import: `rm` and the helpers' own start-up
use it.
"""

from __future__ import annotations

import os


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat, as text; None if the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: split after the last ')'
    fields = data.rsplit(b")", 1)[1].split()
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    return fields[19].decode()


def alive(pid: int | None, started: str | int | None) -> bool:
    """Whether the process recorded as (pid, start time) still runs."""
    return bool(pid) and started is not None and start_time(pid or 0) == str(started)


def record(path: str, pid: int) -> None:
    """Write `PID START` to `path` (made private, replaced whole): what `stop_recorded`
    reads back."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "w") as f:
        f.write(f"{pid} {start_time(pid) or ''}\n")
    os.rename(tmp, path)


def stop_recorded(path: str, timeout: float = 5.0) -> None:
    """SIGKILL the process `path` records (`record`), if it still runs, and return once
    it is gone or after `timeout` seconds. Nothing to do when the file is missing or
    names a process that has ended. (`_signal`, not `signal`: the module's enums cost
    `rm` a fifth of its time.)"""
    try:
        with open(path, "rb") as f:
            pid_s, start_s = f.read().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return
    kill_and_wait(pid, start_s.decode(), timeout)


def kill_and_wait(pid: int, started: str | int | None, timeout: float = 5.0) -> None:
    """SIGKILL the process recorded as (pid, start time) if it still runs, and return
    once it has exited (not once the signal is sent: until then it still runs) or after
    `timeout` seconds."""
    if not pid or started is None:
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    import _signal
    import select

    try:
        if start_time(pid) != str(started):
            return
        _signal.pidfd_send_signal(fd, _signal.SIGKILL)
        select.select([fd], [], [], timeout)  # readable once the process has exited
    except (OSError, ValueError):
        pass
    finally:
        os.close(fd)
