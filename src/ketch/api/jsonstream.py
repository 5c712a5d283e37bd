"""Docker's JSON message streams (build, pull, push, load, import): one JSON object per
line, produced by an Engine iterator in a worker thread while the handler writes them.

The HTTP status is only committed with the first message sent: an error before it is
an ordinary error response (404 for an unknown image, 400 for bad input), an error after
it is the stream's last message, `{"errorDetail": {"message": m}, "error": m}`, as
dockerd does. A client that goes away ends the iterator (closing it) at its next message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import tempfile
import threading
import traceback
from typing import Any

from ketch import reference
from ketch.api import web
from ketch.api.common import SVC
from ketch.engine import Engine
from ketch.errors import BuildError, InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import IO


Message = dict[str, Any]

_MSG, _END = 0, 1
GONE_POLL = 0.5  # seconds between looks at the client while a stream is silent


def error_message(e: BaseException) -> Message:
    if isinstance(e, KetchError):
        text = e.message
    else:  # a bug: the log gets the traceback
        traceback.print_exception(e, file=sys.stderr)
        text = f"{type(e).__name__}: {e}"
    code = getattr(e, "code", 0) if isinstance(e, BuildError) else 0
    if code:  # a failed RUN's status, which the docker CLI exits with (dockerd's JSONError)
        return {"errorDetail": {"code": code, "message": text}, "error": text}
    return {"errorDetail": {"message": text}, "error": text}


async def json_stream(request: web.Request, make: Callable[[Engine], Iterable[Message]],
                      hold: Callable[[Message], bool] = lambda m: False,
                      on_gone: Callable[[], object] | None = None) -> web.StreamResponse:
    """Send the messages `make(engine)` yields (drained in a worker thread). Leading
    messages for which `hold` is true wait until a later one comes: if the iterator
    fails before that, the client gets an error status instead of a stream.
    `on_gone` is called (once, from the event loop) when the client hangs up while no
    message comes, for work that would otherwise only notice at its next message (a
    build's step that prints nothing)."""
    svc = request.app[SVC]
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    gone = threading.Event()

    def work(engine: Engine) -> None:
        it: Iterator[Message] = iter(make(engine))
        try:
            for msg in it:
                loop.call_soon_threadsafe(queue.put_nowait, (_MSG, msg))
                if gone.is_set():
                    break
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    fut = asyncio.ensure_future(svc.run(work))
    def done(f: asyncio.Future[None]) -> None:
        if not f.cancelled():
            f.exception()  # retrieved here: the handler may have gone with its client
        queue.put_nowait((_END, None))

    fut.add_done_callback(done)
    resp: web.StreamResponse | None = None
    held: list[Message] = []
    try:
        while True:
            if on_gone is None:
                kind, msg = await queue.get()
            else:
                try:
                    kind, msg = await asyncio.wait_for(queue.get(), GONE_POLL)
                except TimeoutError:
                    if request.disconnected and not gone.is_set():
                        gone.set()
                        on_gone()
                    continue
            if kind == _END:
                break
            if resp is None and hold(msg):
                held.append(msg)
                continue
            if resp is None:
                resp = await _start(request)
            for m in [*held, msg]:
                await _send(resp, m)
            held.clear()
        exc = fut.exception()
        if exc is not None and resp is None:
            raise exc  # the middleware answers with its status
        if resp is None:
            resp = await _start(request)
        for m in held:
            await _send(resp, m)
        if exc is not None:
            await _send(resp, error_message(exc))
        try:
            await resp.write_eof()
        except ConnectionError:
            pass
        return resp
    except _Gone:
        # the client went away: the iterator ends at its next message (or at once, by
        # `on_gone`), nothing to answer
        assert resp is not None
        return resp
    finally:
        if not fut.done() and not gone.is_set() and on_gone is not None:
            on_gone()
        gone.set()


class _Gone(Exception):
    """Writing to the client failed: it closed the connection."""


async def _send(resp: web.StreamResponse, msg: Message) -> None:
    try:
        await resp.write(json.dumps(msg).encode() + b"\r\n")
    except ConnectionError:
        raise _Gone() from None


async def _start(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    return resp


async def spool_body(request: web.Request) -> IO[bytes]:
    """The request body in an unnamed temporary file under the state root's tmp/ (not
    /tmp, often a small tmpfs), rewound: a context or archive is read more than once,
    and by a worker thread."""
    tmp = os.path.join(request.app[SVC].root, "tmp")
    os.makedirs(tmp, exist_ok=True)
    f = tempfile.TemporaryFile(prefix="ketch-api-body-", dir=tmp)
    try:
        async for chunk in request.content.iter_chunked(1 << 16):
            f.write(chunk)
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return f


# -- X-Registry-Auth / X-Registry-Config -------------------------------------------------
def _b64json(value: str, header: str) -> Any:
    value = value.strip()
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument(f"invalid {header} header: not base64url-encoded JSON") from None


def _user_password(config: Any) -> tuple[str, str] | None:
    if not isinstance(config, dict):
        return None
    user, password = config.get("username") or "", config.get("password") or ""
    if not (user and password) and config.get("auth"):
        try:
            user, _, password = base64.b64decode(config["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument("invalid auth in the registry credentials") from None
    return (str(user), str(password)) if user and password else None


def registry_auth(request: web.Request, image: str) -> dict[str, tuple[str, str]] | None:
    """X-Registry-Auth as the Engine's `auth`: the credentials for `image`'s registry
    ({} when the client sent an anonymous one); None when the header is absent."""
    value = request.headers.get("X-Registry-Auth")
    if value is None:
        return None
    creds = _user_password(_b64json(value, "X-Registry-Auth"))
    if creds is None:
        return {}
    return {reference.registry_for_auth(reference.parse(image)): creds}


def body_auth(config: dict[str, Any], image: str) -> dict[str, tuple[str, str]]:
    """An auth config sent as a request body (push before X-Registry-Auth existed) as
    the Engine's `auth`; an empty one is anonymous."""
    creds = _user_password(config)
    if creds is None:
        return {}
    return {reference.registry_for_auth(reference.parse(image)): creds}


def registry_config(request: web.Request) -> dict[str, tuple[str, str]] | None:
    """X-Registry-Config (a build's: registry -> auth config) as the Engine's `auth`."""
    value = request.headers.get("X-Registry-Config")
    if value is None:
        return None
    doc = _b64json(value, "X-Registry-Config")
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid X-Registry-Config header: expected a JSON object")
    out: dict[str, tuple[str, str]] = {}
    for server, config in doc.items():
        creds = _user_password(config)
        if creds is not None:
            out[reference.registry_for_auth(str(server))] = creds
    return out
