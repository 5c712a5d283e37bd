"""Set-up and teardown leave nothing behind, stay cheap, survive crashes and races."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.network.helpers import NetEnv, free_port, http_get, httpd

from ketch.network import parse_publish
from ketch.network.firewall import Firewall


def _counts(netenv: NetEnv) -> dict[str, object]:
    conn = netenv.svc.db.conn
    return {
        "veths": netenv.veths(),
        "rules": netenv.rules(),
        "leases": conn.execute("SELECT COUNT(*) FROM net_endpoints").fetchone()[0],
        "ports": conn.execute("SELECT COUNT(*) FROM net_ports").fetchone()[0],
        "names": conn.execute("SELECT COUNT(*) FROM net_names").fetchone()[0],
        "sandboxes": conn.execute("SELECT COUNT(*) FROM net_sandboxes").fetchone()[0],
        "netns": netenv.namespaces(),
        "dns": conn.execute("SELECT COUNT(*) FROM net_dns").fetchone()[0],
    }


def test_fifty_setup_teardown_cycles_leave_nothing_behind(netenv: NetEnv) -> None:
    netenv.svc.create_network("ktweb", subnet=netenv.pick_subnet())
    port = free_port()
    # warm up: the bridges and chains are created once and kept, as Docker does
    netenv.svc.setup("w" * 64, ports=parse_publish(f"{port}:80"))
    netenv.svc.teardown("w" * 64)
    before = _counts(netenv)
    for i in range(50):
        cid = f"{i:064x}"
        mode = "ktweb" if i % 2 else "bridge"
        att = netenv.svc.setup(cid, mode=mode, name=f"c{i}",
                               ports=parse_publish(f"{port}:80") + parse_publish("81/udp"))
        assert len(netenv.veths()) == 1 and len(att.ports) == 2
        netenv.svc.teardown(cid)
    # (the set-up's speed is measured by bench/bench_network.py, not here)
    assert _counts(netenv) == before


def test_setup_without_ports_starts_no_process(netenv: NetEnv) -> None:
    netenv.svc.setup("w" * 64)  # warm: bridge and chains exist from here on
    netenv.svc.teardown("w" * 64)
    out = subprocess.run(
        [sys.executable, "-c", _TRACE_SCRIPT, str(netenv.root), str(netenv.run_root),
         json.dumps(_config(netenv))], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "spawned 0"


_TRACE_SCRIPT = r"""
import json, subprocess, sys
from pathlib import Path
from ketch.network.config import NetworkConfig
from ketch.network.service import NetworkService
from ketch.store.db import Database
spawned = []
real = subprocess.Popen.__init__
def tracking(self, *a, **k):
    spawned.append(a[0] if a else k.get("args"))
    return real(self, *a, **k)
subprocess.Popen.__init__ = tracking
cfg = NetworkConfig(**json.loads(sys.argv[3]))
svc = NetworkService(Database(Path(sys.argv[1]) / "ketch.db"), Path(sys.argv[1]), Path(sys.argv[2]), cfg)
svc.setup("q" * 64)
n = len(spawned)
svc.teardown("q" * 64)
print("spawned", n)
"""


def _config(netenv: NetEnv) -> dict[str, object]:
    c = netenv.svc.config
    return {"bridge_name": c.bridge_name, "bridge_subnet": c.bridge_subnet, "pool": c.pool,
            "pool_prefixlen": c.pool_prefixlen, "bridge_prefix": c.bridge_prefix,
            "veth_prefix": c.veth_prefix, "chain_prefix": c.chain_prefix,
            "dns_upstreams": c.dns_upstreams}


_RACE_SCRIPT = r"""
import json, sys, time
from pathlib import Path
from ketch.errors import Conflict
from ketch.network import parse_publish
from ketch.network.config import NetworkConfig
from ketch.network.service import NetworkService
from ketch.store.db import Database
root, run, cfg, cid, port, start_at = sys.argv[1:7]
svc = NetworkService(Database(Path(root) / "ketch.db"), Path(root), Path(run),
                     NetworkConfig(**json.loads(cfg)))
svc._init()
# asleep until just before the agreed moment, then a spin for the last 10 ms: the three
# start together without holding both cores for the second and a half before
time.sleep(max(0.0, float(start_at) - time.time() - 0.01))
while time.time() < float(start_at):
    pass
try:
    svc.setup(cid, ports=parse_publish(f"{port}:80"))
    print("won")
except Conflict as e:
    print("lost:", e)
"""


def test_two_processes_asking_for_the_same_port_exactly_one_wins(netenv: NetEnv) -> None:
    netenv.svc.setup("w" * 64)  # create the schema and bridge first
    netenv.svc.teardown("w" * 64)
    port = free_port()
    start_at = time.time() + 1.5
    procs = [subprocess.Popen(
        [sys.executable, "-c", _RACE_SCRIPT, str(netenv.root), str(netenv.run_root),
         json.dumps(_config(netenv)), cid, str(port), str(start_at)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cid in ("1" * 64, "2" * 64, "3" * 64)]
    results = [p.communicate(timeout=60) for p in procs]
    outs = [o.strip() for o, _e in results]
    assert sorted(o.split(":")[0] for o in outs) == ["lost", "lost", "won"], results
    assert all(f"Bind for 0.0.0.0:{port} failed: port is already allocated" in o
               for o in outs if o.startswith("lost"))
    winner = ("1" * 64, "2" * 64, "3" * 64)[[o == "won" for o in outs].index(True)]
    att = netenv.svc.attachment(winner)
    assert att is not None
    with httpd(att.netns_path, att.ip, 80, netenv.www):
        assert http_get("127.0.0.1", port) == "hello from busybox httpd\n"
    assert len(netenv.veths()) == 1


def test_setup_again_after_a_crash_cleans_the_leftovers(netenv: NetEnv) -> None:
    port = free_port()
    cid = "c" * 64
    netenv.svc.setup(cid, ports=parse_publish(f"{port}:80"))
    # a second setup of the same container (the process died without teardown)
    att = netenv.svc.setup(cid, ports=parse_publish(f"{port}:80"))
    assert len(netenv.veths()) == 1
    with httpd(att.netns_path, att.ip, 80, netenv.www):
        assert http_get("127.0.0.1", port) == "hello from busybox httpd\n"
    # kernel objects gone behind ketch's back (a reboot, a manual `ip link del`)
    subprocess.run(["ip", "link", "del", att.primary.host_ifname], check=True)
    subprocess.run(["iptables", "-t", "nat", "-F", netenv.chain_prefix], check=True)
    netenv.svc.teardown(cid)
    assert netenv.svc.attachment(cid) is None
    assert netenv.veths() == [] and netenv.namespaces() == []


def test_flushed_chains_come_back_on_next_network_setup(netenv: NetEnv) -> None:
    netenv.svc.setup("w" * 64)
    netenv.svc.teardown("w" * 64)
    Firewall(netenv.chain_prefix).uninstall()
    for marker in (netenv.run_root / "network").glob("ready-*"):
        marker.unlink()  # what a reboot does to /run
    port = free_port()
    att = netenv.svc.setup("c" * 64, ports=parse_publish(f"{port}:80"))
    with httpd(att.netns_path, att.ip, 80, netenv.www):
        assert http_get("127.0.0.1", port) == "hello from busybox httpd\n"


def test_chains_removed_behind_ketchs_back_are_rebuilt(netenv: NetEnv) -> None:
    netenv.svc.setup("w" * 64)
    netenv.svc.teardown("w" * 64)
    Firewall(netenv.chain_prefix).uninstall()  # the marker files still say "ready"
    port = free_port()
    att = netenv.svc.setup("c" * 64, ports=parse_publish(f"{port}:80"))
    with httpd(att.netns_path, att.ip, 80, netenv.www):
        assert http_get("127.0.0.1", port) == "hello from busybox httpd\n"


def test_rules_are_written_the_way_iptables_save_prints_them(netenv: NetEnv) -> None:
    """Presence checks and deletions compare strings, so the canonical form matters."""
    from ketch.network.models import PortBinding

    fw = Firewall(netenv.chain_prefix)
    bridge = netenv.bridge
    rules = (fw.network_rules(bridge, "10.250.250.0/24", "10.250.250.1", False, True)
             + fw.network_rules(bridge + "x", "10.250.251.0/24", "10.250.251.1", True, False)
             + fw.port_rules([PortBinding(80, "tcp", "", 3000),
                              PortBinding(53, "udp", "127.0.0.1", 3001),
                              PortBinding(80, "sctp", "", 3002)], "10.250.250.2"))
    try:
        fw.ensure(rules)
        current = fw.save()
        missing = [r.saved_line() for r in [*fw.base_rules(), *rules] if not current.has_rule(r)]
        assert missing == []
        fw.ensure(rules)  # idempotent: nothing doubles
        after = fw.save()
        for table in ("nat", "filter"):
            ours = [line for line in after.rules[table] if netenv.chain_prefix in line]
            assert len(ours) == len(set(ours))
        fw.delete(rules)
        fw.delete(rules)  # already gone: quiet
        left = fw.save()
        assert not any(left.has_rule(r) for r in rules)
    finally:
        fw.uninstall()
    assert not any(netenv.chain_prefix in line for lines in fw.save().rules.values()
                   for line in lines)


def test_namespace_dir_is_a_shared_mount(netenv: NetEnv) -> None:
    netenv.svc.setup("c" * 64)
    target = str(netenv.run_root / "netns")
    lines = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
             if line.split()[4] == target]
    assert lines and any("shared:" in line for line in lines)
