"""GET /events (moby api/swagger.yaml, v1.45): the events journal as a stream of JSON
objects, one per line, each flushed as it comes.

The journal is followed in a thread of its own (not the worker pool the other endpoints
share: a stream can last for days), which hands events to the handler through a queue.
The handler looks at its connection every half second while no events come, so a client
that went away frees its reader within a second, events or not.
"""

from __future__ import annotations

import asyncio
import json
import threading

from ketch.api import web
from ketch.api.common import SVC, Service, query_filters

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


CHECK_SECONDS = 0.5
_END = object()


async def events(request: web.Request) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    since = request.query.get("since") or None
    until = request.query.get("until") or None
    filters = query_filters(request)
    stop = threading.Event()
    # bad since/until/filters are refused here, before the 200 goes out
    stream = await svc.run(lambda e: e.events(since=since, until=until, filters=filters,
                                              stopped=stop.is_set))
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def follow() -> None:
        try:
            for ev in stream:
                loop.call_soon_threadsafe(queue.put_nowait, ev)
                if stop.is_set():
                    break
        except BaseException as e:  # reported by the handler, which ends the response
            loop.call_soon_threadsafe(queue.put_nowait, e)
        finally:
            stream.close()
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    reader = threading.Thread(target=follow, name="events", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), CHECK_SECONDS)
            except TimeoutError:
                if svc.stopping.is_set() or request.disconnected:
                    resp.force_close()
                    return resp
                continue
            if item is _END or isinstance(item, BaseException):
                break
            await resp.write(json.dumps(item, separators=(",", ":")).encode() + b"\n")
        await resp.write_eof()
    except ConnectionError:
        resp.force_close()  # the client left
    finally:
        stop.set()  # the reader sees it within its poll interval and closes the journal
    return resp


ROUTES = [
    ("GET", "/events", events),
]
