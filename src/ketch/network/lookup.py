"""Reads of the network table that need none of the network service: what a container's
inspect shows for a container that is not running (the IDs of the networks it will
join). Building the `NetworkService` imports netlink, iptables handling, `ipaddress`,
`socket` and `subprocess` and checks the schema and the built-in networks: two thirds
of the instructions of `ketch inspect` of a created container, for two columns of one
table.
"""

from __future__ import annotations

from ketch.ids import is_id_prefix

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.store.db import Database


def has_sandbox(db: Database, container_id: str) -> bool:
    """Whether the network service holds a sandbox for the container (its namespace,
    addresses, port rules), which its `teardown` releases."""
    from ketch.store.db import sqlite3

    try:
        row = db.conn.execute("SELECT 1 FROM net_sandboxes WHERE container_id=?",
                              (container_id,)).fetchone()
    except sqlite3.OperationalError:  # no such table: nothing networked ran here
        return False
    return row is not None


def network_ids(db: Database) -> dict[str, str] | None:
    """Every network's name and ID (name -> ID), oldest first; None where the network
    service has not yet made its table and the built-in networks (a root where nothing
    networked ran): the caller asks the service, which makes them."""
    from ketch.store.db import sqlite3

    try:
        rows = db.conn.execute(
            "SELECT name, id FROM net_networks ORDER BY created").fetchall()
    except sqlite3.OperationalError:  # no such table
        return None
    found = {name: net_id for name, net_id in rows}
    return found if "bridge" in found else None


def surely_missing(db: Database, ref: str) -> bool:
    """Whether no network can be `ref` (by name, full ID or ID prefix, as
    `records.find_network` looks): what `inspect` of a name that is no network learns
    without the service. False when the table is not made yet (the service makes it and
    the built-in networks, then answers)."""
    ids = network_ids(db)
    if ids is None:
        return False
    if ref == "default" or ref in ids:
        return False
    prefix = is_id_prefix(ref)
    return not any(net_id == ref or (prefix and net_id.startswith(ref))
                   for net_id in ids.values())

