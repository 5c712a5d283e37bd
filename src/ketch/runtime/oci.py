"""Driver for an OCI runtime binary (runc, or crun) behind ketch's own state root.

Every call passes `--root <state_root>` so ketch's containers never mix with Docker's,
Podman's or a bare `runc list`. Failures raise RuntimeFailure carrying the runtime's
own message, reduced to one readable line.

Lean at import (`pause`, `unpause` and `top` load little more than this): the runtime
runs through ketch.runtime.spawn rather than `subprocess`, signals come from `_signal`
(as in ketch.runtime.spec), and `json` and `re` are imported by the calls that read a
document or explain an error.
"""

from __future__ import annotations

import _signal
import builtins
import os

from ketch.errors import InvalidArgument, RuntimeFailure
from ketch.fastjson import loads
from ketch.runtime import spawn
from ketch.runtime import which as which  # (its home; here for the driver's callers)
from ketch.runtime.spec import signal_number
from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import Any


SUPPORTED_RUNTIMES = ("runc", "crun")

# runc (logrus text format): time="..." level=error msg="container \"x\" does not exist"
_LOGFMT_MSG = r'level=(?:error|fatal|warning)\s+msg="((?:[^"\\]|\\.)*)"'


def _unquote_go(text: str) -> str:
    import json

    try:
        return json.loads(f'"{text}"')
    except ValueError:
        return text.replace('\\"', '"')


def runtime_error_message(output: str | bytes) -> str:
    """The useful line of a runtime's stderr: logrus `msg="..."`, a JSON log record's
    `msg`, or the last non-empty line; crun's `crun: ` prefix is kept off."""
    import json
    import re

    if isinstance(output, bytes):
        output = output.decode("utf-8", errors="replace")
    messages = [_unquote_go(m) for m in re.findall(_LOGFMT_MSG, output)]  # cached by re
    if not messages:
        for line in output.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict) and record.get("msg"):
                    messages.append(str(record["msg"]))
                    continue
            if line:
                messages.append(line)
    if not messages:
        return "unknown error from the OCI runtime"
    message = messages[-1]
    for prefix in ("crun: ", "Error: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return " ".join(message.split())


# (patterns, compiled by `re`'s cache when an error is explained: not at every import)
_CGROUP_WRITE = (
    r'failed to write "(?P<value>[^"]*)"(?: to "[^"]*")?: (?:write|open) '
    r'/sys/fs/cgroup/(?:[^/]+/)*?(?P<file>[a-z_]+\.[a-z_.]+): (?P<why>.+)$')
_SYSCTL = r"(?P<op>open|write) /proc/sys/(?P<key>\S+): (?P<why>.+)$"
_CGROUP_FLAGS = {"cpuset.cpus": "--cpuset-cpus", "cpuset.mems": "--cpuset-mems",
                 "cpu.cfs_quota_us": "--cpu-quota", "cpu.cfs_period_us": "--cpu-period",
                 "cpu.shares": "--cpu-shares", "memory.limit_in_bytes": "--memory",
                 "memory.memsw.limit_in_bytes": "--memory-swap",
                 "memory.swappiness": "--memory-swappiness", "blkio.weight": "--blkio-weight",
                 "pids.max": "--pids-limit"}


def _host_list(name: str) -> str:
    try:
        with open(f"/sys/devices/system/{name}/online") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def explain_runtime_error(message: str) -> str:
    """The runtime's text for a container it could not create, as one line a user can
    act on when ketch recognises the cause (a cgroup value or sysctl the kernel
    refused); runc's text otherwise."""
    import re

    m = re.search(_CGROUP_WRITE, message)
    if m:
        value, file, why = m["value"], m["file"], m["why"]
        if file == "cpuset.cpus":
            return (f"Requested CPUs are not available - requested {value}, available:"
                    f" {_host_list('cpu')}")
        if file == "cpuset.mems":
            return (f"Requested memory nodes are not available - requested {value},"
                    f" available: {_host_list('node')}")
        flag = _CGROUP_FLAGS.get(file)
        what = f"{flag} {value}" if flag else f"{file} = {value}"
        return f"the kernel refused {what}: {why}"
    m = re.search(_SYSCTL, message)
    if m:
        key = m["key"].replace("/", ".")
        if m["op"] == "open" and "no such file" in m["why"]:
            return f"invalid sysctl {key}: the kernel has no such setting"
        return f"the kernel refused sysctl {key}: {m['why']}"
    return message


def _is_missing(message: str, state_root: str) -> bool:
    """Whether the runtime failed because it has no state for the container: runc says
    "container ... does not exist", crun fails to open `<root>/<id>/status`."""
    lowered = message.lower()
    if "container" in lowered and ("does not exist" in lowered or "not found" in lowered):
        return True
    return state_root in message and "no such file or directory" in lowered


def _remove_cgroup(path: str) -> bool:
    """Remove a cgroup directory and the cgroups below it (a cgroup's own files go with
    it); whether it is gone. (runc's RemovePath.)"""
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        pass
    try:
        with os.scandir(path) as entries:
            below = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not all(_remove_cgroup(p) for p in below):
        return False
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def _done() -> None:
    return None


@value(frozen=True)
class _RuncInit:
    """What runc's state.json says of a container's init: its pid and start time
    (field 22 of /proc/PID/stat, in clock ticks), whether it has a PID namespace of its
    own (not joined: the kernel then takes the namespace's other processes with it), and
    the whole document."""

    pid: int
    start: int
    own_pidns: bool
    state: dict[str, Any]

    def stat(self) -> tuple[int, bytes] | None:
        """(start time, state letter) of the process that has the init's pid now, None
        when there is none; OSError or ValueError when /proc cannot say."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except FileNotFoundError:
            return None
        try:
            return int(fields[19]), fields[0]
        except IndexError as e:
            raise ValueError(f"/proc/{self.pid}/stat: {e}") from e

    def is_running(self) -> bool:
        """Whether the init is the process with its pid and still runs (not a zombie)."""
        now = self.stat()
        return now is not None and now[0] == self.start and now[1] != b"Z"


class ContainerMissing(RuntimeFailure):
    """The runtime has no state for this container ID."""


@value(frozen=True)
class RuntimeState:
    """`runc state` output: status is created, running, paused or stopped."""

    id: str
    pid: int
    status: str
    bundle: str
    created: str
    annotations: dict[str, str]

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RuntimeState:
        return cls(id=doc.get("id", ""), pid=int(doc.get("pid") or 0),
                   status=doc.get("status", ""), bundle=doc.get("bundle", ""),
                   created=doc.get("created", ""),
                   annotations=dict(doc.get("annotations") or {}))


class OCIRuntime:
    """One OCI runtime binary with a private state root."""

    def __init__(self, name: str = "runc", state_root: Path | str = "/run/ketch/runc",
                 path: str | None = None) -> None:
        base = os.path.basename(name)
        if path is None and base not in SUPPORTED_RUNTIMES and not os.path.isabs(name):
            raise InvalidArgument(
                f"unknown OCI runtime {name!r}: choose one of {', '.join(SUPPORTED_RUNTIMES)}")
        found = path or (name if os.path.isabs(name) else which(name))
        if not found:
            raise RuntimeFailure(f"OCI runtime {name} is not installed (not found in $PATH)")
        self.name = base
        self.path = found
        self.state_root = os.fspath(state_root)

    def __repr__(self) -> str:
        return f"OCIRuntime({self.name!r}, state_root={self.state_root!r})"

    @property
    def global_args(self) -> list[str]:
        """Flags that go before the subcommand (also handed to conmon)."""
        return ["--root", self.state_root]

    def command(self, *args: str) -> list[str]:
        return [self.path, *self.global_args, *args]

    def _run(self, *args: str, input: bytes | None = None, timeout: float = 60,
             what: str | None = None) -> bytes:
        """Run `<runtime> args` to its end; its stdout. RuntimeFailure (ContainerMissing
        for a container it has no state for) when it fails or outlives `timeout`."""
        os.makedirs(self.state_root, mode=0o700, exist_ok=True)
        try:
            code, out, err = spawn.run(self.command(*args), input=input, timeout=timeout)
        except spawn.SpawnTimeout as e:
            raise RuntimeFailure(f"{self.name} {args[0]} timed out after {timeout:.0f}s") from e
        self._check(code, out, err, args, what)
        return out

    def _check(self, code: int, out: bytes, err: bytes, args: Sequence[str],
               what: str | None = None) -> None:
        if code != 0:
            message = runtime_error_message(err or out)
            error_cls = ContainerMissing if _is_missing(message, self.state_root) else RuntimeFailure
            raise error_cls(f"{self.name} {what or args[0]}: {message}")

    def _begin(self, *args: str, timeout: float = 60) -> Callable[[], None]:
        """Launch `<runtime> args` and return at once; the returned function waits for
        it and raises as `_run` would. Lets a caller overlap the runtime's work (a Go
        binary's start-up alone costs runc ~10 ms) with its own."""
        os.makedirs(self.state_root, mode=0o700, exist_ok=True)
        try:
            child = spawn.Child(self.command(*args))
        except OSError as e:
            raise RuntimeFailure(f"cannot run {self.name}: {e.strerror}") from e

        def finish() -> None:
            try:
                code, out, err = child.communicate(timeout)
            except spawn.SpawnTimeout as e:
                raise RuntimeFailure(
                    f"{self.name} {args[0]} timed out after {timeout:.0f}s") from e
            self._check(code, out, err, args)

        return finish

    # --- lifecycle ----------------------------------------------------------------

    def create(self, container_id: str, bundle: Path, *, pid_file: Path | None = None,
               console_socket: Path | None = None) -> None:
        args = ["create", "--bundle", str(bundle)]
        if pid_file is not None:
            args += ["--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        self._run(*args, container_id)

    def start(self, container_id: str) -> None:
        """Let a created container's process run (`start_init`, or `<runtime> start`)."""
        if self.name == "runc" and self.start_init(container_id):
            return
        self._run("start", container_id)

    def start_init(self, container_id: str, timeout: float = 60) -> bool:
        """Let a created container's process run from here, as `runc start` does, saving
        its process (a Go start-up, ~5 ms of every container start): `runc create` leaves
        the container's init blocked opening the FIFO `exec.fifo` in the container's
        state directory; `runc start` opens it, reads the byte the init writes, waits for
        the end of the stream (the init's exec closes it) and removes the FIFO, after
        which runc reports the container running. Here the FIFO is removed as soon as
        the byte is read. Done for runc when its state names the init (pid and start
        time, checked through a pidfd as `kill_init` does) and no hooks. False when it
        cannot be done here, before anything was read: the caller runs `start`, which
        also gives runc's error (the init died before its start, the container is not in
        the created state). RuntimeFailure when the init writes nothing in `timeout`
        seconds (as `runc start` run through `_run` would time out)."""
        init = self._runc_init(container_id)
        if init is None or init.state["config"].get("hooks"):
            return False
        import select

        where = f"{self.state_root}/{container_id}"
        try:
            pidfd = os.pidfd_open(init.pid)
        except OSError:
            return False
        got = b""
        try:
            try:
                now = init.stat()
                if now is None or now[0] != init.start:  # another process now
                    return False
                # (non-blocking: an open for reading of a FIFO nobody writes would wait
                # for good if the init died before it opened its end)
                fifo = os.open(f"{where}/exec.fifo",
                               os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except (OSError, ValueError):
                return False
            try:
                poller = select.poll()
                poller.register(fifo, select.POLLIN)
                poller.register(pidfd, select.POLLIN)
                import time

                deadline = time.monotonic() + timeout
                while True:
                    left = deadline - time.monotonic()
                    ready = dict(poller.poll(max(0, int(left * 1000)) + 1))
                    if fifo in ready:
                        chunk = os.read(fifo, 64)
                        if not chunk:  # the init went on to the container's process
                            break
                        if not got:
                            # (at once: a start cut short after this read leaves runc a
                            # running container, not a "created" one whose FIFO nobody
                            # will write again)
                            try:
                                os.unlink(f"{where}/exec.fifo")
                            except FileNotFoundError:
                                pass
                        got += chunk
                    elif pidfd in ready and not got:
                        return False  # the init is gone and never wrote: runc says so
                    elif got:
                        break  # (the init exited or is slow to exec: it has started)
                    elif left <= 0:
                        raise RuntimeFailure(f"{self.name} start timed out after "
                                             f"{timeout:.0f}s")
            finally:
                os.close(fifo)
        finally:
            os.close(pidfd)
        return bool(got)  # (nothing: runc's "cannot start an already running container")

    def has_state(self, container_id: str) -> bool:
        """Whether the runtime may hold state for the container: runc and crun both keep
        it in `<root>/<id>/`. A cheap check before `state`, which costs a process."""
        return os.path.lexists(f"{self.state_root}/{container_id}")

    def state(self, container_id: str) -> RuntimeState | None:
        """The runtime's view of the container, or None when it has no state for it."""
        try:
            out = self._run("state", container_id)
        except ContainerMissing:
            return None
        return RuntimeState.from_json(loads(out))

    def list(self) -> list[RuntimeState]:
        if not os.path.exists(self.state_root):
            return []
        docs = loads(self._run("list", "--format", "json") or b"null") or []
        return [RuntimeState.from_json(d) for d in docs]

    def kill(self, container_id: str, sig: int | str = _signal.SIGTERM,
             all_processes: bool = False) -> None:
        args = ["kill"]
        if all_processes:
            args.append("--all")
        self._run(*args, container_id, str(signal_number(sig)))

    def _runc_init(self, container_id: str) -> _RuncInit | None:
        """runc's state of the container's init; None when runc is not this runtime, or
        its state cannot be read (none, or not in runc's format)."""
        if self.name != "runc":
            return None
        try:
            with open(f"{self.state_root}/{container_id}/state.json", "rb") as f:
                state = loads(f.read())
            pid = int(state["init_process_pid"])
            own_pidns = any(ns.get("type") == "NEWPID" and not ns.get("path")
                            for ns in state["config"]["namespaces"])
            init = _RuncInit(pid, int(state["init_process_start"]), own_pidns, state)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return init if pid > 0 else None

    def kill_init(self, container_id: str, sig: int) -> bool:
        """Signal the container's init process from here, as `runc kill` (without --all)
        does, saving its process (~15 ms, and more on a loaded host): runc's state file
        names the init's pid and start time; a pidfd opened on that pid, whose process
        has that start time, is that process for good (no pid reuse can redirect the
        signal). Only for runc and a container with a PID namespace of its own, where
        the kernel takes the namespace's other processes with its init on SIGKILL.
        False when this cannot be done here: the caller runs `kill` instead (which
        also gives the runtime's error for a container that is not running)."""
        init = self._runc_init(container_id)
        if init is None or not init.own_pidns:
            return False
        try:
            fd = os.pidfd_open(init.pid)
        except OSError:
            return False
        try:
            now = init.stat()
            if now is None or now[0] != init.start:  # another process now
                return False
            _signal.pidfd_send_signal(fd, sig)
        except (OSError, ValueError):
            return False
        finally:
            os.close(fd)
        return True

    def delete_stopped(self, container_id: str) -> bool:
        """Remove the runtime state of a runc container whose init has exited, from
        here, as `runc delete` does for a stopped container, saving its process (a Go
        start-up: ~5 ms of CPU, and 7-30 ms of wall clock here): the container's cgroup
        in each hierarchy (the directories below it first), retried while the kernel
        still counts a dying process in one (runc's schedule: 10, 20, 40 and 80 ms),
        then its state directory. Only when runc's state names the init (gone: no such
        process, another one by now, or a zombie), a PID namespace of the container's
        own (so none of its processes outlives the init), cgroups runc made itself (no
        systemd unit, not rootless), no hooks and no Intel RDT group. False when it
        cannot be done here, or a cgroup stays busy: the caller runs `delete`, which
        then kills what is left and gives runc's error."""
        where = f"{self.state_root}/{container_id}"
        init = self._runc_init(container_id)
        if init is None:  # (no state left at all: another cleanup was quicker)
            return self.name == "runc" and not os.path.lexists(where)
        state, config = init.state, init.state["config"]
        try:
            cgroups = set((state.get("cgroup_paths") or {}).values())
            # (what runc's delete does beyond the cgroups and the state directory:
            # hooks, an Intel RDT group, a systemd unit; rootless cgroups it may not own)
            extra = (config.get("hooks") or state.get("intel_rdt_path") or state.get("rootless")
                     or (config.get("cgroups") or {}).get("Systemd"))
        except (TypeError, AttributeError):
            return False
        if extra or not init.own_pidns or not all(
                isinstance(c, str) and c.startswith("/sys/fs/cgroup/") and "/../" not in c
                for c in cgroups):
            return False
        try:
            if init.is_running():
                return False
        except (OSError, ValueError):
            return False
        import time

        for delay in (0.01, 0.02, 0.04, 0.08, None):
            cgroups = {c for c in cgroups if not _remove_cgroup(c)}
            if not cgroups:
                break
            if delay is None:
                return False
            time.sleep(delay)
        try:
            for name in os.listdir(where):
                os.unlink(f"{where}/{name}")
            os.rmdir(where)
        except FileNotFoundError:
            pass  # (another cleanup of the same container was quicker)
        except OSError:
            return False
        return True

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove the runtime state (and cgroup). Missing state is not an error:
        cleanup must be idempotent."""
        if self.delete_stopped(container_id):
            return
        args = ["delete"]
        if force:
            args.append("--force")
        try:
            self._run(*args, container_id)
        except ContainerMissing:
            return

    def delete_begin(self, container_id: str, force: bool = False) -> Callable[[], None]:
        """`delete`, launched without waiting: call the result to wait for it."""
        if self.delete_stopped(container_id):
            return _done
        finish = self._begin("delete", *(["--force"] if force else []), container_id)

        def wait() -> None:
            try:
                finish()
            except ContainerMissing:
                return

        return wait

    def pause(self, container_id: str) -> None:
        self._run("pause", container_id)

    def resume(self, container_id: str) -> None:
        self._run("resume", container_id)

    def ps(self, container_id: str) -> builtins.list[int]:
        """Host PIDs of every process in the container (runc's from the cgroup its
        state records, without starting it: ketch.runtime.runcstate)."""
        if self.name == "runc":
            from ketch.runtime.runcstate import cgroup_pids

            pids = cgroup_pids(self.state_root, container_id)
            if pids is not None:
                return sorted(pids)
        out = self._run("ps", "--format", "json", container_id)
        return [int(p) for p in loads(out or b"[]") or []]

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Change cgroup limits of a live container (`docker update`)."""
        from ketch.fastjson import dumps

        self._run("update", "--resources", "-", container_id,
                  input=dumps(resources).encode())

    def stats(self, container_id: str) -> dict[str, Any]:
        """One cgroup statistics sample (`runc events --stats`): cpu, memory, pids."""
        if self.name != "runc":
            raise RuntimeFailure(f"{self.name} does not report statistics")
        doc = loads(self._run("events", "--stats", container_id))
        return dict(doc.get("data") or {})

    def exec_args(self, container_id: str, process_file: Path, *, tty: bool = False,
                  detach: bool = False, pid_file: Path | None = None,
                  console_socket: Path | None = None,
                  extra: Sequence[str] = ()) -> builtins.list[str]:
        """Argument vector of `<runtime> exec` for callers that drive it themselves."""
        args = ["exec", "--process", str(process_file)]
        if tty:
            args.append("--tty")
        if detach:
            args.append("--detach")
        if pid_file is not None:
            args += ["--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        return self.command(*args, *extra, container_id)
