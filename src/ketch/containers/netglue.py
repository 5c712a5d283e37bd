"""Between a container record and the network service: HostConfig's network settings
become a `setup` call, and its result becomes Docker's NetworkSettings data."""

from __future__ import annotations

from ketch.containers.records import ContainerRecord
from ketch.errors import Forbidden, InvalidArgument, KetchError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.containers.host import ContainerHost
    from ketch.network.models import Endpoint, PortBinding
    from ketch.network.sandbox import DeferredStep


def _bindings(rec: ContainerRecord) -> list[PortBinding]:
    from ketch.network.models import PortBinding
    from ketch.network.ports import publish_all

    hc = rec.host_config
    out: list[PortBinding] = []
    for key, binds in (hc.get("PortBindings") or {}).items():
        port, _, proto = key.partition("/")
        for b in binds or [{}]:
            hp = str(b.get("HostPort") or "")
            lo, _, hi = hp.partition("-")
            out.append(PortBinding(int(port), proto or "tcp", b.get("HostIp") or "",
                                   int(lo) if lo else 0, int(hi) if hi else 0))
    if hc.get("PublishAllPorts"):
        bound = {b.port_key for b in out}
        exposed = [k for k in (rec.config.get("ExposedPorts") or {}) if k not in bound]
        out.extend(publish_all(exposed))
    return out


def setup(engine: ContainerHost, rec: ContainerRecord, *,
          later: list[DeferredStep] | None = None) -> dict[str, Any]:
    """The container's network; with `later`, see NetworkService.setup."""
    svc = engine.networks
    hc = rec.host_config
    mode = hc.get("NetworkMode") or "bridge"
    if mode.startswith("container:"):
        other = engine.containers.get(mode.split(":", 1)[1])
        mode = f"container:{other.id}"
    endpoints = ((hc.get("_NetworkingConfig") or {}).get("EndpointsConfig") or {})
    ep_cfg: dict[str, Any] = endpoints.get(mode) or _primary_config(engine, mode, endpoints)
    # Docker answers DNS for the container's name and short ID as well as its aliases.
    aliases = [rec.name, rec.id[:12]] + list(ep_cfg.get("Aliases") or [])
    ipam = ep_cfg.get("IPAMConfig") or {}
    ip = ipam.get("IPv4Address") or None
    att = svc.setup(rec.id, mode=mode, ports=_bindings(rec), aliases=aliases, ip=ip,
                    hostname=rec.config.get("Hostname") or rec.id[:12],
                    mac=rec.config.get("MacAddress") or None, later=later,
                    link_local=ipam.get("LinkLocalIPs") or (),
                    ip6=ipam.get("IPv6Address") or None)
    for ep in att.networks.values():
        svc.event("connect", ep.network_id, ep.network_name, container=rec.id)
    if att.networks:
        _connect_others(engine, rec, att, endpoints, later)
    networks = {name: endpoint_doc(rec, ep) for name, ep in att.networks.items()}
    primary = next(iter(networks.values()), None)
    if ipam and primary is not None:
        primary["IPAMConfig"] = dict(ipam)  # inspect echoes the request, as Docker's
    ports = [{"IP": b.display_ip, "PrivatePort": b.container_port,
              "PublicPort": b.host_port, "Type": b.protocol} for b in att.ports]
    return {
        "netns": att.netns_path if att.netns_path else "host",
        "attachment": att,
        "Networks": networks,
        "Ports": ports,
    }


def _primary_config(engine: ContainerHost, mode: str, endpoints: dict[str, Any]
                    ) -> dict[str, Any]:
    """The endpoint settings recorded for the NetworkMode network under another of its
    references (its ID, "default"); those of other networks (`network connect` to a
    stopped container) are for `_connect_others`, not for this one."""
    if not endpoints or mode in ("host", "none") or mode.startswith("container:"):
        return {}
    primary = engine.networks.inspect_network(mode).id
    for key, cfg in endpoints.items():
        try:
            if engine.networks.inspect_network(key).id == primary:
                return cfg or {}
        except KetchError:
            continue
    return {}


def _connect_others(engine: ContainerHost, rec: ContainerRecord, att: Any,
                    endpoints: dict[str, Any], later: list[DeferredStep] | None) -> None:
    """The networks the container was connected to while it was not running (or
    created on, beside its NetworkMode): each gets its endpoint now, after the first."""
    svc = engine.networks
    first = {ep.network_id for ep in att.networks.values()}
    try:
        for ref, cfg in endpoints.items():
            net = svc.inspect_network(ref)
            if net.id in first:
                continue
            cfg = cfg or {}
            ipam = cfg.get("IPAMConfig") or {}
            ep = svc.connect(rec.id, net.id, [rec.name, rec.id[:12],
                                              *(cfg.get("Aliases") or [])],
                             ipam.get("IPv4Address") or None,
                             ip6=ipam.get("IPv6Address") or None)
            att.networks[ep.network_name] = ep
            first.add(net.id)
    except BaseException:
        for step in later or ():
            step.cancel()
        if later:
            later.clear()
        svc.teardown(rec.id)
        raise


def configured_networks(engine: ContainerHost, rec: ContainerRecord) -> dict[str, Any]:
    """NetworkSettings.Networks of a container that is not running: the networks it
    will join at its start, with their configured aliases and no addresses (as Docker
    shows a created or stopped container)."""
    mode = rec.host_config.get("NetworkMode") or "bridge"
    if mode.startswith("container:"):
        return {}
    endpoints = {"bridge" if k == "default" else k: v for k, v in (
        (rec.host_config.get("_NetworkingConfig") or {}).get("EndpointsConfig") or {}).items()}
    names = [mode if mode != "default" else "bridge"] + [n for n in endpoints if n != mode]
    from ketch.network.lookup import network_ids

    ids = network_ids(engine.db)
    if ids is None:  # no network table yet: the service makes it and the built-ins
        ids = {n.name: n.id for n in engine.networks.list_networks()}
    names_of = {net_id: net_name for net_name, net_id in ids.items()}
    known = {**ids, **{net_id: net_id for net_id in names_of}}  # by name or full ID
    out: dict[str, Any] = {}
    for name in names:
        cfg = endpoints.get(name) or {}
        found = known.get(name) or next((i for i in names_of
                                         if len(name) >= 12 and i.startswith(name)), None)
        if found is None or names_of[found] in out:
            continue  # removed since: the start reports it
        out[names_of[found]] = {
            "IPAMConfig": cfg.get("IPAMConfig"), "Links": cfg.get("Links"),
            "Aliases": list(cfg.get("Aliases") or []) or None, "MacAddress": "",
            "NetworkID": found, "EndpointID": "", "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DriverOpts": cfg.get("DriverOpts"), "DNSNames": None}
    return out


def _edit_endpoints(engine: ContainerHost, rec: ContainerRecord, network: str,
                    config: dict[str, Any] | None) -> None:
    """Record (config) or forget (None) a network in a stopped container's
    configuration: it takes effect at the next start."""
    hc = dict(rec.host_config)
    nc = dict(hc.get("_NetworkingConfig") or {})
    eps = {k: v for k, v in (nc.get("EndpointsConfig") or {}).items()}
    net = engine.networks.inspect_network(network)
    mode = hc.get("NetworkMode") or "bridge"
    for key in list(eps):
        try:
            same = engine.networks.inspect_network(key).id == net.id
        except KetchError:
            same = False
        if same:
            del eps[key]
    primary = mode in (net.name, net.id) or (mode == "default" and net.name == "bridge")
    if config is not None:
        if mode == "none" and hc.pop("_NetworkModeWas", None):
            hc["NetworkMode"] = mode = net.name  # its networks were all disconnected
        if mode in ("none", "host") or mode.startswith("container:"):
            raise InvalidArgument("container sharing network namespace with another container "
                                  "or host cannot be connected to any other network")
        eps[net.name] = config
    elif primary and eps:
        hc["NetworkMode"] = next(iter(eps))  # the first one left takes its place
    elif primary:
        hc["_NetworkModeWas"], hc["NetworkMode"] = mode, "none"
    nc["EndpointsConfig"] = eps
    hc["_NetworkingConfig"] = nc
    engine.containers.records.update(rec.id, host_config=hc)


def teardown(engine: ContainerHost, rec: ContainerRecord) -> None:
    engine.networks.teardown(rec.id)


def connect(engine: ContainerHost, name_or_id: str, network: str, *, aliases: list[str],
            ip: str | None, ip6: str | None = None) -> None:
    # on the record read under the container's lock: two connects at once (compose
    # makes them) would otherwise each keep only their own network
    with engine.containers.locked(name_or_id) as rec:
        _connect(engine, rec, network, aliases=aliases, ip=ip, ip6=ip6)


def _connect(engine: ContainerHost, rec: ContainerRecord, network: str, *,
             aliases: list[str], ip: str | None, ip6: str | None) -> None:
    if rec.state not in ("running", "paused"):
        # Docker's way: a stopped container gets the network at its next start
        target = engine.networks.inspect_network(network)
        if target.name in configured_networks(engine, rec):
            raise Forbidden(f"endpoint with name {rec.name} already exists in network"
                            f" {target.name}")
        cfg: dict[str, Any] = {"Aliases": aliases or None}
        ipam = {k: v for k, v in (("IPv4Address", ip), ("IPv6Address", ip6)) if v}
        if ipam:
            cfg["IPAMConfig"] = ipam
        _edit_endpoints(engine, rec, target.id, cfg)
        return
    ep = engine.networks.connect(rec.id, network, [rec.name, rec.id[:12], *aliases], ip,
                                 name=rec.name, ip6=ip6)
    net = dict(rec.network)
    nets = dict(net.get("Networks") or {})
    nets[ep.network_name] = endpoint_doc(rec, ep)
    net["Networks"] = nets
    engine.containers.records.update(rec.id, network=net)


def endpoint_doc(rec: ContainerRecord, ep: Endpoint) -> dict[str, Any]:
    """NetworkSettings.Networks[<name>] as dockerd shows it: Aliases are the ones the
    user gave and the short ID (dockerd's list before API 1.45, which docker-compose 1
    reads: without the short ID there it reconnects the container); DNSNames every name
    the network's DNS answers for the container (its name, those aliases, its short ID,
    its hostname). The default bridge has no DNS: both are null there. (The endpoint's
    own list, which the DNS service reads, holds the name and short ID first.)"""
    doc = ep.to_docker()
    if ep.network_name == "bridge":
        doc["Aliases"] = doc["DNSNames"] = None
        return doc
    short = rec.id[:12]
    given = [a for a in ep.aliases if a not in (rec.name, short)]
    doc["Aliases"] = [*given, short]
    hostname = rec.config.get("Hostname") or ""
    doc["DNSNames"] = list(dict.fromkeys(n for n in (rec.name, *given, short, hostname) if n))
    return doc


def disconnect(engine: ContainerHost, name_or_id: str, network: str) -> None:
    with engine.containers.locked(name_or_id) as rec:  # as connect
        _disconnect(engine, rec, network)


def _disconnect(engine: ContainerHost, rec: ContainerRecord, network: str) -> None:
    target = engine.networks.inspect_network(network)
    if rec.state not in ("running", "paused"):
        if target.name not in configured_networks(engine, rec):
            raise NotFound(f"container {rec.id} is not connected to network {target.name}")
        _edit_endpoints(engine, rec, target.id, None)
        return
    engine.networks.disconnect(rec.id, target.id)
    net = dict(rec.network)
    nets = {k: v for k, v in (net.get("Networks") or {}).items() if k != target.name}
    net["Networks"] = nets
    engine.containers.records.update(rec.id, network=net)


def network_json(engine: ContainerHost, net: Any) -> dict[str, Any]:
    """`docker network inspect` shape for a ketch.network.models.Network."""
    from ketch.fmt.units import rfc3339nano

    containers = {}
    names = {r.id: r.name for r in engine.containers.records.all()}
    for cid, ep in (net.containers or {}).items():
        containers[cid] = {"Name": names.get(cid, cid[:12]), "EndpointID": ep.endpoint_id,
                           "MacAddress": ep.mac, "IPv4Address": ep.cidr,
                           "IPv6Address": f"{ep.ip6}/{ep.ip6_prefixlen}" if ep.ip6 else ""}
    ipam: list[dict[str, Any]] = []
    if net.subnet:
        ipam.append({"Subnet": net.subnet, "Gateway": net.gateway})
        if net.ip_range:
            ipam[0]["IPRange"] = net.ip_range
        if net.aux_addresses:
            ipam[0]["AuxiliaryAddresses"] = dict(net.aux_addresses)
    if net.subnet6:
        ipam.append({"Subnet": net.subnet6, "Gateway": net.gateway6})
    options = {"com.docker.network.bridge.name": net.bridge} if net.bridge else {}
    options.update(net.options)
    return {"Name": net.name, "Id": net.id, "Created": rfc3339nano(net.created),
            "Scope": "local", "Driver": net.driver, "EnableIPv4": True, "EnableIPv6": net.ipv6,
            "IPAM": {"Driver": "default", "Options": None, "Config": ipam},
            "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
            "Options": options, "Labels": dict(net.labels or {})}


def create_from_request(engine: ContainerHost, doc: dict[str, Any]) -> dict[str, Any]:
    """POST /networks/create: Docker's NetworkCreateRequest; {"Id", "Warning"}."""
    name = doc.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("network name cannot be empty" if not name
                              else "invalid Name: expected a string")
    driver = doc.get("Driver") or "bridge"
    if not isinstance(driver, str):
        raise InvalidArgument("invalid Driver: expected a string")
    scope = doc.get("Scope") or "local"
    labels = doc.get("Labels") or {}
    options = doc.get("Options") or {}
    if not isinstance(labels, dict) or not isinstance(options, dict):
        raise InvalidArgument("invalid Labels or Options: expected an object")
    ipam = doc.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("invalid IPAM: expected an object")
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs if c):
        raise InvalidArgument("invalid IPAM.Config: expected an array of objects")
    configs = [c for c in configs if c]
    config_from = doc.get("ConfigFrom") or {}
    if not isinstance(config_from, dict):
        raise InvalidArgument("invalid ConfigFrom: expected an object")
    v4 = [c for c in configs if ":" not in str(c.get("Subnet") or "")]
    v6 = [c for c in configs if ":" in str(c.get("Subnet") or "")]
    if len(v4) > 1 or len(v6) > 1:
        raise InvalidArgument("ketch networks have one subnet of each IP version: more than"
                              " one IPAM config was given")
    c4, c6 = (v4[0] if v4 else {}), (v6[0] if v6 else {})
    if (c4.get("Gateway") and not c4.get("Subnet")) or (c6.get("Gateway")
                                                         and not c6.get("Subnet")):
        raise InvalidArgument("a gateway needs a subnet")
    if c6.get("AuxiliaryAddresses") or (c6.get("IPRange")
                                        and c6.get("IPRange") != c6.get("Subnet")):
        raise InvalidArgument("an IPv6 IPRange or AuxiliaryAddresses are not supported by"
                              " ketch")
    net = engine.networks.create_network(
        name, subnet=c4.get("Subnet") or None, gateway=c4.get("Gateway") or None,
        internal=bool(doc.get("Internal")), driver=driver,
        labels={str(k): str(v) for k, v in labels.items()},
        ip_range=c4.get("IPRange") or None,
        aux_addresses={str(k): str(v) for k, v in (c4.get("AuxiliaryAddresses")
                                                   or {}).items()},
        options={str(k): str(v) for k, v in options.items()},
        attachable=bool(doc.get("Attachable")), ipam_driver=ipam.get("Driver") or "default",
        ipam_options=ipam.get("Options") or None, ipv6=bool(doc.get("EnableIPv6")),
        scope=scope, subnet6=c6.get("Subnet") or None, gateway6=c6.get("Gateway") or None,
        config_only=bool(doc.get("ConfigOnly")),
        config_from=config_from.get("Network") or None,
        ingress=bool(doc.get("Ingress")))
    return {"Id": net.id, "Warning": ""}
