"""The exec endpoints (moby api/swagger.yaml, v1.45): create, start (hijacked, plain or
detached), resize, inspect. The sessions are the Engine's (containers.exec_*), the same
the `ketch exec` CLI runs."""

from __future__ import annotations

import asyncio
import contextlib

from ketch.api import streams, web
from ketch.api.common import SVC, Handler, Service, empty, json_body, json_response, query_int
from ketch.api.fields import EXEC_CREATE, EXEC_START, canonical
from ketch.engine import Engine
from ketch.errors import Conflict, InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any



def _get(body: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, kind) or kind is int and isinstance(v, bool):
        raise InvalidArgument(f"invalid {name}: expected {_KINDS.get(kind, kind.__name__)}")
    return v


_KINDS = {bool: "a boolean", str: "a string", list: "a list", int: "an integer"}


def _strings(body: dict[str, Any], name: str) -> list[str]:
    v = _get(body, name, list, [])
    if not all(isinstance(x, str) for x in v):
        raise InvalidArgument(f"invalid {name}: expected a list of strings")
    return list(v)


def _console_size(body: dict[str, Any]) -> tuple[int, int] | None:
    size = _get(body, "ConsoleSize", list, None)
    if not size:
        return None
    if len(size) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                 for x in size):
        raise InvalidArgument("invalid ConsoleSize: expected [height, width]")
    return (size[0], size[1]) if any(size) else None


async def exec_create(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    body = canonical(await json_body(request), EXEC_CREATE)
    cmd = body.get("cmd")
    cmd = [cmd] if isinstance(cmd, str) else _strings(body, "Cmd")
    env = _strings(body, "Env")
    console = _console_size(body)
    kw = dict(env=env, user=_get(body, "User", str, "") or None,
              workdir=_get(body, "WorkingDir", str, "") or None,
              tty=_get(body, "Tty", bool, False), stdin=_get(body, "AttachStdin", bool, False),
              stdout=_get(body, "AttachStdout", bool, False),
              stderr=_get(body, "AttachStderr", bool, False),
              privileged=_get(body, "Privileged", bool, False),
              detach_keys=_get(body, "DetachKeys", str, "") or None, console_size=console)
    eid = await request.app[SVC].run(lambda e: e.containers.exec_create(name, cmd, **kw))
    return json_response({"Id": eid}, 201)


async def exec_start(request: web.Request) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    eid = request.match_info["id"]
    body = canonical(await json_body(request), EXEC_START)
    detach = _get(body, "Detach", bool, False)
    _get(body, "Tty", bool, False)
    size = _console_size(body)
    # an unknown session (404) or a stopped container (409) is answered before any upgrade
    info = await svc.run(lambda e: _startable(e, eid))
    if size:  # the TTY's size at start (API 1.42+), as a resize before it runs
        await svc.run(lambda e: e.containers.exec_resize(eid, *size))
    if detach:
        # nothing on the body: Docker's answer to a detached start is empty
        await svc.run(lambda e: e.containers.exec_start(eid, detach=True))
        return empty(200)
    tty = bool(info["ProcessConfig"]["tty"])
    if streams.wants_upgrade(request):
        return await _hijacked(request, svc, eid, tty, bool(info["OpenStdin"]))
    return await _plain(request, svc, eid, tty)


def _startable(e: Engine, eid: str) -> dict[str, Any]:
    info = e.containers.exec_inspect(eid)
    rec = e.containers.get(info["ContainerID"])
    if not rec.running:
        raise Conflict(f"Container {rec.id} is not running")
    return info


async def _hijacked(request: web.Request, svc: Service, eid: str, tty: bool,
                    stdin: bool) -> web.StreamResponse:
    conn = streams.Hijacked(request, tty)
    resp = await conn.accept()
    svc.hijacked.add(conn)
    try:
        fd = conn.stdin_fd() if stdin else None
        try:
            # a killed client lets go of the worker at once, not at the process's next
            # output or its end (the process runs on, as dockerd's)
            await svc.run(lambda e: e.containers.exec_start(
                eid, stdout=conn.stdout, stderr=conn.stderr, stdin=fd,
                on_streaming=conn.on_peer_gone))
        except KetchError as exc:
            # after the upgrade an error reaches the client only as output, as dockerd's
            with contextlib.suppress(OSError):
                await asyncio.to_thread(conn.stdout, f"{exc.message}\r\n".encode())
        except OSError:
            pass  # the client went away
    finally:
        svc.hijacked.discard(conn)
        conn.finish()
    return resp


async def _plain(request: web.Request, svc: Service, eid: str, tty: bool
                 ) -> web.StreamResponse:
    """A start without the upgrade: the output as the response body, no input."""
    resp = web.StreamResponse(headers={"Content-Type": streams.RAW if tty
                                       else streams.MULTIPLEXED})
    await resp.prepare(request)
    loop = asyncio.get_running_loop()

    def sink(kind: int) -> Any:
        def write(data: bytes) -> None:
            if data:
                payload = data if tty else streams.frame(kind, data)
                asyncio.run_coroutine_threadsafe(resp.write(payload), loop).result()
        return write

    try:
        try:
            await svc.run(lambda e: e.containers.exec_start(
                eid, stdout=sink(streams.STDOUT), stderr=sink(streams.STDERR)))
        except KetchError as exc:
            msg = f"{exc.message}\r\n".encode()
            await resp.write(msg if tty else streams.frame(streams.STDOUT, msg))
        await resp.write_eof()
    except (ConnectionError, OSError):
        resp.force_close()
    return resp


async def exec_resize(request: web.Request) -> web.Response:
    eid = request.match_info["id"]
    h = query_int(request, "h", 0) or 0
    w = query_int(request, "w", 0) or 0
    await request.app[SVC].run(lambda e: e.containers.exec_resize(eid, h, w))
    return empty(200)


async def exec_inspect(request: web.Request) -> web.Response:
    eid = request.match_info["id"]
    return json_response(await request.app[SVC].run(lambda e: e.containers.exec_inspect(eid)))


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/containers/{id}/exec", exec_create),
    ("POST", "/exec/{id}/start", exec_start),
    ("POST", "/exec/{id}/resize", exec_resize),
    ("GET", "/exec/{id}/json", exec_inspect),
]
