"""Between a container record and the network service: HostConfig's network settings
become a `setup` call, and its result becomes Docker's NetworkSettings data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ketch.containers.records import ContainerRecord

if TYPE_CHECKING:
    from ketch.containers.host import ContainerHost
    from ketch.network.models import PortBinding
    from ketch.network.service import DeferredStep


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
    ep_cfg: dict[str, Any] = endpoints.get(mode) or next(iter(endpoints.values()), {}) or {}
    # Docker answers DNS for the container's name and short ID as well as its aliases.
    aliases = [rec.name, rec.id[:12]] + list(ep_cfg.get("Aliases") or [])
    ip = ((ep_cfg.get("IPAMConfig") or {}).get("IPv4Address")) or None
    att = svc.setup(rec.id, mode=mode, ports=_bindings(rec), aliases=aliases, ip=ip,
                    hostname=rec.config.get("Hostname") or rec.id[:12],
                    mac=rec.config.get("MacAddress") or None, later=later)
    ports = [{"IP": b.display_ip, "PrivatePort": b.container_port,
              "PublicPort": b.host_port, "Type": b.protocol} for b in att.ports]
    return {
        "netns": att.netns_path if att.netns_path else "host",
        "attachment": att,
        "Networks": {name: ep.to_docker() for name, ep in att.networks.items()},
        "Ports": ports,
    }


def teardown(engine: ContainerHost, rec: ContainerRecord) -> None:
    engine.networks.teardown(rec.id)


def connect(engine: ContainerHost, name_or_id: str, network: str, *, aliases: list[str],
            ip: str | None) -> None:
    rec = engine.containers.get(name_or_id)
    if rec.state not in ("running", "paused"):
        from ketch.errors import Conflict

        raise Conflict(f"container {rec.name} is not running: start it, then connect it to"
                       f" {network}")
    ep = engine.networks.connect(rec.id, network, [rec.name, rec.id[:12], *aliases], ip)
    net = dict(rec.network)
    nets = dict(net.get("Networks") or {})
    nets[ep.network_name] = ep.to_docker()
    net["Networks"] = nets
    engine.containers.records.update(rec.id, network=net)


def disconnect(engine: ContainerHost, name_or_id: str, network: str) -> None:
    rec = engine.containers.get(name_or_id)
    target = engine.networks.inspect_network(network)
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
                           "MacAddress": ep.mac, "IPv4Address": ep.cidr, "IPv6Address": ""}
    ipam = [{"Subnet": net.subnet, "Gateway": net.gateway}] if net.subnet else []
    options = {"com.docker.network.bridge.name": net.bridge} if net.bridge else {}
    return {"Name": net.name, "Id": net.id, "Created": rfc3339nano(net.created),
            "Scope": "local", "Driver": net.driver, "EnableIPv4": True, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": ipam},
            "Internal": net.internal, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
            "Options": options, "Labels": dict(net.labels or {})}
