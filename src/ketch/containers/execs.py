"""Exec sessions: `ketch exec` and the Engine API's /containers/{id}/exec, /exec/{id}/...

A session is created with its settings (command, env, user, TTY, which streams), started
once with streams the caller supplies (output sinks, an input fd), resized while it runs
and inspected during and after its run. Its record is a small JSON file in the
container's run directory (`exec/<id>.json`), so every ketch process sees it: the service
that created it, the one that inspects it, a CLI. The records go with the container's
runtime state when it stops, as Docker forgets a container's exec sessions then.

Cheap to import (no pathlib, contextlib or json of its own): every `inspect` of a running
container asks `may_be_running` whether the exec sessions need a look. Paths are text
(a record `<dir>/<id>.json`, beside it the session's `<id>/`, `<id>.lock`, `<id>.started`):
an `exec` loads no pathlib.
"""

from __future__ import annotations

import os

from ketch.errors import Conflict, InvalidArgument, KetchError, NotFound
from ketch.fastjson import dumps, loads
from ketch.fdio import read_text, remove_file
from ketch.ids import is_full_id
from ketch.runtime.conmonfiles import EXEC_DIR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService
    from ketch.runtime.monitor import InputSource, OutputSink

def _records(d: str) -> list[str]:
    """The session records in an exec directory (no glob: fnmatch and re at every exec)."""
    try:
        return [f"{d}/{name}" for name in os.listdir(d) if name.endswith(".json")]
    except OSError:
        return []


def _dir(svc: ContainerService, cid: str) -> str:
    return f"{svc.run_dir}/{cid}/{EXEC_DIR}"  # the monitor's exec root (ContainerPaths.exec_root)


def _base(path: str) -> str:
    """A record's path without `.json`: the session's directory, and its files' stem."""
    return path[:-len(".json")]


def _read(path: str) -> dict[str, Any]:
    doc: dict[str, Any] = loads(read_text(path))
    return doc


def _write(path: str, doc: dict[str, Any]) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(dumps(doc))
    os.replace(path + ".tmp", path)


def _update(path: str, *, if_running: bool = False, **fields: Any) -> dict[str, Any]:
    """Change some fields of a record under its lock (a start and a resize may write at
    once, from different processes); the record as written, or {} when the container
    was removed meanwhile (its exec records went with it: an exec that outlived a
    `rm -f`, e.g. a CRI ExecSync past its timeout, has nothing left to record), or,
    with `if_running`, when the record no longer says the session runs."""
    import fcntl

    try:
        fd = os.open(_base(path) + ".lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        return {}
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        doc = _read(path)
        if if_running and not doc["Running"]:
            return {}
        doc.update(fields)
        _write(path, doc)
        return doc
    except FileNotFoundError:
        return {}
    finally:
        os.close(fd)


def _end(svc: ContainerService, path: str, code: int) -> None:
    """Record that a running session ended with `code`, and journal its exec_die, once:
    whoever records the end first (the attached `exec`, the monitor's exit command of a
    detached one, or a look that finds it over) journals it."""
    doc = _update(path, if_running=True, Running=False, ExitCode=code)
    rec = svc.records.get(doc["ContainerID"]) if doc else None
    if rec is not None:
        svc.event(rec, "exec_die", execID=doc["ID"], exitCode=code)


def _check_running(rec: ContainerRecord) -> None:
    if rec.state == "paused":
        raise Conflict(f"Container {rec.name} is paused, unpause the container before exec")
    if rec.state == "restarting":
        raise Conflict(f"Container {rec.id} is restarting, wait until the container is"
                       " running")
    if rec.state != "running":
        raise Conflict(f"Container {rec.id} is not running")


def create(svc: ContainerService, name_or_id: str, command: list[str], *,
           env: list[str] | None = None, user: str | None = None,
           workdir: str | None = None, tty: bool = False, stdin: bool = False,
           stdout: bool = True, stderr: bool = True, privileged: bool = False,
           detach_keys: str | None = None,
           console_size: tuple[int, int] | None = None) -> str:
    """Record an exec session in a running container; its ID. Recorded under the
    container's lock: a session recorded after an `rm -f` had taken the container
    (and its run directory) would make the directory again, and stay there."""
    from ketch.runtime.monitor import parse_detach_keys

    with svc.locked(name_or_id) as rec:
        _check_running(rec)
        if not command:
            raise InvalidArgument("No exec command specified")
        if detach_keys:
            parse_detach_keys(detach_keys)  # an invalid spec is refused here, not at start
        if workdir and not workdir.startswith("/"):
            raise InvalidArgument(f"the working directory '{workdir}' is invalid, it needs"
                                  " to be an absolute path")
        eid = os.urandom(32).hex()
        doc = {
            "ID": eid, "ContainerID": rec.id, "StartedAt": rec.started_at,
            "Cmd": list(command), "Env": list(env or []), "User": user or "",
            "WorkingDir": workdir or "", "Tty": tty, "AttachStdin": stdin,
            "AttachStdout": stdout, "AttachStderr": stderr, "Privileged": privileged,
            "DetachKeys": detach_keys or "",
            "ConsoleSize": list(console_size) if console_size else None,
            "Started": False, "Running": False, "Pid": 0, "ExitCode": None,
        }
        d = _dir(svc, rec.id)
        os.makedirs(d, exist_ok=True)
        _write(f"{d}/{eid}.json", doc)
        _prune(svc, d)
    svc.event(rec, "exec_create: " + " ".join(command), execID=eid)
    return eid


KEEP_FINISHED = 256
"""Finished sessions kept per running container (for their inspect); older ones go."""


def _prune(svc: ContainerService, d: str) -> None:
    paths = _records(d)
    if len(paths) <= KEEP_FINISHED:
        return
    import shutil

    try:
        paths.sort(key=lambda p: os.stat(p).st_mtime)
    except OSError:
        return
    finished = []
    for path in paths:
        try:
            doc = _settle(svc, path, _read(path))
        except (OSError, ValueError):
            continue
        if not doc["Running"] and doc["ExitCode"] is not None:
            finished.append(path)
    for path in finished[:max(0, len(finished) - KEEP_FINISHED)]:
        for extra in (path, _base(path) + ".lock", _base(path) + ".started"):
            remove_file(extra)
        shutil.rmtree(_base(path), ignore_errors=True)


def _find(svc: ContainerService, eid: str) -> tuple[str, dict[str, Any]]:
    if is_full_id(eid):
        try:
            containers = os.listdir(svc.run_path())
        except OSError:
            containers = []
        for cid in containers:
            path = f"{_dir(svc, cid)}/{eid}.json"
            try:
                return path, _read(path)
            except (OSError, ValueError):
                continue
    raise NotFound(f"No such exec instance: {eid}")


def _settle(svc: ContainerService, path: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A session started detached (or left with the detach keys) ran on without anyone
    recording its end: read its exit from the monitor's files."""
    if not doc["Running"]:
        return doc
    from ketch.runtime.monitor import process_alive, read_int

    session_dir = _base(path)
    code = read_int(f"{session_dir}/exit")
    if code is None:
        if doc["Pid"] and process_alive(doc["Pid"]):
            return doc
        # its process has ended, but conmon writes the exit file only after reaping it:
        # while conmon runs, the code is on its way (recording -1 now would lose it)
        conmon = read_int(f"{session_dir}/conmon.pid")
        if conmon is not None and process_alive(conmon):
            return doc
        code = read_int(f"{session_dir}/exit")  # (conmon wrote it, and left, meanwhile)
    doc["Running"] = False
    doc["ExitCode"] = code if code is not None else -1
    # recorded, as a container's exit is finished by whoever finds it: the next look
    # (every `inspect` of the container) then reads the end instead of working it out
    _end(svc, path, doc["ExitCode"])
    return doc


def finish(svc: ContainerService, eid: str, container: str) -> None:
    """The monitor's exit command for a detached session of `container`: record its end
    (and journal its exec_die, as Docker's daemon does when the process exits) unless a
    look at it did already. Nothing for a container or session that is gone."""
    try:
        cid = svc.get(container).id
    except NotFound:
        return  # the container was removed meanwhile, its sessions' records with it
    path = f"{_dir(svc, cid)}/{eid}.json"
    try:
        doc = _read(path) if is_full_id(eid) else None
    except (OSError, ValueError):
        doc = None
    if doc is not None:
        _settle(svc, path, doc)


def inspect(svc: ContainerService, eid: str) -> dict[str, Any]:
    """Docker's ExecInspectResponse."""
    path, doc = _find(svc, eid)
    doc = _settle(svc, path, doc)
    cmd = doc["Cmd"]
    return {
        "CanRemove": False, "ContainerID": doc["ContainerID"],
        "DetachKeys": doc["DetachKeys"], "ExitCode": doc["ExitCode"], "ID": doc["ID"],
        "OpenStderr": doc["AttachStderr"], "OpenStdin": doc["AttachStdin"],
        "OpenStdout": doc["AttachStdout"], "Running": doc["Running"], "Pid": doc["Pid"],
        "ProcessConfig": {"arguments": cmd[1:], "entrypoint": cmd[0],
                          "privileged": doc["Privileged"], "tty": doc["Tty"],
                          "user": doc["User"]},
    }


def running_ids(svc: ContainerService, cid: str) -> list[str]:
    """The IDs of the container's exec sessions still running (inspect's ExecIDs)."""
    out = []
    for path in sorted(_records(_dir(svc, cid))):
        try:
            if _settle(svc, path, _read(path))["Running"]:
                out.append(os.path.basename(_base(path)))
        except (OSError, ValueError):
            pass
    return out


def may_be_running(svc: ContainerService, cid: str) -> bool:
    """Whether a session of the container may still run: False when none is recorded
    (the usual case) or every record says it ended, read as text, without a Path; True
    sends the caller to `running_ids`, which settles the ones that say they run."""
    where = f"{svc.run_path(cid)}/{EXEC_DIR}"
    try:
        names = os.listdir(where)
    except OSError:
        return False
    for name in names:
        if name.endswith(".json"):
            try:
                with open(f"{where}/{name}", "rb") as f:
                    if not loads(f.read()).get("Running"):
                        continue
            except (OSError, ValueError, AttributeError):
                pass  # (unreadable: running_ids reads it again and decides)
            return True
    return False


def start(svc: ContainerService, eid: str, *, stdout: OutputSink | None = None,
          stderr: OutputSink | None = None, stdin: InputSource | None = None,
          detach: bool = False, on_started: Callable[[int], None] | None = None,
          on_streaming: Callable[[Callable[[], None]], Any] | None = None) -> int | None:
    """Run a created session once. Attached: copy its output to the sinks (those its
    settings attach) and `stdin` in (when it attaches stdin) until it exits; returns its
    exit code. Detached, or left with the detach keys: returns None once it runs. A
    command that cannot start raises ContainerStartError (126/127). `on_streaming` is
    handed a function that ends an attached session's streaming from another thread (its
    client is gone): the process runs on and the call returns None, as after the detach
    keys; its end is recorded by the next look at the session."""
    from ketch.runtime.monitor import (
        DEFAULT_DETACH_KEYS,
        ContainerStartError,
        parse_detach_keys,
        resize_tty,
    )
    from ketch.runtime.spec import exec_process
    from ketch.runtime.users import resolve_user

    path, doc = _find(svc, eid)
    rec = svc.get(doc["ContainerID"])
    _check_running(rec)
    if rec.started_at != doc["StartedAt"]:
        raise NotFound(f"No such exec instance: {eid}")  # of an earlier run
    try:  # one start per session, whoever asks
        os.close(os.open(_base(path) + ".started", os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                         0o600))
    except FileExistsError:
        doc = _settle(svc, path, doc)
        if doc["Running"] or doc["ExitCode"] is None:
            raise Conflict(f"Error: Exec command {eid} is already running") from None
        raise Conflict(f"Error: Exec command {eid} has already run") from None
    paths = svc.lifecycle.paths(rec)
    try:
        base = loads(read_text(paths.config))
        u = resolve_user(f"{svc.path(rec.id)}/merged", doc["User"]) if doc["User"] else None
        proc = exec_process(base, doc["Cmd"], env=doc["Env"], cwd=doc["WorkingDir"] or None,
                            user=u, terminal=doc["Tty"],
                            privileged=doc["Privileged"] or None)
    except BaseException as e:
        _update(path, Started=True, ExitCode=126)
        if isinstance(e, KetchError):
            # as dockerd: a session that cannot start (an unknown user) exits 126, where
            # errors before it (no such container, not running, paused) are the CLI's 1
            e.exit_code, e.exit_code_is_specific = 126, True
        raise
    _update(path, Started=True)
    svc.event(rec, "exec_start: " + " ".join(doc["Cmd"]), execID=eid)

    def started(pid: int) -> None:
        size = _update(path, Running=True, Pid=pid).get("ConsoleSize")
        if doc["Tty"] and size:
            try:
                resize_tty(_base(path), int(size[0]), int(size[1]))
            except Exception:  # noqa: BLE001 (a size it cannot take: the TTY keeps its own)
                pass
        if on_started is not None:
            on_started(pid)

    # as dockerd's attach copier: the detach keys are looked for only on a terminal; a
    # plain stdin (`exec -i ... < dump.sql`) is copied as it is, whatever bytes it holds
    keys = None
    if doc["Tty"]:
        keys = parse_detach_keys(doc["DetachKeys"]) if doc["DetachKeys"] else DEFAULT_DETACH_KEYS
    mon = svc.lifecycle.monitor(rec)
    exit_command = None
    if detach:  # nobody waits for its end: the monitor has it recorded
        from ketch.launcher import self_command

        exit_command = [*self_command(), "--root", str(svc.engine.root), "--run-root",
                        str(svc.engine.run_root), "container", "cleanup", "--exec", eid,
                        rec.id]
    try:
        res = mon.exec_process(
            paths, proc, exec_id=eid,
            stdout=stdout if doc["AttachStdout"] else None,
            stderr=stderr if doc["AttachStderr"] else None,
            stdin=stdin if doc["AttachStdin"] and not detach else None,
            detach=detach, detach_keys=keys, on_started=started, exit_command=exit_command,
            on_streaming=on_streaming)
    except ContainerStartError as e:
        # dockerd records 126 for every session that could not start, a command not
        # found too (the 127 its runtime error maps to is overwritten), and docker exec
        # exits with that: unlike run's 127, an exec has no "not found" code
        e.exit_code = 126
        _update(path, Running=False, ExitCode=e.exit_code)
        svc.event(rec, "exec_die", execID=eid, exitCode=e.exit_code)
        e.exit_code_is_specific = True
        raise
    except BaseException:
        if not _find(svc, eid)[1]["Running"]:
            _update(path, ExitCode=126)
        raise
    if res.detached or res.exit_code is None:
        return None
    _end(svc, path, res.exit_code)
    return res.exit_code


def resize(svc: ContainerService, eid: str, height: int, width: int) -> None:
    """Resize a session's TTY (remembered for its start when it is not running yet)."""
    from ketch.runtime.monitor import resize_tty

    if not (0 <= height <= 1000 and 0 <= width <= 1000):
        raise InvalidArgument(f"invalid terminal size {height}x{width}")
    path, doc = _find(svc, eid)
    if not doc["Tty"]:
        return
    doc = _update(path, ConsoleSize=[height, width])  # for a start still to come
    if not doc.get("Running"):
        return
    resize_tty(_base(path), height, width)
