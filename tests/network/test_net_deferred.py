"""`setup(later=...)`: the namespace and records now, the veth plumbing when the caller
runs the deferred step (ketch runs it while the OCI runtime creates the container)."""

from __future__ import annotations

import subprocess

from tests.network.helpers import NetEnv


def _addresses(netns_path: str) -> str:
    return subprocess.run(["nsenter", f"--net={netns_path}", "ip", "-4", "-o", "addr"],
                          capture_output=True, text=True, check=True).stdout


def test_deferred_plumbing_completes_the_network_when_run(netenv: NetEnv) -> None:
    from ketch.network.sandbox import DeferredStep

    cid = "d" * 64
    later: list[DeferredStep] = []
    att = netenv.svc.setup(cid, later=later)
    assert att.netns_path and len(later) == 1
    ep = att.networks["bridge"]
    # the namespace exists already (the runtime joins it by path), without eth0 yet
    assert "eth0" not in _addresses(att.netns_path)
    assert netenv.veths() == []
    later[0]()
    assert f"inet {ep.ip}/" in _addresses(att.netns_path)
    assert len(netenv.veths()) == 1
    netenv.svc.teardown(cid)
    assert netenv.veths() == []


def test_cancelled_plumbing_and_teardown_leave_nothing(netenv: NetEnv) -> None:
    from ketch.network.sandbox import DeferredStep

    cid = "e" * 64
    later: list[DeferredStep] = []
    netenv.svc.setup(cid, later=later)
    later[0].cancel()
    netenv.svc.teardown(cid)
    assert netenv.veths() == [] and netenv.namespaces() == []
    # the fixture checks links, rules and namespace files once more
