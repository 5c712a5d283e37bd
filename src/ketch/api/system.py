"""The system endpoints: ping (GET and HEAD, the version headers), version, info."""

from __future__ import annotations

from ketch.api import web
from ketch.api.common import SVC, Handler, json_response, version_tuple
from ketch.engine import API_VERSION

# -- system ------------------------------------------------------------------------------------
_PING_HEADERS = {"Api-Version": API_VERSION, "Ostype": "linux",
                 "Docker-Experimental": "false", "Builder-Version": "1", "Swarm": "inactive",
                 "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


async def ping(request: web.Request) -> web.Response:
    if request.method == "HEAD":
        return web.Response(headers=_PING_HEADERS, content_type="text/plain")
    return web.Response(text="OK", headers=_PING_HEADERS, content_type="text/plain")


async def version(request: web.Request) -> web.Response:
    return json_response(await request.app[SVC].run(lambda e: e.version()))


async def info(request: web.Request) -> web.Response:
    return json_response(await request.app[SVC].run(lambda e: e.info()))


async def system_df(request: web.Request) -> web.Response:
    df = await request.app[SVC].run(lambda e: e.system_df())
    ver = request.match_info.get("ver")
    if ver is not None and version_tuple(ver) < (1, 42):
        # the build cache's size of its own, which dockerd sends up to API 1.41 (ketch's
        # classic builder keeps no build cache apart from its images)
        df["BuilderSize"] = sum(int(c.get("Size") or 0) for c in df.get("BuildCache") or [])
    return json_response(df)


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
    ("GET", "/system/df", system_df),
]
