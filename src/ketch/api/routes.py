"""The endpoints: each parses its request, calls the Engine in a worker thread (the event
loop never blocks on the store or the runtime) and answers in Docker's JSON shapes
(moby's api/swagger.yaml, v1.45).

Errors are mapped to statuses in one place, `_errors`: ketch's error types carry their
status (404 not found, 409 conflict, 400 bad parameter); anything else is a 500.

One module while the handlers are thin and share the request helpers and the route
table; split it by resource (containers, images, exec, build, ...) as those arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ketch import __version__
from ketch.api import streams
from ketch.engine import API_VERSION, MIN_API_VERSION, Engine
from ketch.errors import Conflict, InvalidArgument, KetchError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


MAX_VERSION = _version_tuple(API_VERSION)
MIN_VERSION = _version_tuple(MIN_API_VERSION)


class Service:
    """What the handlers share: one Engine per worker thread (an Engine holds one SQLite
    connection), the attaches waiting for their container's start, the live streams."""

    def __init__(self, root: str, run_root: str) -> None:
        self.root = root
        self.run_root = run_root
        self._local = threading.local()
        self.stopping = asyncio.Event()
        self.active = 0  # requests in progress (the idle timer runs when 0)
        self.last_active = 0.0
        self.pending: dict[str, list[asyncio.Future[Any]]] = {}
        self.hijacked: set[streams.Hijacked] = set()
        self.sessions: set[Any] = set()

    def engine(self) -> Engine:
        e = getattr(self._local, "engine", None)
        if e is None:
            e = self._local.engine = Engine(self.root, self.run_root)
        return e

    async def run(self, fn: Callable[[Engine], Any]) -> Any:
        """Call `fn(engine)` in a worker thread."""
        return await asyncio.to_thread(lambda: fn(self.engine()))


SVC = web.AppKey("svc", Service)


# -- request helpers -------------------------------------------------------------------------
def _bool(request: web.Request, name: str, default: bool = False) -> bool:
    v = request.query.get(name)
    if v is None:
        return default
    return v.lower() not in ("", "0", "false", "no")


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    v = request.query.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {v!r}: expected an integer") from None


def _filters(request: web.Request) -> dict[str, list[str]]:
    """`filters` as Docker sends it: {"key": ["v", ...]} or the old {"key": {"v": true}}."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"invalid filters: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid filters: expected a JSON object")
    out: dict[str, list[str]] = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out[k] = [x for x, on in v.items() if on]
        elif isinstance(v, list):
            out[k] = [str(x) for x in v]
        else:
            raise InvalidArgument(f"invalid filters: the value of {k!r} must be a list")
    return out


async def _json_body(request: web.Request) -> dict[str, Any]:
    data = await request.read()
    if not data:
        return {}
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"invalid JSON in the request body: {e}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid JSON in the request body: expected an object")
    return doc


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(),
                        content_type="application/json")


def _empty(status: int = 204) -> web.Response:
    return web.Response(status=status)


# -- middleware: versions, activity, the one error mapping -----------------------------------
def _error(status: int, message: str) -> web.Response:
    return _json({"message": message}, status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    svc.active += 1
    try:
        ver = request.match_info.get("ver")
        if ver is not None:
            try:
                v = _version_tuple(ver)
            except ValueError:
                v = (0,)
            if v > MAX_VERSION:
                return _error(400, f"client version {ver} is too new. Maximum supported"
                                   f" API version is {API_VERSION}")
            if v < MIN_VERSION:
                return _error(400, f"client version {ver} is too old. Minimum supported"
                                   f" API version is {MIN_API_VERSION}, please upgrade"
                                   " your client to a newer version")
        return await handler(request)
    except web.HTTPNotFound:
        return _error(404, "page not found")
    except web.HTTPMethodNotAllowed:
        return _error(405, f"method {request.method} not allowed for {request.path}")
    except web.HTTPException:
        raise
    except KetchError as e:
        return _error(e.http_status if 400 <= e.http_status < 600 else 500, e.message)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception as e:  # a bug: the client gets a 500, the log the traceback
        traceback.print_exc(file=sys.stderr)
        return _error(500, f"{type(e).__name__}: {e}")
    finally:
        svc.active -= 1
        svc.last_active = asyncio.get_running_loop().time()


# -- system ------------------------------------------------------------------------------------
_SERVER = f"ketch/{__version__} (linux)"
_PING_HEADERS = {"Api-Version": API_VERSION, "Ostype": "linux",
                 "Docker-Experimental": "false", "Builder-Version": "1", "Swarm": "inactive",
                 "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


async def ping(request: web.Request) -> web.Response:
    if request.method == "HEAD":
        return web.Response(headers=_PING_HEADERS, content_type="text/plain")
    return web.Response(text="OK", headers=_PING_HEADERS, content_type="text/plain")


async def version(request: web.Request) -> web.Response:
    return _json(await request.app[SVC].run(lambda e: e.version()))


async def info(request: web.Request) -> web.Response:
    return _json(await request.app[SVC].run(lambda e: e.info()))


# -- containers --------------------------------------------------------------------------------
async def containers_list(request: web.Request) -> web.Response:
    all_ = _bool(request, "all")
    limit = _int(request, "limit", -1)
    size = _bool(request, "size")
    filters = _filters(request)
    return _json(await request.app[SVC].run(
        lambda e: e.containers.list(all=all_, filters=filters, limit=limit or -1,
                                    size=size)))


async def containers_create(request: web.Request) -> web.Response:
    body = await _json_body(request)
    name = request.query.get("name") or None
    host_config = body.pop("HostConfig", None)
    networking = body.pop("NetworkingConfig", None)
    if host_config is None:
        host_config = {}
    if not isinstance(host_config, dict):
        raise InvalidArgument("invalid HostConfig: expected an object")
    if networking is not None and not isinstance(networking, dict):
        raise InvalidArgument("invalid NetworkingConfig: expected an object")
    rec = await request.app[SVC].run(lambda e: e.containers.create(
        body, host_config, name=name, networking_config=networking))
    return _json({"Id": rec.id, "Warnings": []}, 201)


async def containers_inspect(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    size = _bool(request, "size")
    return _json(await request.app[SVC].run(lambda e: e.containers.inspect(name,
                                                                              size=size)))


async def containers_start(request: web.Request) -> web.Response:
    svc: Service = request.app[SVC]
    name = request.match_info["id"]
    rec = await svc.run(lambda e: e.containers.get(name))
    if rec.state == "paused":
        raise Conflict("cannot start a paused container, try unpause instead")
    if rec.running:
        return _empty(304)
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
    return _empty()


async def containers_stop(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    timeout = _int(request, "t")
    signal = request.query.get("signal") or None
    svc: Service = request.app[SVC]
    rec = await svc.run(lambda e: e.containers.get(name))
    if not rec.running:
        return _empty(304)
    await svc.run(lambda e: e.containers.stop(rec.id, timeout=timeout, signal=signal))
    return _empty()


async def containers_restart(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    timeout = _int(request, "t")
    signal = request.query.get("signal") or None
    await request.app[SVC].run(lambda e: e.containers.restart(name, timeout=timeout,
                                                                 signal=signal))
    return _empty()


async def containers_kill(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    signal = request.query.get("signal") or "KILL"
    await request.app[SVC].run(lambda e: e.containers.kill(name, signal))
    return _empty()


async def containers_delete(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    force = _bool(request, "force")
    volumes = _bool(request, "v")
    await request.app[SVC].run(lambda e: e.containers.remove(name, force=force,
                                                                volumes=volumes))
    return _empty()


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
    transport = request.transport
    gone = svc.stopping.is_set

    def cancelled() -> bool:
        return gone() or transport is None or transport.is_closing()

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
        await resp.write(json.dumps({"StatusCode": code, "Error": error}).encode() + b"\n")
        await resp.write_eof()
    except ConnectionError:
        resp.force_close()
    return resp


async def containers_logs(request: web.Request) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    name = request.match_info["id"]
    want_out = _bool(request, "stdout")
    want_err = _bool(request, "stderr")
    if not (want_out or want_err):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    follow = _bool(request, "follow")
    timestamps = _bool(request, "timestamps")
    tail_text = request.query.get("tail", "all") or "all"
    tail: int | None = None
    if tail_text != "all":
        try:
            tail = int(tail_text)
        except ValueError:
            raise InvalidArgument(f"invalid value for tail: {tail_text!r}: expected a"
                                  ' number or "all"') from None
        if tail < 0:
            tail = None
    since = _seconds(request, "since")
    until = _seconds(request, "until")
    rec = await svc.run(lambda e: e.containers.get(name))
    tty = bool(rec.config.get("Tty"))
    chunks = await svc.run(lambda e: e.containers.logs(
        rec.id, follow=follow, tail=tail, since=since, until=until, timestamps=timestamps))
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
            item = step.result()
            if item is done:
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
    return _empty()


async def containers_unpause(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    await request.app[SVC].run(lambda e: e.containers.unpause(name))
    return _empty()


async def containers_rename(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    new_name = request.query.get("name") or ""
    if not new_name:
        raise InvalidArgument("Neither old nor new names may be empty")
    await request.app[SVC].run(lambda e: e.containers.rename(name, new_name))
    return _empty()


async def containers_top(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    ps_args = (request.query.get("ps_args") or "").split() or None
    titles, procs = await request.app[SVC].run(lambda e: e.containers.top(name, ps_args))
    return _json({"Titles": titles, "Processes": procs})


async def containers_prune(request: web.Request) -> web.Response:
    filters = _filters(request)
    res = await request.app[SVC].run(lambda e: e.containers.prune(filters))
    return _json({"ContainersDeleted": res.deleted or None,
                  "SpaceReclaimed": res.space_reclaimed})


async def containers_resize(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    h = _int(request, "h", 0) or 0
    w = _int(request, "w", 0) or 0
    await request.app[SVC].run(lambda e: e.containers.resize(name, h, w))
    return _empty(200)


async def containers_attach(request: web.Request) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    name = request.match_info["id"]
    want_stream = _bool(request, "stream")
    want_in = _bool(request, "stdin")
    want_out = _bool(request, "stdout")
    want_err = _bool(request, "stderr")
    detach_keys = request.query.get("detachKeys") or None
    want_logs = _bool(request, "logs")
    rec = await svc.run(lambda e: e.containers.get(name))
    if not streams.wants_upgrade(request):
        raise InvalidArgument("attach needs an HTTP upgrade: send Connection: Upgrade and"
                              " Upgrade: tcp")
    if rec.state == "paused":
        raise Conflict("You cannot attach to a paused container, unpause it first")
    tty = bool(rec.config.get("Tty"))
    # Waiting for the start is registered before the client hears 101: the docker CLI
    # sends its start as soon as it has the upgrade.
    fut: asyncio.Future[Any] | None = None
    if want_stream and not rec.running:
        fut = asyncio.get_running_loop().create_future()
        svc.pending.setdefault(rec.id, []).append(fut)
    conn = streams.Hijacked(request, tty)
    try:
        resp = await conn.accept()
    except BaseException:
        _forget(svc, rec.id, fut)
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
            session = await _session_for(svc, rec, fut)
        except KetchError as exc:
            # the status line is sent: say it on the stream, as the daemon's errors after
            # a hijack reach the client only as output
            with contextlib.suppress(OSError):
                await asyncio.to_thread(conn.stderr, f"Error: {exc.message}\n".encode())
            return resp
        if session is None:
            return resp
        svc.sessions.add(session)
        stdin = None
        if want_in and rec.config.get("OpenStdin"):
            stdin = conn.stdin_fd()
        out = conn.stdout if want_out else None
        err = conn.stderr if want_err else None
        try:
            await svc.run(lambda e: e.containers.pump(session, out, err, stdin, detach_keys))
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
async def images_list(request: web.Request) -> web.Response:
    all_ = _bool(request, "all")
    filters = _filters(request)
    return _json(await request.app[SVC].run(lambda e: e.images.list(all=all_,
                                                                       filters=filters)))


async def images_inspect(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return _json(await request.app[SVC].run(lambda e: e.images.inspect(name)))


async def images_history(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return _json(await request.app[SVC].run(lambda e: e.images.history(name)))


async def images_delete(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    force = _bool(request, "force")
    prune = not _bool(request, "noprune")
    return _json(await request.app[SVC].run(lambda e: e.images.remove(name, force=force,
                                                                         prune=prune)))


async def images_tag(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    repo = request.query.get("repo") or ""
    tag = request.query.get("tag") or ""
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    target = f"{repo}:{tag}" if tag else repo
    await request.app[SVC].run(lambda e: e.images.tag(name, target))
    return _empty(201)


# -- the table -----------------------------------------------------------------------------------
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
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
    ("GET", "/images/json", images_list),
    ("GET", "/images/{name:.+}/json", images_inspect),
    ("GET", "/images/{name:.+}/history", images_history),
    ("POST", "/images/{name:.+}/tag", images_tag),
    ("DELETE", "/images/{name:.+}", images_delete),
]


async def _not_found(request: web.Request) -> web.Response:
    return _error(404, "page not found")


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = _SERVER


def make_app(svc: Service) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=64 << 20)
    app[SVC] = svc
    app.on_response_prepare.append(_server_header)
    for method, path, handler in ROUTES:
        # unversioned, and /v1.N/... for every version up to ketch's
        app.router.add_route(method, path, handler)
        app.router.add_route(method, r"/v{ver:[0-9]+\.[0-9]+}" + path, handler)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app
