"""A container's resources (moby api/swagger.yaml, v1.45): stats (one document, or a
stream of them) and update (limits and restart policy), through the Engine's
containers.stats / containers.update, which `ketch stats` shares."""

from __future__ import annotations

import asyncio
import json

from ketch.api import web
from ketch.api.common import SVC, Handler, Service, json_body, json_response, query_bool
from ketch.api.fields import UPDATE, canonical
from ketch.engine import Engine

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any



async def stats(request: web.Request) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    name = request.match_info["id"]
    stream = query_bool(request, "stream", True)
    one_shot = query_bool(request, "one-shot")
    rec = await svc.run(lambda e: e.containers.get(name))  # 404 before the headers
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    loop = asyncio.get_running_loop()
    def cancelled() -> bool:
        return svc.stopping.is_set() or request.disconnected

    def pump(e: Engine) -> None:
        # one worker thread walks the whole stream: its Engine is this thread's
        for doc in e.containers.stats(rec.id, stream=stream, one_shot=one_shot,
                                      cancelled=cancelled):
            data = json.dumps(doc).encode() + b"\n"
            asyncio.run_coroutine_threadsafe(resp.write(data), loop).result()

    try:
        await svc.run(pump)
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        resp.force_close()  # the client left
    return resp


async def update(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    body: dict[str, Any] = canonical(await json_body(request), UPDATE)
    warnings = await request.app[SVC].run(lambda e: e.containers.update(name, body))
    return json_response({"Warnings": warnings})


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/containers/{id}/stats", stats),
    ("POST", "/containers/{id}/update", update),
]
