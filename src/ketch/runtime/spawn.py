"""Run a helper process (the OCI runtime's `pause`, `state`, `delete`..., conmon's first
process) and collect its exit status and output.

Hand-written over os.posix_spawn instead of `subprocess` because of what `subprocess`
imports: signal (and with it enum, functools, collections), threading, selectors and
contextlib, 9.5 ms of CPU on top of a bare interpreter's 6 (`perf stat python3 -I -S -c
'import subprocess'` on Debian 12's python3.11), where a whole `ketch pause`, runc's
process included, now takes ~18 ms (38 through subprocess and the monitor's module).
What a runtime call needs is small: its stdin from /dev/null or a short input, its
stdout and stderr read whole, a deadline. The child is started as subprocess starts it:
SIGPIPE and SIGXFSZ back to their default action (Python ignores them), no other
descriptor of this process inherited (Python opens its own close-on-exec; those it was
started with are closed in the child) but the ones passed on purpose.

posix_spawn cannot change the child's directory (glibc's addchdir_np is not in Python's
os module), and conmon must run in the container's directory (it writes its `oom` file
there): a process given a directory starts through coreutils' `env --chdir`, one small
exec (~0.6 ms of CPU) where subprocess's import costs a `run` 3.4 ms beside the modules
it loads anyway.

Standard library C modules only, nothing loaded at import.
"""

from __future__ import annotations

import _signal
import os
import select
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


ENV = "/usr/bin/env"


def _inherited() -> list[int]:
    """This process's descriptors above 2 that a child would inherit: ones it was started
    with (a shell's, a test runner's). Closed in the child, as subprocess's close_fds."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    fds.append(fd)
            except OSError:  # the directory's own descriptor, closed by now
                pass
    return fds


class SpawnTimeout(Exception):
    """The process did not end before its deadline (it has been killed and reaped)."""


class Child:
    """A started process whose stdout and stderr are pipes to this one."""

    def __init__(self, argv: Sequence[str], input: bytes | None = None,
                 env: Mapping[str, str] | None = None, *, cwd: str | None = None,
                 stdout: bool = True, pass_fds: Sequence[int] = (),
                 new_session: bool = False) -> None:
        """`stdout=False`: the child's stdout is /dev/null. `pass_fds`: descriptors the
        child inherits under their own numbers (a dup2 onto itself in the child, which
        clears close-on-exec there, glibc 2.29 and later: the parent's flag is never
        changed, so a process started meanwhile by another thread cannot inherit them).
        `new_session`: the child starts a session of its own (setsid), as subprocess's
        start_new_session."""
        self.argv = list(argv)
        started = self.argv if cwd is None else [ENV, "--chdir", cwd, "--", *self.argv]
        # (made in this order, a pipe that takes 0, 1 or 2, in a process started without
        # them, is copied to its place before its number is overwritten in the child)
        out_r, out_w = os.pipe() if stdout else (-1, os.open(os.devnull, os.O_WRONLY))
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe() if input else (os.open(os.devnull, os.O_RDONLY), -1)
        actions: list[tuple[int, ...]] = [
            (os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2)]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited() if fd not in pass_fds]
        actions += [(os.POSIX_SPAWN_DUP2, fd, fd) for fd in pass_fds]
        try:
            self.pid = os.posix_spawn(started[0], started, os.environ if env is None else env,
                                      file_actions=actions, setsid=new_session,
                                      setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ))
        except BaseException:
            for fd in (out_r, err_r, in_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in (out_w, err_w, in_r):
                os.close(fd)
        self._out, self._err, self._in = out_r, err_r, in_w
        self._input = memoryview(input or b"")
        if in_w >= 0:
            os.set_blocking(in_w, False)
            self._feed()  # what the pipe takes now: a short input is there before any wait

    def _feed(self) -> None:
        """Write what the stdin pipe takes without blocking; close it once all is sent
        (or the child stopped reading: the rest is moot)."""
        try:
            sent = os.write(self._in, self._input)
        except BlockingIOError:
            return
        except BrokenPipeError:
            sent = len(self._input)
        self._input = self._input[sent:]
        if not self._input:
            os.close(self._in)
            self._in = -1

    def communicate(self, timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Wait for the process to end: (exit code, stdout, stderr). The exit code of a
        process ended by a signal is minus its number, as subprocess reports it. Raises
        SpawnTimeout, with the process killed, when `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[bytes] = []
        err: list[bytes] = []
        sinks = {fd: sink for fd, sink in ((self._out, out), (self._err, err)) if fd >= 0}
        poller = select.poll()
        for fd in sinks:
            poller.register(fd, select.POLLIN)
        if self._in >= 0:
            poller.register(self._in, select.POLLOUT)
        open_fds = len(sinks) + (self._in >= 0)
        try:
            while open_fds:
                wait_ms = None
                if deadline is not None:
                    wait_ms = max(0, int((deadline - time.monotonic()) * 1000))
                events = poller.poll(wait_ms)
                if not events and deadline is not None and time.monotonic() >= deadline:
                    self._kill()
                    raise SpawnTimeout(f"{self.argv[0]} did not end within {timeout}s")
                for fd, _mask in events:
                    if fd == self._in:
                        self._feed()
                        if self._in < 0:
                            poller.unregister(fd)
                            open_fds -= 1
                        continue
                    data = os.read(fd, 65536)
                    if data:
                        sinks[fd].append(data)
                    else:
                        poller.unregister(fd)
                        open_fds -= 1
            _pid, status = os.waitpid(self.pid, 0)
        finally:
            for fd in (self._out, self._err, self._in):
                if fd >= 0:
                    os.close(fd)
            self._out = self._err = self._in = -1
        return os.waitstatus_to_exitcode(status), b"".join(out), b"".join(err)

    def _kill(self) -> None:
        try:
            os.kill(self.pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)


def run(argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None,
        env: Mapping[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """Run `argv` (its first item an absolute path) to its end, in `env` (this process's
    environment by default): (exit code, stdout, stderr). OSError when it cannot be
    started; SpawnTimeout after `timeout` seconds."""
    return Child(argv, input, env).communicate(timeout)
