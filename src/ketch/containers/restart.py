"""Restart policies without a daemon.

Docker's daemon keeps a restart manager per container; ketch has no daemon, so the
policy is applied where the exit is recorded (`Lifecycle.finish`, run by conmon's exit
command or by whoever notices the exit first), and the wait before the restart is a
detached ketch process (`python -m ketch.containers.restart`) that sleeps the backoff
and then starts the container. The record says what is going on:

  state "restarting", restart_count already counted (as Docker counts it when it
  decides), extra["Restarter"] = {pid, start, token, at} for the waiting process.

A `stop`, a `kill` with the stop signal (or SIGKILL), or `rm -f` during the wait cancels
it under the container lock: the token goes, the waiting process is killed (it is
checked by its /proc start time first), and the container is left exited. The
waiting process itself starts the container only if its token is still the record's.

Docker's rules, from its restart manager: the delay starts at 100 ms and doubles with
every restart up to a minute, and starts over when the container ran for 10 s or more;
`on-failure[:N]` restarts on a non-zero exit while fewer than N restarts were made
(N=0: no limit); `unless-stopped` does not restart a container the user stopped or
killed; a kill with SIGKILL or the stop signal (any signal when the container has no
StopSignal) cancels any policy until the next `start`, which also resets the count.

After a reboot nothing is waiting and no monitor runs: `ketch system restart-policies`
(run at boot by the unit `unit_file` prints) starts the containers with `always`, and
those with `unless-stopped` the user did not stop, as Docker's daemon does when it
starts.
"""

from __future__ import annotations

import os
import sys
import time

from ketch.errors import InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService

POLICIES = ("no", "always", "unless-stopped", "on-failure")
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 60.0
RESET_AFTER = 10.0  # seconds of uptime after which the delay starts over

# record.extra keys (internal: not shown by inspect)
MANUALLY_STOPPED = "ManuallyStopped"
CANCELLED = "RestartCancelled"
BACKOFF = "RestartBackoff"
RESTARTER = "Restarter"


# -- the policy -----------------------------------------------------------------------------
def parse_flag(value: str) -> dict[str, Any]:
    """`--restart NAME[:COUNT]` as the docker CLI reads it (the names are checked by
    `validate`, as the daemon does)."""
    if not value:
        return {"Name": "no", "MaximumRetryCount": 0}
    parts = value.split(":")
    if len(parts) > 2:
        raise InvalidArgument("invalid restart policy format")
    count = 0
    if len(parts) == 2:
        try:
            count = int(parts[1], 10)
        except ValueError:
            raise InvalidArgument("maximum retry count must be an integer") from None
    return {"Name": parts[0], "MaximumRetryCount": count}


def validate(hc: dict[str, Any]) -> None:
    """The daemon's checks of HostConfig.RestartPolicy (and its conflict with --rm)."""
    rp = hc.get("RestartPolicy") or {}
    name = rp.get("Name") or ""
    count = rp.get("MaximumRetryCount") or 0
    if not isinstance(count, int):
        raise InvalidArgument("maximum retry count must be an integer")
    # the docker CLI finds the conflict before the daemon looks at the policy's name
    if hc.get("AutoRemove") and name not in ("", "no"):
        raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
    if name in ("always", "unless-stopped", "no"):
        if count != 0:
            raise InvalidArgument(
                f"maximum retry count cannot be used with restart policy '{name}'")
    elif name == "on-failure":
        if count < 0:
            raise InvalidArgument("maximum retry count cannot be negative")
    elif name != "":
        raise InvalidArgument(f"invalid restart policy '{name}'")


def policy(rec: ContainerRecord) -> tuple[str, int]:
    rp = rec.host_config.get("RestartPolicy") or {}
    return (rp.get("Name") or "no", int(rp.get("MaximumRetryCount") or 0))


def next_delay(rec: ContainerRecord, finished_at: float) -> float:
    """The backoff before the next restart: doubled from the last one, or started over
    when the container ran long enough."""
    last = float(rec.extra.get(BACKOFF) or 0)
    if rec.started_at and finished_at - rec.started_at >= RESET_AFTER:
        last = 0
    return min(BACKOFF_MAX, last * 2) if last else BACKOFF_FIRST


def should_restart(rec: ContainerRecord, exit_code: int) -> bool:
    name, limit = policy(rec)
    if name == "no" or rec.extra.get(CANCELLED):
        return False
    if name == "always":
        return True
    if name == "unless-stopped":
        return not rec.extra.get(MANUALLY_STOPPED)
    if name == "on-failure":
        return exit_code != 0 and (limit == 0 or rec.restart_count < limit)
    return False


def cancels(rec: ContainerRecord, signum: int) -> bool:
    """Whether `kill` with this signal cancels the policy (Docker: SIGKILL or the stop
    signal; any signal when the container has no StopSignal of its own)."""
    import _signal

    from ketch.runtime.spec import signal_number

    stop = rec.config.get("StopSignal")
    if not stop or signum == _signal.SIGKILL:
        return True
    try:
        return signal_number(stop) == signum
    except (KetchError, ValueError):
        return True


# -- scheduling and cancelling ------------------------------------------------------------
def restarter_alive(rec: ContainerRecord) -> bool:
    from ketch.procstat import alive

    info = rec.extra.get(RESTARTER) or {}
    return alive(int(info.get("pid") or 0), info.get("start"))


def schedule(svc: ContainerService, rec: ContainerRecord, *, exit_code: int,
             finished_at: float, extra: dict[str, Any]) -> None:
    """Record the container as restarting and leave a detached process to start it
    after the backoff. The caller holds the container lock and has released what the
    exited process held."""
    import subprocess

    delay = next_delay(rec, finished_at)
    token = os.urandom(8).hex()
    at = time.time() + delay
    engine = svc.engine
    # the waiting process is a ketch command (`container restart-wait`): the Engine
    # builds its services there, as in any other ketch process
    from ketch.launcher import self_command

    proc = subprocess.Popen(
        [*self_command(), "--root", engine.root_dir, "--run-root",
         engine.run_root_dir, "container", "restart-wait", rec.id, token, repr(at)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True)
    extra = dict(extra)
    extra[BACKOFF] = delay
    from ketch.procstat import start_time

    extra[RESTARTER] = {"pid": proc.pid, "start": start_time(proc.pid), "token": token,
                        "at": at}
    svc.records.update(rec.id, state="restarting", exit_code=exit_code,
                       finished_at=finished_at, pid=0,
                       restart_count=rec.restart_count + 1, extra=extra)


def _kill_restarter(info: dict[str, Any] | None) -> None:
    """End the waiting process, and return once it has: `rm -f` that returned with it
    still exiting left it listed (a user's ps, the leak check of a test)."""
    from ketch.procstat import kill_and_wait

    if info:
        kill_and_wait(int(info.get("pid") or 0), info.get("start"))


def suppress(svc: ContainerService, rec: ContainerRecord, *, cancel: bool) -> bool:
    """A user's stop or kill (the caller holds the container lock): remembered until
    the next `start`; `cancel` also calls off the policy, and a wait in progress ends
    with the container exited. True when that happened."""
    extra = dict(rec.extra)
    extra[MANUALLY_STOPPED] = True
    if cancel:
        extra[CANCELLED] = True
    fields: dict[str, Any] = {"extra": extra}
    stopped = False
    if cancel and rec.state == "restarting":
        _kill_restarter(extra.pop(RESTARTER, None))
        fields["state"] = "exited"
        stopped = True
    svc.records.update(rec.id, **fields)
    return stopped


def settle_if_orphaned(svc: ContainerService, rec: ContainerRecord, *,
                       locked: bool = False) -> ContainerRecord:
    """A record left "restarting" with nobody waiting (the process was killed, or the
    host rebooted) is exited. `locked`: the caller holds the container's lock.

    The decision is made again under the lock on a fresh read: a waiting process that
    has just started the container records "running" and then exits, so a reader
    holding the "restarting" record read before that would otherwise find its process
    gone and write "exited" over the running container, which then nobody finishes
    and no policy restarts."""
    if rec.state != "restarting" or restarter_alive(rec):
        return rec
    if not locked:
        with svc.lock(rec.id):
            cur = svc.records.get(rec.id)
            return rec if cur is None else settle_if_orphaned(svc, cur, locked=True)
    extra = dict(rec.extra)
    extra.pop(RESTARTER, None)
    svc.records.update(rec.id, state="exited", extra=extra)
    return svc.records.get(rec.id) or rec


def started_fields(rec: ContainerRecord, token: str | None) -> dict[str, Any]:
    """What a successful start changes here: a policy restart keeps the count and the
    backoff; the user's start resets both and re-arms the policy."""
    extra = dict(rec.extra)
    extra.pop(RESTARTER, None)
    extra.pop("OOMKilled", None)  # of the run before: Docker clears it at every start
    if token is not None:
        return {"extra": extra}
    for key in (MANUALLY_STOPPED, CANCELLED, BACKOFF):
        extra.pop(key, None)
    return {"extra": extra, "restart_count": 0}


# -- after a reboot ----------------------------------------------------------------------
def restore(svc: ContainerService) -> list[str]:
    """Start what the policies want running after a reboot: `always`, and `unless-stopped`
    unless the user stopped it. Containers already running (or waiting for a restart)
    are left alone, so running it twice starts nothing twice. The names started."""
    started: list[str] = []
    for rec in svc.records.all():
        name, _ = policy(rec)
        if name not in ("always", "unless-stopped") or not rec.started_at:
            continue  # Docker also leaves containers that never ran
        with svc.lock(rec.id):
            cur = svc.records.get(rec.id)
            if cur is None:
                continue
            if cur.state in ("running", "paused"):
                if svc.lifecycle.process_alive(cur):
                    continue
                svc.lifecycle.finish(cur.id, locked=True, apply_policy=False)
            cur = settle_if_orphaned(svc, svc.records.get(rec.id) or cur, locked=True)
            if cur.state != "exited":
                continue
            if name == "unless-stopped" and cur.extra.get(MANUALLY_STOPPED):
                continue
        try:
            svc.start(rec.id)
        except KetchError as e:
            sys.stderr.write(f"Error: {rec.name}: {e}\n")
            continue
        started.append(rec.name)
    return started


def unit_file(root: str, run_root: str) -> str:
    """A systemd unit that runs `restore` at boot (as podman-restart.service does)."""
    import shlex
    import shutil

    exe = shutil.which("ketch")
    if exe:
        cmd = [exe]
    else:
        from ketch.launcher import self_command

        cmd = self_command()
    cmd += ["--root", root, "--run-root", run_root, "system", "restart-policies"]
    return ("[Unit]\n"
            "Description=ketch: start containers with restart policy always or"
            " unless-stopped\n"
            "Wants=network-online.target\n"
            "After=network-online.target\n"
            "StartLimitIntervalSec=0\n"
            "\n"
            "[Service]\n"
            "Type=oneshot\n"
            "RemainAfterExit=true\n"
            f"ExecStart={shlex.join(cmd)}\n"
            "\n"
            "[Install]\n"
            "WantedBy=default.target\n")


# -- the waiting process ----------------------------------------------------------------------
def wait_and_start(svc: ContainerService, cid: str, token: str, at: float) -> int:
    """The process `schedule` leaves (`ketch container restart-wait ID TOKEN AT`):
    sleep until AT, then start the container if TOKEN is still its record's."""
    time.sleep(max(0.0, at - time.time()))
    try:
        svc.lifecycle.start(cid, policy_token=token)
    except BaseException as e:
        # could not start: the container stays exited, as Docker leaves it
        with svc.lock(cid):
            rec = svc.records.get(cid)
            if rec is not None and rec.state == "restarting" and (
                    (rec.extra.get(RESTARTER) or {}).get("token") == token):
                extra = dict(rec.extra)
                extra.pop(RESTARTER, None)
                svc.records.update(cid, state="exited", extra=extra,
                                   error=str(e) or rec.error)
        return 1
    return 0
