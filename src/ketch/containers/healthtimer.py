"""The per-container health timer: runs `ketch container healthcheck ID` on schedule.

Started by `ketch.containers.health.start_timer` right after the container starts, as
`python -I -S healthtimer.py PID INTERVAL START_PERIOD START_INTERVAL STARTED -- ARGV...`
(no site, no ketch import: only the standard modules below). It watches the container's
first process through a pidfd, so it wakes and exits the moment that process exits; in
between it sleeps in poll(). Each tick runs ARGV (the check, one short-lived ketch
process doing what `exec` does) and waits for it, still watching the container.

The check's exit code tells the timer the status, which picks the next wait as moby's
health monitor does (the start interval while starting inside the start period):
0 healthy, 1 unhealthy, 2 starting, 3 nothing to check any more (the container is
gone or stopped, or has no health check): the timer exits.

The schedule follows moby: the first check one interval after the start, the next one
an interval after the end of the previous one.
"""

import os
import select
import sys
import time

GONE = 3
STARTING = 2


def next_wait(now: float, started: float, interval: float, start_period: float,
              start_interval: float, status: int) -> float:
    elapsed = now - started
    if elapsed >= start_period:
        return interval
    remaining = start_period - elapsed
    if remaining < interval:
        return remaining
    return start_interval if status == STARTING else interval


def _wait_child(child: int, container_fd: int) -> int | None:
    """The check's exit code, or None when the container went first (the check is then
    left to finish on its own: it may be the one stopping or restarting it)."""
    child_fd = os.pidfd_open(child)
    poller = select.poll()
    poller.register(container_fd, select.POLLIN)
    poller.register(child_fd, select.POLLIN)
    try:
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if child_fd in ready:
                _, status = os.waitpid(child, 0)
                return os.waitstatus_to_exitcode(status)
            if container_fd in ready:
                return None
    finally:
        os.close(child_fd)


def main(argv: list[str]) -> int:
    pid = int(argv[1])
    interval, start_period, start_interval, started = (float(a) for a in argv[2:6])
    command = argv[7:]
    try:
        container_fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return 0
    poller = select.poll()
    poller.register(container_fd, select.POLLIN)
    status = STARTING
    while True:
        wait = next_wait(time.time(), started, interval, start_period, start_interval,
                         status)
        if poller.poll(max(0, int(wait * 1000))):
            return 0  # the container's process exited
        child = os.posix_spawn(command[0], command, os.environ)
        code = _wait_child(child, container_fd)
        if code is None or code == GONE:
            return 0
        if code in (0, 1, STARTING):
            status = code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
