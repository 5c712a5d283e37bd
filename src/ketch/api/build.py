"""The build endpoints: POST /build (the classic builder's JSON stream) and
POST /build/prune."""

from __future__ import annotations

import json

from ketch.api import web
from ketch.api.common import SVC, Handler, json_response, query_bool, query_filters
from ketch.api.jsonstream import Message, json_stream, registry_config, spool_body
from ketch.engine import Engine
from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any



def _json_query(request: web.Request, name: str) -> dict[str, Any]:
    raw = request.query.get(name)
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid {name}: not JSON") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InvalidArgument(f"invalid {name}: expected a JSON object")
    return doc


def _cache_from(raw: str | None) -> list[str]:
    """`cachefrom`: a JSON array of image names (`docker build --cache-from`)."""
    if not raw:
        return []
    try:
        doc = json.loads(raw)
    except ValueError:
        raise InvalidArgument("invalid cachefrom: not JSON") from None
    if doc is None:
        return []
    if not isinstance(doc, list) or not all(isinstance(x, str) for x in doc):
        raise InvalidArgument("invalid cachefrom: expected a JSON array of image names")
    return [x for x in doc if x]


# POST /build query parameters that set the RUN steps' HostConfig (0 or empty: unset,
# as the docker CLI sends every one of them)
_RUN_INTS = {"memory": "Memory", "memswap": "MemorySwap", "cpushares": "CpuShares",
             "cpuperiod": "CpuPeriod", "cpuquota": "CpuQuota", "shmsize": "ShmSize"}
_RUN_STRS = {"cpusetcpus": "CpusetCpus", "cpusetmems": "CpusetMems",
             "cgroupparent": "CgroupParent", "isolation": "Isolation"}


def _run_host_config(request: web.Request) -> dict[str, Any]:
    q = request.query
    if query_bool(request, "squash"):
        raise InvalidArgument("squash is only supported with experimental mode: ketch has no"
                              " experimental builder")
    hc: dict[str, Any] = {}
    for key, field in _RUN_INTS.items():
        raw = q.get(key)
        if raw in (None, "", "0"):
            continue
        try:
            hc[field] = int(raw)
        except ValueError:
            raise InvalidArgument(f"invalid {key}: {raw!r} is not an integer") from None
    for key, field in _RUN_STRS.items():
        if q.get(key):
            hc[field] = q[key]
    raw = q.get("ulimits")
    if raw and raw not in ("null", "[]"):
        try:
            ulimits = json.loads(raw)
        except ValueError:
            raise InvalidArgument("invalid ulimits: not JSON") from None
        if not isinstance(ulimits, list):
            raise InvalidArgument("invalid ulimits: expected a JSON array")
        hc["Ulimits"] = ulimits
    return hc


async def build(request: web.Request) -> web.StreamResponse:
    q = request.query
    if q.get("remote"):
        raise InvalidArgument("building from a remote context (remote=) is not supported:"
                              " send the context as the request body")
    cache_from = _cache_from(q.get("cachefrom"))
    run_host_config = _run_host_config(request)
    build_args = {str(k): (None if v is None else str(v))
                  for k, v in _json_query(request, "buildargs").items()}
    labels = {str(k): str(v) for k, v in _json_query(request, "labels").items()}
    quiet = query_bool(request, "q")
    kwargs: dict[str, Any] = dict(
        tags=q.getall("t", []), build_args=build_args, target=q.get("target") or None,
        no_cache=query_bool(request, "nocache"), pull=query_bool(request, "pull"),
        labels=labels, network=q.get("networkmode") or None,
        platform=q.get("platform") or None, remove=query_bool(request, "rm", True),
        force_remove=query_bool(request, "forcerm"),
        extra_hosts=[h for v in q.getall("extrahosts", []) for h in v.split(",") if h],
        auth=registry_config(request), run_host_config=run_host_config,
        cache_from=cache_from)
    dockerfile = q.get("dockerfile") or None
    body = await spool_body(request)
    running: list[Any] = []  # the build's events (ketch.builder.events.BuildEvents)

    def messages(e: Engine) -> Iterator[Message]:
        suppressed: list[Message] = []  # q=1: sent only if the build fails
        image_id = ""
        try:
            running.append(e.build("-", dockerfile, context_tar=body, **kwargs))
            for event in running[0]:
                message = getattr(event, "message", None)
                if message is None:
                    continue  # the result: its image was announced already
                msg = message()
                if "aux" in msg:
                    image_id = msg["aux"]["ID"]
                    yield msg
                elif quiet:
                    suppressed.append(msg)
                else:
                    yield msg
        except BaseException:
            yield from suppressed
            raise
        finally:
            body.close()
        if quiet and image_id:
            yield {"stream": image_id + "\n"}

    def cancel() -> None:  # the client hung up: as dockerd's, the build stops
        if running:
            running[0].cancel()

    return await json_stream(request, messages, on_gone=cancel)


async def build_prune(request: web.Request) -> web.Response:
    everything = query_bool(request, "all")
    filters = query_filters(request)  # until, label: as `ketch builder prune --filter`
    report = await request.app[SVC].run(lambda e: e.build_prune(all=everything,
                                                                  filters=filters))
    return json_response({"CachesDeleted": [d["Deleted"] for d in report.deleted
                                            if "Deleted" in d],
                          "SpaceReclaimed": report.space_reclaimed})


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/build", build),
    ("POST", "/build/prune", build_prune),
]
