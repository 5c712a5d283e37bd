"""The network tables in ketch.db, and the queries that run in more than one process.

Tables: networks (with their firewall rules and IPAM state), one sandbox per container
(its namespace, firewall rules and helper processes), endpoints (which double as IPAM
leases: UNIQUE(network_id, ip)), DNS names, published ports, and the DNS processes.

Pure text on purpose: the DNS responder (dnsd.py, started as `python -I -S` without the
ketch package on its path) loads this file by itself, so both read the same tables with
the same statements and a schema change is made in one place.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS net_networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    bridge TEXT NOT NULL DEFAULT '',
    subnet TEXT NOT NULL DEFAULT '',
    gateway TEXT NOT NULL DEFAULT '',
    internal INTEGER NOT NULL DEFAULT 0,
    builtin INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    last_ip TEXT NOT NULL DEFAULT '',
    fw_rules TEXT NOT NULL DEFAULT '[]',
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS net_sandboxes (
    container_id TEXT PRIMARY KEY,
    mode TEXT NOT NULL,
    netns_path TEXT,
    owns_netns INTEGER NOT NULL DEFAULT 0,
    hostname TEXT NOT NULL DEFAULT '',
    dns TEXT NOT NULL DEFAULT '',
    fw_rules TEXT NOT NULL DEFAULT '[]',
    proxy_pid INTEGER,
    proxy_started TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS net_endpoints (
    container_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    prefixlen INTEGER NOT NULL,
    gateway TEXT NOT NULL,
    mac TEXT NOT NULL,
    ifname TEXT NOT NULL,
    host_ifname TEXT NOT NULL,
    aliases TEXT NOT NULL DEFAULT '[]',
    seq INTEGER NOT NULL DEFAULT 0,
    ip6 TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (container_id, network_id),
    UNIQUE (network_id, ip)
);
CREATE TABLE IF NOT EXISTS net_names (
    network_id TEXT NOT NULL,
    name TEXT NOT NULL,
    ip TEXT NOT NULL,
    container_id TEXT NOT NULL,
    primary_name INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS net_names_lookup ON net_names(network_id, name);
CREATE INDEX IF NOT EXISTS net_names_container ON net_names(container_id);
CREATE TABLE IF NOT EXISTS net_ports (
    protocol TEXT NOT NULL,
    host_ip TEXT NOT NULL,
    host_port INTEGER NOT NULL,
    container_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    container_ip TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    PRIMARY KEY (protocol, host_ip, host_port)
);
CREATE INDEX IF NOT EXISTS net_ports_container ON net_ports(container_id);
CREATE TABLE IF NOT EXISTS net_dns (
    network_id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    started TEXT NOT NULL
);
"""

# The DNS responder's lookups (dnsd.Records), all scoped to one network.
NAME_ADDRESSES = "SELECT ip FROM net_names WHERE network_id=? AND name=?"
NAME_ADDRESSES6 = ("SELECT e.ip6 FROM net_names n JOIN net_endpoints e"
                   " ON e.container_id = n.container_id AND e.network_id = n.network_id"
                   " WHERE n.network_id=? AND n.name=? AND e.ip6 != ''")
NAME_OF_ADDRESS = ("SELECT name FROM net_names WHERE network_id=? AND ip=?"
                   " ORDER BY primary_name DESC LIMIT 1")
CLIENT_UPSTREAMS = ("SELECT s.dns FROM net_endpoints e JOIN net_sandboxes s"
                    " ON s.container_id = e.container_id"
                    " WHERE e.network_id=? AND e.ip=?")
ENDPOINT_COUNT = "SELECT COUNT(*) FROM net_endpoints WHERE network_id=?"
