"""Fixtures for the network tests: a NetworkService with names nobody else uses.

Every test gets its own bridge/veth/chain prefixes and its own 10.x /24 subnets, and
its fixture tears down and verifies that nothing with those prefixes is left: links,
iptables chains and rules, namespace files, DNS processes. Traffic in these tests goes
only to loopback, to the gateway addresses of the test's bridges and to the test's own
namespaces; DNS upstreams are empty, so nothing is ever forwarded off the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import network_token
from tests.network.helpers import NetEnv, SubnetPicker, require_network_tools


@pytest.fixture
def netenv(tmp_path: Path) -> Iterator[NetEnv]:
    require_network_tools()
    from ketch.network.config import NetworkConfig
    from ketch.network.service import NetworkService
    from ketch.store.db import Database

    tok = network_token()
    pick = SubnetPicker()
    subnet = pick()
    cfg = NetworkConfig(
        bridge_name=f"kt{tok}b0", bridge_subnet=subnet, pool=pick(),
        pool_prefixlen=26, bridge_prefix=f"kt{tok}n", veth_prefix=f"kt{tok}v",
        chain_prefix=f"KT{tok.upper()}", dns_upstreams=[])
    root = tmp_path / "state"
    run_root = tmp_path / "run"
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from busybox httpd\n")
    svc = NetworkService(Database(root / "ketch.db"), root, run_root, cfg)
    env = NetEnv(svc, tok, cfg.bridge_name, cfg.chain_prefix, cfg.veth_prefix, subnet, pick,
                 root, run_root, www)
    try:
        yield env
    finally:
        svc.uninstall()
        leftovers = {"links": env.links(), "rules": env.rules(), "netns": env.namespaces()}
        svc.db.close()
        assert leftovers == {"links": [], "rules": [], "netns": []}, leftovers
