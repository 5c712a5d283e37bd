"""The container endpoints (moby api/swagger.yaml, v1.45): lifecycle, wait, logs, attach."""

from __future__ import annotations

import asyncio
import contextlib
import json

from ketch.api import streams, web
from ketch.api.common import (
    SVC,
    Handler,
    Service,
    empty,
    json_body,
    json_response,
    query_bool,
    query_filters,
    query_int,
)
from ketch.api.fields import CONTAINER_CREATE, canonical
from ketch.engine import Engine
from ketch.errors import Conflict, ImageNotFound, InvalidArgument, KetchError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any



# -- containers --------------------------------------------------------------------------------
async def containers_list(request: web.Request) -> web.Response:
    all_ = query_bool(request, "all")
    limit = query_int(request, "limit", -1)
    size = query_bool(request, "size")
    filters = query_filters(request)
    return json_response(await request.app[SVC].run(
        lambda e: e.containers.list(all=all_, filters=filters, limit=limit or -1,
                                    size=size)))


async def containers_create(request: web.Request) -> web.Response:
    body = canonical(await json_body(request), CONTAINER_CREATE)
    name = request.query.get("name") or None
    host_config = body.pop("HostConfig", None)
    networking = body.pop("NetworkingConfig", None)
    if host_config is None:
        host_config = {}
    if not isinstance(host_config, dict):
        raise InvalidArgument("invalid HostConfig: expected an object")
    if networking is not None and not isinstance(networking, dict):
        raise InvalidArgument("invalid NetworkingConfig: expected an object")
    platform = request.query.get("platform") or None
    warnings: list[str] = []
    try:
        rec = await request.app[SVC].run(lambda e: e.containers.create(
            body, host_config, name=name, networking_config=networking, warnings=warnings,
            platform=platform))
    except NotFound as e:
        if isinstance(e, ImageNotFound):
            raise
        # a 404 from create means "no such image" to the docker CLI, which then pulls:
        # anything else missing (a --volumes-from, --link or --ipc container) is the
        # request's fault, as dockerd answers it
        raise InvalidArgument(e.message) from None
    return json_response({"Id": rec.id, "Warnings": warnings}, 201)


async def containers_inspect(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    size = query_bool(request, "size")
    return json_response(await request.app[SVC].run(lambda e: e.containers.inspect(name,
                                                                              size=size)))


async def containers_start(request: web.Request) -> web.Response:
    svc: Service = request.app[SVC]
    name = request.match_info["id"]
    rec = await svc.run(lambda e: e.containers.get(name))
    if rec.state == "paused":
        raise Conflict("cannot start a paused container, try unpause instead")
    if rec.running:
        return empty(304)
    waiting = svc.pending.pop(rec.id, [])
    waiting = [f for f in waiting if not f.done()]
    try:
        _, sessions = await svc.run(lambda e: e.containers.start_attached(rec.id,
                                                                          len(waiting)))
    except BaseException as exc:
        for f in waiting:
            if not f.done():
                f.set_exception(exc if isinstance(exc, Exception) else Conflict("cancelled"))
        raise
    for f, s in zip(waiting, sessions, strict=True):
        if f.done():
            s.close()
        else:
            f.set_result(s)
    return empty()


async def containers_stop(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    timeout = query_int(request, "t")
    signal = request.query.get("signal") or None
    svc: Service = request.app[SVC]
    rec = await svc.run(lambda e: e.containers.get(name))
    if not rec.running:
        return empty(304)
    await svc.run(lambda e: e.containers.stop(rec.id, timeout=timeout, signal=signal))
    return empty()


async def containers_restart(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    timeout = query_int(request, "t")
    signal = request.query.get("signal") or None
    await request.app[SVC].run(lambda e: e.containers.restart(name, timeout=timeout,
                                                                 signal=signal))
    return empty()


async def containers_kill(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    signal = request.query.get("signal") or "KILL"
    await request.app[SVC].run(lambda e: e.containers.kill(name, signal))
    return empty()


async def containers_delete(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    force = query_bool(request, "force")
    volumes = query_bool(request, "v")
    await request.app[SVC].run(lambda e: e.containers.remove(name, force=force,
                                                                volumes=volumes))
    return empty()


async def containers_wait(request: web.Request) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    name = request.match_info["id"]
    condition = request.query.get("condition") or "not-running"
    rec = await svc.run(lambda e: e.containers.get(name))
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {condition!r}")
    # Docker sends the headers at once: a client waits for them before it starts the
    # container (`docker run` registers its wait first).
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    def cancelled() -> bool:
        return svc.stopping.is_set() or request.disconnected

    try:
        code = await svc.run(lambda e: e.containers.wait_condition(
            rec.id, condition, cancelled=cancelled))
        error = None
    except KetchError as exc:
        code, error = -1, {"Message": exc.message}
    if code is None:  # the client left or the service stops
        resp.force_close()
        return resp
    try:
        await resp.write(json.dumps({"Error": error, "StatusCode": code}).encode() + b"\n")
        await resp.write_eof()
    except ConnectionError:
        resp.force_close()
    return resp


async def containers_logs(request: web.Request) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    name = request.match_info["id"]
    want_out = query_bool(request, "stdout")
    want_err = query_bool(request, "stderr")
    if not (want_out or want_err):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    follow = query_bool(request, "follow")
    timestamps = query_bool(request, "timestamps")
    tail_text = request.query.get("tail", "all") or "all"
    tail: int | None = None
    if tail_text != "all":
        try:
            tail = int(tail_text)
        except ValueError:
            tail = None  # dockerd sends the whole log for a tail that is not a number
        if tail is not None and tail < 0:
            tail = None
    since = _seconds(request, "since")
    until = _seconds(request, "until")
    rec = await svc.run(lambda e: e.containers.get(name))
    tty = bool(rec.config.get("Tty"))
    def left() -> bool:  # the client hung up (`logs -f` interrupted) or the service stops
        return svc.stopping.is_set() or request.disconnected

    # A follower of a silent container would otherwise hold its worker thread, and keep
    # the service from idling out, until the container next writes.
    chunks = await svc.run(lambda e: e.containers.logs(
        rec.id, follow=follow, tail=tail, since=since, until=until, timestamps=timestamps,
        cancelled=left))
    resp = web.StreamResponse(headers={
        "Content-Type": streams.RAW if tty else streams.MULTIPLEXED})
    await resp.prepare(request)
    stop = asyncio.ensure_future(svc.stopping.wait())
    done = object()
    try:
        while True:
            step = asyncio.ensure_future(asyncio.to_thread(next, chunks, done))
            finished, _ = await asyncio.wait({step, stop},
                                             return_when=asyncio.FIRST_COMPLETED)
            if step not in finished:
                resp.force_close()
                return resp
            item: Any = step.result()
            if item is done:
                if left():
                    resp.force_close()
                    return resp
                break
            kind, data = item
            if kind == "stderr" and not want_err or kind != "stderr" and not want_out:
                continue
            if not tty:
                data = streams.frame(streams.STDERR if kind == "stderr" else streams.STDOUT,
                                     data)
            await resp.write(data)
        await resp.write_eof()
    except ConnectionError:
        resp.force_close()  # the client left (`logs -f` interrupted)
    finally:
        stop.cancel()
    return resp


def _seconds(request: web.Request, name: str) -> float | None:
    v = request.query.get(name)
    if not v or v == "0":
        return None
    try:
        return float(v)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {v!r}: expected Unix seconds"
                              ) from None


async def containers_pause(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    await request.app[SVC].run(lambda e: e.containers.pause(name))
    return empty()


async def containers_unpause(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    await request.app[SVC].run(lambda e: e.containers.unpause(name))
    return empty()


async def containers_rename(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    new_name = request.query.get("name") or ""
    if not new_name:
        raise InvalidArgument("Neither old nor new names may be empty")
    await request.app[SVC].run(lambda e: e.containers.rename(name, new_name))
    return empty()


async def containers_top(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    ps_args = (request.query.get("ps_args") or "").split() or None
    titles, procs = await request.app[SVC].run(lambda e: e.containers.top(name, ps_args))
    return json_response({"Titles": titles, "Processes": procs})


async def containers_prune(request: web.Request) -> web.Response:
    filters = query_filters(request)
    res = await request.app[SVC].run(lambda e: e.containers.prune(filters))
    return json_response({"ContainersDeleted": res.deleted or None,
                  "SpaceReclaimed": res.space_reclaimed})


async def containers_resize(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    h = query_int(request, "h", 0) or 0
    w = query_int(request, "w", 0) or 0
    await request.app[SVC].run(lambda e: e.containers.resize(name, h, w))
    return empty(200)


async def containers_attach(request: web.Request) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    name = request.match_info["id"]
    want_stream = query_bool(request, "stream")
    want_in = query_bool(request, "stdin")
    want_out = query_bool(request, "stdout")
    want_err = query_bool(request, "stderr")
    detach_keys = request.query.get("detachKeys") or None
    want_logs = query_bool(request, "logs")
    rec = await svc.run(lambda e: e.containers.get(name))
    if detach_keys:  # refused with a 400, as dockerd's attach refuses them
        await svc.run(lambda e: e.containers.check_detach_keys(detach_keys))
    if rec.state == "paused":
        raise Conflict("You cannot attach to a paused container, unpause it first")
    tty = bool(rec.config.get("Tty"))
    # Waiting for the start is registered before the client hears 101: the docker CLI
    # sends its start as soon as it has the upgrade.
    fut: asyncio.Future[Any] | None = None
    if want_stream and not rec.running:
        fut = asyncio.get_running_loop().create_future()
        svc.pending.setdefault(rec.id, []).append(fut)
    early = await _early_session(svc, rec, fut, want_stream, want_logs)
    conn = streams.Hijacked(request, tty, upgrade=streams.wants_upgrade(request))
    try:
        resp = await conn.accept()
    except BaseException:
        _forget(svc, rec.id, fut)
        if early is not None:
            early.close()
        raise
    svc.hijacked.add(conn)
    try:
        if want_logs:  # what the container wrote so far, then (stream=1) what follows
            try:
                await svc.run(lambda e: _replay_logs(e, rec.id, conn, want_out, want_err))
            except OSError:
                return resp
        if not want_stream:
            return resp
        try:
            session = early if early is not None else await _session_for(svc, rec, fut)
        except KetchError as exc:
            # the start that was to hand the session over failed: its own request says
            # why, and the stream just ends, as dockerd's does (the docker CLI printed
            # the error twice). Other errors after the status line are said on the
            # stream, as the daemon's errors after a hijack reach the client only so.
            from_start = (fut is not None and fut.done() and not fut.cancelled()
                          and fut.exception() is exc)
            if not from_start:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(conn.stderr, f"Error: {exc.message}\n".encode())
            return resp
        if session is None:
            return resp
        svc.sessions.add(session)
        conn.on_peer_gone(session.interrupt)
        stdin = None
        if want_in and rec.config.get("OpenStdin"):
            stdin = conn.stdin_fd()
        out = conn.stdout if want_out else None
        err = conn.stderr if want_err else None
        try:
            await svc.run(lambda e: e.containers.pump(session, out, err, stdin, detach_keys,
                                                      tty=bool(rec.config.get("Tty"))))
        except OSError:
            pass  # the client went away; the container goes on
        finally:
            svc.sessions.discard(session)
            session.close()
    finally:
        svc.hijacked.discard(conn)
        conn.finish()
    return resp


def _replay_logs(e: Engine, cid: str, conn: streams.Hijacked, want_out: bool,
                 want_err: bool) -> None:
    for kind, data in e.containers.logs(cid):
        if kind == "stderr" and want_err:
            conn.stderr(data)
        elif kind != "stderr" and want_out:
            conn.stdout(data)


async def _early_session(svc: Service, rec: Any, fut: asyncio.Future[Any] | None,
                         want_stream: bool, want_logs: bool) -> Any:
    """A running container's attach session, opened before the client hears 200/101, so
    what it writes once the client has the status line reaches the client (which may
    feed it stdin through another attach right then). None otherwise: with logs=1 the
    session opens after the replay (nothing is sent twice), a container not running
    yet hands its session over at its start, and a failure here is met again by
    `_session_for` and said on the stream, as before."""
    if not want_stream or fut is not None or want_logs:
        return None
    with contextlib.suppress(KetchError):
        return await svc.run(lambda e: e.containers.attach_session(rec.id))
    return None


async def _session_for(svc: Service, rec: Any, fut: asyncio.Future[Any] | None) -> Any:
    """An attach session: at once for a running container (`fut` None), else the one the
    start in this service hands over before the process runs (so no output is missed),
    or one made when another front door started it. None when the service stops first
    or the container ran and exited unseen."""
    cid = rec.id
    if fut is None:
        return await svc.run(lambda e: e.containers.attach_session(cid))
    try:
        while True:
            if fut.done():
                return fut.result()
            if svc.stopping.is_set():
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(fut), 0.25)
                continue
            cur = await svc.run(lambda e: e.containers.get(cid))  # NotFound once removed
            if fut.done():
                continue
            if cur.running:
                try:
                    return await svc.run(lambda e: e.containers.attach_session(cid))
                except Conflict:
                    return None  # it has exited again already
            if cur.started_at != rec.started_at:
                return None
    finally:
        _forget(svc, cid, fut)


def _forget(svc: Service, cid: str, fut: asyncio.Future[Any] | None) -> None:
    if fut is None:
        return
    waiting = svc.pending.get(cid)
    if waiting and fut in waiting:
        waiting.remove(fut)
        if not waiting:
            svc.pending.pop(cid, None)
    fut.cancel()  # a start finding it cancelled closes the session it made for it


# -- images ------------------------------------------------------------------------------------


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/containers/json", containers_list),
    ("POST", "/containers/create", containers_create),
    ("GET", "/containers/{id}/json", containers_inspect),
    ("POST", "/containers/{id}/start", containers_start),
    ("POST", "/containers/{id}/stop", containers_stop),
    ("POST", "/containers/{id}/restart", containers_restart),
    ("POST", "/containers/{id}/kill", containers_kill),
    ("POST", "/containers/{id}/wait", containers_wait),
    ("POST", "/containers/{id}/resize", containers_resize),
    ("POST", "/containers/{id}/pause", containers_pause),
    ("POST", "/containers/{id}/unpause", containers_unpause),
    ("POST", "/containers/{id}/rename", containers_rename),
    ("GET", "/containers/{id}/top", containers_top),
    ("POST", "/containers/prune", containers_prune),
    ("POST", "/containers/{id}/attach", containers_attach),
    ("GET", "/containers/{id}/logs", containers_logs),
    ("DELETE", "/containers/{id}", containers_delete),
]
