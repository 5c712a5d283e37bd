"""The image endpoints: list, inspect, history, tag, delete."""

from __future__ import annotations

from ketch.api import web
from ketch.api.common import SVC, Handler, empty, json_response, query_bool, query_filters
from ketch.errors import InvalidArgument


async def images_list(request: web.Request) -> web.Response:
    all_ = query_bool(request, "all")
    filters = query_filters(request)
    return json_response(await request.app[SVC].run(lambda e: e.images.list(all=all_,
                                                                       filters=filters)))


async def images_inspect(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return json_response(await request.app[SVC].run(lambda e: e.images.inspect(name)))


async def images_history(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return json_response(await request.app[SVC].run(lambda e: e.images.history(name)))


async def images_delete(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    force = query_bool(request, "force")
    prune = not query_bool(request, "noprune")
    return json_response(await request.app[SVC].run(lambda e: e.images.remove(name, force=force,
                                                                         prune=prune)))


async def images_tag(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    repo = request.query.get("repo") or ""
    tag = request.query.get("tag") or ""
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    target = f"{repo}:{tag}" if tag else repo
    await request.app[SVC].run(lambda e: e.images.tag(name, target))
    return empty(201)


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/images/json", images_list),
    ("GET", "/images/{name:.+}/json", images_inspect),
    ("GET", "/images/{name:.+}/history", images_history),
    ("POST", "/images/{name:.+}/tag", images_tag),
    ("DELETE", "/images/{name:.+}", images_delete),
]
