"""Health checks (Dockerfile HEALTHCHECK, `run --health-*`) without a daemon.

Docker's daemon runs a goroutine per container; ketch has no daemon and conmon (the
monitor) runs no timers. Design, as Podman's (a systemd timer calling `podman
healthcheck run`) but without systemd:

- a timer process per container with a check (`containers/healthtimer.py`), started
  right after the container by `start_timer`: `python -I -S`, standard modules only,
  asleep in poll() on a pidfd of the container's process, so it exits the moment the
  container does (and `finish` also ends it by its pid file). Measured: 9 MiB RSS, 3
  MiB of it private (the rest is the interpreter's shared pages), no CPU between checks;
- at each tick it runs `ketch container healthcheck ID` (this module's `check`): one
  short-lived ketch process that runs the probe through the Engine's exec path (an
  exec session: the container's user, environment and working directory, `exec_*`
  events as dockerd sends them), kills it at the timeout, records the result and, when
  the status changes, journals `health_status: ...`. When the container turns
  unhealthy it takes Podman's `--health-on-failure` action (none, kill, stop, restart;
  a restart is counted in RestartCount as a policy restart is).

Keeping the probe in a full ketch process costs one interpreter start per check
(measured: 0.2 s of CPU and 18 MiB for its second, every 30 s at Docker's default
interval) and keeps one code path for
exec, events and the restart bookkeeping, instead of a second, partial engine inside a
resident process.

The state (inspect's State.Health: Status, FailingStreak, the last 5 results) is
`<container dir>/health.json`, written under `health.lock` by write-then-rename; it
outlives a stop, as Docker's does, and is reset to "starting" at every start. The
rules are moby's (daemon/health.go): a failure inside the start period does not count
while the container is still starting; `retries` failures in a row make it unhealthy;
one success makes it healthy; output is kept up to 4096 bytes ("..." when cut); a probe
past its timeout is killed and recorded with exit code -1.
"""

from __future__ import annotations

import os
import sys
import time

from ketch.errors import Conflict, InvalidArgument, KetchError, NotFound
from ketch.fastjson import dumps, loads

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"
STATUSES = (STARTING, HEALTHY, UNHEALTHY, NONE)
SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MIN_DURATION = 1_000_000  # 1 ms, the API's minimum
MAX_OUTPUT = 4096
MAX_LOG = 5
# Podman's --health-on-failure; kept in Config under the name Podman's inspect shows
ON_FAILURE_KEY = "HealthcheckOnFailureAction"
ON_FAILURE = ("none", "kill", "restart", "stop")


# -- configuration --------------------------------------------------------------------
def validate(config: dict[str, Any]) -> None:
    """The daemon's checks of Config.Healthcheck (moby's messages) and of Podman's
    on-failure action."""
    hc = config.get("Healthcheck")
    if hc is not None:
        if not isinstance(hc, dict):
            raise InvalidArgument("Healthcheck must be an object")
        test = hc.get("Test")
        if test is not None and (not isinstance(test, list)
                                 or not all(isinstance(t, str) for t in test)):
            raise InvalidArgument("Healthcheck.Test must be a list of strings")
        if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
            raise InvalidArgument(f"unknown Healthcheck type {test[0]!r} (try CMD, CMD-SHELL"
                                  " or NONE)")
        if test and test[0] in ("CMD", "CMD-SHELL") and len(test) < 2:
            raise InvalidArgument(f"Healthcheck {test[0]} needs a command")
        for key, what in (("Interval", "Interval"), ("Timeout", "Timeout"),
                          ("StartPeriod", "StartPeriod"), ("StartInterval", "StartInterval")):
            value = hc.get(key) or 0
            if not isinstance(value, int):
                raise InvalidArgument(f"Healthcheck.{key} must be an integer (nanoseconds)")
            if value != 0 and value < MIN_DURATION:
                raise InvalidArgument(f"{what} in Healthcheck cannot be less than 1ms")
        retries = hc.get("Retries") or 0
        if not isinstance(retries, int):
            raise InvalidArgument("Healthcheck.Retries must be an integer")
        if retries < 0:
            raise InvalidArgument("Retries in Healthcheck cannot be negative")
    action = config.get(ON_FAILURE_KEY)
    if action not in (None, "") and action not in ON_FAILURE:
        raise InvalidArgument(f'invalid on-failure action "{action}" for health check:'
                              f" supported actions are: {', '.join(ON_FAILURE)}")


def merge(user: dict[str, Any] | None, image: dict[str, Any] | None) -> dict[str, Any] | None:
    """The container's Healthcheck from the user's and the image's, as the daemon
    merges them: what the user left unset (no Test, zero durations) comes from the image."""
    if not user:
        return dict(image) if image else None
    if not image:
        return dict(user)
    out = dict(user)
    if not out.get("Test"):
        out["Test"] = image.get("Test")
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
        if not out.get(key) and image.get(key):
            out[key] = image[key]
    return out


def probe_command(config: dict[str, Any]) -> list[str] | None:
    """The probe's argv, or None when the container has no check (none, NONE, empty)."""
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
        return None
    if test[0] == "CMD":
        return list(test[1:])
    shell = list(config.get("Shell") or ["/bin/sh", "-c"])
    return [*shell, *test[1:]]


def _seconds(config: dict[str, Any], key: str, default: int) -> float:
    value = (config.get("Healthcheck") or {}).get(key) or 0
    return (value or default) / SECOND


def retries(config: dict[str, Any]) -> int:
    return int((config.get("Healthcheck") or {}).get("Retries") or 0) or DEFAULT_RETRIES


# -- state --------------------------------------------------------------------------------
def _state_path(svc: ContainerService, cid: str) -> Path:
    from pathlib import Path

    return Path(svc.path(cid), "health.json")


def read(svc: ContainerService, rec: ContainerRecord) -> dict[str, Any] | None:
    """inspect's State.Health: None for a container without a check, or one never
    started (Docker has no Health then either)."""
    if probe_command(rec.config) is None:
        return None
    try:
        with open(os.path.join(svc.engine.root_dir, "containers", rec.id,
                               "health.json")) as f:
            doc: dict[str, Any] = loads(f.read())
    except (OSError, ValueError):
        return None
    return {"Status": doc.get("Status") or STARTING,
            "FailingStreak": int(doc.get("FailingStreak") or 0),
            "Log": list(doc.get("Log") or [])}


def status(svc: ContainerService, rec: ContainerRecord) -> str:
    """The value `ps --filter health=` matches: starting, healthy, unhealthy or none."""
    state = read(svc, rec)
    return state["Status"] if state else NONE


def status_suffix(svc: ContainerService, rec: ContainerRecord) -> str:
    """What `ps` adds to "Up 5 seconds" of a running container with a check."""
    state = read(svc, rec)
    if state is None:
        return ""
    if state["Status"] == STARTING:
        return " (health: starting)"
    return f" ({state['Status']})"


def check_filter(values: list[str]) -> None:
    for v in values:
        if v not in STATUSES:
            raise InvalidArgument(f"Unrecognised filter value for health: {v}")


class _Locked:
    """The state file under its lock (several checks, a start and an inspect may meet)."""

    def __init__(self, svc: ContainerService, cid: str) -> None:
        self.path = _state_path(svc, cid)
        self.fd = -1
        self.doc: dict[str, Any] = {}

    def __enter__(self) -> _Locked:
        import fcntl

        try:
            self.fd = os.open(self.path.with_name("health.lock"),
                              os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # removed meanwhile (during a probe)
            raise NotFound(f"No such container: {self.path.parent.name}") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            doc: dict[str, Any] = loads(self.path.read_text())
        except (OSError, ValueError):
            doc = {}
        doc.setdefault("Status", STARTING)
        doc.setdefault("FailingStreak", 0)
        doc.setdefault("Log", [])
        self.doc = doc
        return self

    def write(self) -> None:
        tmp = self.path.with_name("health.json.tmp")
        tmp.write_text(dumps(self.doc))
        os.replace(tmp, self.path)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


# -- the timer ----------------------------------------------------------------------------
def _timer_pidfile(svc: ContainerService, cid: str) -> str:
    return f"{svc.run_dir}/{cid}/health-timer.pid"


def start_timer(svc: ContainerService, rec: ContainerRecord, pid: int) -> None:
    """A started container: its health state back to "starting" and its timer running
    (nothing for a container without a check)."""
    if probe_command(rec.config) is None or pid <= 0:
        return
    import subprocess

    with _Locked(svc, rec.id) as state:
        # moby keeps the log of the runs before
        state.doc.update(Status=STARTING, FailingStreak=0)
        state.write()
    c = rec.config
    engine = svc.engine
    from ketch.launcher import self_command

    timer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "healthtimer.py")
    argv = [sys.executable, "-I", "-S", timer, str(pid),
            repr(_seconds(c, "Interval", DEFAULT_INTERVAL)),
            repr(_seconds(c, "StartPeriod", DEFAULT_START_PERIOD)),
            repr(_seconds(c, "StartInterval", DEFAULT_START_INTERVAL)),
            repr(rec.started_at), "--",
            *self_command(), "--root", engine.root_dir, "--run-root",
            engine.run_root_dir, "container", "healthcheck", rec.id]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True, cwd="/")
    except OSError:
        return  # no timer: the container runs, its health stays "starting"
    path = _timer_pidfile(svc, rec.id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    from ketch.procstat import start_time

    with open(path, "w", encoding="ascii") as f:
        f.write(f"{proc.pid} {start_time(proc.pid) or ''}\n")


def stop_timer(svc: ContainerService, cid: str) -> None:
    """The container stopped: its timer goes (it also notices by itself)."""
    import _signal  # (the constants, without signal's enums)

    from ketch.fdio import read_text

    path = _timer_pidfile(svc, cid)
    try:
        pid_s, _, start = read_text(path).strip().partition(" ")
        os.unlink(path)
        pid = int(pid_s)  # (a file cut short by a killed start holds no pid: no timer)
    except (OSError, ValueError):
        return
    from ketch.procstat import alive

    if alive(pid, start or None):
        try:
            os.kill(pid, _signal.SIGTERM)
        except ProcessLookupError:
            pass


# -- one check ----------------------------------------------------------------------------
class _Output:
    """Up to MAX_OUTPUT bytes of the probe's stdout and stderr, as moby keeps them."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.truncated = False

    def write(self, chunk: bytes) -> None:
        room = MAX_OUTPUT - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True

    def text(self) -> str:
        out = self.data.decode("utf-8", "replace")
        return out + "..." if self.truncated else out


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (a shell's children too), found through /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def _run_probe(svc: ContainerService, rec: ContainerRecord, command: list[str],
               timeout: float) -> tuple[int, str]:
    """Run the probe as an exec session; its exit code and output (-1 and moby's
    message when it ran past `timeout` and was killed, or could not be run)."""
    import _signal  # (the constants, without signal's enums)
    import threading

    from ketch.fmt.units import format_duration

    out = _Output()
    fired = threading.Event()
    timers: list[threading.Timer] = []

    def started(pid: int) -> None:
        def kill() -> None:
            fired.set()
            for p in _descendants(pid):
                try:
                    os.kill(p, _signal.SIGKILL)
                except ProcessLookupError:
                    pass

        t = threading.Timer(timeout, kill)
        t.daemon = True
        timers.append(t)
        t.start()

    try:
        eid = svc.exec_create(rec.id, command, stdout=True, stderr=True)
        from ketch.containers import execs

        code = execs.start(svc, eid, stdout=out.write, stderr=out.write, on_started=started)
    except KetchError as e:
        return -1, e.message
    finally:
        for t in timers:
            t.cancel()
    if fired.is_set():
        text = out.text()
        msg = f"Health check exceeded timeout ({format_duration(timeout)})"
        return -1, f"{msg}: {text}" if text else msg
    return (code if code is not None else -1), out.text()


def check(svc: ContainerService, name_or_id: str) -> str:
    """Run the container's check once now and record it (`ketch container healthcheck`,
    run by the timer); the status after it."""
    from ketch.fmt.units import rfc3339nano

    rec = svc.get(name_or_id)
    command = probe_command(rec.config)
    if command is None:
        raise InvalidArgument(f"container {rec.name} has no defined healthcheck")
    if rec.state == "paused":
        return status(svc, rec)  # Docker runs no checks while paused
    if rec.state != "running":
        raise Conflict(f"container {rec.name} is not running")
    c = rec.config
    begun = time.time()
    code, output = _run_probe(svc, rec, command, _seconds(c, "Timeout", DEFAULT_TIMEOUT))
    ended = time.time()
    result = {"Start": rfc3339nano(begun), "End": rfc3339nano(ended), "ExitCode": code,
              "Output": output}
    start_period = _seconds(c, "StartPeriod", DEFAULT_START_PERIOD)
    with _Locked(svc, rec.id) as state:
        doc = state.doc
        current = svc.records.get(rec.id)
        if current is None or current.started_at != rec.started_at or not current.running:
            return doc["Status"]  # stopped or restarted meanwhile: the result is stale
        old = doc["Status"]
        doc["Log"] = (doc["Log"] + [result])[-MAX_LOG:]
        if code == 0:
            doc["FailingStreak"] = 0
            doc["Status"] = HEALTHY
        elif not (old == STARTING and begun - rec.started_at < start_period):
            doc["FailingStreak"] += 1
            if doc["FailingStreak"] >= retries(c):
                doc["Status"] = UNHEALTHY
        state.write()
    new = doc["Status"]
    if new != old:
        svc.event(rec, f"health_status: {new}")
    if new == UNHEALTHY and code != 0:
        _on_failure(svc, rec)
    return new


def _on_failure(svc: ContainerService, rec: ContainerRecord) -> None:
    action = rec.config.get(ON_FAILURE_KEY) or "none"
    if action == "kill":
        svc.kill(rec.id, "KILL")
    elif action == "stop":
        svc.stop(rec.id)
    elif action == "restart":
        # counted in RestartCount, as a restart by the restart policy is
        count = rec.restart_count
        svc.stop(rec.id)
        started = svc.start(rec.id)
        svc.records.update(rec.id, restart_count=count + 1)
        svc.event(started, "restart")
