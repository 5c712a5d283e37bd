"""Attach over a websocket (GET /containers/{id}/attach/ws, moby api/swagger.yaml v1.45):
the container's output as websocket messages, binary from API 1.28 on and text before
(as dockerd), never multiplexed; the client's messages are its stdin. The session is
the Engine's attach session, as for the hijacked attach."""

from __future__ import annotations

import asyncio
import contextlib
import os

from ketch.api import web
from ketch.api.common import SVC, Handler, Service, query_bool, version_tuple
from ketch.api.containers import _early_session, _forget, _session_for
from ketch.api.web import WSMsgType
from ketch.engine import Engine
from ketch.errors import Conflict, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any



async def attach_ws(request: web.Request) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    name = request.match_info["id"]
    want_logs = query_bool(request, "logs")
    want_stream = query_bool(request, "stream")
    want_in = query_bool(request, "stdin")
    want_out = query_bool(request, "stdout")
    want_err = query_bool(request, "stderr")
    detach_keys = request.query.get("detachKeys") or None
    ver = request.match_info.get("ver")
    binary = ver is None or version_tuple(ver) >= (1, 28)
    rec = await svc.run(lambda e: e.containers.get(name))
    if detach_keys:  # refused with a 400, as dockerd's attach refuses them
        await svc.run(lambda e: e.containers.check_detach_keys(detach_keys))
    if rec.state == "paused":
        raise Conflict("You cannot attach to a paused container, unpause it first")
    fut: asyncio.Future[Any] | None = None
    if want_stream and not rec.running:
        fut = asyncio.get_running_loop().create_future()
        svc.pending.setdefault(rec.id, []).append(fut)
    early = await _early_session(svc, rec, fut, want_stream, want_logs)
    ws = web.WebSocketResponse()
    try:
        await ws.prepare(request)
    except BaseException:
        _forget(svc, rec.id, fut)
        if early is not None:
            early.close()
        raise
    loop = asyncio.get_running_loop()

    def send(data: bytes) -> None:  # from the worker thread
        if not data:
            return
        coro = ws.send_bytes(data) if binary else ws.send_str(data.decode(errors="replace"))
        asyncio.run_coroutine_threadsafe(coro, loop).result()

    # the client's messages: the container's stdin (through a pipe the session reads)
    stdin_r: int | None = None
    stdin_w: int | None = None
    if want_in and rec.config.get("OpenStdin"):
        stdin_r, stdin_w = os.pipe()

    held: dict[str, Any] = {}  # the attach session, once there is one

    async def read_client() -> None:
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY) or stdin_w is None:
                    continue
                data = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data
                await asyncio.to_thread(os.write, stdin_w, data)
        except OSError:
            pass
        finally:
            if stdin_w is not None:
                with contextlib.suppress(OSError):
                    os.close(stdin_w)
            if ws.closed and "session" in held:
                # a websocket has no half-close: the client is gone, so let go of the
                # session now rather than at the container's next output
                held["session"].interrupt()

    reader = asyncio.ensure_future(read_client())
    try:
        if want_logs:
            await svc.run(lambda e: _replay_logs(e, rec.id, send if want_out else None,
                                                 send if want_err else None))
        if want_stream:
            try:
                session = early if early is not None else await _session_for(svc, rec, fut)
            except KetchError as exc:
                await ws.send_str(f"Error: {exc.message}\n")
                session = None
            if session is not None:
                held["session"] = session
                if reader.done():
                    session.interrupt()  # the client is gone already
                svc.sessions.add(session)
                try:
                    await svc.run(lambda e: e.containers.pump(
                        session, send if want_out else None, send if want_err else None,
                        stdin_r, detach_keys, tty=bool(rec.config.get("Tty"))))
                except (OSError, ConnectionError, RuntimeError):
                    pass  # the client went away; the container goes on
                finally:
                    svc.sessions.discard(session)
                    session.close()
    finally:
        _forget(svc, rec.id, fut)
        with contextlib.suppress(Exception):
            await ws.close()
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        if stdin_r is not None:
            os.close(stdin_r)
    return ws


def _replay_logs(e: Engine, cid: str, out: Any, err: Any) -> None:
    for kind, data in e.containers.logs(cid):
        sink = err if kind == "stderr" else out
        if sink is not None:
            sink(data)


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/containers/{id}/attach/ws", attach_ws),
]
