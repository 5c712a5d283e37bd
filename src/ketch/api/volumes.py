"""The volume endpoints: list, create, inspect, remove, prune."""

from __future__ import annotations

from ketch.api import web
from ketch.api.common import (
    SVC,
    Handler,
    empty,
    json_body,
    json_response,
    query_bool,
    query_filters,
    version_tuple,
)
from ketch.api.fields import VOLUME_CREATE, canonical
from ketch.errors import InvalidArgument


async def volumes_list(request: web.Request) -> web.Response:
    filters = query_filters(request)
    vols = await request.app[SVC].run(lambda e: e.volumes.list(filters))
    return json_response({"Volumes": vols, "Warnings": []})


def _str_map(doc: object, what: str) -> dict[str, str]:
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise InvalidArgument(f"invalid {what}: expected an object of strings")
    return {str(k): v for k, v in doc.items()}


async def volumes_create(request: web.Request) -> web.Response:
    doc = canonical(await json_body(request), VOLUME_CREATE)
    name = doc.get("Name") or None
    if name is not None and not isinstance(name, str):
        raise InvalidArgument("invalid Name: expected a string")
    driver = doc.get("Driver") or "local"
    if not isinstance(driver, str):
        raise InvalidArgument("invalid Driver: expected a string")
    labels = _str_map(doc.get("Labels"), "Labels")
    opts = _str_map(doc.get("DriverOpts"), "DriverOpts")
    vol = await request.app[SVC].run(lambda e: e.volumes.create(name, labels=labels,
                                                                options=opts, driver=driver))
    return json_response(vol, 201)


async def volumes_inspect(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return json_response(await request.app[SVC].run(lambda e: e.volumes.inspect(name)))


async def volumes_delete(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    # `force` forgives a missing volume; one in use is refused all the same (as Docker)
    missing_ok = query_bool(request, "force")
    await request.app[SVC].run(lambda e: e.volumes.remove(name, missing_ok=missing_ok))
    return empty()


async def volumes_prune(request: web.Request) -> web.Response:
    filters = query_filters(request)
    ver = request.match_info.get("ver")
    if ver is not None and version_tuple(ver) < (1, 42) and "all" not in filters:
        filters["all"] = ["true"]  # before API 1.42 prune took named volumes too
    removed, space = await request.app[SVC].run(lambda e: e.volumes.prune(filters=filters))
    return json_response({"VolumesDeleted": removed, "SpaceReclaimed": space})


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/volumes", volumes_list),
    ("POST", "/volumes/create", volumes_create),
    ("POST", "/volumes/prune", volumes_prune),
    ("GET", "/volumes/{name}", volumes_inspect),
    ("DELETE", "/volumes/{name}", volumes_delete),
]
