"""Files of a container (moby api/swagger.yaml, v1.45): the archive endpoints (GET, HEAD,
PUT with `X-Docker-Container-Path-Stat`), export, changes, and commit. The copying is
the Engine's (the same methods `ketch cp`, `export`, `diff` and `commit` use)."""

from __future__ import annotations

import asyncio
import base64
import json

from ketch.api import streams, web
from ketch.api.common import SVC, Handler, Service, json_body, json_response, query_bool
from ketch.api.fields import CONTAINER_CREATE, canonical
from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


STAT_HEADER = "X-Docker-Container-Path-Stat"
TAR = "application/x-tar"


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("bad parameter: path cannot be empty")
    return path


def _stat_header(st: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(st).encode()).decode()


async def archive_head(request: web.Request) -> web.Response:
    name, path = request.match_info["id"], _path(request)
    st = await request.app[SVC].run(lambda e: e.container_path_stat(name, path))
    return web.Response(status=200, headers={STAT_HEADER: _stat_header(st),
                                             "Content-Type": "application/json"})


async def archive_get(request: web.Request) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    name, path = request.match_info["id"], _path(request)
    st = await svc.run(lambda e: e.container_path_stat(name, path))  # 404 before the body
    resp = web.StreamResponse(headers={STAT_HEADER: _stat_header(st), "Content-Type": TAR})
    await resp.prepare(request)
    try:
        await streams.send_file_from(
            resp, lambda out: svc.engine().copy_from_container(name, path, "-", out=out),
            asyncio.to_thread)
        await resp.write_eof()
    except ConnectionError:
        resp.force_close()
    return resp


async def archive_put(request: web.Request) -> web.Response:
    svc: Service = request.app[SVC]
    name, path = request.match_info["id"], _path(request)
    no_overwrite = query_bool(request, "noOverwriteDirNonDir")
    copy_uid_gid = query_bool(request, "copyUIDGID")
    body = streams.BodyReader(request, asyncio.get_running_loop())
    await svc.run(lambda e: e.copy_to_container(
        name, "-", path, tar=body, copy_uid_gid=copy_uid_gid,  # type: ignore[arg-type]  # BodyReader is a binary reader without the whole IO interface
        no_overwrite_dir_non_dir=no_overwrite))
    return web.Response(status=200)


async def export(request: web.Request) -> web.StreamResponse:
    svc: Service = request.app[SVC]
    name = request.match_info["id"]
    await svc.run(lambda e: e.containers.get(name))  # 404 before the body
    resp = web.StreamResponse(headers={"Content-Type": TAR})
    await resp.prepare(request)
    try:
        await streams.send_file_from(
            resp, lambda out: svc.engine().export(name, out=out),
            asyncio.to_thread)
        await resp.write_eof()
    except ConnectionError:
        resp.force_close()
    return resp


async def changes(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    rows = await request.app[SVC].run(lambda e: e.containers.diff(name))
    # no change at all is null, as dockerd's nil slice
    return json_response([{"Path": p, "Kind": k} for k, p in rows] or None)


async def commit(request: web.Request) -> web.Response:
    name = request.query.get("container") or ""
    if not name:
        raise InvalidArgument("No such container: ")
    repo = request.query.get("repo") or ""
    tag = request.query.get("tag") or ""
    ref = None
    if repo:
        ref = f"{repo}:{tag}" if tag else repo
    elif tag:
        raise InvalidArgument("a tag needs a repository to go with it")
    changes_ = [c for v in request.query.getall("changes", []) for c in v.splitlines()
                if c.strip()]
    comment = request.query.get("comment") or ""
    author = request.query.get("author") or ""
    pause = query_bool(request, "pause", True)
    config = canonical(await json_body(request), CONTAINER_CREATE) or None  # over the container's settings
    img = await request.app[SVC].run(lambda e: e.containers.commit(
        name, ref=ref, changes=changes_, message=comment, author=author, pause=pause,
        config=config))
    return json_response({"Id": img.id}, 201)


ROUTES: list[tuple[str, str, Handler]] = [
    ("HEAD", "/containers/{id}/archive", archive_head),
    ("GET", "/containers/{id}/archive", archive_get),
    ("PUT", "/containers/{id}/archive", archive_put),
    ("GET", "/containers/{id}/export", export),
    ("GET", "/containers/{id}/changes", changes),
    ("POST", "/commit", commit),
]
