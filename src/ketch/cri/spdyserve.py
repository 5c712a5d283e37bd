"""SPDY/3.1 connections of the CRI streaming server (cri/stream.py hands them over after
reading the request head): the upgrade and protocol choice, exec and attach with one SPDY
stream per standard stream, port forwarding with error and data stream pairs. The
framing itself is cri/spdy.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import traceback

from ketch.cri import spdy
from ketch.cri.streamops import (
    PORT_FORWARD,
    STREAM_CREATION_TIMEOUT,
    V1,
    V2,
    V3,
    V4,
    Ops,
    forward_error,
    outcome,
    resizing,
)
from ketch.errors import InvalidArgument, KetchError
from ketch.fdio import write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ketch.cri.stream import StreamServer

SPDY_PROTOCOLS = {"exec": (V4, V3, V2, V1), "attach": (V4, V3, V2, V1),
                  "portforward": (PORT_FORWARD,)}
LINGER = 10.0  # seconds a finished SPDY session waits for the client to hang up


class SpdyServer:
    """Serves the SPDY upgrades of one StreamServer (its tokens, pool and Engine)."""

    def __init__(self, owner: StreamServer) -> None:
        self.owner = owner

    async def serve(self, head: Head, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        """Serve a connection whose request asked for an SPDY/3.1 upgrade."""
        try:
            kind, _, tok = head.path.lstrip("/").partition("/")
            protocols = SPDY_PROTOCOLS.get(kind)
            if head.method not in ("GET", "POST") or protocols is None or not tok \
                    or "/" in tok:
                return http_error(writer, 404, "404 page not found")
            req = self.owner.tokens.consume(kind, tok)
            if req is None:
                return http_error(writer, 404, "404 page not found")
            offered = [p.strip() for v in head.values("x-stream-protocol-version")
                       for p in v.split(",") if p.strip()]
            if not offered:
                return http_error(writer, 400, "unable to upgrade: X-Stream-Protocol-Version"
                                   " is required")
            chosen = next((p for p in offered if p in protocols), None)
            if chosen is None:
                return http_error(
                    writer, 403, "unable to upgrade: unable to negotiate protocol: client"
                    f" supports [{' '.join(offered)}], server accepts [{' '.join(protocols)}]",
                    [("X-Accepted-Stream-Protocol-Versions", p) for p in protocols])
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                         b"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: "
                         + chosen.encode() + b"\r\n\r\n")
            if kind == "portforward":
                await self._spdy_portforward(reader, writer, req)
            else:
                ops = self.owner.exec_ops(req) if kind == "exec" else self.owner.attach_ops(req)
                await self._spdy_remote(reader, writer, req, ops, chosen)
        except (ConnectionError, OSError):
            pass  # the client went away
        except Exception:  # a bug: logged; the connection ends
            traceback.print_exc(file=sys.stderr)
        finally:
            writer.close()

    async def _spdy_remote(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           req: Any, ops: Ops, protocol: str) -> None:
        """An exec or attach: one SPDY stream per standard stream, by `streamType`."""
        wanted = {"error"}
        wanted |= {"stdin"} if req.stdin else set()
        wanted |= {"stdout"} if req.stdout else set()
        wanted |= {"stderr"} if req.stderr and not req.tty else set()
        wanted |= {"resize"} if req.tty and protocol in (V4, V3) else set()
        got: dict[str, spdy.Stream] = {}
        all_in = asyncio.Event()

        def on_stream(stream: spdy.Stream) -> bool:
            kind = stream.header("streamtype")
            if kind not in wanted or kind in got:
                return False  # refused: a type not asked for, or a second of one type
            got[kind] = stream
            if len(got) == len(wanted):
                all_in.set()
            return True

        async def run(session: spdy.Session) -> None:
            try:
                await asyncio.wait_for(all_in.wait(), STREAM_CREATION_TIMEOUT)
            except TimeoutError:
                return  # as the kubelet: no stream to say it on, the connection ends
            await self._spdy_command(session, got, req, ops, protocol)

        await spdy.serve_session(reader, writer, on_stream, run)

    async def _spdy_command(self, session: spdy.Session, got: dict[str, spdy.Stream],
                            req: Any, ops: Ops, protocol: str) -> None:
        loop = asyncio.get_running_loop()

        def sender(stream: spdy.Stream | None) -> Callable[[bytes], None] | None:
            if stream is None:
                return None

            def send(data: bytes) -> None:  # from a worker thread
                if data and not stream.local_closed:
                    asyncio.run_coroutine_threadsafe(stream.write(data), loop).result()
            return send

        stdin_r: int | None = None
        stdin_w: int | None = None
        tasks: list[asyncio.Future[None]] = []
        if "stdin" in got:
            stdin_r, stdin_w = os.pipe()
            if protocol == V1:  # v1 servers close their (unused) side of stdin at once
                await got["stdin"].close()

            async def pump_stdin(stream: spdy.Stream, fd: int) -> None:
                try:
                    while data := await stream.read():
                        await loop.run_in_executor(self.owner.pool, write_all, fd, data)
                    if stream.reset_status is not None and ops.gone is not None:
                        # the client left without ending its input: an attach lets go
                        # of the container before the end of input could reach it
                        ops.gone()
                except OSError:
                    pass  # the command closed its stdin
                finally:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            tasks.append(asyncio.ensure_future(pump_stdin(got["stdin"], stdin_w)))
            stdin_w = None  # the task owns it
        if ops.gone is not None:
            gone = ops.gone

            async def watch() -> None:  # the client left: let go of an attach now
                await session.wait_closed(None)
                gone()
            tasks.append(asyncio.ensure_future(watch()))

        code: int | None = None
        error = ""
        try:
            if ops.prepare is not None:
                await self.owner.run(ops.prepare)
            if "resize" in got:  # once the exec exists
                tasks.append(asyncio.ensure_future(self._spdy_resizes(got["resize"], ops)))
            out, err = sender(got.get("stdout")), sender(got.get("stderr"))
            code = await self.owner.run(lambda e: ops.start(e, out, err, stdin_r))
        except KetchError as exc:
            error = exc.message
        except (OSError, RuntimeError, ConnectionError):
            pass  # the client went away
        except Exception as exc:  # a bug: logged, reported on the error stream
            traceback.print_exc(file=sys.stderr)
            error = f"{type(exc).__name__}: {exc}"
        try:
            for kind in ("stdout", "stderr"):
                if kind in got:
                    await got[kind].close()
            status = outcome(code, ops.cmd, error)
            if protocol == V4:
                await got["error"].write(json.dumps(status).encode())
            elif status["status"] != "Success":  # before v4: a failure's text alone
                await got["error"].write(status["message"].encode())
            await got["error"].close()
            # the client hangs up once it has read everything; going away first could
            # cut off what it still has queued
            await session.wait_closed(LINGER)
        except ConnectionError:
            pass
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            if stdin_r is not None:
                os.close(stdin_r)

    async def _spdy_resizes(self, stream: spdy.Stream, ops: Ops) -> None:
        """Terminal sizes: JSON objects one after another, as they come."""
        decoder = json.JSONDecoder()
        text = ""
        while data := await stream.read():
            try:
                text += data.decode()
            except UnicodeDecodeError:
                return
            while text.strip():
                try:
                    size, end = decoder.raw_decode(text.lstrip())
                except ValueError:
                    break  # an object cut in two: the rest comes in the next frame
                text = text.lstrip()[end:]
                if not isinstance(size, dict):
                    return
                with contextlib.suppress(ValueError, TypeError, KetchError):
                    h, w = int(size.get("Height", 0)), int(size.get("Width", 0))
                    await self.owner.run(resizing(ops.resize, h, w))
            if len(text) > 4096:
                return  # not JSON sizes: as the kubelet, stop reading them

    async def _spdy_portforward(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter, req: Any) -> None:
        """Port forward: an error and a data stream per forwarded connection, paired by
        their requestID header, any number of them until the client hangs up."""
        pod_id = req.pod_sandbox_id
        allowed = {int(p) for p in req.port}
        pairs: dict[str, dict[str, spdy.Stream]] = {}
        timers: dict[str, asyncio.Future[None]] = {}
        tasks: set[asyncio.Future[None]] = set()

        def spawn(coro: Any) -> asyncio.Future[None]:
            task = asyncio.ensure_future(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return task

        async def incomplete(rid: str) -> None:
            await asyncio.sleep(STREAM_CREATION_TIMEOUT)
            timers.pop(rid, None)
            pair = pairs.pop(rid, None)
            if pair and "error" in pair:
                with contextlib.suppress(ConnectionError):
                    await pair["error"].write(b"timed out waiting for streams")
                    await pair["error"].close()

        def on_stream(stream: spdy.Stream) -> bool:
            port, kind = stream.header("port"), stream.header("streamtype")
            if not port.isdigit() or not 0 < int(port) < 65536 \
                    or kind not in ("error", "data"):
                return False
            rid = stream.header("requestid") or str(
                stream.id if kind == "error" else stream.id - 2)  # clients before 1.5
            pair = pairs.setdefault(rid, {})
            if kind in pair:
                return False
            if not pair:
                timers[rid] = spawn(incomplete(rid))
            pair[kind] = stream
            if len(pair) == 2:
                del pairs[rid]
                timers.pop(rid).cancel()
                spawn(self._spdy_forward(pod_id, allowed, pair["data"], pair["error"]))
            return True

        async def run(session: spdy.Session) -> None:
            await session.wait_closed(None)

        try:
            await spdy.serve_session(reader, writer, on_stream, run)
        finally:
            for task in list(tasks):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _spdy_forward(self, pod_id: str, allowed: set[int], data: spdy.Stream,
                            error: spdy.Stream) -> None:
        port = int(data.header("port"))
        try:
            if allowed and port not in allowed:
                raise InvalidArgument(f"port {port} was not asked for in the request")
            sock = await self.owner.run(lambda e: e.pod_connect(pod_id, port))
            sock.setblocking(False)
            pod_r, pod_w = await asyncio.open_connection(sock=sock)
        except (OSError, KetchError) as exc:
            with contextlib.suppress(ConnectionError):
                await error.write(forward_error(port, pod_id, exc).encode())
                await error.close()
                await data.close()
            return

        async def to_pod() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while chunk := await data.read():
                    pod_w.write(chunk)
                    await pod_w.drain()
                if pod_w.can_write_eof():
                    pod_w.write_eof()  # the client's half-close, passed on

        upstream = asyncio.ensure_future(to_pod())
        try:
            while chunk := await pod_r.read(65536):
                await data.write(chunk)
            await data.close()
            await error.close()
        except (ConnectionError, OSError):
            pass
        finally:
            upstream.cancel()
            with contextlib.suppress(BaseException):
                await upstream
            pod_w.close()


class Head:
    """A request line and its headers, as far as choosing the transport needs them."""

    def __init__(self, raw: bytes) -> None:
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        self.method = parts[0] if len(parts) == 3 else ""
        self.path = parts[1].partition("?")[0] if len(parts) == 3 else ""
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                self.headers.append((name.strip().lower(), value.strip()))

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]

    @property
    def spdy_upgrade(self) -> bool:
        connection = ",".join(self.values("connection")).lower()
        upgrade = ",".join(self.values("upgrade")).lower()
        return "upgrade" in connection and "spdy/3.1" in upgrade


def http_error(writer: asyncio.StreamWriter, code: int, text: str,
                headers: list[tuple[str, str]] | None = None) -> None:
    """A plain-text refusal, after which the connection closes."""
    reason = {400: "Bad Request", 403: "Forbidden", 404: "Not Found"}[code]
    body = (text + "\n").encode()
    lines = [f"HTTP/1.1 {code} {reason}", "Content-Type: text/plain; charset=utf-8",
             "X-Content-Type-Options: nosniff", f"Content-Length: {len(body)}",
             "Connection: close", *(f"{n}: {v}" for n, v in headers or [])]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
