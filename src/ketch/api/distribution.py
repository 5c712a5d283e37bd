"""The image transfer endpoints: pull and import (POST /images/create), push, login
(POST /auth), save (GET /images/{name}/get, /images/get), load, prune and search."""

from __future__ import annotations

import asyncio
import sys
import traceback

from ketch.api import web
from ketch.api.common import SVC, Handler, json_body, json_response, query_filters
from ketch.api.jsonstream import (
    Message,
    body_auth,
    json_stream,
    registry_auth,
    spool_body,
)
from ketch.engine import Engine
from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import IO, Any



def _messages(events: Iterator[Any]) -> Iterator[Message]:
    """Progress events as the stream's messages (a PullResult has none)."""
    for event in events:
        message = getattr(event, "message", None)
        if message is None:
            continue
        msg = message()
        if "aux" in msg and "status" in msg:
            # dockerd sends the push's last line and its aux apart: clients print no
            # message that has an aux
            yield {"status": msg["status"]}
            yield {"progressDetail": {}, "aux": msg["aux"]}
        else:
            yield msg


def _leading(msg: Message) -> bool:
    """The lines dockerd sends only once the manifest was found: held back so that an
    unknown image is a 404 rather than an error inside a stream."""
    status = str(msg.get("status", ""))
    return status.startswith(("Pulling from ", "Using default tag"))


async def images_create(request: web.Request) -> web.StreamResponse:
    q = request.query
    source = q.get("fromSrc")
    if source is not None:
        return await _import(request, source)
    image = q.get("fromImage") or ""
    if not image:
        raise InvalidArgument("fromImage or fromSrc is required")
    tag = q.get("tag") or ""
    if tag:
        sep = "@" if ":" in tag else ":"  # a digest (sha256:...) or a tag
        image = f"{image}{sep}{tag}"
    auth = registry_auth(request, image)
    platform = q.get("platform") or None

    # no tag: every tag of the repository, as dockerd (`docker pull --all-tags`; the
    # docker CLI and docker-py name `latest` themselves when neither is asked for)
    all_tags = not tag and ":" not in image.rpartition("/")[2] and "@" not in image

    def messages(e: Engine) -> Iterator[Message]:
        return _messages(e.pull(image, platform=platform, auth=auth, all_tags=all_tags))

    return await json_stream(request, messages, hold=_leading)


async def _import(request: web.Request, source: str) -> web.StreamResponse:
    if source != "-":
        raise InvalidArgument("importing from a URL is not supported: send the tarball as"
                              " the request body (fromSrc=-)")
    q = request.query
    repo, tag = q.get("repo") or "", q.get("tag") or ""
    ref = (f"{repo}:{tag}" if tag else repo) or None
    changes = q.getall("changes", [])
    message = q.get("message") or ""
    platform = q.get("platform") or None
    body = await spool_body(request)

    def messages(e: Engine) -> Iterator[Message]:
        try:
            rec = e.images.import_tar(body, changes=changes, ref=ref, message=message,
                                      platform=platform)
        finally:
            body.close()
        yield {"status": rec.id}

    return await json_stream(request, messages)


async def images_push(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    tag = request.query.get("tag") or ""
    if tag:
        name = f"{name}:{tag}"
    auth = registry_auth(request, name)
    if auth is None:
        # the old clients' form: the auth config as the body (none: anonymous)
        auth = body_auth(await json_body(request), name)

    def messages(e: Engine) -> Iterator[Message]:
        # no tag: every tag of the repository, as dockerd (`docker push --all-tags`;
        # the docker CLI names `latest` itself when neither is given)
        return _messages(e.push(name, auth=auth, all_tags=not tag and ":" not in
                                name.rpartition("/")[2] and "@" not in name))

    return await json_stream(request, messages)


async def auth(request: web.Request) -> web.Response:
    doc = await json_body(request)
    user, password = doc.get("username") or "", doc.get("password") or ""
    server = doc.get("serveraddress") or None
    if not user or not password:
        raise InvalidArgument("username and password are required")
    await request.app[SVC].run(lambda e: e.login(server, user, password, store=False))
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    """The archive streamed as the Engine writes it; an unknown name is a 404 because
    nothing is written before every name was resolved."""
    loop = asyncio.get_running_loop()
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})

    class Out:
        def write(self, data: bytes) -> int:
            async def send() -> None:
                if not resp.prepared:
                    await resp.prepare(request)
                await resp.write(bytes(data))

            asyncio.run_coroutine_threadsafe(send(), loop).result()
            return len(data)

        def flush(self) -> None:
            pass

    try:
        await request.app[SVC].run(lambda e: e.images.save(names, Out()))
    except Exception as e:
        if not resp.prepared:
            raise  # nothing sent yet: an ordinary error response
        # half an archive went out: the client must see a broken stream, not an end
        if not isinstance(e, ConnectionError):  # else the client is gone already
            traceback.print_exc(file=sys.stderr)
        resp.force_close()  # the connection is cut: no end of the chunked body
        return resp
    if not resp.prepared:
        await resp.prepare(request)
    await resp.write_eof()
    return resp


async def images_get(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


async def images_get_many(request: web.Request) -> web.StreamResponse:
    return await _save(request, request.query.getall("names", []))


async def images_load(request: web.Request) -> web.StreamResponse:
    body: IO[bytes] = await spool_body(request)

    def messages(e: Engine) -> Iterator[Message]:
        try:
            loaded = e.images.load(body)
        finally:
            body.close()
        for line in loaded:
            yield {"stream": line.rstrip("\n") + "\n"}

    return await json_stream(request, messages)


async def images_prune(request: web.Request) -> web.Response:
    filters = query_filters(request)
    report = await request.app[SVC].run(lambda e: e.images.prune(filters=filters))
    return json_response({"ImagesDeleted": report.deleted or None,
                          "SpaceReclaimed": report.space_reclaimed})


async def images_search(request: web.Request) -> web.Response:
    term = request.query.get("term") or ""
    limit = request.query.get("limit")
    return json_response(await request.app[SVC].run(
        lambda e: e.search(term, limit=int(limit) if limit and limit.isdigit() else None)))


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/images/create", images_create),
    ("POST", "/images/load", images_load),
    ("POST", "/images/prune", images_prune),
    ("GET", "/images/search", images_search),
    ("GET", "/images/get", images_get_many),
    ("GET", "/images/{name:.+}/get", images_get),
    ("POST", "/images/{name:.+}/push", images_push),
    ("POST", "/auth", auth),
]
