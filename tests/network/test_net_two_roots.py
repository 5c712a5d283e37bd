"""Two state roots on one host never hand out the same address: a root other than the
default one gets, by default, its own bridge, chains and a /24 derived from its path,
checked against the host's routes when the bridge is made (so a second root whose path
hashes to the same /24 takes the next free one)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, require, require_root, require_tool, teardown_root
from tests.network.helpers import _routed_networks

from ketch.network.config import derived_first_subnet, derived_hash, derived_subnets


@pytest.fixture
def default_roots(tmp_path: Path, busybox_tar: Path) -> Iterator[list[KetchCLI]]:
    """Two roots with no network.toml (the default path), the second one's path chosen
    so that its first subnet is the first one's: the collision check must act."""
    require_root()
    require_tool("runc")
    require_tool("conmon")
    require(Path("/sys/class/net").is_dir(), "no /sys/class/net")
    first = tmp_path / "root-a"
    want = derived_subnets(str(first))[0]
    second = next(tmp_path / f"root-b{i}" for i in range(100000)
                  if derived_subnets(str(tmp_path / f"root-b{i}"))[0] == want)
    clis = []
    for root in (first, second):
        root.mkdir()
        cli = KetchCLI(root)
        cli("import", "--change", 'CMD ["sh"]', str(busybox_tar), "busybox")
        clis.append(cli)
    yield clis
    for cli in clis:
        teardown_root(cli.root, cli.root / "run")
        from ketch.containers.rootfs import unmount

        unmount(cli.root / "run" / "netns")


def _address(cli: KetchCLI, cid: str) -> tuple[str, str, str]:
    fmt = "{{.NetworkSettings.IPAddress}} {{.NetworkSettings.MacAddress}} {{.NetworkSettings.Gateway}}"
    ip, mac, gw = cli("inspect", "-f", fmt, cid).stdout.split()
    return ip, mac, gw


def _bridge_of(cli: KetchCLI) -> tuple[str, str]:
    out = cli("network", "inspect", "-f",
              "{{range .IPAM.Config}}{{.Subnet}}{{end}} {{.Options}}", "bridge").stdout
    return out.split()[0], out


def test_two_default_roots_get_their_own_bridges_and_never_the_same_address(
        default_roots: list[KetchCLI]) -> None:
    a, b = default_roots
    ids = []
    for cli in (a, b):
        ids.append(cli("run", "-d", "busybox", "sleep", "300").stdout.strip())
    (ip_a, mac_a, gw_a), (ip_b, mac_b, gw_b) = _address(a, ids[0]), _address(b, ids[1])
    assert ip_a != ip_b and mac_a != mac_b and gw_a != gw_b
    net_a, net_b = (ipaddress.ip_network(_bridge_of(c)[0]) for c in (a, b))
    assert not net_a.overlaps(net_b)
    assert ipaddress.ip_address(ip_a) in net_a and ipaddress.ip_address(ip_b) in net_b
    # both inside the derived range, neither on the default root's ketch0 network: the
    # first subnet of the root's order that nothing else on the host routes (another
    # root's bridge may hold the one its path hashes to)
    order = derived_subnets(str(a.root))
    own = {net_a, net_b}
    others = [n for n in _routed_networks() if not any(n.overlaps(o) for o in own)]
    assert net_a == next(s for s in order if not any(s.overlaps(r) for r in others))
    assert net_b.subnet_of(ipaddress.ip_network("10.192.0.0/16"))
    for cli in (a, b):
        bridge = f"ketch-{derived_hash(str(cli.root))[:8]}"
        assert Path(f"/sys/class/net/{bridge}").is_dir()
        assert Path(f"/sys/class/net/{bridge}/brif").is_dir()
    # each container reaches its own gateway (the bridge works)
    for cli, cid, gw in ((a, ids[0], gw_a), (b, ids[1], gw_b)):
        assert cli("exec", cid, "ping", "-c", "1", "-W", "2", gw).returncode == 0
    # the choice is kept: the second root's next container stays on its subnet
    again = b("run", "-d", "busybox", "sleep", "300").stdout.strip()
    assert ipaddress.ip_address(_address(b, again)[0]) in net_b
    for cli in (a, b):
        cli("rm", "-f", *cli("ps", "-aq").stdout.split())


def test_a_roots_bridge_subnet_is_the_first_of_its_order(tmp_path: Path) -> None:
    # (what every command in the root reads is worked out without the other 255)
    for i in range(300):
        root = str(tmp_path / f"root-{i}")
        order = derived_subnets(root)
        assert len(order) == 256 and len(set(order)) == 256
        assert derived_first_subnet(root) == str(order[0])


def test_the_default_bridges_gateway_is_worked_out_as_ipaddress_would() -> None:
    # (the built-in networks are checked against the configuration on every command,
    # without ipaddress: its first host of the subnet, or nothing for an unusual form)
    import random

    from ketch.network.config import first_host4

    rng = random.Random(7)
    for _ in range(20000):
        plen = rng.randint(0, 32)
        value = rng.getrandbits(32) & (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        cidr = f"{ipaddress.IPv4Address(value)}/{plen}"
        want = str(next(ipaddress.ip_network(cidr).hosts())) if plen <= 30 else None
        assert first_host4(cidr) == want, cidr
    for odd in ("10.0.0.1/24", "010.0.0.0/8", "10.0.0/8", "fd00::/64", "10.0.0.0",
                "1.2.3.256/24", "10.0.0.0/ 8"):
        assert first_host4(odd) is None, odd
