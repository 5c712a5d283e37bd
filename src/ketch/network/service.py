"""NetworkService: everything below "a container has a network namespace".

State lives in ketch.db (tables net_*): networks, one sandbox per container (its
namespace, firewall rules and helper processes), endpoints (which double as IPAM
leases: UNIQUE(network_id, ip)), DNS names and published ports. Allocation of
addresses and host ports happens inside one `BEGIN IMMEDIATE` transaction, so
concurrent ketch processes never hand out the same address or port; the kernel side
(namespace, veth, DNAT rules, helper processes) is built after the commit, and
`teardown` undoes it from the records, so a crash between the two is repaired by the
next teardown.

Cost per container on a warm host (bridge and chains exist): one namespace (unshare +
bind mount, in-process), one veth created directly inside it over netlink, address and
route over netlink, and - only with published ports - one iptables-restore process. No
other process is started.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import re
import socket
import sqlite3
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ketch.errors import Conflict, Forbidden, InvalidArgument, KetchError, NotFound
from ketch.network import netns, procs
from ketch.network.config import DERIVED_SUBNETS, NetworkConfig
from ketch.network.files import host_nameservers
from ketch.network.firewall import Firewall, FirewallError, Rule
from ketch.network.models import Endpoint, Network, NetworkAttachment, PortBinding
from ketch.network.netlink import Netlink, NetlinkError, delete_conntrack
from ketch.network.schema import SCHEMA
from ketch.store.db import Database

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import Any


BUILTIN = ("bridge", "host", "none")
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
HELPERS = Path(__file__).parent


def _mac_for(ip: str) -> str:
    # derived from the address like Docker's 02:42:<ip>: a reused address keeps its
    # MAC, so neighbours' ARP caches stay right
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed)


def _short_hash(*parts: str, length: int) -> str:
    # Every container's veth name comes from here: CPython's own SHA-256 (`_sha256`)
    # spares `run` the ~6 ms import of hashlib and OpenSSL; the digest is the same.
    try:
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256
    return sha256("\0".join(parts).encode()).hexdigest()[:length]


def _host_routes() -> list[ipaddress.IPv4Network]:
    """IPv4 networks the host already routes (other than the default route)."""
    out = []
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                fields = line.split()
                dest = int(fields[1], 16)
                mask = int(fields[7], 16)
                if mask == 0:
                    continue
                net = ipaddress.IPv4Network(
                    (socket.inet_ntoa(dest.to_bytes(4, "little")),
                     bin(mask).count("1")), strict=False)
                out.append(net)
    except (OSError, StopIteration, ValueError):
        pass
    return out


@contextmanager
def _host_lock() -> Iterator[None]:
    """One lock for every state root on the host (the default bridges' subnets)."""
    os.makedirs("/run/lock", exist_ok=True)
    fd = os.open("/run/lock/ketch-bridges.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_sysctl(path: str, value: str) -> None:
    try:
        with open(path) as f:
            if f.read().strip() == value:
                return
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise KetchError(f"cannot set {path} to {value}: {e.strerror}") from e


def _bridge_netfilter() -> None:
    """Traffic between two ports of one bridge passes iptables only with br_netfilter's
    bridge-nf-call-iptables on, which enable_icc=false needs (Docker sets it too)."""
    path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    if not os.path.exists(path):
        import subprocess

        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)
    if not os.path.exists(path):
        raise KetchError("com.docker.network.bridge.enable_icc=false needs the br_netfilter"
                         " kernel module, which cannot be loaded on this host")
    _write_sysctl(path, "1")


class DeferredStep:
    """Work `setup(later=...)` leaves to its caller: call it once, or `cancel` it."""

    def __init__(self, run: Callable[[], None], cancel: Callable[[], None]) -> None:
        self._run = run
        self._cancel = cancel

    def __call__(self) -> None:
        self._run()

    def cancel(self) -> None:
        self._cancel()


class NetworkService:
    def __init__(self, db: Database, state_root: Path, run_root: Path,
                 config: NetworkConfig | None = None) -> None:
        self.db = db
        self.state_root = Path(state_root)
        self.run_root = Path(run_root)
        self.config = config or NetworkConfig.load(self.state_root)
        self.config.validate()
        self.fw = Firewall(self.config.chain_prefix)
        self.netns_dir = self.run_root / "netns"
        self.run_dir = self.run_root / "network"
        self._ready = False
        self._boot_id = ""

    # -- schema and built-in networks --------------------------------------------------
    def _init(self) -> None:
        if self._ready:
            return
        self.db.ensure_schema("network", SCHEMA)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.db.transaction() as conn:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(net_networks)")}
            if "extra" not in columns:  # a root made before networks had options
                conn.execute("ALTER TABLE net_networks ADD COLUMN extra TEXT NOT NULL"
                             " DEFAULT '{}'")
            if "ip6" not in {r[1] for r in conn.execute("PRAGMA table_info(net_endpoints)")}:
                conn.execute("ALTER TABLE net_endpoints ADD COLUMN ip6 TEXT NOT NULL"
                             " DEFAULT ''")
            rows = {r["name"]: r for r in conn.execute(
                "SELECT * FROM net_networks WHERE builtin=1")}
            subnet = str(ipaddress.ip_network(self.config.bridge_subnet, strict=False))
            gateway = self.config.bridge_gateway or str(
                next(ipaddress.ip_network(subnet).hosts()))
            for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
                if name not in rows:
                    conn.execute(
                        "INSERT INTO net_networks (id, name, driver, bridge, subnet, gateway,"
                        " builtin, created) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                        (os.urandom(32).hex(), name, driver,
                         self.config.bridge_name if name == "bridge" else "",
                         subnet if name == "bridge" else "",
                         gateway if name == "bridge" else "", time.time()))
            row = rows.get("bridge")
            if row is not None and self.config.derived_subnet and row["subnet"] and (
                    ipaddress.IPv4Network(row["subnet"]).subnet_of(
                        ipaddress.IPv4Network(DERIVED_SUBNETS))):
                # the subnet a derived bridge claimed (maybe not its first choice) stays
                subnet, gateway = row["subnet"], row["gateway"]
            if row is not None and (row["subnet"], row["gateway"], row["bridge"]) != (
                    subnet, gateway, self.config.bridge_name):
                busy = conn.execute("SELECT 1 FROM net_endpoints WHERE network_id=? LIMIT 1",
                                    (row["id"],)).fetchone()
                # a changed KETCH_BRIDGE_SUBNET takes effect once nothing uses the old one
                if not busy:
                    conn.execute("UPDATE net_networks SET subnet=?, gateway=?, bridge=?,"
                                 " last_ip='' WHERE id=?",
                                 (subnet, gateway, self.config.bridge_name, row["id"]))
        self._ready = True

    # -- network records ---------------------------------------------------------------
    @staticmethod
    def _row_to_network(row: sqlite3.Row) -> Network:
        extra = json.loads(row["extra"] or "{}")
        return Network(id=row["id"], name=row["name"], driver=row["driver"],
                       bridge=row["bridge"], subnet=row["subnet"], gateway=row["gateway"],
                       internal=bool(row["internal"]), labels=json.loads(row["labels"]),
                       created=row["created"], builtin=bool(row["builtin"]),
                       ip_range=extra.get("ip_range", ""),
                       aux_addresses=extra.get("aux_addresses") or {},
                       options=extra.get("options") or {},
                       attachable=bool(extra.get("attachable")),
                       subnet6=extra.get("subnet6", ""), gateway6=extra.get("gateway6", ""))

    def _find_network(self, conn: sqlite3.Connection, ref: str) -> Network:
        if ref == "default":
            ref = "bridge"
        row = conn.execute("SELECT * FROM net_networks WHERE name=? OR id=?",
                           (ref, ref)).fetchone()
        if row is None and re.fullmatch(r"[0-9a-f]{1,64}", ref):
            rows = conn.execute("SELECT * FROM net_networks WHERE id LIKE ?",
                                (ref + "%",)).fetchall()
            if len(rows) > 1:
                raise NotFound(f"network {ref} is ambiguous ({len(rows)} matches found based on ID prefix)")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"network {ref} not found")
        return self._row_to_network(row)

    def _endpoints(self, conn: sqlite3.Connection, where: str,
                   args: Sequence[Any]) -> list[tuple[str, Endpoint]]:
        rows = conn.execute(
            "SELECT e.*, n.name AS network_name, n.extra AS network_extra FROM net_endpoints e"
            f" JOIN net_networks n ON n.id = e.network_id WHERE {where} ORDER BY e.seq",
            args).fetchall()
        out = []
        for r in rows:
            ep = Endpoint(
                network_id=r["network_id"], network_name=r["network_name"], ip=r["ip"],
                prefixlen=r["prefixlen"], gateway=r["gateway"], mac=r["mac"],
                aliases=json.loads(r["aliases"]), endpoint_id=r["endpoint_id"],
                ifname=r["ifname"], host_ifname=r["host_ifname"])
            if r["ip6"]:
                extra = json.loads(r["network_extra"] or "{}")
                ep.ip6, ep.gateway6 = r["ip6"], extra.get("gateway6", "")
                ep.ip6_prefixlen = ipaddress.ip_network(extra["subnet6"]).prefixlen
            out.append((r["container_id"], ep))
        return out

    # -- public: networks --------------------------------------------------------------
    def event(self, action: str, net_id: str, name: str, driver: str = "bridge",
              container: str | None = None) -> None:
        """Journal a network event (ketch.events), with dockerd's attributes."""
        from ketch.events import emit

        attrs = {"name": name, "type": driver}
        if container:
            attrs["container"] = container
        emit(str(self.state_root), "network", action, net_id, attrs)

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
        from ketch.network import options as netopts

        self._init()
        if not NAME_RE.match(name):
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
        if ipv6 and not subnet6:
            raise InvalidArgument("--ipv6 needs an IPv6 --subnet: ketch has no default IPv6"
                                  " address pool")
        if (subnet6 or gateway6) and not ipv6:
            raise InvalidArgument("an IPv6 --subnet or --gateway needs --ipv6")
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
            if conn.execute("SELECT 1 FROM net_networks WHERE name=?", (name,)).fetchone():
                raise Conflict(f"network with name {name} already exists")
            if netopts.BRIDGE_NAME in options and (
                    conn.execute("SELECT 1 FROM net_networks WHERE bridge=?",
                                 (bridge,)).fetchone()
                    or os.path.exists(f"/sys/class/net/{bridge}")):
                raise Conflict(f"bridge name {bridge} is already in use on this host")
            taken = [ipaddress.ip_network(r["subnet"]) for r in conn.execute(
                "SELECT subnet FROM net_networks WHERE subnet != ''")]
            if subnet:
                try:
                    net = ipaddress.ip_network(subnet, strict=False)
                except ValueError:
                    raise InvalidArgument(f"invalid subnet {subnet}") from None
                if net.version != 4:
                    raise InvalidArgument("IPv6 networks are not supported yet")
                if net.prefixlen > 30:
                    raise InvalidArgument(f"subnet {subnet} is too small")
                # a route the host already has (another engine's bridge, a VPN, the LAN)
                # would be shadowed: refused like an overlap with a known network
                if any(net.overlaps(t) for t in taken + _host_routes()):
                    raise Conflict("Pool overlaps with other one on this address space")
            else:
                net = self._free_subnet(taken)
            if gateway:
                try:
                    gw = ipaddress.ip_address(gateway)
                except ValueError:
                    raise InvalidArgument(f"invalid gateway address {gateway}") from None
                if gw not in net or gw in (net.network_address, net.broadcast_address):
                    raise InvalidArgument(f"no matching subnet for gateway {gateway}")
            else:
                gw = next(net.hosts())
            rng, aux = netopts.ipam_config(net, ip_range, str(gw), aux)
            extra = {"ip_range": rng, "aux_addresses": aux, "options": options,
                     "attachable": attachable}
            if subnet6:
                net6, gw6 = netopts.ipv6_config(subnet6, gateway6, [
                    ipaddress.ip_network(json.loads(r[0] or "{}")["subnet6"]) for r in
                    conn.execute("SELECT extra FROM net_networks WHERE extra LIKE"
                                 " '%\"subnet6\"%'")])
                extra.update(subnet6=str(net6), gateway6=str(gw6))
            conn.execute(
                "INSERT INTO net_networks (id, name, driver, bridge, subnet, gateway, internal,"
                " labels, created, extra) VALUES (?, ?, 'bridge', ?, ?, ?, ?, ?, ?, ?)",
                (net_id, name, bridge, str(net), str(gw), int(internal),
                 json.dumps(labels or {}), time.time(), json.dumps(extra)))
        network = self.inspect_network(net_id)
        try:
            self._ensure_ready(network)  # Docker creates the bridge with the network
        except BaseException:
            self._remove_network_objects(network)
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM net_networks WHERE id=?", (net_id,))
            raise
        self.event("create", network.id, network.name, network.driver)
        return network

    def _free_subnet(self, taken: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
                     ) -> ipaddress.IPv4Network:
        pool = ipaddress.ip_network(self.config.pool, strict=False)
        busy = taken + _host_routes()
        for candidate in pool.subnets(new_prefix=self.config.pool_prefixlen):
            if not any(candidate.overlaps(b) for b in busy):
                return candidate  # type: ignore[return-value]
        raise Conflict("could not find an available, non-overlapping IPv4 address pool "
                       "among the defaults to assign to the network")

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
        rows = conn.execute("SELECT * FROM net_networks ORDER BY created").fetchall()
        used = {r[0] for r in conn.execute("SELECT DISTINCT network_id FROM net_endpoints")}
        return [n for n in map(self._row_to_network, rows)
                if _network_matches(n, n.id in used, filters)]

    def inspect_network(self, ref: str) -> Network:
        self._init()
        conn = self.db.conn
        net = self._find_network(conn, ref)
        net.containers = dict(self._endpoints(conn, "e.network_id=?", (net.id,)))
        return net

    def remove_network(self, ref: str) -> None:
        self._init()
        with self.db.transaction() as conn:
            net = self._find_network(conn, ref)
            if net.builtin:
                raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
            if conn.execute("SELECT 1 FROM net_endpoints WHERE network_id=? LIMIT 1",
                            (net.id,)).fetchone():
                raise Forbidden(f"error while removing network: network {net.name} id {net.id} "
                               "has active endpoints")
            rules = json.loads(conn.execute("SELECT fw_rules FROM net_networks WHERE id=?",
                                            (net.id,)).fetchone()[0])
            conn.execute("DELETE FROM net_networks WHERE id=?", (net.id,))
            conn.execute("DELETE FROM net_names WHERE network_id=?", (net.id,))
        self._remove_network_objects(net, [Rule.decode(r) for r in rules])
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
        self._stop_dns(net.id)
        if rules is None:
            from ketch.network.options import ENABLE_ICC, ENABLE_MASQUERADE, parse_bool

            rules = self.fw.network_rules(
                net.bridge, net.subnet, net.gateway, net.internal, net.resolves_names,
                icc=parse_bool(ENABLE_ICC, net.option(ENABLE_ICC, "true")),
                masquerade=parse_bool(ENABLE_MASQUERADE, net.option(ENABLE_MASQUERADE, "true")))
        self.fw.delete(rules)
        with Netlink() as nl:
            nl.delete_link(net.bridge)
        self._marker(net).unlink(missing_ok=True)

    # -- kernel objects of a network ---------------------------------------------------
    def _marker(self, net: Network) -> Path:
        return self.run_dir / f"ready-{net.bridge}"

    def _token(self) -> str:
        if not self._boot_id:
            try:
                self._boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
            except OSError:
                self._boot_id = "unknown"
        return f"{self._boot_id} {self.fw.prefix}"

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _mtu(self, net: Network) -> int:
        from ketch.network.options import MTU

        return int(net.option(MTU, str(self.config.mtu)))

    def _ensure_ready(self, net: Network) -> None:
        """Bridge up with its gateway address, sysctls, chains and the network's rules.
        Cheap when already done: a marker file (reset by a reboot via the boot id) and
        the bridge's sysfs entry are checked, nothing else."""
        _write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        marker = self._marker(net)
        try:
            if (marker.read_text() == self._token()
                    and os.path.exists(f"/sys/class/net/{net.bridge}")):
                return
        except OSError:
            pass
        with self._lock():
            with Netlink() as nl:
                index = nl.link_index(net.bridge)
                if index is None:
                    mac = "02:" + ":".join(_short_hash(net.id, length=10)[i:i + 2]
                                           for i in range(0, 10, 2))
                    index = nl.create_bridge(net.bridge, mac, self._mtu(net))
                nl.add_address(index, f"{net.gateway}/{net.prefixlen}")
                if net.ipv6:
                    prefix = ipaddress.ip_network(net.subnet6).prefixlen
                    nl.add_address(index, f"{net.gateway6}/{prefix}")
                nl.set_up(index)
            _write_sysctl(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet", "1")
            from ketch.network.options import ENABLE_ICC, ENABLE_MASQUERADE, parse_bool

            icc = parse_bool(ENABLE_ICC, net.option(ENABLE_ICC, "true"))
            if not icc:
                _bridge_netfilter()
            rules = self.fw.network_rules(
                net.bridge, net.subnet, net.gateway, net.internal, net.resolves_names,
                icc=icc,
                masquerade=parse_bool(ENABLE_MASQUERADE, net.option(ENABLE_MASQUERADE, "true")))
            self.fw.ensure(rules)
            with self.db.transaction() as conn:
                conn.execute("UPDATE net_networks SET fw_rules=? WHERE id=?",
                             (json.dumps([r.encode() for r in rules]), net.id))
            marker.write_text(self._token())

    def _claim_bridge_subnet(self, net: Network) -> Network:
        """The default bridge of a non-default state root takes its subnet when the
        bridge is made, under a host-wide lock, against the routes the host has then:
        a subnet another root's bridge (or anything else) routes is skipped for the next
        one of the root's sequence (config.derived_subnets). The bridge with its address
        is the claim every other root sees, so two roots never share a subnet."""
        from ketch.network.config import derived_subnets

        if os.path.exists(f"/sys/class/net/{net.bridge}"):
            return net
        with _host_lock():
            if os.path.exists(f"/sys/class/net/{net.bridge}"):
                return net
            taken = _host_routes()
            if any(ipaddress.ip_network(net.subnet).overlaps(t) for t in taken):
                with self.db.transaction() as conn:
                    if conn.execute("SELECT 1 FROM net_endpoints WHERE network_id=? LIMIT 1",
                                    (net.id,)).fetchone():
                        raise Conflict(f"the default bridge's subnet {net.subnet} is routed"
                                       " elsewhere on this host; remove this root's"
                                       " containers or set bridge_subnet in network.toml")
                    root = os.path.abspath(self.state_root)
                    free = [c for c in derived_subnets(root)
                            if not any(c.overlaps(t) for t in taken)]
                    if not free:
                        raise Conflict("no free subnet left for the default bridge")
                    conn.execute("UPDATE net_networks SET subnet=?, gateway=?, last_ip=''"
                                 " WHERE id=?", (str(free[0]), str(next(free[0].hosts())),
                                                 net.id))
                    net = self._find_network(conn, net.id)
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
        net = self._find_network(self.db.conn, mode or "bridge")
        if net.driver == "host":
            return self._setup_simple(container_id, "host", None, hostname)
        netns_path = self.netns_dir / container_id
        if net.driver == "null":
            self._setup_simple(container_id, "none", netns_path, hostname)
            try:
                netns.remove(netns_path)
                netns.create(netns_path).close()
            except BaseException:
                self.teardown(container_id)
                raise
            return self.attachment(container_id)  # type: ignore[return-value]
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
        proxy_sockets: list[tuple[socket.socket, PortBinding]] = []
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO net_sandboxes (container_id, mode, netns_path, owns_netns,"
                " hostname, dns, created) VALUES (?, ?, ?, 1, ?, ?, ?)",
                (container_id, net.name, str(netns_path), hostname,
                 ",".join(dns), time.time()))
            ep = self._add_endpoint(conn, container_id, net, aliases, ip, mac, name, "eth0", 0,
                                    requested6=ip6)
            ep.link_local = list(link_local)
            resolved, proxy_sockets = self._allocate_ports(conn, container_id, net, ep.ip, ports)
            rules = self.fw.port_rules(resolved, ep.ip)
            conn.execute("UPDATE net_sandboxes SET fw_rules=? WHERE container_id=?",
                         (json.dumps([r.encode() for r in rules]), container_id))
        try:
            self._ensure_ready(net)
            # the DNAT rules go in while the namespace is built: both wait on the kernel
            proc = self.fw.start(add=rules)
            try:
                self._build_namespace(netns_path, net, ep, default_route=True, later=later)
            finally:
                try:
                    self.fw.finish(proc)
                except FirewallError:
                    # the chains went away behind ketch's back (iptables -F, a firewall
                    # reload): rebuild them once and try again
                    self._marker(net).unlink(missing_ok=True)
                    self._ensure_ready(net)
                    self.fw.apply(add=rules)
            if proxy_sockets:
                self._start_proxy(container_id, ep.ip, proxy_sockets)
            if net.resolves_names:
                self._ensure_dns(net)
        except BaseException:
            for s, _b in proxy_sockets:
                s.close()
            self.teardown(container_id)
            raise
        return self.attachment(container_id)  # type: ignore[return-value]

    def _setup_simple(self, container_id: str, mode: str, netns_path: Path | None,
                      hostname: str) -> NetworkAttachment:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO net_sandboxes (container_id, mode, netns_path, owns_netns,"
                " hostname, created) VALUES (?, ?, ?, ?, ?, ?)",
                (container_id, mode, str(netns_path) if netns_path else None,
                 int(netns_path is not None), hostname, time.time()))
        return self.attachment(container_id)  # type: ignore[return-value]

    def _setup_joined(self, container_id: str, other: str, hostname: str) -> NetworkAttachment:
        row = self._sandbox_row(other)
        if row is None:
            rows = self.db.conn.execute(
                "SELECT * FROM net_sandboxes WHERE container_id LIKE ?", (other + "%",)
            ).fetchall()
            row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise NotFound(f"No such container: {other}")
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO net_sandboxes (container_id, mode, netns_path, owns_netns,"
                " hostname, created) VALUES (?, ?, ?, 0, ?, ?)",
                (container_id, f"container:{row['container_id']}", row["netns_path"],
                 hostname, time.time()))
        return self.attachment(container_id)  # type: ignore[return-value]

    def _add_endpoint(self, conn: sqlite3.Connection, container_id: str, net: Network,
                      aliases: list[str], ip: str | None, mac: str | None,
                      name: str | None, ifname: str, seq: int,
                      requested6: str | None = None) -> Endpoint:
        subnet = ipaddress.ip_network(net.subnet)
        gateway = ipaddress.ip_address(net.gateway)
        used = {r[0] for r in conn.execute("SELECT ip FROM net_endpoints WHERE network_id=?",
                                           (net.id,))}
        if ip:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                raise InvalidArgument(f"invalid IP address: {ip}") from None
            if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
                raise InvalidArgument(f"no configured subnet contains IP address {ip}")
            if (addr == gateway or str(addr) in used
                    or str(addr) in net.aux_addresses.values()):
                raise Conflict("Address already in use")
            chosen = str(addr)
        else:
            chosen = self._next_ip(conn, net, subnet, gateway, used)
        ip6 = ""
        if net.ipv6:
            ip6 = self._next_ip6(conn, net, requested6)
        elif requested6:
            raise InvalidArgument(f"Invalid address {requested6}: It does not belong to any"
                                  f" of this network's subnets ({net.name} has no IPv6)")
        mac = mac or _mac_for(chosen)
        host_if = self.config.veth_prefix + _short_hash(
            container_id, net.id, length=15 - len(self.config.veth_prefix))
        ep = Endpoint(network_id=net.id, network_name=net.name, ip=chosen,
                      prefixlen=subnet.prefixlen, gateway=str(gateway), mac=mac,
                      aliases=aliases, endpoint_id=os.urandom(32).hex(), ifname=ifname,
                      host_ifname=host_if)
        if ip6:
            ep.ip6, ep.gateway6 = ip6, net.gateway6
            ep.ip6_prefixlen = ipaddress.ip_network(net.subnet6).prefixlen
        conn.execute(
            "INSERT INTO net_endpoints (container_id, network_id, endpoint_id, ip, prefixlen,"
            " gateway, mac, ifname, host_ifname, aliases, seq, ip6)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (container_id, net.id, ep.endpoint_id, ep.ip, ep.prefixlen, ep.gateway, ep.mac,
             ifname, host_if, json.dumps(aliases), seq, ip6))
        if net.resolves_names:
            names = ([name] if name else []) + aliases + [container_id[:12]]
            for i, n in enumerate(dict.fromkeys(x.lower() for x in names)):
                conn.execute("INSERT INTO net_names (network_id, name, ip, container_id,"
                             " primary_name) VALUES (?, ?, ?, ?, ?)",
                             (net.id, n, chosen, container_id, int(i == 0)))
        return ep

    @staticmethod
    def _next_ip6(conn: sqlite3.Connection, net: Network, requested: str | None) -> str:
        """The endpoint's IPv6 address: the one asked for (--ip6), else the lowest free
        one after the gateway's."""
        subnet = ipaddress.ip_network(net.subnet6)
        gateway = ipaddress.ip_address(net.gateway6)
        used = {ipaddress.ip_address(r[0]) for r in conn.execute(
            "SELECT ip6 FROM net_endpoints WHERE network_id=? AND ip6 != ''", (net.id,))}
        if requested:
            try:
                addr = ipaddress.ip_address(requested)
            except ValueError:
                raise InvalidArgument(f"invalid IPv6 address: {requested}") from None
            if addr not in subnet or addr == subnet.network_address:
                raise InvalidArgument(f"Invalid address {requested}: It does not belong to"
                                      " any of this network's subnets")
            if addr == gateway or addr in used:
                raise Conflict("Address already in use")
            return str(addr)
        cand = int(subnet.network_address) + 1
        last = int(subnet.broadcast_address)
        while cand <= last:
            addr = ipaddress.ip_address(cand)
            if addr != gateway and addr not in used:
                return str(addr)
            cand += 1
        raise Conflict(f"no available IPv6 addresses on this network's address pools:"
                       f" {net.name} ({net.id})")

    @staticmethod
    def _next_ip(conn: sqlite3.Connection, net: Network,
                 subnet: ipaddress.IPv4Network | ipaddress.IPv6Network,
                 gateway: ipaddress.IPv4Address | ipaddress.IPv6Address,
                 used: set[str]) -> str:
        # round robin from the last address handed out (as CNI host-local does): a
        # just-freed address is not reused at once while neighbours may still cache it
        first = int(subnet.network_address) + 1
        last = int(subnet.broadcast_address) - 1
        if net.ip_range:  # --ip-range: only this part of the subnet is handed out
            rng = ipaddress.ip_network(net.ip_range)
            first = max(first, int(rng.network_address))
            last = min(last, int(rng.broadcast_address))
        used = used | set(net.aux_addresses.values())  # --aux-address: never handed out
        row = conn.execute("SELECT last_ip FROM net_networks WHERE id=?", (net.id,)).fetchone()
        start = first
        if row and row[0]:
            prev = int(ipaddress.ip_address(row[0]))
            if first <= prev < last:
                start = prev + 1
        size = last - first + 1
        for i in range(size):
            cand = first + (start - first + i) % size
            text = str(ipaddress.ip_address(cand))
            if cand != int(gateway) and text not in used:
                conn.execute("UPDATE net_networks SET last_ip=? WHERE id=?", (text, net.id))
                return text
        raise Conflict(f"no available IPv4 addresses on this network's address pools: "
                       f"{net.name} ({net.id})")

    # -- ports -------------------------------------------------------------------------
    def _allocate_ports(self, conn: sqlite3.Connection, container_id: str, net: Network,
                        container_ip: str, wanted: list[PortBinding]
                        ) -> tuple[list[PortBinding], list[tuple[socket.socket, PortBinding]]]:
        """Choose and record host ports. Runs inside the write transaction, so the
        records of every other ketch process are final while we look at them; a real
        bind test catches ports held by anything else on the host."""
        resolved: list[PortBinding] = []
        sockets: list[tuple[socket.socket, PortBinding]] = []
        if not wanted:
            return resolved, sockets
        taken: dict[tuple[str, int], list[str]] = {}
        for r in conn.execute("SELECT protocol, host_ip, host_port FROM net_ports"):
            taken.setdefault((r[0], r[2]), []).append(r[1])
        lo, hi = self.config.local_port_range()
        from ketch.network.options import HOST_BINDING_IPV4

        default_ip = net.option(HOST_BINDING_IPV4, "")
        if default_ip:  # the network's host_binding_ipv4: where `-p 8080:80` listens
            wanted = [PortBinding(container_port=b.container_port, protocol=b.protocol,
                                  host_ip=b.host_ip or default_ip, host_port=b.host_port,
                                  host_port_end=b.host_port_end) for b in wanted]
        try:
            for b in wanted:
                if b.host_port and not b.host_port_end:
                    candidates: Iterable[int] = [b.host_port]
                elif b.host_port:
                    candidates = range(b.host_port, b.host_port_end + 1)
                else:
                    import random

                    offset = random.randrange(hi - lo + 1)
                    candidates = (lo + (offset + i) % (hi - lo + 1) for i in range(hi - lo + 1))
                explicit = bool(b.host_port) and not b.host_port_end
                chosen = None
                for port in candidates:
                    if _records_conflict(taken.get((b.protocol, port), ()), b.host_ip):
                        if explicit:
                            raise Conflict(f"Bind for {_where(b, port)} failed: "
                                           "port is already allocated")
                        continue
                    try:
                        sock = _probe(b.host_ip, b.protocol, port, keep=b.family == 6)
                    except OSError as e:
                        if explicit or e.errno != errno.EADDRINUSE:
                            raise _bind_error(b, port, e) from None
                        continue
                    chosen = port
                    if sock is not None:
                        sockets.append((sock, PortBinding(b.container_port, b.protocol,
                                                          b.host_ip, port)))
                    break
                if chosen is None:
                    if not b.host_port:
                        raise Conflict("all ports are allocated")
                    raise Conflict(f"Bind for {_where(b, b.host_port)}-{b.host_port_end} "
                                   "failed: port is already allocated")
                res = PortBinding(b.container_port, b.protocol, b.host_ip, chosen)
                taken.setdefault((b.protocol, chosen), []).append(b.host_ip)
                resolved.append(res)
                conn.execute(
                    "INSERT INTO net_ports (protocol, host_ip, host_port, container_id,"
                    " network_id, container_ip, container_port) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (res.protocol, res.host_ip, res.host_port, container_id, net.id,
                     container_ip, res.container_port))
        except BaseException:
            for s, _b in sockets:
                s.close()
            raise
        return resolved, sockets

    def _start_proxy(self, container_id: str, container_ip: str,
                     sockets: list[tuple[socket.socket, PortBinding]]) -> None:
        specs = [f"{3 + i}:{b.protocol}:{b.container_port}" for i, (_s, b) in enumerate(sockets)]
        argv = [sys.executable, "-I", "-S", str(HELPERS / "proxy.py"),
                "--target", container_ip, *specs]
        try:
            pid, started = procs.spawn_detached(
                argv, [s for s, _b in sockets], self.run_dir / f"proxy-{container_id[:12]}.log")
        finally:
            for s, _b in sockets:
                s.close()
        with self.db.transaction() as conn:
            conn.execute("UPDATE net_sandboxes SET proxy_pid=?, proxy_started=?"
                         " WHERE container_id=?", (pid, started, container_id))

    # -- namespace plumbing ------------------------------------------------------------
    def _build_namespace(self, path: Path, net: Network, ep: Endpoint,
                         default_route: bool, create: bool = True,
                         later: list[DeferredStep] | None = None) -> None:
        if create:
            if path.exists():
                netns.remove(path)  # left behind by a crash; its records are gone
            inner = netns.create(path)
        else:
            inner = netns.enter(path)
        if later is None:
            self._plumb(path, inner, net, ep, default_route)
        else:
            later.append(DeferredStep(lambda: self._plumb(path, inner, net, ep, default_route),
                                      inner.close))

    def _plumb(self, path: Path, inner: Netlink, net: Network, ep: Endpoint,
               default_route: bool) -> None:
        """The endpoint's veth pair, its address and route; closes `inner`."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                with Netlink() as host:
                    bridge = host.link_index(net.bridge)
                    if bridge is None:
                        raise KetchError(f"bridge {net.bridge} of network {net.name} is missing")
                    try:
                        host.create_veth(ep.host_ifname, ep.ifname, fd, ep.mac, bridge,
                                         self._mtu(net))
                    except NetlinkError as e:
                        if e.errno != errno.EEXIST:
                            raise
                        host.delete_link(ep.host_ifname)  # a leftover of a crashed run
                        host.create_veth(ep.host_ifname, ep.ifname, fd, ep.mac, bridge,
                                         self._mtu(net))
            finally:
                os.close(fd)
            index = inner.link_index(ep.ifname)
            if index is None:
                raise KetchError(f"{ep.ifname} did not appear in the container's namespace")
            inner.add_address(index, ep.cidr)
            if ep.ip6:
                # on-link only: no IPv6 default route, so nothing leaves the bridge by v6
                inner.add_address(index, f"{ep.ip6}/{ep.ip6_prefixlen}")
            for ll in ep.link_local:  # Docker's prefixes for link-local addresses
                inner.add_address(index, f"{ll}/16" if "." in ll else f"{ll}/64")
            inner.set_up(index)
            if default_route and not net.internal:
                inner.add_default_route(ep.gateway, index)
        finally:
            inner.close()

    # -- DNS service -------------------------------------------------------------------
    def _ensure_dns(self, net: Network) -> None:
        with self._lock():
            row = self.db.conn.execute("SELECT pid, started FROM net_dns WHERE network_id=?",
                                       (net.id,)).fetchone()
            if row and procs.alive(row["pid"], row["started"]):
                return
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                for s in (udp, tcp):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((net.gateway, 53))
                tcp.listen(64)
                upstreams = self.config.dns_upstreams
                if upstreams is None:
                    upstreams = host_nameservers(Path(self.config.resolv_conf))
                argv = [sys.executable, "-I", "-S", str(HELPERS / "dnsd.py"),
                        "--db", str(self.db.path), "--network", net.id, "--subnet", net.subnet,
                        "--udp-fd", "3", "--tcp-fd", "4", "--upstream", ",".join(upstreams)]
                pid, started = procs.spawn_detached(argv, [udp, tcp],
                                                    self.run_dir / f"dns-{net.id[:12]}.log")
            except OSError as e:
                raise KetchError(f"cannot start the DNS service of network {net.name} on "
                                 f"{net.gateway}:53: {e.strerror or e}") from e
            finally:
                udp.close()
                tcp.close()
            with self.db.transaction() as conn:
                conn.execute("INSERT OR REPLACE INTO net_dns (network_id, pid, started)"
                             " VALUES (?, ?, ?)", (net.id, pid, started))

    def _stop_dns(self, network_id: str, only_if_unused: bool = False) -> None:
        with self._lock():
            conn = self.db.conn
            if only_if_unused and conn.execute(
                    "SELECT 1 FROM net_endpoints WHERE network_id=? LIMIT 1",
                    (network_id,)).fetchone():
                return
            row = conn.execute("SELECT pid, started FROM net_dns WHERE network_id=?",
                               (network_id,)).fetchone()
            if row is None:
                return
            procs.stop(row["pid"], row["started"])
            with self.db.transaction() as wconn:
                wconn.execute("DELETE FROM net_dns WHERE network_id=?", (network_id,))

    def dns_pid(self, network: str) -> int | None:
        """The DNS service's process of a network, if one is running."""
        self._init()
        net = self._find_network(self.db.conn, network)
        row = self.db.conn.execute("SELECT pid, started FROM net_dns WHERE network_id=?",
                                   (net.id,)).fetchone()
        if row and procs.alive(row["pid"], row["started"]):
            return int(row["pid"])
        return None

    # -- teardown ----------------------------------------------------------------------
    def _sandbox_row(self, container_id: str) -> sqlite3.Row | None:
        self._init()
        return self.db.conn.execute("SELECT * FROM net_sandboxes WHERE container_id=?",
                                    (container_id,)).fetchone()

    def teardown(self, container_id: str) -> None:
        """Remove everything `setup` and `connect` made for the container. Idempotent:
        whatever is already gone is skipped."""
        row = self._sandbox_row(container_id)
        if row is None:
            if (self.netns_dir / container_id).exists():
                netns.remove(self.netns_dir / container_id)
            return
        conn = self.db.conn
        endpoints = self._endpoints(conn, "e.container_id=?", (container_id,))
        rules = [Rule.decode(r) for r in json.loads(row["fw_rules"])]
        datagram_ports = conn.execute(
            "SELECT DISTINCT protocol, container_ip, container_port FROM net_ports"
            " WHERE container_id=? AND protocol != 'tcp'", (container_id,)).fetchall()
        # the iptables commit and the veth deletion each wait for the kernel (RCU grace
        # periods); overlapping them roughly halves teardown time
        proc = None
        try:
            proc = self.fw.start(delete=rules)
        except FirewallError:
            proc = None
        procs.stop(row["proxy_pid"], row["proxy_started"])
        with Netlink() as nl:
            for _cid, ep in endpoints:
                nl.delete_link(ep.host_ifname)
        if row["owns_netns"] and row["netns_path"]:
            netns.remove(Path(row["netns_path"]))
        try:
            self.fw.finish(proc)
        except FirewallError:
            self.fw.delete(rules)  # some were gone already; delete the rest
        for p in datagram_ports:
            _forget_flows(p["protocol"], p["container_ip"], p["container_port"])
        with self.db.transaction() as wconn:
            for table in ("net_ports", "net_names", "net_endpoints", "net_sandboxes"):
                wconn.execute(f"DELETE FROM {table} WHERE container_id=?", (container_id,))
        nets = {ep.network_id for _cid, ep in endpoints}
        for net_id in nets:
            self._stop_dns(net_id, only_if_unused=True)
        for _cid, ep in endpoints:
            self.event("disconnect", ep.network_id, ep.network_name, container=container_id)

    # -- connect / disconnect ----------------------------------------------------------
    def connect(self, container_id: str, network: str, aliases: Iterable[str] = (),
                ip: str | None = None, name: str | None = None) -> Endpoint:
        self._init()
        row = self._sandbox_row(container_id)
        if row is None:
            raise NotFound(f"No such container: {container_id}")
        if not row["owns_netns"] or row["mode"] in ("host", "none"):
            raise InvalidArgument("container sharing network namespace with another container "
                                  "or host cannot be connected to any other network")
        aliases = [a for a in dict.fromkeys(aliases) if a]
        with self.db.transaction() as conn:
            net = self._find_network(conn, network)
            if net.driver != "bridge":
                raise InvalidArgument(f"container cannot be connected to network {net.name}")
            if ip and net.builtin:
                raise InvalidArgument("user specified IP address is supported on user "
                                      "defined networks only")
            if conn.execute("SELECT 1 FROM net_endpoints WHERE container_id=? AND network_id=?",
                            (container_id, net.id)).fetchone():
                raise Conflict(f"endpoint with name {container_id[:12]} already exists in "
                               f"network {net.name}")
            existing = conn.execute(
                "SELECT ifname, seq FROM net_endpoints WHERE container_id=?",
                (container_id,)).fetchall()
            names = {r["ifname"] for r in existing}
            ifname = next(f"eth{i}" for i in range(len(names) + 1) if f"eth{i}" not in names)
            seq = max((r["seq"] for r in existing), default=-1) + 1
            ep = self._add_endpoint(conn, container_id, net, aliases, ip, None, name, ifname, seq)
        try:
            self._ensure_ready(net)
            self._build_namespace(Path(row["netns_path"]), net, ep,
                                  default_route=not existing, create=False)
            if net.resolves_names:
                self._ensure_dns(net)
        except BaseException:
            self._drop_endpoint(container_id, ep)
            raise
        self.event("connect", net.id, net.name, net.driver, container_id)
        return ep

    def disconnect(self, container_id: str, network: str) -> None:
        self._init()
        conn = self.db.conn
        net = self._find_network(conn, network)
        found = self._endpoints(conn, "e.container_id=? AND e.network_id=?",
                                (container_id, net.id))
        if not found:
            raise NotFound(f"container {container_id} is not connected to network {net.name}")
        self._drop_endpoint(container_id, found[0][1])
        self.event("disconnect", net.id, net.name, net.driver, container_id)

    def _drop_endpoint(self, container_id: str, ep: Endpoint) -> None:
        row = self._sandbox_row(container_id)
        rules = [Rule.decode(r) for r in json.loads(row["fw_rules"])] if row else []
        # published ports follow the address they point at
        gone = [r for r in rules if f"--to-destination {ep.ip}:" in r.spec]
        self.fw.delete(gone)
        with Netlink() as nl:
            nl.delete_link(ep.host_ifname)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM net_ports WHERE container_id=? AND network_id=?",
                         (container_id, ep.network_id))
            conn.execute("DELETE FROM net_names WHERE container_id=? AND network_id=?",
                         (container_id, ep.network_id))
            conn.execute("DELETE FROM net_endpoints WHERE container_id=? AND network_id=?",
                         (container_id, ep.network_id))
            if row is not None:
                keep = [r.encode() for r in rules if r not in gone]
                conn.execute("UPDATE net_sandboxes SET fw_rules=? WHERE container_id=?",
                             (json.dumps(keep), container_id))
        self._stop_dns(ep.network_id, only_if_unused=True)

    # -- queries -----------------------------------------------------------------------
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
        endpoints = self._endpoints(conn, "e.container_id=?", (source,))
        att = NetworkAttachment(container_id=container_id, mode=mode, netns_path=netns_path,
                                hostname=row["hostname"])
        for _cid, ep in endpoints:
            att.networks[ep.network_name] = ep
        att.ports = self.ports(source)
        first = endpoints[0][1] if endpoints else None
        if first is not None:
            net_row = conn.execute("SELECT builtin FROM net_networks WHERE id=?",
                                   (first.network_id,)).fetchone()
            if net_row is not None and not net_row["builtin"]:
                att.dns_servers = [first.gateway]
        return att

    def ports(self, container_id: str) -> list[PortBinding]:
        self._init()
        rows = self.db.conn.execute(
            "SELECT * FROM net_ports WHERE container_id=? ORDER BY container_port, protocol,"
            " host_ip, host_port", (container_id,)).fetchall()
        return [PortBinding(r["container_port"], r["protocol"], r["host_ip"], r["host_port"])
                for r in rows]

    def sandboxes(self) -> list[str]:
        """Containers that have network state (for the Engine's crash recovery)."""
        self._init()
        return [r[0] for r in self.db.conn.execute("SELECT container_id FROM net_sandboxes")]

    # -- maintenance -------------------------------------------------------------------
    def uninstall(self) -> None:
        """Remove every kernel object of this configuration: containers' network state,
        bridges, DNS processes, iptables chains; the records of user networks stay, and
        their bridges come back on next use. For tests and `system reset`."""
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

    checks: dict[str, Callable[[str], bool]] = {
        "driver": lambda v: net.driver == v,
        "id": lambda v: net.id.startswith(v),
        "name": lambda v: v in net.name,
        "scope": lambda v: v == "local",
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


def _forget_flows(protocol: str, container_ip: str, container_port: int) -> None:
    """Drop the conntrack entries still pointing at a published UDP/SCTP port, so the
    next container on that host port gets the traffic. Best effort: without
    nf_conntrack_netlink the entries simply time out."""
    try:
        delete_conntrack(17 if protocol == "udp" else 132, container_ip, container_port)
    except OSError:
        pass


def _records_conflict(existing: Iterable[str], host_ip: str) -> bool:
    fam = 6 if ":" in host_ip else 4
    for other in existing:
        if (6 if ":" in other else 4) != fam:
            continue
        if other == host_ip or other in ("", "::") or host_ip in ("", "::"):
            return True
    return False


def _probe(host_ip: str, protocol: str, port: int, keep: bool) -> socket.socket | None:
    """Bind the port to see whether anything on the host holds it. With `keep` (ports
    served by the userland proxy) the bound socket is returned for the proxy to use."""
    if protocol == "sctp":
        return None  # no portable bind test; ketch's own records still apply
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            # ignore connections lingering in TIME_WAIT; a listener still conflicts
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        if keep:
            if kind == socket.SOCK_STREAM:
                sock.listen(128)
            return sock
    except BaseException:
        sock.close()
        raise
    sock.close()
    return None


def _where(b: PortBinding, port: int) -> str:
    return PortBinding(b.container_port, b.protocol, b.host_ip, port).host_address()


def _bind_error(b: PortBinding, port: int, e: OSError) -> KetchError:
    if e.errno == errno.EADDRINUSE:
        return Conflict(f"Bind for {_where(b, port)} failed: port is already allocated")
    return InvalidArgument(f"Bind for {_where(b, port)} failed: {e.strerror or e}")
