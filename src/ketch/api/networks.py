"""The network endpoints: list, inspect, create, remove, connect, disconnect, prune."""

from __future__ import annotations

from ketch.api import web
from ketch.api.common import SVC, Handler, empty, json_body, json_response, query_filters
from ketch.api.fields import NETWORK_CONNECT, NETWORK_CREATE, NETWORK_DISCONNECT, canonical
from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any



async def networks_list(request: web.Request) -> web.Response:
    filters = query_filters(request)
    return json_response(await request.app[SVC].run(lambda e: e.network_list(filters)))


async def networks_inspect(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    return json_response(await request.app[SVC].run(lambda e: e.network_inspect(ref)))


async def networks_create(request: web.Request) -> web.Response:
    doc = canonical(await json_body(request), NETWORK_CREATE)
    return json_response(await request.app[SVC].run(lambda e: e.network_create(doc)), 201)


async def networks_delete(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    await request.app[SVC].run(lambda e: e.networks.remove_network(ref))
    return empty()


def _container(doc: dict[str, Any]) -> str:
    c = doc.get("Container")
    if not isinstance(c, str) or not c:
        raise InvalidArgument("no container specified")
    return c


async def networks_connect(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    doc = canonical(await json_body(request), NETWORK_CONNECT)
    container = _container(doc)
    ep = doc.get("EndpointConfig") or {}
    if not isinstance(ep, dict):
        raise InvalidArgument("invalid EndpointConfig: expected an object")
    aliases = ep.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise InvalidArgument("invalid Aliases: expected a list of strings")
    ipam = ep.get("IPAMConfig") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("invalid IPAMConfig: expected an object")
    ip = ipam.get("IPv4Address") or None
    ip6 = ipam.get("IPv6Address") or None
    await request.app[SVC].run(lambda e: e.network_connect(ref, container, aliases=aliases,
                                                            ip=ip, ip6=ip6))
    return empty(200)


async def networks_disconnect(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    container = _container(canonical(await json_body(request), NETWORK_DISCONNECT))
    await request.app[SVC].run(lambda e: e.network_disconnect(ref, container))
    return empty(200)


async def networks_prune(request: web.Request) -> web.Response:
    filters = query_filters(request)
    removed = await request.app[SVC].run(lambda e: e.networks.prune_networks(filters))
    return json_response({"NetworksDeleted": removed})


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/networks", networks_list),
    ("POST", "/networks/create", networks_create),
    ("POST", "/networks/prune", networks_prune),
    ("GET", "/networks/{id}", networks_inspect),
    ("DELETE", "/networks/{id}", networks_delete),
    ("POST", "/networks/{id}/connect", networks_connect),
    ("POST", "/networks/{id}/disconnect", networks_disconnect),
]
