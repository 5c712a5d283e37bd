"""What every endpoint module shares: the Service (one Engine per worker thread), the
request helpers, and the one mapping from ketch's errors to Docker's statuses
(`errors_middleware`: ketch's error types carry their status, 404 not found, 409 conflict,
400 bad parameter; anything else is a 500)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable

from ketch import __version__
from ketch.api import streams, web
from ketch.engine import API_VERSION, MIN_API_VERSION, Engine
from ketch.errors import InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


MAX_VERSION = version_tuple(API_VERSION)
MIN_VERSION = version_tuple(MIN_API_VERSION)


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
def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    v = request.query.get(name)
    if v is None:
        return default
    return v.lower() not in ("", "0", "false", "no")


def query_int(request: web.Request, name: str, default: int | None = None) -> int | None:
    v = request.query.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {v!r}: expected an integer") from None


def query_filters(request: web.Request) -> dict[str, list[str]]:
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


async def json_body(request: web.Request) -> dict[str, Any]:
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


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(),
                        content_type="application/json")


def empty(status: int = 204) -> web.Response:
    return web.Response(status=status)


# -- middleware: versions, activity, the one error mapping -----------------------------------
def error_response(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status)


async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    svc.active += 1
    try:
        ver = request.match_info.get("ver")
        if ver is not None:
            try:
                v = version_tuple(ver)
            except ValueError:
                v = (0,)
            if v > MAX_VERSION:
                return error_response(400, f"client version {ver} is too new. Maximum supported"
                                   f" API version is {API_VERSION}")
            if v < MIN_VERSION:
                return error_response(400, f"client version {ver} is too old. Minimum supported"
                                   f" API version is {MIN_API_VERSION}, please upgrade"
                                   " your client to a newer version")
        return await handler(request)
    except web.HTTPError:
        raise  # the server's own (a body too large, a malformed one): answered as such
    except KetchError as e:
        return error_response(e.http_status if 400 <= e.http_status < 600 else 500, e.message)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception as e:  # a bug: the client gets a 500, the log the traceback
        traceback.print_exc(file=sys.stderr)
        return error_response(500, f"{type(e).__name__}: {e}")
    finally:
        svc.active -= 1
        svc.last_active = asyncio.get_running_loop().time()



SERVER = f"ketch/{__version__} (linux)"
