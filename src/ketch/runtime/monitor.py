"""Per-container monitor: conmon in front of runc/crun.

conmon (Podman's monitor, about 1 MB per container, no resident daemon) runs
`runc create`, then outlives the ketch process that launched it: it holds the
container's stdio (or TTY master), writes the k8s-file log, serves an attach socket,
records the exit code in an exit file and runs an exit command (ketch's cleanup).

Callers (the Engine) deal in `ContainerPaths` and plain options; conmon's flags, its
sync/start/attach pipes and its attach-socket framing stay in this module.

Protocol facts, from conmon and Podman's libpod:
- `_OCI_SYNCPIPE`/`_OCI_STARTPIPE`/`_OCI_ATTACHPIPE` name inherited fds (SEQPACKET
  socketpairs). conmon blocks on the start pipe before forking; reports
  `{"data": <pid>}` or `{"data": -1, "message": "<runtime stderr>"}` on the sync pipe;
  in exec mode it later reports `{"data": <exit code>}`.
- The attach socket (`<bundle>/attach`, SOCK_SEQPACKET) carries output packets whose
  first byte names the stream (2 stdout, 3 stderr); input is written raw. Closing our
  write side closes the container's stdin unless conmon got `--leave-stdin-open`.
- `<bundle>/ctl` is a fifo taking "1 <height> <width>\\n" to resize the TTY and
  "2 0 0\\n" to reopen the log file.
- Exit status lands in `<exit-dir>/<cid>` and `<persist-dir>/exit` (128+n for signal n).

Size: one job, everything that speaks conmon's protocol (its flags, sync and start
pipes, attach-socket framing, exit files). Keeping the protocol in one module is the
point: callers see ContainerPaths and plain options.

What attaches to a container (selectors, threading) is imported by the functions that do
it: for `stop`, `kill` and `rm -f`, which only signal the container, wait for its exit
file and release it, this module loads none. conmon is started through
ketch.runtime.spawn (posix_spawn), not subprocess (see there). Its sockets are
`_socket`'s and its JSON ketch.fastjson's: the `socket` module turns its constants into
enums at import, and json compiles regular expressions.
"""

from __future__ import annotations

import errno
import os
import time

from ketch.errors import InvalidArgument, RuntimeFailure
from ketch.fdio import read_text, remove_file
from ketch.runtime.conmonfiles import CONMON_PIDFILE, EXEC_DIR, EXIT_DIR, PERSIST_DIR
from ketch.runtime.oci import OCIRuntime, explain_runtime_error, runtime_error_message, which
from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket
    from collections.abc import Callable, Mapping, Sequence
    from typing import IO, Any, TypeAlias

    from _typeshed import StrPath

    from ketch.runtime.logs import LogPolicy
    from ketch.runtime.spawn import Child

    OutputSink: TypeAlias = Callable[[bytes], Any] | IO[bytes]
    InputSource: TypeAlias = int | IO[bytes]

STDIN_PIPE, STDOUT_PIPE, STDERR_PIPE = 1, 2, 3
DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q
# conmon reads at most this much per attach packet (CONN_SOCK_BUF_SIZE - 1); a bigger
# SEQPACKET message would be truncated, so stdin goes out in smaller packets.
STDIN_PACKET = 8192
CREATE_TIMEOUT = 60.0
STDIN_BACKLOG = 1 << 20


def _noop() -> None:
    pass


class ContainerStartError(RuntimeFailure):
    """The process could not be started. `exit_code` follows Docker: 127 when the
    executable is not found, 126 when it cannot be invoked, 125 otherwise."""

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def classify_start_error(message: str) -> int:
    """Docker's mapping of a runtime start error to an exit code (moby's
    translateContainerdStartErr)."""
    lowered = message.lower()
    if "permission denied" in lowered or "is a directory" in lowered:
        return 126
    if ("executable file not found" in lowered or "no such file or directory" in lowered
            or "not found in $path" in lowered):
        return 127
    return 125


def parse_detach_keys(spec: str) -> bytes:
    """Docker's `--detach-keys` syntax ("ctrl-p,ctrl-q", "ctrl-a,d") → bytes."""
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        lowered = key.lower()
        if len(key) == 1:
            out.append(ord(key))
        elif lowered.startswith("ctrl-") and len(key) == 6:
            ch = lowered[5]
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in "@[\\]^_":
                out.append(ord(ch) - ord("@"))  # ctrl-@ is NUL, ctrl-[ is ESC, ...
            else:
                raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
        else:
            raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    if not out:
        raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


@value(frozen=True)
class ContainerPaths:
    """Where one container's monitor files live.

    `bundle` holds config.json (written by the caller); conmon adds `attach`, `ctl` and
    `winsz` there. `run_dir` holds transient state (pid files, exit files) and may be on
    tmpfs; `log_path` is the k8s-file log.
    """

    container_id: str
    bundle: str
    run_dir: str
    log_path: str

    @classmethod
    def create(cls, container_id: str, bundle: StrPath, run_dir: StrPath | None = None,
               log_path: StrPath | None = None) -> ContainerPaths:
        b = os.fspath(bundle)
        return cls(container_id, b, os.fspath(run_dir) if run_dir is not None else f"{b}/run",
                   os.fspath(log_path) if log_path is not None else f"{b}/ctr.log")

    @property
    def config(self) -> str:
        return f"{self.bundle}/config.json"

    @property
    def attach_socket(self) -> str:
        return f"{self.bundle}/attach"

    @property
    def ctl_fifo(self) -> str:
        return f"{self.bundle}/ctl"

    @property
    def pidfile(self) -> str:
        return f"{self.run_dir}/pidfile"

    @property
    def conmon_pidfile(self) -> str:
        return f"{self.run_dir}/{CONMON_PIDFILE}"

    @property
    def exit_dir(self) -> str:
        return f"{self.run_dir}/{EXIT_DIR}"

    @property
    def exit_file(self) -> str:
        return f"{self.run_dir}/{EXIT_DIR}/{self.container_id}"

    @property
    def persist_dir(self) -> str:
        return f"{self.run_dir}/{PERSIST_DIR}"

    @property
    def socket_dir(self) -> str:
        return f"{self.run_dir}/sockets"

    @property
    def exec_root(self) -> str:
        return f"{self.run_dir}/{EXEC_DIR}"


@value(frozen=True)
class StartedContainer:
    container_id: str
    pid: int
    conmon_pid: int


@value(frozen=True)
class ExitStatus:
    exit_code: int
    oom_killed: bool
    finished_at: float


@value(frozen=True)
class AttachResult:
    detached: bool


@value(frozen=True)
class ExecResult:
    exec_id: str
    pid: int
    exit_code: int | None  # None when detached
    detached: bool = False


def write_config(bundle: StrPath, config: Mapping[str, Any]) -> str:
    """Write config.json into `bundle` atomically (write, rename): a reader sees the old
    file or the new one. No fsync: config.json is derived state, written again at every
    start, and only read (by the runtime, by `exec`) while the container runs, which a
    crash ends; a sync would cost every start a few ms of waiting for the disk. Compact
    JSON: json's C encoder writes it (an indented dump goes through the pure-Python
    encoder, ~15x slower for a config with the default seccomp profile)."""
    from ketch.fastjson import dumps

    os.makedirs(bundle, exist_ok=True)
    target = os.path.join(bundle, "config.json")
    tmp = os.path.join(bundle, f".config.json.{os.urandom(4).hex()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(config, compact=True))
    os.replace(tmp, target)
    return target


def read_int(path: StrPath) -> int | None:
    """The integer a pid or exit file holds; None when there is none (yet)."""
    try:
        text = read_text(path).strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return int(text)
    except ValueError:
        return None


def process_alive(pid: int) -> bool:
    """True while `pid` runs; zombies count as exited (this host's init reaps late)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
        state = stat_line[stat_line.rindex(b")") + 2:stat_line.rindex(b")") + 3]
        return state not in (b"Z", b"X")
    except (OSError, ValueError):
        return False


def _recv_json(sock: socket, timeout: float) -> dict[str, Any] | None:
    """One JSON message from a conmon pipe; None on EOF."""
    from ketch.fastjson import loads

    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeFailure("timed out waiting for the container monitor (conmon)")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            if buf.strip():
                break
            return None
        buf += chunk
        if b"\n" in buf:
            break
    line = buf.split(b"\n", 1)[0]
    try:
        doc = loads(line)
    except ValueError as e:
        raise RuntimeFailure(f"unexpected message from conmon: {line[:200]!r}") from e
    return doc if isinstance(doc, dict) else {"data": doc}


def _sink(target: OutputSink | None) -> Callable[[bytes], Any] | None:
    if target is None:
        return None
    if callable(target):
        return target
    write = target.write
    flush = getattr(target, "flush", None)

    def out(data: bytes) -> None:
        write(data)
        if flush is not None:
            flush()

    return out


class _DetachMatcher:
    """Finds Docker's detach sequence in typed input; held-back bytes are released
    when the sequence breaks off."""

    def __init__(self, keys: bytes | None) -> None:
        self.keys = keys or b""
        self.held = bytearray()

    def flush(self) -> bytes:
        held = bytes(self.held)
        self.held.clear()
        return held

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if not self.keys:
            return data, False
        out = bytearray()
        for byte in data:
            if byte == self.keys[len(self.held)]:
                self.held.append(byte)
                if len(self.held) == len(self.keys):
                    self.held.clear()
                    return bytes(out), True
                continue
            out += self.held
            self.held.clear()
            if byte == self.keys[0]:
                self.held.append(byte)
            else:
                out.append(byte)
        return bytes(out), False


def _input_fd(stdin: InputSource) -> tuple[int, Callable[[], None]]:
    """A readable fd for `stdin`; objects without one are pumped through a pipe by a
    daemon thread."""
    if isinstance(stdin, int):
        return stdin, _noop
    try:
        return stdin.fileno(), _noop
    except (AttributeError, OSError, ValueError):
        pass
    import threading

    from ketch.fdio import write_all

    r, w = os.pipe()

    def pump() -> None:
        try:
            while True:
                read1 = getattr(stdin, "read1", None)
                data = read1(65536) if read1 else stdin.read(65536)
                if not data:
                    break
                write_all(w, data)  # a signal can cut a pipe write short
        except OSError:
            pass
        finally:
            try:
                os.close(w)
            except OSError:
                pass

    threading.Thread(target=pump, name="ketch-stdin-pump", daemon=True).start()
    return r, lambda: os.close(r)


def _connect_seqpacket(directory: StrPath, name: str) -> socket:
    """Connect to `directory/name` even when the path exceeds sun_path's 108 bytes, by
    going through /proc/self/fd of an O_PATH handle on the directory (as conmon binds)."""
    import _socket

    dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        try:
            sock.connect(f"/proc/self/fd/{dir_fd}/{name}")
        except OSError:
            sock.close()
            raise
        return sock
    finally:
        os.close(dir_fd)


def _seqpacket_pair() -> tuple[socket, socket]:
    """A SOCK_SEQPACKET socketpair for conmon's sync, start and attach pipes (`_socket`'s:
    the `socket` module's import converts its constants to enums)."""
    import _socket

    return _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)


def _remove_flat(directory: StrPath) -> None:
    """Remove an exec session's directory: conmon's files in it (pid and exit files, the
    attach socket, the ctl and winsz fifos, a symlink), no subdirectory; anything else
    there is left to shutil's walk."""
    try:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
    except FileNotFoundError:
        pass
    except OSError:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)


class AttachSession:
    """A connection to conmon's attach socket. Connect before `runc start` to see every
    byte of output; then `stream()`."""

    def __init__(self, bundle: StrPath) -> None:
        deadline = time.monotonic() + 5
        while True:
            try:
                self.sock = _connect_seqpacket(bundle, "attach")
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                # conmon binds the socket right after forking; a fresh container may not
                # have it yet.
                if time.monotonic() > deadline:
                    raise RuntimeFailure(
                        f"cannot attach: the container monitor has no attach socket "
                        f"({e.strerror})") from e
                time.sleep(0.005)
        self.bundle = bundle
        self.interrupted = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def interrupt(self) -> None:
        """End a `stream()` running in another thread (it returns as at the end of the
        output); the container is not affected."""
        import _socket

        self.interrupted = True
        try:
            self.sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass

    def __enter__(self) -> AttachSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stream(self, *, stdout: OutputSink | None = None, stderr: OutputSink | None = None,
               stdin: InputSource | None = None,
               detach_keys: bytes | None = DEFAULT_DETACH_KEYS) -> AttachResult:
        """Copy output to the sinks and `stdin` to the container until the container's
        output ends (it exited) or the detach keys are typed. EOF on `stdin` half-closes
        the connection, which closes the container's stdin as Docker does. Without
        `stdin` nothing is sent and the container's stdin is left alone."""
        import _socket
        import selectors

        out, err = _sink(stdout), _sink(stderr)
        sock = self.sock
        sock.setblocking(False)
        # poll, not epoll: epoll refuses a regular file or /dev/null (EPERM), and those are
        # what `run -i ... < FILE` hands over as stdin; poll finds them always readable,
        # and reading gives their bytes, then EOF
        sel = selectors.PollSelector()
        sel.register(sock, selectors.EVENT_READ, "sock")
        in_fd: int | None = None
        release_in: Callable[[], None] = _noop
        if stdin is not None:
            in_fd, release_in = _input_fd(stdin)
            sel.register(in_fd, selectors.EVENT_READ, "stdin")
        matcher = _DetachMatcher(detach_keys if stdin is not None else None)
        pending = bytearray()
        reading_stdin = in_fd is not None
        half_close = False
        try:
            while True:
                for key, events in sel.select():
                    if key.data == "stdin":
                        assert in_fd is not None
                        try:
                            data = os.read(in_fd, 32768)
                        except OSError:
                            data = b""
                        if data:
                            data, detach = matcher.feed(data)
                            pending += data
                            if detach:
                                # What was typed before the keys still goes in.
                                self._drain_input(pending)
                                self.close()
                                return AttachResult(detached=True)
                        else:
                            pending += matcher.flush()
                            sel.unregister(in_fd)
                            reading_stdin = False
                            half_close = True
                    elif events & selectors.EVENT_READ and not self._read_output(out, err):
                        return AttachResult(detached=False)
                if pending:
                    self._flush_input(pending)
                if half_close and not pending:
                    try:
                        sock.shutdown(_socket.SHUT_WR)
                    except OSError:
                        pass
                    half_close = False
                if reading_stdin:
                    # Back-pressure: a container that does not read its stdin must not
                    # make us buffer ours without bound.
                    assert in_fd is not None
                    registered = in_fd in sel.get_map()
                    if len(pending) > STDIN_BACKLOG and registered:
                        sel.unregister(in_fd)
                    elif len(pending) <= STDIN_BACKLOG and not registered:
                        sel.register(in_fd, selectors.EVENT_READ, "stdin")
                sel.modify(sock, selectors.EVENT_READ
                           | (selectors.EVENT_WRITE if pending else 0), "sock")
        finally:
            sel.close()
            release_in()

    def _drain_input(self, pending: bytearray, timeout: float = 5.0) -> None:
        """Send all of `pending`, waiting for the socket as needed (bounded)."""
        import selectors

        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            self._flush_input(pending)
            if pending:
                with selectors.DefaultSelector() as sel:
                    sel.register(self.sock, selectors.EVENT_WRITE)
                    sel.select(max(0.0, deadline - time.monotonic()))

    def _flush_input(self, pending: bytearray) -> None:
        while pending:
            chunk = bytes(pending[:STDIN_PACKET])
            try:
                sent = self.sock.send(chunk)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # The container side is gone; its output loop will notice EOF.
                pending.clear()
                return
            del pending[:sent]

    def _read_output(self, out: Callable[[bytes], Any] | None,
                     err: Callable[[bytes], Any] | None) -> bool:
        """Drain available packets; False at end of stream."""
        for _ in range(64):
            try:
                packet = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return True
            except ConnectionResetError:
                return False
            if not packet:
                return False
            kind, payload = packet[0], packet[1:]
            if kind == STDOUT_PIPE and out is not None:
                out(payload)
            elif kind == STDERR_PIPE and err is not None:
                err(payload)
        return True


def resize_tty(bundle: StrPath, height: int, width: int) -> None:
    """Resize the container's TTY through conmon's control fifo."""
    if not (0 <= height <= 1000 and 0 <= width <= 1000):
        raise InvalidArgument(f"invalid terminal size {height}x{width}")
    try:
        fd = os.open(os.path.join(bundle, "ctl"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            return  # nobody reads it any more: the container is gone
        raise RuntimeFailure(f"cannot resize the terminal: {e.strerror}") from e
    try:
        os.write(fd, f"1 {height} {width}\n".encode())
    finally:
        os.close(fd)


def reopen_log(bundle: StrPath) -> bool:
    """Ask conmon to close its log file and open the path again (after the file was
    renamed away, as the kubelet rotates): message 2 on the control fifo. False when
    no conmon reads the fifo any more."""
    try:
        fd = os.open(os.path.join(bundle, "ctl"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            return False
        raise RuntimeFailure(f"cannot reopen the log: {e.strerror}") from e
    try:
        os.write(fd, b"2 0 0\n")
    finally:
        os.close(fd)
    return True


class ConmonMonitor:
    """Runs containers and exec sessions under conmon.

    `exit_command` is run by conmon after the container exits, even when nobody is
    attached (ketch passes `python -m ketch --root R container cleanup ID`).
    """

    def __init__(self, runtime: OCIRuntime, conmon_path: str | None = None, *,
                 exit_command: Sequence[str] | None = None, sync_log: bool = False,
                 log_size_max: int | None = None) -> None:
        path = conmon_path or which("conmon")
        if not path:
            raise RuntimeFailure("conmon is not installed: apt-get install conmon")
        self.runtime = runtime
        self.conmon_path = path
        self.exit_command = list(exit_command) if exit_command else None
        self.sync_log = sync_log
        self.log_size_max = log_size_max

    # --- conmon invocation ----------------------------------------------------------

    def _common_args(self, cid: str, cuuid: str, bundle: StrPath, pidfile: StrPath,
                     exit_dir: StrPath, name: str | None) -> list[str]:
        args = [
            "--api-version",
            "--cid", cid, "--cuuid", cuuid, "--name", name or cid,
            "--runtime", self.runtime.path,
            "--bundle", str(bundle),
            "--container-pidfile", str(pidfile),
            "--exit-dir", str(exit_dir),
        ]
        for arg in self.runtime.global_args:
            args.append(f"--runtime-arg={arg}")
        if not self.sync_log:
            # conmon fsyncs the log when the container exits; logs are not worth the
            # latency on every `run --rm`.
            args.append("--no-sync-log")
        return args

    @staticmethod
    def _exit_command_args(command: Sequence[str] | None) -> list[str]:
        if not command:
            return []
        if not os.path.isabs(command[0]):
            raise InvalidArgument("the exit command must be an absolute path (conmon execv()s it)")
        args = ["--exit-command", command[0]]
        for arg in command[1:]:
            args.append(f"--exit-command-arg={arg}")
        return args

    def _spawn(self, args: list[str], cwd: StrPath, pipes: Mapping[str, socket]) -> Child:
        """Start conmon's first process in `cwd`, the pipes given to it under the names
        conmon reads their numbers from."""
        from ketch.runtime.spawn import Child

        env = {k: v for k, v in os.environ.items()
               if k != "NOTIFY_SOCKET" and not k.startswith("_OCI_")}
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        for var, sock in pipes.items():
            env[var] = str(sock.fileno())
        try:
            return Child([self.conmon_path, *args], env=env, cwd=str(cwd), stdout=False,
                         pass_fds=[s.fileno() for s in pipes.values()], new_session=True)
        except OSError as e:
            raise RuntimeFailure(f"cannot run conmon: {e.strerror}") from e

    @staticmethod
    def _wait_parent(proc: Child, timeout: float) -> None:
        """conmon's first process exits as soon as it has forked the monitor."""
        from ketch.runtime.spawn import SpawnTimeout

        try:
            code, _out, err = proc.communicate(timeout)
        except SpawnTimeout as e:  # (killed and reaped)
            raise RuntimeFailure("conmon did not start in time") from e
        if code != 0:
            message = err.decode(errors="replace").strip().splitlines()
            raise RuntimeFailure(
                f"conmon failed (exit {code}): {message[-1] if message else 'no message'}")

    # --- containers ---------------------------------------------------------------

    def create_container(self, paths: ContainerPaths, *, name: str | None = None,
                         terminal: bool = False, stdin: bool = False,
                         leave_stdin_open: bool | None = None,
                         exit_command: Sequence[str] | None = None,
                         log_size_max: int | None = None,
                         log: LogPolicy | None = None,
                         timeout: float = CREATE_TIMEOUT) -> StartedContainer:
        """Launch conmon, which runs `<runtime> create`; the container is then in the
        "created" state with its process waiting. Attach now if needed, then `start`.

        `leave_stdin_open` defaults to `terminal`: detaching from a TTY must not close
        the shell's stdin, while `-i` without a TTY follows Docker's StdinOnce.
        `log` is the container's log driver and rotation (default: one k8s-file).
        """
        if not os.path.exists(paths.config):
            raise InvalidArgument(f"no config.json in bundle {paths.bundle}")
        if ":" in paths.log_path:
            raise InvalidArgument("the log path must not contain ':' (conmon's separator)")
        cid = paths.container_id
        existing = self.runtime.state(cid) if self.runtime.has_state(cid) else None
        if existing is not None:
            if existing.status in ("running", "paused"):
                raise RuntimeFailure(f"container {cid} is already {existing.status}")
            # Leftover state of a stopped (or never started) run: remove it so the ID
            # can be created again.
            self.runtime.delete(cid, force=True)
        self._clear_transient(paths)
        for d in (paths.run_dir, paths.exit_dir, paths.persist_dir, paths.socket_dir):
            os.makedirs(d, exist_ok=True)
        log_dir = os.path.dirname(paths.log_path)
        try:  # a log path given at create (k8s-file's path=) may be anywhere
            os.makedirs(log_dir, exist_ok=True)
        except OSError as e:
            raise RuntimeFailure(f"cannot create the log directory {log_dir}:"
                                 f" {e.strerror}") from None

        args = self._common_args(cid, cid, paths.bundle, paths.pidfile, paths.exit_dir, name)
        args += [
            "--conmon-pidfile", str(paths.conmon_pidfile),
            "--persist-dir", str(paths.persist_dir),
            "--socket-dir-path", str(paths.socket_dir),
        ]
        size = log_size_max if log_size_max is not None else self.log_size_max
        if log is not None and log.driver == "none":
            args += ["--log-path", "none"]
        elif log is not None and log.driver == "journald":
            args += ["--log-path", "journald:"]
        else:
            args += ["--log-path", f"k8s-file:{paths.log_path}"]
            if log is not None and log.max_size is not None:
                # One file: conmon starts it over when full. More: conmon appends to
                # one file and the keeper (ketch.runtime.logs.keep_rotating) moves the
                # full generations out of it.
                size = None if log.keeper_needed else log.max_size
            if size:
                args += ["--log-size-max", str(size)]
        if terminal:
            args.append("--terminal")
        if stdin:
            args.append("--stdin")
        if stdin and (terminal if leave_stdin_open is None else leave_stdin_open):
            args.append("--leave-stdin-open")
        command = exit_command if exit_command is not None else self.exit_command
        args += self._exit_command_args(command)

        parent_sync, child_sync = _seqpacket_pair()
        parent_start, child_start = _seqpacket_pair()
        try:
            proc = self._spawn(args, paths.run_dir, {"_OCI_SYNCPIPE": child_sync,
                                                     "_OCI_STARTPIPE": child_start})
            child_sync.close()
            child_start.close()
            # conmon waits on the start pipe so a caller could move it to a cgroup first.
            parent_start.send(b"\0")
            self._wait_parent(proc, timeout)
            message = _recv_json(parent_sync, timeout)
        finally:
            for s in (parent_sync, child_sync, parent_start, child_start):
                s.close()
        if message is None:
            self._abort(paths)
            raise RuntimeFailure("conmon exited without reporting the container's start")
        pid = int(message.get("data", -1))
        if pid <= 0:
            self._abort(paths)
            text = runtime_error_message(str(message.get("message") or ""))
            explained = explain_runtime_error(text)
            if explained != text:
                raise ContainerStartError(explained, 125)
            raise ContainerStartError(f"OCI runtime create failed: {text}",
                                      classify_start_error(text))
        conmon_pid = read_int(paths.conmon_pidfile) or 0
        if log is not None and log.keeper_needed and conmon_pid:
            _spawn_log_keeper(paths.log_path, conmon_pid, log)
        return StartedContainer(cid, pid, conmon_pid)

    def start(self, paths: ContainerPaths) -> None:
        """Let a created container's process run (`<runtime> start`)."""
        try:
            self.runtime.start(paths.container_id)
        except RuntimeFailure as e:
            self._abort(paths)
            raise ContainerStartError(str(e), classify_start_error(str(e))) from e

    def start_container(self, paths: ContainerPaths, *, name: str | None = None,
                        terminal: bool = False, stdin: bool = False,
                        leave_stdin_open: bool | None = None,
                        exit_command: Sequence[str] | None = None,
                        log_size_max: int | None = None,
                        log: LogPolicy | None = None,
                        before_start: Callable[[StartedContainer], None] | None = None,
                        ) -> StartedContainer:
        """create_container + start. `before_start` runs in between (e.g. to attach)."""
        started = self.create_container(
            paths, name=name, terminal=terminal, stdin=stdin,
            leave_stdin_open=leave_stdin_open, exit_command=exit_command,
            log_size_max=log_size_max, log=log)
        if before_start is not None:
            try:
                before_start(started)
            except BaseException:
                self._abort(paths)
                raise
        self.start(paths)
        return started

    def _abort(self, paths: ContainerPaths) -> None:
        """Undo a half-made container: no process, runtime state or cgroup may stay."""
        try:
            self.runtime.delete(paths.container_id, force=True)
        except RuntimeFailure:
            pass
        conmon_pid = read_int(paths.conmon_pidfile)
        if conmon_pid:
            deadline = time.monotonic() + 5
            while process_alive(conmon_pid) and time.monotonic() < deadline:
                time.sleep(0.005)

    # --- observing ----------------------------------------------------------------

    def attach(self, paths: ContainerPaths) -> AttachSession:
        return AttachSession(paths.bundle)

    def resize(self, paths: ContainerPaths, height: int, width: int) -> None:
        resize_tty(paths.bundle, height, width)

    def reopen_log(self, paths: ContainerPaths) -> bool:
        return reopen_log(paths.bundle)

    def conmon_pid(self, paths: ContainerPaths) -> int | None:
        return read_int(paths.conmon_pidfile)

    def monitor_alive(self, paths: ContainerPaths) -> bool:
        pid = self.conmon_pid(paths)
        return pid is not None and process_alive(pid)

    def exit_status(self, paths: ContainerPaths) -> ExitStatus | None:
        """The recorded exit, or None while the container has not exited."""
        for path in (f"{paths.persist_dir}/exit", paths.exit_file):
            code = read_int(path)
            if code is None:
                continue
            try:
                when = os.stat(path).st_mtime
            except FileNotFoundError:
                continue  # cleaned up since it was read (a restart's cleanup): not an exit now
            oom = (os.path.exists(f"{paths.persist_dir}/oom")
                   or os.path.exists(f"{paths.run_dir}/oom"))
            return ExitStatus(code, oom, when)
        return None

    def wait_exit(self, paths: ContainerPaths, timeout: float | None = None) -> ExitStatus:
        """Block until conmon records the exit code (polls with a growing sleep)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        conmon_pid = self.conmon_pid(paths)
        while True:
            status = self.exit_status(paths)
            if status is not None:
                return status
            if conmon_pid is None:
                raise RuntimeFailure(
                    f"container {paths.container_id} has no monitor: it was not started")
            if not process_alive(conmon_pid):
                status = self.exit_status(paths)
                if status is not None:
                    return status
                raise RuntimeFailure(
                    f"the monitor of container {paths.container_id} died without "
                    "recording an exit code")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"container {paths.container_id} is still running")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def wait_monitor_exit(self, paths: ContainerPaths, timeout: float = 30) -> None:
        """Wait for conmon itself to finish (it runs the exit command after the exit
        file is written)."""
        pid = self.conmon_pid(paths)
        if pid is None:
            return
        deadline = time.monotonic() + timeout
        delay = 0.001
        while process_alive(pid):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"conmon {pid} is still running")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def cleanup(self, paths: ContainerPaths) -> None:
        """After exit: remove the runtime state (and cgroup) and transient files. The
        log and config.json stay. Safe to call more than once, from several processes."""
        self.cleanup_begin(paths)()

    def cleanup_begin(self, paths: ContainerPaths) -> Callable[[], None]:
        """`cleanup` in two halves: the runtime's delete starts now, and the returned
        function waits for it and removes the transient files. The caller can release
        other resources (the network) in between. Without runtime state (deleted
        already: `rm` after the stop that cleaned up) no runtime process is started."""
        wait = _noop
        if self.runtime.has_state(paths.container_id):
            wait = self.runtime.delete_begin(paths.container_id, force=True)

        def finish() -> None:
            wait()
            self._clear_transient(paths)

        return finish

    @staticmethod
    def _clear_transient(paths: ContainerPaths) -> None:
        for path in (paths.attach_socket, paths.ctl_fifo, f"{paths.bundle}/winsz",
                     paths.pidfile, paths.conmon_pidfile, paths.exit_file,
                     f"{paths.persist_dir}/exit", f"{paths.persist_dir}/oom",
                     f"{paths.run_dir}/oom", f"{paths.socket_dir}/{paths.container_id}"):
            remove_file(path)
        if os.path.exists(paths.exec_root):
            import shutil

            shutil.rmtree(paths.exec_root, ignore_errors=True)

    # --- exec ---------------------------------------------------------------------

    def exec_process(self, paths: ContainerPaths, process: Mapping[str, Any], *,
                     stdout: OutputSink | None = None, stderr: OutputSink | None = None,
                     stdin: InputSource | None = None, detach: bool = False,
                     detach_keys: bytes | None = DEFAULT_DETACH_KEYS,
                     on_started: Callable[[int], None] | None = None,
                     timeout: float = CREATE_TIMEOUT,
                     exec_id: str | None = None,
                     exit_command: Sequence[str] | None = None,
                     on_streaming: Callable[[Callable[[], None]], Any] | None = None
                     ) -> ExecResult:
        """Run `process` (an OCI process object, see spec.exec_process) in the running
        container, under a short-lived conmon in exec mode. Attached: streams until the
        process exits and returns its exit code. Detached: returns once it runs.
        A process that cannot start raises ContainerStartError (exit code 126/127).
        `exec_id` names the session's directory (its ctl fifo serves resizes).
        `exit_command` is run by conmon when the process exits (a detached session's end
        is recorded by it). `on_streaming` is handed a function that ends the streaming
        from another thread (the client is gone): the process goes on, as after the
        detach keys, and the call returns detached."""
        from ketch.fastjson import dumps

        exec_id = exec_id or os.urandom(16).hex()
        exec_dir = f"{paths.exec_root}/{exec_id}"
        os.makedirs(exec_dir)
        spec_file = f"{exec_dir}/process.json"
        with open(spec_file, "w", encoding="utf-8") as f:
            f.write(dumps(process))
        terminal = bool(process.get("terminal"))
        args = self._common_args(paths.container_id, exec_id, exec_dir, f"{exec_dir}/pid",
                                 exec_dir, None)
        args += [
            "--persist-dir", exec_dir,
            "--socket-dir-path", exec_dir,
            # a look at a detached session tells "its process has exited and conmon is
            # about to write the exit file" from "conmon is gone without one" by it
            "--conmon-pidfile", f"{exec_dir}/conmon.pid",
            "--log-path", "none",
            "--exec", "--exec-attach", "--exec-process-spec", spec_file,
        ]
        args += self._exit_command_args(exit_command)
        if terminal:
            args.append("--terminal")
        if stdin is not None:
            args.append("--stdin")
        pipes = {name: _seqpacket_pair()
                 for name in ("_OCI_SYNCPIPE", "_OCI_STARTPIPE", "_OCI_ATTACHPIPE")}
        session: AttachSession | None = None
        finished = False  # the session is over: its directory can go
        try:
            proc = self._spawn(args, exec_dir, {k: v[1] for k, v in pipes.items()})
            for _parent, child in pipes.values():
                child.close()
            sync, start, attach_pipe = (pipes[k][0] for k in
                                        ("_OCI_SYNCPIPE", "_OCI_STARTPIPE", "_OCI_ATTACHPIPE"))
            start.send(b"\0")
            self._wait_parent(proc, timeout)
            ready = _recv_json(attach_pipe, timeout)
            if ready is None:
                raise RuntimeFailure("conmon exited before the exec session was ready")
            if not detach:
                session = AttachSession(exec_dir)
            # Second start message: conmon's child now runs `<runtime> exec`.
            start.send(b"\0")
            message = _recv_json(sync, timeout)
            if message is None:
                raise RuntimeFailure("conmon exited without reporting the exec session")
            pid = int(message.get("data", -1))
            if pid <= 0:
                finished = True
                text = runtime_error_message(str(message.get("message") or ""))
                raise ContainerStartError(f"OCI runtime exec failed: {text}",
                                          classify_start_error(text))
            if on_started is not None:
                on_started(pid)
            if detach or session is None:
                return ExecResult(exec_id, pid, None, detached=True)
            if on_streaming is not None:
                on_streaming(session.interrupt)
            result = session.stream(stdout=stdout, stderr=stderr, stdin=stdin,
                                    detach_keys=detach_keys)
            if result.detached or session.interrupted:
                return ExecResult(exec_id, pid, None, detached=True)
            final = _recv_json(sync, timeout=24 * 3600)
            code = read_int(f"{exec_dir}/exit")
            if final is not None and "data" in final:
                code = int(final["data"])
            finished = True
            return ExecResult(exec_id, pid, code if code is not None else -1)
        finally:
            if session is not None:
                session.close()
            for parent, child in pipes.values():
                parent.close()
                child.close()
            # A detached session keeps its directory (conmon still writes there);
            # cleanup() removes what is left when the container goes.
            if finished:
                _remove_flat(exec_dir)


LOG_KEEPER_TIMEOUT = 5.0


def _spawn_log_keeper(log_path: StrPath, conmon_pid: int, log: LogPolicy) -> None:
    """Start the process that rotates this container's log (ketch.runtime.logs); it
    ends by itself once conmon has exited."""
    import selectors
    import subprocess

    from ketch.launcher import python_command

    assert log.max_size is not None
    argv = [*python_command("from ketch.runtime.logs import main; main(sys.argv[1:])"),
            "keep", str(log_path), str(conmon_pid), str(log.max_size), str(log.max_file),
            str(int(log.compress))]
    # A keeper that cannot start does not fail the container's start (its log is then
    # not rotated). The container starts once the keeper has opened the log.
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True)
    except OSError:
        return
    assert proc.stdout is not None
    with proc.stdout:
        ready = selectors.DefaultSelector()
        with ready:
            ready.register(proc.stdout, selectors.EVENT_READ)
            ready.select(LOG_KEEPER_TIMEOUT)
