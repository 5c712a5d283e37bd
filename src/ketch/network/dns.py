"""The lifecycle of the DNS processes (dnsd.py), one per user-defined network with
containers: started on the first endpoint, with its sockets bound here on
<gateway>:53 so no query is refused while it starts; recorded in net_dns with its start
time (a recycled pid is never taken for it); stopped with the network's last endpoint."""

from __future__ import annotations

import os
import sys

from ketch.errors import KetchError
from ketch.network import procs, records
from ketch.network.files import host_nameservers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from ketch.network.config import NetworkConfig
    from ketch.network.models import Network
    from ketch.store.db import Database

HELPERS = os.path.dirname(os.path.abspath(__file__))


class DnsProcesses:
    def __init__(self, db: Database, config: NetworkConfig, run_dir: str,
                 lock: Callable[[], AbstractContextManager[None]]) -> None:
        self.db = db
        self.config = config
        self.run_dir = run_dir
        self.lock = lock

    def ensure(self, net: Network) -> None:
        """The network's DNS process runs (started unless a live one is recorded)."""
        with self.lock():
            known = records.dns_process(self.db.conn, net.id)
            if known and procs.alive(*known):
                return
            import socket  # (here: stopping a network's DNS process needs none)

            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                for s in (udp, tcp):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((net.gateway, 53))
                tcp.listen(64)
                upstreams = self.config.dns_upstreams
                if upstreams is None:
                    upstreams = host_nameservers(self.config.resolv_conf)
                argv = [sys.executable, "-I", "-S", f"{HELPERS}/dnsd.py",
                        "--db", str(self.db.path), "--network", net.id, "--subnet", net.subnet,
                        "--udp-fd", "3", "--tcp-fd", "4", "--upstream", ",".join(upstreams)]
                pid, started = procs.spawn_detached(argv, [udp, tcp],
                                                    f"{self.run_dir}/dns-{net.id[:12]}.log")
            except OSError as e:
                raise KetchError(f"cannot start the DNS service of network {net.name} on "
                                 f"{net.gateway}:53: {e.strerror or e}") from e
            finally:
                udp.close()
                tcp.close()
            with self.db.transaction() as conn:
                records.set_dns_process(conn, net.id, pid, started)

    def stop(self, network_id: str, only_if_unused: bool = False) -> None:
        """Stop the network's DNS process (with `only_if_unused`, only when the network
        has no endpoints left)."""
        with self.lock():
            conn = self.db.conn
            if only_if_unused and records.network_busy(conn, network_id):
                return
            known = records.dns_process(conn, network_id)
            if known is None:
                return
            procs.stop(*known)
            with self.db.transaction() as wconn:
                records.delete_dns_process(wconn, network_id)

    def pid(self, network_id: str) -> int | None:
        """The network's DNS process, if one is running."""
        known = records.dns_process(self.db.conn, network_id)
        if known and procs.alive(*known):
            return known[0]
        return None
