"""Attached runs: `run` (without -d), `start -a`, `attach` and `exec`, wiring the user's
terminal or pipes to a container through its monitor's attach socket."""

from __future__ import annotations

import _signal as signal  # not `signal`: its enums import enum (ms of every attached run)
import contextlib
import os
import sys

from ketch.errors import Conflict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from ketch.containers.service import ContainerService
    from ketch.runtime.monitor import AttachSession, ContainerPaths


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not os.isatty(0):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(0)
    try:
        # TCSANOW, not setraw's default TCSAFLUSH: what the user typed before we got here
        # belongs to the container
        tty.setraw(0, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _term_size() -> tuple[int, int] | None:
    for fd in (0, 1):
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return None


def _detach_keys(spec: str | None) -> bytes:
    from ketch.runtime.monitor import DEFAULT_DETACH_KEYS, parse_detach_keys

    return parse_detach_keys(spec) if spec else DEFAULT_DETACH_KEYS


def _proxy_signals(svc: ContainerService, cid: str) -> dict[int, Any]:
    """Forward SIGINT/SIGTERM/... to the container, as Docker's --sig-proxy does."""
    from ketch.errors import KetchError

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(KetchError):
            svc.kill(cid, signum)

    old: dict[int, Any] = {}
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2):
        old[s] = signal.signal(s, forward)
    return old


def _stream(svc: ContainerService, session: AttachSession, paths: ContainerPaths, *,
            stdin: bool, tty_mode: bool, detach_keys: str | None, stdout: bool = True,
            stderr: bool = True) -> bool:
    """Copy until the container's output ends; True when the user detached."""
    rec_monitor = None
    if tty_mode:
        size = _term_size()
        if size:
            rec_monitor = svc.lifecycle.monitor(svc.records.get(paths.container_id))  # type: ignore[arg-type]  # the attached container exists: it is running
            with contextlib.suppress(Exception):
                rec_monitor.resize(paths, *size)

            def on_winch(_s: int, _f: Any) -> None:
                sz = _term_size()
                if sz and rec_monitor is not None:
                    with contextlib.suppress(Exception):
                        rec_monitor.resize(paths, *sz)

            signal.signal(signal.SIGWINCH, on_winch)
    keys = _detach_keys(detach_keys) if stdin and tty_mode else None
    with raw_terminal(tty_mode and stdin):
        result = session.stream(stdout=sys.stdout.buffer if stdout else None,
                                stderr=sys.stderr.buffer if stderr else None,
                                stdin=sys.stdin.buffer if stdin else None, detach_keys=keys)
    sys.stdout.flush()
    return result.detached


def run_attached(svc: ContainerService, cid: str, *, stdin: bool, tty: bool,
                 detach_keys: str | None, sig_proxy: bool, remove: bool,
                 stdout: bool = True, stderr: bool = True,
                 on_started: Callable[[], None] | None = None) -> int:
    """Start a created (or stopped) container attached; return its exit code.
    `stdout`/`stderr` False leave that stream unread (`run -a stdout`); `on_started`
    is called once it runs (the CLI turns its garbage collector back on there)."""
    holder: dict[str, AttachSession] = {}

    def attach_first(paths: ContainerPaths) -> None:
        rec = svc.records.get(cid)
        assert rec is not None
        holder["s"] = svc.lifecycle.monitor(rec).attach(paths)
        svc.event(rec, "attach")

    try:
        rec = svc.lifecycle.start(cid, before_start=attach_first)
    except BaseException:
        if "s" in holder:
            holder["s"].close()
        if remove:
            with contextlib.suppress(Exception):
                svc.remove(cid, force=True)
        raise
    paths = svc.lifecycle.paths(rec)
    if on_started is not None:
        on_started()
    old = _proxy_signals(svc, cid) if sig_proxy and not tty else {}
    try:
        with holder["s"] as session:
            detached = _stream(svc, session, paths, stdin=stdin, tty_mode=tty,
                               detach_keys=detach_keys, stdout=stdout, stderr=stderr)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if detached:
        sys.stderr.write("\r\nread escape sequence\r\n" if tty else "")
        return 0
    return svc.wait(cid)


def attach_running(svc: ContainerService, name_or_id: str, *, stdin: bool,
                   detach_keys: str | None, sig_proxy: bool) -> int:
    rec = svc.get(name_or_id)
    if rec.state == "paused":
        raise Conflict("You cannot attach to a paused container, unpause it first")
    if rec.state == "restarting":
        raise Conflict("You cannot attach to a restarting container, wait until it is"
                       " running")
    if rec.state != "running":
        raise Conflict("You cannot attach to a stopped container, start it first")
    paths = svc.lifecycle.paths(rec)
    tty_mode = bool(rec.config.get("Tty"))
    old = _proxy_signals(svc, rec.id) if sig_proxy and not tty_mode else {}
    try:
        with svc.lifecycle.monitor(rec).attach(paths) as session:
            svc.event(rec, "attach")
            detached = _stream(svc, session, paths,
                               stdin=stdin and bool(rec.config.get("OpenStdin")),
                               tty_mode=tty_mode, detach_keys=detach_keys)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if detached:
        return 0
    return svc.wait(rec.id)


def exec_attached(svc: ContainerService, name_or_id: str, command: list[str], *,
                  env: list[str], user: str | None, workdir: str | None, tty: bool,
                  stdin: bool, detach: bool, privileged: bool,
                  detach_keys: str | None = None) -> int:
    """`exec` on this process's streams and terminal: an exec session (containers.execs)
    created and started here, resized with the terminal."""
    from ketch.containers import execs

    size = _term_size() if tty else None
    eid = execs.create(svc, name_or_id, command, env=env, user=user, workdir=workdir,
                       tty=tty, stdin=stdin, privileged=privileged,
                       detach_keys=detach_keys, console_size=size)
    old = None
    if tty and not detach:
        def on_winch(_s: int, _f: Any) -> None:
            sz = _term_size()
            if sz:
                with contextlib.suppress(Exception):
                    execs.resize(svc, eid, *sz)

        old = signal.signal(signal.SIGWINCH, on_winch)
    try:
        with raw_terminal(tty and stdin and not detach):
            code = execs.start(svc, eid, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer,
                               stdin=sys.stdin.buffer if stdin and not detach else None,
                               detach=detach)
    finally:
        if old is not None:
            signal.signal(signal.SIGWINCH, old)
    sys.stdout.flush()
    return 0 if code is None else code


# -- for front doors that carry the streams themselves (the Engine API service) ---------------
class OutputStreams:
    """Where an attach session's output goes and how input comes in, for a caller that
    is not a terminal: `stdout`/`stderr` take bytes, `stdin` is a readable fd (or None),
    `detach_keys` Docker's key spec, looked for only in the input of a container with a
    terminal (`tty`), as dockerd does: a plain stdin is copied whatever bytes it holds."""

    def __init__(self, stdout: Any, stderr: Any, stdin: int | None = None,
                 detach_keys: str | None = None, tty: bool = False) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self.detach_keys = detach_keys
        self.tty = tty


def start_with_sessions(svc: ContainerService, name_or_id: str, count: int
                        ) -> tuple[Any, list[AttachSession]]:
    """Start a container with `count` attach sessions connected before its process runs,
    so they see all of its output. Returns (record, sessions)."""
    sessions: list[AttachSession] = []

    def attach_first(paths: ContainerPaths) -> None:
        rec = svc.records.get(svc.get(name_or_id).id)
        assert rec is not None
        mon = svc.lifecycle.monitor(rec)
        for _ in range(count):
            sessions.append(mon.attach(paths))
        svc.event(rec, "attach")

    try:
        rec = svc.lifecycle.start(name_or_id, before_start=attach_first if count else None)
    except BaseException:
        for s in sessions:
            s.close()
        raise
    return rec, sessions


def session_of_running(svc: ContainerService, name_or_id: str) -> AttachSession:
    """An attach session to a running container (output from now on)."""
    rec = svc.get(name_or_id)
    if rec.state == "paused":
        raise Conflict("You cannot attach to a paused container, unpause it first")
    if rec.state != "running":
        raise Conflict("You cannot attach to a stopped container, start it first")
    session = svc.lifecycle.monitor(rec).attach(svc.lifecycle.paths(rec))
    svc.event(rec, "attach")
    return session


def pump(session: AttachSession, streams: OutputStreams) -> bool:
    """Copy one session until the container's output ends; True when detached."""
    keys = None
    if streams.stdin is not None and streams.tty:
        keys = _detach_keys(streams.detach_keys)
    with session:
        result = session.stream(stdout=streams.stdout, stderr=streams.stderr,
                                stdin=streams.stdin, detach_keys=keys)
    return result.detached


def resize(svc: ContainerService, name_or_id: str, height: int, width: int) -> None:
    rec = svc.get(name_or_id)
    if rec.state not in ("running", "paused"):
        raise Conflict(f"cannot resize container {rec.id}: it is not running")
    if not rec.config.get("Tty"):
        return  # Docker: resizing a container without a TTY does nothing
    svc.lifecycle.monitor(rec).resize(svc.lifecycle.paths(rec), height, width)
    svc.event(rec, "resize", height=height, width=width)


WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


def wait_condition(svc: ContainerService, name_or_id: str, condition: str = "not-running",
                   *, cancelled: Any = None) -> int | None:
    """Docker's wait conditions: `not-running` returns at once for a stopped container,
    `next-exit` waits for the next exit (also of a container not started yet), `removed`
    until the record is gone (the exit code an auto-removed container left). None when
    `cancelled()` turned true first."""
    import time

    if condition not in WAIT_CONDITIONS:
        from ketch.errors import InvalidArgument

        raise InvalidArgument(f"invalid condition: {condition!r}: must be one of "
                              + ", ".join(WAIT_CONDITIONS))
    rec = svc.get(name_or_id)
    cid = rec.id
    code = rec.exit_code
    first_start = rec.started_at
    armed = rec.running  # next-exit: a running container's exit counts
    delay = 0.005
    while True:
        cur = svc.records.get(cid)
        if cur is not None:
            cur = svc._refresh(cur)
            cur = svc.records.get(cid)
        if cur is None:
            left = svc.records.take_exit_code(cid)
            return code if left is None else left
        code = cur.exit_code
        if cur.running or cur.started_at != first_start:
            armed = True
        if condition == "not-running" and not cur.running:
            return code
        if condition == "next-exit" and armed and not cur.running:
            return code
        if cancelled is not None and cancelled():
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
