"""Running the service: where it listens, when it stops.

- `unix:///path` (default `<run root>/ketch.sock`, mode 0660), `tcp://127.0.0.1:PORT`
  (loopback only: the API gives root on the host and has no TLS here), or a socket
  handed over by socket activation (`LISTEN_FDS`/`LISTEN_PID`, fd 3).
- `idle` seconds without a request in progress end the service (0: never), as
  Podman's `system service --time`.
- SIGTERM/SIGINT: stop listening, end the long streams (attach, logs -f, wait), let
  the other requests finish, exit. Containers do not depend on the service: their
  monitors (conmon) keep them running and record their exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import os
import signal
import socket
import stat
import sys
from concurrent.futures import ThreadPoolExecutor

from ketch.api import web
from ketch.api.routes import Service, make_app
from ketch.errors import InvalidArgument

LISTEN_FDS_START = 3
DRAIN_SECONDS = 10.0
WORKERS = 64
RELEASE_AFTER = 2.0  # idle seconds before the memory a burst of requests left is returned
KEEP_WORKERS = 4  # idle worker threads kept past a burst (each holds an Engine)


def release_memory() -> None:
    """Give back what the last requests left behind: the garbage cycles of a long stream
    (`logs` of a million lines leaves ~5 MiB), then the free pages glibc keeps in each
    worker thread's arena. The modules those requests loaded stay."""
    gc.collect()
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):  # not glibc
        return
    trim(0)


def _alive(executor: ThreadPoolExecutor) -> bool:
    return any(t.is_alive() for t in getattr(executor, "_threads", ()))


def default_uri(run_root: str) -> str:
    return "unix://" + os.path.join(run_root, "ketch.sock")


def activated_socket() -> socket.socket | None:
    """The first socket systemd (or any socket activator) passed, or None."""
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return None
    if pid != os.getpid() or count < 1:
        return None
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    sock = socket.socket(fileno=LISTEN_FDS_START)
    os.set_inheritable(LISTEN_FDS_START, False)
    sock.setblocking(False)
    return sock


def _unix_listener(path: str) -> socket.socket:
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
    except OSError as e:
        raise InvalidArgument(f"cannot listen on {path}: {e.strerror}") from None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise InvalidArgument(f"cannot listen on {path}: it exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # left behind by a service that did not exit cleanly
        else:
            raise InvalidArgument(f"cannot listen on {path}: another service is using it")
        finally:
            probe.close()
    # The socket is bound, given its mode and listening under a temporary name and only
    # then renamed to `path`: a client that sees the path (one that waits for it to
    # appear, as scripts and the tests do) can connect, where a bind at `path` itself
    # showed the file a moment before listen() and such a connect was refused.
    staging = os.path.join(os.path.dirname(path), f".ketch-api-{os.getpid()}.sock")
    if len(os.fsencode(staging)) > 107:  # (sun_path's limit; the path itself may fit)
        staging = path
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        with contextlib.suppress(FileNotFoundError):
            if staging != path:
                os.unlink(staging)
        sock.bind(staging)
        os.chmod(staging, 0o660)
        sock.listen(128)
        if staging != path:
            os.rename(staging, path)
    except OSError as e:
        sock.close()
        if staging != path:
            with contextlib.suppress(OSError):
                os.unlink(staging)
        raise InvalidArgument(f"cannot listen on {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    sock.setblocking(False)
    return sock


def _tcp_listener(where: str) -> socket.socket:
    host, sep, port_text = where.rpartition(":")
    host = host.strip("[]")
    if not sep or not port_text.isdigit():
        raise InvalidArgument(f"invalid TCP address {where!r}: use tcp://127.0.0.1:PORT")
    try:
        ip = ipaddress.ip_address(host or "127.0.0.1")
    except ValueError:
        raise InvalidArgument(f"invalid TCP address {where!r}: give an IP address") from None
    if not ip.is_loopback:
        raise InvalidArgument(f"refusing to serve on {host}: the API gives root access to"
                              " this host and ketch serves it without TLS; use a loopback"
                              " address or the unix socket")
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((str(ip), int(port_text)))
    except (OSError, OverflowError) as e:  # Overflow: a port over 65535
        sock.close()
        why = e.strerror if isinstance(e, OSError) else "the port must be 0-65535"
        raise InvalidArgument(f"cannot listen on {where}: {why}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def listen(uri: str) -> tuple[socket.socket, str | None]:
    """A listening socket for `uri`, and the unix path to remove at exit."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise InvalidArgument(f"invalid URI {uri!r}: use unix:///PATH or tcp://127.0.0.1:PORT")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise InvalidArgument(f"invalid URI {uri!r}: the socket path must be absolute")
        return _unix_listener(rest), rest
    if scheme == "tcp":
        return _tcp_listener(rest), None
    raise InvalidArgument(f"unsupported URI scheme {scheme!r}: use unix:// or tcp://")


def serve(root: str, run_root: str, uri: str | None, idle: float) -> None:
    """Serve until idle for `idle` seconds (0: never) or a SIGTERM/SIGINT."""
    sock = activated_socket()
    path = None
    mine = None
    if sock is None:
        sock, path = listen(uri or default_uri(run_root))
        if path is not None:
            st = os.stat(path)
            mine = (st.st_dev, st.st_ino)
    try:
        # Not asyncio.run: its exit joins the worker threads, and one may be blocked
        # for good on a stream nobody reads any more.
        loop = asyncio.new_event_loop()
        try:
            clean = loop.run_until_complete(_serve(Service(root, run_root), sock, idle))
        finally:
            loop.close()
    finally:
        if path is not None:
            # only this service's own socket: one started after this one stopped
            # listening may have taken the path over by now
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                if (st.st_dev, st.st_ino) == mine:
                    os.unlink(path)
        sock.close()
    if not clean:
        # A worker thread is still blocked reading for a stream that nobody reads any
        # more (`logs -f` of a silent container): nothing is left to write, leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


async def _serve(svc: Service, sock: socket.socket, idle: float) -> bool:
    loop = asyncio.get_running_loop()

    def new_executor() -> ThreadPoolExecutor:
        ex = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="ketch-api")
        loop.set_default_executor(ex)
        return ex

    executor = new_executor()
    retired: list[ThreadPoolExecutor] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, svc.stopping.set)
    server = web.Server(make_app(svc))
    await server.start(sock)
    svc.last_active = loop.time()
    released = svc.last_active  # the memory is as small as it gets at start
    try:
        while not svc.stopping.is_set():
            timeout = 1.0
            if svc.active == 0:
                if released != svc.last_active and \
                        loop.time() - svc.last_active >= RELEASE_AFTER:
                    released = svc.last_active
                    if len(getattr(executor, "_threads", ())) > KEEP_WORKERS:
                        # A burst (`docker rm -f` of 50 sends 50 requests at once) left
                        # idle workers, each with its Engine and SQLite connection: let
                        # them go; a worker that is still busy leaves when it is done.
                        executor.shutdown(wait=False)
                        retired = [ex for ex in retired if _alive(ex)] + [executor]
                        executor = new_executor()
                        await asyncio.sleep(0.2)
                    release_memory()
                if idle > 0:
                    left = svc.last_active + idle - loop.time()
                    if left <= 0:
                        break
                    timeout = min(timeout, left)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(svc.stopping.wait(), timeout)
    finally:
        svc.stopping.set()
        # End the long streams first, so the drain waits only for short requests.
        for conn in list(svc.hijacked):
            conn.shutdown()
        for session in list(svc.sessions):
            session.interrupt()
        await server.shutdown(DRAIN_SECONDS)
    executor.shutdown(wait=False, cancel_futures=True)
    workers = [t for ex in (*retired, executor) for t in getattr(ex, "_threads", ())]
    for _ in range(20):  # idle workers leave at once; give finishing ones a moment
        if not any(t.is_alive() for t in workers):
            return True
        await asyncio.sleep(0.05)
    return False
