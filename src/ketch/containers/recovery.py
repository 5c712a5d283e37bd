"""Crash recovery of the container service: what a killed `run`/`start`, `commit` or `rm`
left is undone or finished by the next ketch command (Engine.recover hands the service
the intents whose owner died; see ketch.store.intents). Every handler runs under the
container's lock and is idempotent: a recovery that is killed itself is redone.
"""

from __future__ import annotations

import os
import signal as _signal
import time

from ketch.containers.rootfs import unmount
from ketch.errors import KetchError
from ketch.fdio import read_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService
def recover(svc: ContainerService, kind: str, cid: str, data: dict[str, Any]) -> bool:
    """Finish or undo a container operation whose process was killed."""
    handler = {"start": _recover_start, "pause": _recover_pause,
               "remove": _recover_remove}.get(kind)
    if handler is None:
        return True  # an intent of a newer ketch: nothing this one knows to do
    with svc.lock(cid):
        handler(svc, cid, data)
    return True


def _recover_start(svc: ContainerService, cid: str, data: dict[str, Any]) -> None:
    """A start killed before the record said "running": undo it (the container stays
    "Created", or goes with --rm), whatever step it reached."""
    rec = svc.records.get(cid)
    if rec is None:
        _remove_leftovers(svc, cid)
        return
    if rec.state in ("running", "paused"):
        return  # killed after the start was recorded: it is done
    # (a policy restart killed half-way stays "restarting": its resources go here, the
    # restart policy starts it again)
    _settle_runtime(svc, rec)
    svc.lifecycle.release_resources(rec)
    svc.lifecycle.remove_if_auto(rec)


def _settle_runtime(svc: ContainerService, rec: ContainerRecord, timeout: float = 10
                    ) -> None:
    """Remove the runtime's container while conmon may still be creating it: delete
    until no runtime state is left and conmon is gone or has recorded the exit."""
    from ketch.runtime.monitor import process_alive as pid_alive

    mon = svc.lifecycle.monitor(rec)
    p = svc.lifecycle.paths(rec)
    deadline = time.monotonic() + timeout
    while True:
        if mon.runtime.has_state(rec.id):
            try:
                mon.runtime.delete(rec.id, force=True)
            except KetchError:
                pass
        try:
            conmon = int(read_text(p.conmon_pidfile).strip() or 0)
        except (OSError, ValueError):
            conmon = 0
        conmon_busy = bool(conmon) and pid_alive(conmon or 0) and (
            mon.exit_status(p) is None)
        if not conmon_busy and not mon.runtime.has_state(rec.id):
            return
        if time.monotonic() > deadline:
            if conmon:
                try:
                    os.kill(conmon, _signal.SIGKILL)
                except OSError:
                    pass
            return
        time.sleep(0.05)


def _recover_pause(svc: ContainerService, cid: str, data: dict[str, Any]) -> None:
    """`commit` pauses the container while it copies the upper dir; killed, it would
    leave the container frozen for good: thaw it."""
    rec = svc.records.get(cid)
    if rec is None or rec.state not in ("running", "paused"):
        return
    mon = svc.lifecycle.monitor(rec)
    state = mon.runtime.state(cid) if mon.runtime.has_state(cid) else None
    if state is not None and state.status == "paused":
        mon.runtime.resume(cid)
    if state is not None and rec.state == "paused":
        svc.records.update(cid, state="running")


def _recover_remove(svc: ContainerService, cid: str, data: dict[str, Any]) -> None:
    """`rm` was asked for and killed half-way: finish it (what it released is released
    again harmlessly, what it did not is released now)."""
    rec = svc.records.get(cid)
    if rec is None:
        _remove_leftovers(svc, cid)
        return
    if rec.running:
        svc.lifecycle.kill_now(rec)
        svc.lifecycle.finish(cid, locked=True, apply_policy=False)
        rec = svc.records.get(cid)
        if rec is None:
            return
    svc._delete(rec, volumes=bool(data.get("volumes")))


def _remove_leftovers(svc: ContainerService, cid: str) -> None:
    """The record is gone: nothing of the container may stay (runtime, network, mount,
    directories)."""
    from ketch.runtime.oci import OCIRuntime
    from ketch.store.trash import delete_tree

    for name in ("runc", "crun"):
        rt = OCIRuntime(name, svc.engine.run_root / name)
        if rt.has_state(cid):
            try:
                rt.delete(cid, force=True)
            except KetchError:
                pass
    try:
        svc.engine.networks.teardown(cid)
    except KetchError:
        pass
    unmount(f"{svc.path(cid)}/merged")
    delete_tree(svc.path(cid))
    delete_tree(f"{svc.run_dir}/{cid}")
