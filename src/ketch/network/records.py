"""The network service's reads and writes of its tables (schema.py): every statement the
service runs is here, each a function of an open connection, so the caller decides what
shares one transaction (an address lease, a host port and the sandbox's rules commit
together or not at all). The one read other packages make without the service (the
networks' names and IDs, for a container's inspect) is in lookup.py, which imports
none of this module's dependencies."""

from __future__ import annotations

import os
import time

from ketch.errors import NotFound
from ketch.fastjson import dumps, loads
from ketch.ids import is_id_prefix
from ketch.network import schema
from ketch.network.config import DERIVED_SUBNETS, first_host4
from ketch.network.models import Endpoint, Network, PortBinding
from ketch.store.db import sqlite3

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

    from ketch.network.config import NetworkConfig
    from ketch.network.firewall import Rule
    from ketch.store.db import Database

CONTAINER_TABLES = ("net_ports", "net_names", "net_endpoints", "net_sandboxes")


# -- schema and built-in networks ------------------------------------------------------
def install(db: Database, config: NetworkConfig) -> None:
    """The tables, the columns later versions added, and the built-in networks (the
    default bridge following a changed subnet once nothing uses the old one)."""
    db.ensure_schema("network", schema.SCHEMA)
    with db.transaction() as conn:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(net_networks)")}
        if "extra" not in columns:  # a root made before networks had options
            conn.execute("ALTER TABLE net_networks ADD COLUMN extra TEXT NOT NULL"
                         " DEFAULT '{}'")
        if "ip6" not in {r[1] for r in conn.execute("PRAGMA table_info(net_endpoints)")}:
            conn.execute("ALTER TABLE net_endpoints ADD COLUMN ip6 TEXT NOT NULL"
                         " DEFAULT ''")
        rows = {r["name"]: r for r in conn.execute(
            "SELECT * FROM net_networks WHERE builtin=1")}
        bridge = rows.get("bridge")
        if len(rows) == 3 and bridge is not None and bridge["bridge"] == config.bridge_name \
                and bridge["subnet"] == config.bridge_subnet and bridge["gateway"] == (
                    config.bridge_gateway or first_host4(config.bridge_subnet)):
            return  # as configured (what every command finds): no need for ipaddress
        import ipaddress

        subnet = str(ipaddress.ip_network(config.bridge_subnet, strict=False))
        gateway = config.bridge_gateway or str(next(ipaddress.ip_network(subnet).hosts()))
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            if name not in rows:
                conn.execute(
                    "INSERT INTO net_networks (id, name, driver, bridge, subnet, gateway,"
                    " builtin, created) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                    (os.urandom(32).hex(), name, driver,
                     config.bridge_name if name == "bridge" else "",
                     subnet if name == "bridge" else "",
                     gateway if name == "bridge" else "", time.time()))
        row = rows.get("bridge")
        if row is not None and config.derived_subnet and row["subnet"] and (
                ipaddress.IPv4Network(row["subnet"]).subnet_of(
                    ipaddress.IPv4Network(DERIVED_SUBNETS))):
            # the subnet a derived bridge claimed (maybe not its first choice) stays
            subnet, gateway = row["subnet"], row["gateway"]
        if row is not None and (row["subnet"], row["gateway"], row["bridge"]) != (
                subnet, gateway, config.bridge_name):
            # a changed KETCH_BRIDGE_SUBNET takes effect once nothing uses the old one
            if not network_busy(conn, row["id"]):
                conn.execute("UPDATE net_networks SET subnet=?, gateway=?, bridge=?,"
                             " last_ip='' WHERE id=?",
                             (subnet, gateway, config.bridge_name, row["id"]))


# -- networks --------------------------------------------------------------------------
def row_to_network(row: sqlite3.Row) -> Network:
    extra = loads(row["extra"] or "{}")
    return Network(id=row["id"], name=row["name"], driver=row["driver"],
                   bridge=row["bridge"], subnet=row["subnet"], gateway=row["gateway"],
                   internal=bool(row["internal"]), labels=loads(row["labels"]),
                   created=row["created"], builtin=bool(row["builtin"]),
                   ip_range=extra.get("ip_range", ""),
                   aux_addresses=extra.get("aux_addresses") or {},
                   options=extra.get("options") or {},
                   attachable=bool(extra.get("attachable")),
                   subnet6=extra.get("subnet6", ""), gateway6=extra.get("gateway6", ""),
                   pool_subnet=bool(extra.get("pool_subnet")))


def find_network(conn: sqlite3.Connection, ref: str) -> Network:
    """By name, full ID or unique ID prefix ("default" is the bridge)."""
    if ref == "default":
        ref = "bridge"
    row = conn.execute("SELECT * FROM net_networks WHERE name=? OR id=?",
                       (ref, ref)).fetchone()
    if row is None and is_id_prefix(ref):
        rows = conn.execute("SELECT * FROM net_networks WHERE id LIKE ?",
                            (ref + "%",)).fetchall()
        if len(rows) > 1:
            raise NotFound(f"network {ref} is ambiguous ({len(rows)} matches found based on ID prefix)")
        row = rows[0] if rows else None
    if row is None:
        raise NotFound(f"network {ref} not found")
    return row_to_network(row)


def networks(conn: sqlite3.Connection) -> list[Network]:
    """Every network, oldest first."""
    return [row_to_network(r) for r in
            conn.execute("SELECT * FROM net_networks ORDER BY created").fetchall()]


def used_network_ids(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT DISTINCT network_id FROM net_endpoints")}


def name_taken(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM net_networks WHERE name=?", (name,)).fetchone() is not None


def bridge_taken(conn: sqlite3.Connection, bridge: str) -> bool:
    return conn.execute("SELECT 1 FROM net_networks WHERE bridge=?",
                        (bridge,)).fetchone() is not None


def subnets(conn: sqlite3.Connection) -> list[str]:
    """The IPv4 subnets of every network that has one."""
    return [r[0] for r in conn.execute("SELECT subnet FROM net_networks WHERE subnet != ''")]


def subnets6(conn: sqlite3.Connection) -> list[str]:
    """The IPv6 subnets of the networks made with --ipv6."""
    return [loads(r[0] or "{}")["subnet6"] for r in conn.execute(
        "SELECT extra FROM net_networks WHERE extra LIKE '%\"subnet6\"%'")]


def insert_network(conn: sqlite3.Connection, net_id: str, name: str, bridge: str, subnet: str,
                   gateway: str, internal: bool, labels: dict[str, str],
                   extra: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO net_networks (id, name, driver, bridge, subnet, gateway, internal,"
        " labels, created, extra) VALUES (?, ?, 'bridge', ?, ?, ?, ?, ?, ?, ?)",
        (net_id, name, bridge, subnet, gateway, int(internal), dumps(labels),
         time.time(), dumps(extra)))


def delete_network(conn: sqlite3.Connection, net_id: str) -> list[Rule]:
    """Forget the network; returns the firewall rules it had installed."""
    row = conn.execute("SELECT fw_rules FROM net_networks WHERE id=?", (net_id,)).fetchone()
    conn.execute("DELETE FROM net_networks WHERE id=?", (net_id,))
    conn.execute("DELETE FROM net_names WHERE network_id=?", (net_id,))
    from ketch.network.firewall import Rule

    return [Rule.decode(r) for r in loads(row[0])] if row else []


def set_network_rules(conn: sqlite3.Connection, net_id: str, rules: Sequence[Rule]) -> None:
    conn.execute("UPDATE net_networks SET fw_rules=? WHERE id=?",
                 (dumps([r.encode() for r in rules]), net_id))


def set_subnet(conn: sqlite3.Connection, net_id: str, subnet: str, gateway: str) -> None:
    """A new subnet for a network nothing uses (the address round robin restarts)."""
    conn.execute("UPDATE net_networks SET subnet=?, gateway=?, last_ip='' WHERE id=?",
                 (subnet, gateway, net_id))


def is_builtin(conn: sqlite3.Connection, net_id: str) -> bool:
    row = conn.execute("SELECT builtin FROM net_networks WHERE id=?", (net_id,)).fetchone()
    return row is not None and bool(row["builtin"])


# -- endpoints (the address leases) ----------------------------------------------------
def endpoints(conn: sqlite3.Connection, where: str,
              args: Sequence[Any]) -> list[tuple[str, Endpoint]]:
    """(container ID, endpoint) pairs matching `where` (over `e`, the endpoint, and `n`,
    its network), in the order the container was attached."""
    rows = conn.execute(
        "SELECT e.*, n.name AS network_name, n.extra AS network_extra FROM net_endpoints e"
        f" JOIN net_networks n ON n.id = e.network_id WHERE {where} ORDER BY e.seq",
        args).fetchall()
    out = []
    for r in rows:
        ep = Endpoint(
            network_id=r["network_id"], network_name=r["network_name"], ip=r["ip"],
            prefixlen=r["prefixlen"], gateway=r["gateway"], mac=r["mac"],
            aliases=loads(r["aliases"]), endpoint_id=r["endpoint_id"],
            ifname=r["ifname"], host_ifname=r["host_ifname"])
        if r["ip6"]:
            extra = loads(r["network_extra"] or "{}")
            ep.ip6, ep.gateway6 = r["ip6"], extra.get("gateway6", "")
            import ipaddress

            ep.ip6_prefixlen = ipaddress.ip_network(extra["subnet6"]).prefixlen
        out.append((r["container_id"], ep))
    return out


def network_busy(conn: sqlite3.Connection, net_id: str) -> bool:
    """Whether any container has an endpoint on the network."""
    return conn.execute("SELECT 1 FROM net_endpoints WHERE network_id=? LIMIT 1",
                        (net_id,)).fetchone() is not None


def leased(conn: sqlite3.Connection, net_id: str) -> set[str]:
    """The network's IPv4 addresses in use."""
    return {r[0] for r in conn.execute("SELECT ip FROM net_endpoints WHERE network_id=?",
                                       (net_id,))}


def leased6(conn: sqlite3.Connection, net_id: str) -> set[str]:
    """The network's IPv6 addresses in use."""
    return {r[0] for r in conn.execute(
        "SELECT ip6 FROM net_endpoints WHERE network_id=? AND ip6 != ''", (net_id,))}


def last_ip(conn: sqlite3.Connection, net_id: str) -> str:
    """The address handed out last on the network ('' when none or reset)."""
    row = conn.execute("SELECT last_ip FROM net_networks WHERE id=?", (net_id,)).fetchone()
    return row[0] if row and row[0] else ""


def set_last_ip(conn: sqlite3.Connection, net_id: str, ip: str) -> None:
    conn.execute("UPDATE net_networks SET last_ip=? WHERE id=?", (ip, net_id))


def attached(conn: sqlite3.Connection, container_id: str, net_id: str) -> bool:
    return conn.execute("SELECT 1 FROM net_endpoints WHERE container_id=? AND network_id=?",
                        (container_id, net_id)).fetchone() is not None


def interfaces(conn: sqlite3.Connection, container_id: str) -> list[tuple[str, int]]:
    """The container's interface names and attach order numbers."""
    return [(r["ifname"], r["seq"]) for r in conn.execute(
        "SELECT ifname, seq FROM net_endpoints WHERE container_id=?", (container_id,))]


def insert_endpoint(conn: sqlite3.Connection, container_id: str, ep: Endpoint,
                    seq: int) -> None:
    conn.execute(
        "INSERT INTO net_endpoints (container_id, network_id, endpoint_id, ip, prefixlen,"
        " gateway, mac, ifname, host_ifname, aliases, seq, ip6)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (container_id, ep.network_id, ep.endpoint_id, ep.ip, ep.prefixlen, ep.gateway,
         ep.mac, ep.ifname, ep.host_ifname, dumps(ep.aliases), seq, ep.ip6))


def insert_names(conn: sqlite3.Connection, net_id: str, container_id: str,
                 names: Iterable[str], ip: str) -> None:
    """The DNS names of an endpoint; the first is the one reverse lookups answer."""
    for i, n in enumerate(names):
        conn.execute("INSERT INTO net_names (network_id, name, ip, container_id,"
                     " primary_name) VALUES (?, ?, ?, ?, ?)",
                     (net_id, n, ip, container_id, int(i == 0)))


def delete_endpoint(conn: sqlite3.Connection, container_id: str, net_id: str) -> None:
    """The endpoint with its names and published ports."""
    for table in ("net_ports", "net_names", "net_endpoints"):
        conn.execute(f"DELETE FROM {table} WHERE container_id=? AND network_id=?",
                     (container_id, net_id))


# -- sandboxes -------------------------------------------------------------------------
def sandbox_row(conn: sqlite3.Connection, container_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM net_sandboxes WHERE container_id=?",
                        (container_id,)).fetchone()


def sandbox_rows_like(conn: sqlite3.Connection, prefix: str) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM net_sandboxes WHERE container_id LIKE ?",
                        (prefix + "%",)).fetchall()


def sandbox_ids(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT container_id FROM net_sandboxes")]


def insert_sandbox(conn: sqlite3.Connection, container_id: str, mode: str,
                   netns_path: str | None, owns_netns: bool, hostname: str,
                   dns: str = "") -> None:
    conn.execute(
        "INSERT INTO net_sandboxes (container_id, mode, netns_path, owns_netns,"
        " hostname, dns, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (container_id, mode, netns_path, int(owns_netns), hostname, dns, time.time()))


def sandbox_rules(row: sqlite3.Row | None) -> list[Rule]:
    """The firewall rules recorded for a sandbox (its published ports)."""
    from ketch.network.firewall import Rule

    return [Rule.decode(r) for r in loads(row["fw_rules"])] if row else []


def set_sandbox_rules(conn: sqlite3.Connection, container_id: str,
                      rules: Sequence[Rule]) -> None:
    conn.execute("UPDATE net_sandboxes SET fw_rules=? WHERE container_id=?",
                 (dumps([r.encode() for r in rules]), container_id))


def set_proxy(conn: sqlite3.Connection, container_id: str, pid: int, started: str) -> None:
    conn.execute("UPDATE net_sandboxes SET proxy_pid=?, proxy_started=?"
                 " WHERE container_id=?", (pid, started, container_id))


def delete_container(conn: sqlite3.Connection, container_id: str) -> None:
    """Every record of the container: ports, names, endpoints, sandbox."""
    for table in CONTAINER_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE container_id=?", (container_id,))


# -- published ports -------------------------------------------------------------------
def port_holders(conn: sqlite3.Connection) -> dict[tuple[str, int], list[str]]:
    """(protocol, host port) -> the host addresses it is published on."""
    taken: dict[tuple[str, int], list[str]] = {}
    for r in conn.execute("SELECT protocol, host_ip, host_port FROM net_ports"):
        taken.setdefault((r[0], r[2]), []).append(r[1])
    return taken


def insert_port(conn: sqlite3.Connection, container_id: str, net_id: str, container_ip: str,
                b: PortBinding) -> None:
    conn.execute(
        "INSERT INTO net_ports (protocol, host_ip, host_port, container_id,"
        " network_id, container_ip, container_port) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (b.protocol, b.host_ip, b.host_port, container_id, net_id, container_ip,
         b.container_port))


def ports(conn: sqlite3.Connection, container_id: str) -> list[PortBinding]:
    rows = conn.execute(
        "SELECT * FROM net_ports WHERE container_id=? ORDER BY container_port, protocol,"
        " host_ip, host_port", (container_id,)).fetchall()
    return [PortBinding(r["container_port"], r["protocol"], r["host_ip"], r["host_port"])
            for r in rows]


def datagram_ports(conn: sqlite3.Connection, container_id: str) -> list[sqlite3.Row]:
    """The container's published UDP and SCTP ports (protocol, container_ip,
    container_port), whose conntrack entries outlive the container."""
    return conn.execute(
        "SELECT DISTINCT protocol, container_ip, container_port FROM net_ports"
        " WHERE container_id=? AND protocol != 'tcp'", (container_id,)).fetchall()


# -- DNS processes ---------------------------------------------------------------------
def dns_process(conn: sqlite3.Connection, net_id: str) -> tuple[int, str] | None:
    """The (pid, start time) recorded for the network's DNS process."""
    row = conn.execute("SELECT pid, started FROM net_dns WHERE network_id=?",
                       (net_id,)).fetchone()
    return (int(row["pid"]), row["started"]) if row else None


def set_dns_process(conn: sqlite3.Connection, net_id: str, pid: int, started: str) -> None:
    conn.execute("INSERT OR REPLACE INTO net_dns (network_id, pid, started) VALUES (?, ?, ?)",
                 (net_id, pid, started))


def delete_dns_process(conn: sqlite3.Connection, net_id: str) -> None:
    conn.execute("DELETE FROM net_dns WHERE network_id=?", (net_id,))
