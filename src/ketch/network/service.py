"""NetworkService: everything below "a container has a network namespace", and the one
owner of it the Engine talks to.

It keeps the order of things; the work is in its parts:
- records.py (over schema.py's tables, which the DNS responder reads too): networks,
  one sandbox per container (its namespace, firewall rules and helper processes),
  endpoints (which double as IPAM leases: UNIQUE(network_id, ip)), DNS names and
  published ports;
- ipam.py: subnets, gateways, ip-range and aux-address, the containers' addresses;
- hostports.py: host ports for `-p`, and the userland proxy;
- sandbox.py: bridges, namespaces, veth pairs, routes (with the firewall.py rules);
- dns.py: the DNS processes' lifecycle.

Allocation of addresses and host ports happens inside one `BEGIN IMMEDIATE`
transaction, so concurrent ketch processes never hand out the same address or port; the
kernel side (namespace, veth, DNAT rules, helper processes) is built after the commit,
and `teardown` undoes it from the records, so a crash between the two is repaired by
the next teardown. Only with published ports does a container's set-up start a process
(one iptables-restore).

Size: a little over 600 lines because it is the one place that keeps the order of the
network's set-up and teardown (networks, container sandboxes, connect and disconnect,
restore after a restart, uninstall); the work itself is in the parts above. Some sixty
of its lines are the imports made where they are used and the parts built on first use,
which keep `network ls` and `network inspect` from loading the kernel side.
"""

from __future__ import annotations

import os
import time

from ketch.errors import Conflict, Forbidden, InvalidArgument, NotFound
from ketch.fdio import remove_file
from ketch.network import records
from ketch.network.config import NetworkConfig
from ketch.network.models import Endpoint, Network, NetworkAttachment, PortBinding
from ketch.store.db import Database
from ketch.values import cached_property

# The kernel side (firewall, bridges and namespaces, DNS processes, host ports, address
# management) is imported where it is used: `network ls` and `network inspect` read the
# tables only, and its imports (subprocess, socket, ctypes, re) were two thirds of their
# start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from _socket import socket
    from collections.abc import Callable, Iterable, Sequence

    from ketch.network.dns import DnsProcesses
    from ketch.network.firewall import Firewall, Rule
    from ketch.network.sandbox import DeferredStep, Plumbing


NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$"


class NetworkService:
    def __init__(self, db: Database, state_root: str | os.PathLike[str],
                 run_root: str | os.PathLike[str], config: NetworkConfig | None = None
                 ) -> None:
        self.db = db
        # (paths as text: pathlib, with re, enum and urllib.parse behind it, cost a
        # container's network set-up ~7 ms of imports)
        self.state_root_dir = os.path.abspath(state_root)
        self.run_root_dir = os.path.abspath(run_root)
        self.config = config or NetworkConfig.load(self.state_root_dir)
        self.config.validate()
        self._ready = False

    @cached_property
    def netns_dir(self) -> str:
        return f"{self.run_root_dir}/netns"

    @cached_property
    def run_dir(self) -> str:
        return f"{self.run_root_dir}/network"

    @cached_property
    def fw(self) -> Firewall:
        from ketch.network.firewall import Firewall

        return Firewall(self.config.chain_prefix)

    @cached_property
    def plumbing(self) -> Plumbing:
        from ketch.network.sandbox import Plumbing

        return Plumbing(self.config, self.fw, self.run_dir)

    @cached_property
    def dns(self) -> DnsProcesses:
        from ketch.network.dns import DnsProcesses

        return DnsProcesses(self.db, self.config, self.run_dir, self.plumbing.lock)

    # -- schema and built-in networks --------------------------------------------------
    def _init(self) -> None:
        if self._ready:
            return
        records.install(self.db, self.config)
        os.makedirs(os.path.join(self.run_root_dir, "network"), exist_ok=True)
        self._ready = True

    # -- public: networks --------------------------------------------------------------
    def event(self, action: str, net_id: str, name: str, driver: str = "bridge",
              container: str | None = None) -> None:
        """Journal a network event (ketch.events), with dockerd's attributes."""
        from ketch.events import emit

        attrs = {"name": name, "type": driver}
        if container:
            attrs["container"] = container
        emit(self.state_root_dir, "network", action, net_id, attrs)

    def create_network(self, name: str, subnet: str | None = None, gateway: str | None = None,
                       internal: bool = False, driver: str = "bridge",
                       labels: dict[str, str] | None = None, *, ip_range: str | None = None,
                       aux_addresses: dict[str, str] | None = None,
                       options: dict[str, str] | None = None, attachable: bool = False,
                       ipam_driver: str = "default", ipam_options: dict[str, str] | None = None,
                       ipv6: bool = False, scope: str = "local", subnet6: str | None = None,
                       gateway6: str | None = None, config_only: bool = False,
                       config_from: str | None = None, ingress: bool = False) -> Network:
        """A user-defined bridge network. `ip_range` narrows where containers' addresses
        come from, `aux_addresses` are never handed out, `options` are the bridge
        driver's (ketch.network.options); what ketch cannot do is refused."""
        import ipaddress
        import re

        from ketch.network import ipam
        from ketch.network import options as netopts

        self._init()
        if not re.match(NAME_PATTERN, name):
            raise InvalidArgument(
                f'invalid network name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
        if driver in ("host", "null"):
            raise Conflict(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise NotFound(f'plugin "{driver}" not found')
        if config_only or config_from:
            raise InvalidArgument("configuration-only networks (--config-only, --config-from)"
                                  " are not supported by ketch")
        if ingress:
            raise InvalidArgument("--ingress needs swarm mode, which ketch does not have")
        if ipam_driver not in ("", "default"):
            raise NotFound(f'plugin "{ipam_driver}" not found: ketch has only the default'
                           " IPAM driver")
        if ipam_options:
            raise InvalidArgument("ketch's default IPAM driver takes no options (--ipam-opt)")
        if (subnet6 or gateway6) and not ipv6:
            raise InvalidArgument("an IPv6 --subnet or --gateway needs --ipv6")
        if gateway6 and not subnet6:
            raise InvalidArgument("an IPv6 --gateway needs an IPv6 --subnet")
        if scope not in ("", "local"):
            raise InvalidArgument(f'invalid scope "{scope}": a bridge network is "local"')
        options = dict(options or {})
        netopts.check_driver_options(options)
        aux = dict(aux_addresses or {})
        if (ip_range or aux) and not subnet:
            raise InvalidArgument("every ip-range or aux-address must have a corresponding"
                                  " subnet")
        net_id = os.urandom(32).hex()
        bridge = options.get(netopts.BRIDGE_NAME) or (
            self.config.bridge_prefix + net_id[: 15 - len(self.config.bridge_prefix)])
        with self.db.transaction() as conn:
            if records.name_taken(conn, name):
                raise Conflict(f"network with name {name} already exists")
            if netopts.BRIDGE_NAME in options and (records.bridge_taken(conn, bridge)
                                                   or os.path.exists(f"/sys/class/net/{bridge}")):
                raise Conflict(f"bridge name {bridge} is already in use on this host")
            net, gw = ipam.subnet4(conn, self.config, subnet, gateway)
            rng, aux = ipam.ipam_config(net, ip_range, str(gw), aux)
            extra = {"ip_range": rng, "aux_addresses": aux, "options": options,
                     "attachable": attachable, "pool_subnet": not subnet}
            if ipv6:  # without an IPv6 --subnet: a ULA /64 from the default pool
                taken6 = [ipaddress.ip_network(s) for s in records.subnets6(conn)]
                net6, gw6 = ipam.ipv6_config(
                    subnet6 or str(ipam.free_subnet6(taken6)), gateway6, taken6)
                extra.update(subnet6=str(net6), gateway6=str(gw6))
            records.insert_network(conn, net_id, name, bridge, str(net), str(gw), internal,
                                   labels or {}, extra)
        network = self.inspect_network(net_id)
        try:
            self._ensure_ready(network)  # Docker creates the bridge with the network
        except BaseException:
            self._remove_network_objects(network)
            with self.db.transaction() as conn:
                records.delete_network(conn, net_id)
            raise
        self.event("create", network.id, network.name, network.driver)
        return network

    def list_networks(self, filters: dict[str, list[str]] | None = None) -> list[Network]:
        """The networks, oldest first; `filters` as `docker network ls --filter`: driver,
        id (prefix), name (substring), label (key or key=value), scope, type
        (builtin|custom), dangling (no containers)."""
        self._init()
        filters = filters or {}
        for key in filters:
            if key not in NETWORK_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        for t in filters.get("type", []):
            if t not in ("builtin", "custom"):
                raise InvalidArgument(f"invalid filter: 'type'='{t}'")
        for d in filters.get("dangling", []):
            if d.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={d}'")
        conn = self.db.conn
        used = records.used_network_ids(conn)
        return [n for n in records.networks(conn)
                if _network_matches(n, n.id in used, filters)]

    def inspect_network(self, ref: str) -> Network:
        self._init()
        conn = self.db.conn
        net = records.find_network(conn, ref)
        net.containers = dict(records.endpoints(conn, "e.network_id=?", (net.id,)))
        return net

    def remove_network(self, ref: str) -> None:
        self._init()
        with self.db.transaction() as conn:
            net = records.find_network(conn, ref)
            if net.builtin:
                raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
            if records.network_busy(conn, net.id):
                raise Forbidden(f"error while removing network: network {net.name} id {net.id} "
                               "has active endpoints")
            rules = records.delete_network(conn, net.id)
        self._remove_network_objects(net, rules)
        self.event("destroy", net.id, net.name, net.driver)

    def prune_networks(self, filters: dict[str, list[str]] | None = None) -> list[str]:
        """Remove user-defined networks without containers; `filters` as `docker network
        prune --filter`: label (key or key=value, all must match), label! (none may),
        until (created before). Returns the removed names."""
        filters = filters or {}
        for key in filters:
            if key not in ("label", "label!", "until"):
                raise InvalidArgument(f"invalid filter '{key}'")
        until = None
        if filters.get("until"):
            from ketch.fmt.units import parse_timestamp

            until = parse_timestamp(filters["until"][-1], time.time())
        removed = []
        for net in self.list_networks():
            if net.builtin or (until is not None and net.created >= until):
                continue
            if not all(_has_label(net, f) for f in filters.get("label", [])):
                continue
            if any(_has_label(net, f) for f in filters.get("label!", [])):
                continue
            try:
                self.remove_network(net.id)
            except (Forbidden, NotFound):
                continue
            removed.append(net.name)
        return removed

    def _remove_network_objects(self, net: Network, rules: Sequence[Rule] | None = None) -> None:
        self.dns.stop(net.id)
        self.plumbing.remove_bridge(net, rules)

    def _ensure_ready(self, net: Network) -> None:
        """The network's bridge, sysctls and firewall rules (recorded with it)."""

        def record(rules: list[Rule]) -> None:
            with self.db.transaction() as conn:
                records.set_network_rules(conn, net.id, rules)

        self.plumbing.ensure_bridge(net, record)

    def _claim_bridge_subnet(self, net: Network) -> Network:
        """The default bridge of a non-default state root takes its subnet when the
        bridge is made, under a host-wide lock, against the routes the host has then:
        a subnet another root's bridge (or anything else) routes is skipped for the next
        one of the root's sequence (config.derived_subnets). The bridge with its address
        is the claim every other root sees, so two roots never share a subnet."""
        import ipaddress

        from ketch.network import ipam
        from ketch.network.config import derived_subnets

        if os.path.exists(f"/sys/class/net/{net.bridge}"):
            return net
        with ipam.host_lock():
            if os.path.exists(f"/sys/class/net/{net.bridge}"):
                return net
            taken = ipam.host_routes()
            if any(ipaddress.ip_network(net.subnet).overlaps(t) for t in taken):
                with self.db.transaction() as conn:
                    if records.network_busy(conn, net.id):
                        raise Conflict(f"the default bridge's subnet {net.subnet} is routed"
                                       " elsewhere on this host; remove this root's"
                                       " containers or set bridge_subnet in network.toml")
                    root = self.state_root_dir
                    free = [c for c in derived_subnets(root)
                            if not any(c.overlaps(t) for t in taken)]
                    if not free:
                        raise Conflict("no free subnet left for the default bridge")
                    records.set_subnet(conn, net.id, str(free[0]), str(next(free[0].hosts())))
                    net = records.find_network(conn, net.id)
            self._ensure_ready(net)
        return net

    # -- public: containers ------------------------------------------------------------
    def setup(self, container_id: str, mode: str = "bridge",
              ports: Iterable[PortBinding] = (), aliases: Iterable[str] = (),
              ip: str | None = None, hostname: str = "", mac: str | None = None,
              name: str | None = None, dns: Iterable[str] = (), *,
              later: list[DeferredStep] | None = None,
              link_local: Iterable[str] = (), ip6: str | None = None) -> NetworkAttachment:
        """Give a container its network. `mode`: bridge | host | none | container:<id> |
        a network name or ID. `name` (the container's name) and `aliases` become DNS
        names on user-defined networks; `dns` is where that network's DNS service
        forwards this container's other queries. `link_local` addresses (169.254/16,
        fe80::/10) are added to the interface besides its address on the network.

        With `later` (a list), the namespace, addresses, records and rules are made now
        but the veth plumbing inside the namespace is appended to `later` for the caller
        to run, e.g. while the OCI runtime creates the container (which only needs the
        namespace to exist). The caller must run it before the container's process
        starts, and call `teardown` if it fails."""
        self._init()
        ports = list(ports)
        aliases = [a for a in dict.fromkeys(aliases) if a]
        if self._sandbox_row(container_id) is not None:
            self.teardown(container_id)  # a crashed run left its records: start clean
        if mode.startswith("container:"):
            if ports:
                raise InvalidArgument("conflicting options: port publishing and the "
                                      "container type network mode")
            return self._setup_joined(container_id, mode.split(":", 1)[1], hostname)
        # (a namespace of its own: not for a pod's member, which joins its infra's)
        from ketch.network import netns
        from ketch.network.firewall import FirewallError

        net = records.find_network(self.db.conn, mode or "bridge")
        if net.driver == "host":
            return self._setup_simple(container_id, "host", None, hostname)
        netns_path = f"{self.netns_dir}/{container_id}"
        if net.driver == "null":
            self._setup_simple(container_id, "none", netns_path, hostname)
            try:
                netns.remove(netns_path)
                netns.create(netns_path).close()
            except BaseException:
                self.teardown(container_id)
                raise
            return self._recorded(container_id)
        link_local = list(link_local)
        if (ip or ip6 or link_local) and net.builtin:
            raise InvalidArgument("user specified IP address is supported on user defined "
                                  "networks only")
        for b in ports:
            if b.family == 6 and b.protocol == "sctp":
                raise InvalidArgument("sctp ports cannot be published on IPv6 host addresses")
        if net.internal:
            ports = []  # as Docker: nothing is published from an internal network

        if net.builtin and self.config.derived_subnet:
            net = self._claim_bridge_subnet(net)
        proxy_sockets: list[tuple[socket, PortBinding]] = []
        with self.db.transaction() as conn:
            # the network again, in the transaction that adds the endpoint: a `network rm`
            # that committed since the lookup above has removed it (its bridge goes next),
            # and one that comes after finds the endpoint and refuses
            try:
                net = records.find_network(conn, net.id)
            except NotFound:
                raise NotFound(f"network {mode} not found") from None
            records.insert_sandbox(conn, container_id, net.name, str(netns_path), True,
                                   hostname, ",".join(d.strip() for d in dns))
            ep = self._add_endpoint(conn, container_id, net, aliases, ip, mac, name, "eth0", 0,
                                    requested6=ip6)
            ep.link_local = list(link_local)
            resolved: list[PortBinding] = []
            if ports:  # (the host-port module, sockets and all, only to publish)
                from ketch.network import hostports

                resolved, proxy_sockets = hostports.allocate(
                    conn, container_id, net, ep.ip, ports, self.config.local_port_range())
            rules = self.fw.port_rules(resolved, ep.ip)
            records.set_sandbox_rules(conn, container_id, rules)
        try:
            self._ensure_ready(net)
            # the DNAT rules go in while the namespace is built: both wait on the kernel
            proc = self.fw.start(add=rules)
            try:
                self.plumbing.build_namespace(netns_path, net, ep, default_route=True, later=later)
            finally:
                try:
                    self.fw.finish(proc)
                except FirewallError:
                    # the chains went away behind ketch's back (iptables -F, a firewall
                    # reload): rebuild them once and try again
                    remove_file(self.plumbing.marker(net))
                    self._ensure_ready(net)
                    self.fw.apply(add=rules)
            if proxy_sockets:
                from ketch.network import hostports

                pid, started = hostports.start_proxy(self.run_dir, container_id,
                                                     ep.ip6 or ep.ip, proxy_sockets)
                with self.db.transaction() as conn:
                    records.set_proxy(conn, container_id, pid, started)
            if net.resolves_names:
                self.dns.ensure(net)
        except BaseException:
            for s, _b in proxy_sockets:
                s.close()
            self.teardown(container_id)
            raise
        return self._recorded(container_id)

    def _setup_simple(self, container_id: str, mode: str, netns_path: str | None,
                      hostname: str) -> NetworkAttachment:
        with self.db.transaction() as conn:
            records.insert_sandbox(conn, container_id, mode,
                                   netns_path,
                                   netns_path is not None, hostname)
        return self._recorded(container_id)

    def _setup_joined(self, container_id: str, other: str, hostname: str) -> NetworkAttachment:
        row = self._sandbox_row(other)
        if row is None:
            rows = records.sandbox_rows_like(self.db.conn, other)
            row = rows[0] if len(rows) == 1 else None
        if row is None:  # (the container exists: the caller found it; it has no network)
            raise Conflict(f"cannot join network of a non running container: {other}")
        with self.db.transaction() as conn:
            records.insert_sandbox(conn, container_id, f"container:{row['container_id']}",
                                   row["netns_path"], False, hostname)
        return self._recorded(container_id)

    def _add_endpoint(self, conn: sqlite3.Connection, container_id: str, net: Network,
                      aliases: list[str], ip: str | None, mac: str | None,
                      name: str | None, ifname: str, seq: int,
                      requested6: str | None = None) -> Endpoint:
        import ipaddress

        from ketch.network import ipam
        from ketch.network.sandbox import short_hash

        chosen = ipam.address4(conn, net, ip)
        ip6 = ""
        if net.ipv6:
            ip6 = ipam.address6(conn, net, requested6)
        elif requested6:
            raise InvalidArgument(f"Invalid address {requested6}: It does not belong to any"
                                  f" of this network's subnets ({net.name} has no IPv6)")
        host_if = self.config.veth_prefix + short_hash(
            container_id, net.id, length=15 - len(self.config.veth_prefix))
        ep = Endpoint(network_id=net.id, network_name=net.name, ip=chosen,
                      prefixlen=net.prefixlen, gateway=net.gateway,
                      mac=mac or ipam.mac_for(chosen), aliases=aliases,
                      endpoint_id=os.urandom(32).hex(), ifname=ifname, host_ifname=host_if)
        if ip6:
            ep.ip6, ep.gateway6 = ip6, net.gateway6
            ep.ip6_prefixlen = ipaddress.ip_network(net.subnet6).prefixlen
        records.insert_endpoint(conn, container_id, ep, seq)
        if net.resolves_names:
            names = ([name] if name else []) + aliases + [container_id[:12]]
            records.insert_names(conn, net.id, container_id,
                                 dict.fromkeys(x.lower() for x in names), chosen)
        return ep

    def dns_pid(self, network: str) -> int | None:
        """The DNS service's process of a network, if one is running."""
        self._init()
        return self.dns.pid(records.find_network(self.db.conn, network).id)

    # -- teardown ----------------------------------------------------------------------
    def _sandbox_row(self, container_id: str) -> sqlite3.Row | None:
        self._init()
        return records.sandbox_row(self.db.conn, container_id)

    def teardown(self, container_id: str) -> None:
        """Remove all `setup` and `connect` made for it (idempotent: what is gone is skipped).
        The firewall, port and proxy parts are loaded only for a sandbox that has them: a
        container that published nothing leaves without iptables or their modules."""
        from ketch.network import netns

        row = self._sandbox_row(container_id)
        if row is None:
            if os.path.exists(f"{self.netns_dir}/{container_id}"):
                netns.remove(f"{self.netns_dir}/{container_id}")
            return
        conn = self.db.conn
        endpoints = records.endpoints(conn, "e.container_id=?", (container_id,))
        rules = records.sandbox_rules(row)
        datagram_ports = records.datagram_ports(conn, container_id)
        # the iptables commit and the veth deletion each wait for the kernel (RCU grace
        # periods); overlapping them roughly halves teardown time
        proc = None
        if rules:
            from ketch.network.firewall import FirewallError

            try:
                proc = self.fw.start(delete=rules)
            except FirewallError:
                proc = None
        if row["proxy_pid"]:
            from ketch.network import procs

            procs.stop(row["proxy_pid"], row["proxy_started"])
        self.plumbing.delete_links(ep.host_ifname for _cid, ep in endpoints)
        if row["owns_netns"] and row["netns_path"]:
            netns.remove(row["netns_path"])
        if rules:
            try:
                self.fw.finish(proc)
            except FirewallError:
                self.fw.delete(rules)  # some were gone already; delete the rest
        if datagram_ports:
            from ketch.network import hostports

            for p in datagram_ports:
                hostports.forget_flows(p["protocol"], p["container_ip"], p["container_port"])
        with self.db.transaction() as wconn:
            records.delete_container(wconn, container_id)
        nets = {ep.network_id for _cid, ep in endpoints}
        for net_id in nets:
            self.dns.stop(net_id, only_if_unused=True)
        for _cid, ep in endpoints:
            self.event("disconnect", ep.network_id, ep.network_name, container=container_id)

    # -- connect / disconnect ----------------------------------------------------------
    def connect(self, container_id: str, network: str, aliases: Iterable[str] = (),
                ip: str | None = None, name: str | None = None,
                ip6: str | None = None) -> Endpoint:
        self._init()
        row = self._sandbox_row(container_id)
        if row is None:
            raise NotFound(f"No such container: {container_id}")
        if not row["owns_netns"] or row["mode"] in ("host", "none"):
            raise InvalidArgument("container sharing network namespace with another container "
                                  "or host cannot be connected to any other network")
        aliases = [a for a in dict.fromkeys(aliases) if a]
        with self.db.transaction() as conn:
            net = records.find_network(conn, network)
            if net.driver != "bridge":
                raise InvalidArgument(f"container cannot be connected to network {net.name}")
            if (ip or ip6) and net.builtin:
                raise InvalidArgument("user specified IP address is supported on user "
                                      "defined networks only")
            if records.attached(conn, container_id, net.id):
                raise Conflict(f"endpoint with name {name or container_id[:12]} already"
                               f" exists in network {net.name}")
            existing = records.interfaces(conn, container_id)
            names = {ifname for ifname, _seq in existing}
            ifname = next(f"eth{i}" for i in range(len(names) + 1) if f"eth{i}" not in names)
            seq = max((s for _ifname, s in existing), default=-1) + 1
            ep = self._add_endpoint(conn, container_id, net, aliases, ip, None, name, ifname, seq,
                                    requested6=ip6)
        try:
            self._ensure_ready(net)
            self.plumbing.build_namespace(row["netns_path"], net, ep,
                                          default_route=not existing, create=False)
            if net.resolves_names:
                self.dns.ensure(net)
        except BaseException:
            self._drop_endpoint(container_id, ep)
            raise
        self.event("connect", net.id, net.name, net.driver, container_id)
        return ep

    def disconnect(self, container_id: str, network: str) -> None:
        self._init()
        conn = self.db.conn
        net = records.find_network(conn, network)
        found = records.endpoints(conn, "e.container_id=? AND e.network_id=?",
                                  (container_id, net.id))
        if not found:
            raise NotFound(f"container {container_id} is not connected to network {net.name}")
        self._drop_endpoint(container_id, found[0][1])
        self.event("disconnect", net.id, net.name, net.driver, container_id)

    def _drop_endpoint(self, container_id: str, ep: Endpoint) -> None:
        row = self._sandbox_row(container_id)
        rules = records.sandbox_rules(row)
        # published ports follow the address they point at
        gone = [r for r in rules if f"--to-destination {ep.ip}:" in r.spec]
        self.fw.delete(gone)
        self.plumbing.delete_links([ep.host_ifname])
        with self.db.transaction() as conn:
            records.delete_endpoint(conn, container_id, ep.network_id)
            if row is not None:
                records.set_sandbox_rules(conn, container_id, [r for r in rules if r not in gone])
        self.dns.stop(ep.network_id, only_if_unused=True)

    # -- queries -----------------------------------------------------------------------
    def _recorded(self, container_id: str) -> NetworkAttachment:
        """The attachment a set-up has just recorded (only a racing teardown removes it)."""
        if (att := self.attachment(container_id)) is None:
            raise Conflict(f"container {container_id[:12]}: network torn down during set-up")
        return att

    def attachment(self, container_id: str) -> NetworkAttachment | None:
        """What the container is attached to now, or None."""
        row = self._sandbox_row(container_id)
        if row is None:
            return None
        conn = self.db.conn
        mode = row["mode"]
        netns_path = row["netns_path"]
        source = container_id
        if mode.startswith("container:"):
            source = mode.split(":", 1)[1]
            other = self._sandbox_row(source)
            if other is not None and other["mode"] == "host":
                netns_path = None
        endpoints = records.endpoints(conn, "e.container_id=?", (source,))
        att = NetworkAttachment(container_id=container_id, mode=mode, netns_path=netns_path,
                                hostname=row["hostname"])
        for _cid, ep in endpoints:
            att.networks[ep.network_name] = ep
        att.ports = self.ports(source)
        first = endpoints[0][1] if endpoints else None
        if first is not None and not records.is_builtin(conn, first.network_id):
            att.dns_servers = [first.gateway]
        return att

    def ports(self, container_id: str) -> list[PortBinding]:
        self._init()
        return records.ports(self.db.conn, container_id)

    def sandboxes(self) -> list[str]:
        """Containers that have network state (for the Engine's crash recovery)."""
        self._init()
        return records.sandbox_ids(self.db.conn)

    # -- maintenance -------------------------------------------------------------------
    def uninstall(self) -> None:
        """Remove every kernel object of this configuration: containers' network state,
        bridges, DNS processes, iptables chains; the records of user networks stay, and
        their bridges come back on next use. For tests and `system reset`."""
        from ketch.network import netns

        for cid in self.sandboxes():
            self.teardown(cid)
        for net in self.list_networks():
            if net.driver == "bridge":
                self._remove_network_objects(net)
        self.fw.uninstall()
        netns.release_dir(self.netns_dir)


NETWORK_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")


def _has_label(net: Network, f: str) -> bool:
    """`f` is "key" (any value) or "key=value"."""
    k, eq, v = f.partition("=")
    return k in net.labels and (not eq or net.labels[k] == v)


def _network_matches(net: Network, used: bool, filters: dict[str, list[str]]) -> bool:
    """Every filter key must match; the values of one key are alternatives."""
    from ketch.filtermatch import matches

    checks: dict[str, Callable[[str], bool]] = {
        "driver": lambda v: net.driver == v, "id": lambda v: matches(v, net.id),
        "name": lambda v: matches(v, net.name), "scope": lambda v: v == "local",
        "type": lambda v: (v == "builtin") == net.builtin,
        "dangling": lambda v: (v.lower() in ("true", "1")) == (not used and not net.builtin),
    }
    for key, wanted in filters.items():
        if key == "label":
            if not all(_has_label(net, f) for f in wanted):
                return False
        elif wanted and not any(checks[key](v) for v in wanted):
            return False
    return True
