"""IPv6 on bridge networks as Docker (with ip6tables) and Podman do it: a default route
via the bridge's IPv6 gateway, ip6tables isolation between networks, a ULA /64 when
`--ipv6` comes without an IPv6 subnet, `-p` listening on [::] too, `network connect
--ip6`. Traffic goes only to loopback and to the test's own containers."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess

import pytest
from tests.conftest import KetchCLI, require, require_tool
from tests.containers_net.helpers import PAGE, free_port, httpd
from tests.helpers.host import fetch


@pytest.fixture
def nk(net_ketch: KetchCLI) -> KetchCLI:
    require(os.path.exists("/proc/net/if_inet6"), "IPv6 on this kernel")
    for tool in ("ip6tables", "ip6tables-save", "ip6tables-restore"):
        require_tool(tool)
    return net_ketch


def _prefix() -> str:
    """A random ULA /64 prefix in the canonical form ketch and ip(6tables) print."""
    return str(ipaddress.IPv6Address((0xFD << 120) | (int.from_bytes(os.urandom(5), "big")
                                                      << 80)))


def _config(nk: KetchCLI, key: str) -> str:
    cfg = (nk.root / "network.toml").read_text()
    return cfg.split(f'{key} = "')[1].split('"')[0]


def _ip6tables_lines(nk: KetchCLI) -> list[str]:
    """This root's ip6tables lines: its chains, and rules naming its bridges."""
    out = subprocess.run(["ip6tables-save"], capture_output=True, text=True,
                         check=True).stdout
    ours = (_config(nk, "chain_prefix"), _config(nk, "bridge_prefix"))
    return [line for line in out.splitlines() if any(p in line for p in ours)]


def _bridge(nk: KetchCLI, network: str) -> str:
    net_id = nk("network", "inspect", "-f", "{{.Id}}", network).stdout.strip()
    prefix = _config(nk, "bridge_prefix")
    return prefix + net_id[: 15 - len(prefix)]


def test_container_on_an_ipv6_network_gets_a_default_route_via_the_bridge_gateway(
        nk: KetchCLI) -> None:
    prefix = _prefix()
    nk("network", "create", "--ipv6", "--subnet", f"{prefix}/64", "v6")
    nk("run", "-d", "--name", "c6a", "--network", "v6", "busybox", "sleep", "60")
    routes = nk("exec", "c6a", "ip", "-6", "route", "show").stdout
    assert f"default via {prefix}1 dev eth0" in routes
    nk("network", "create", "--ipv6", "--internal", "--subnet", f"{_prefix()}/64", "inner")
    nk("run", "-d", "--name", "i6a", "--network", "inner", "busybox", "sleep", "60")
    # an internal network has no way out, over IPv6 as over IPv4
    assert "default" not in nk("exec", "i6a", "ip", "-6", "route", "show").stdout
    br = _bridge(nk, "inner")
    assert f"-A {_config(nk, 'chain_prefix')}-ISOLATION-1 -i {br} ! -o {br} -j DROP" in (
        _ip6tables_lines(nk))
    nk("rm", "-f", "c6a", "i6a")
    nk("network", "rm", "v6", "inner")


def test_a_container_cannot_reach_another_ipv6_network_and_network_rm_leaves_no_rule(
        nk: KetchCLI) -> None:
    before = _ip6tables_lines(nk)
    a, b = _prefix(), _prefix()
    nk("network", "create", "--ipv6", "--subnet", f"{a}/64", "neta")
    nk("network", "create", "--ipv6", "--subnet", f"{b}/64", "netb")
    httpd(nk, "--network", "netb", "--ip6", f"{b}80", name="webb")
    nk("run", "-d", "--name", "onb", "--network", "netb", "busybox", "sleep", "60")
    nk("run", "-d", "--name", "ona", "--network", "neta", "busybox", "sleep", "60")
    url = f"http://[{b}80]/"
    # the same network reaches it; the other network's container is dropped by ip6tables
    assert PAGE in nk("exec", "onb", "timeout", "5", "wget", "-q", "-O", "-", url).stdout
    blocked = nk("exec", "ona", "timeout", "3", "wget", "-q", "-O", "-", url, check=False)
    assert blocked.returncode != 0 and PAGE not in blocked.stdout
    # and it is the isolation rule that drops it: the route is there
    assert f"default via {a}1 dev eth0" in nk("exec", "ona", "ip", "-6", "route").stdout
    chain = _config(nk, "chain_prefix")
    assert f"-A {chain}-ISOLATION-2 -o {_bridge(nk, 'netb')} -j DROP" in _ip6tables_lines(nk)
    bridges = [_bridge(nk, "neta"), _bridge(nk, "netb")]
    nk("rm", "-f", "webb", "onb", "ona")
    nk("network", "rm", "neta", "netb")
    after = _ip6tables_lines(nk)
    assert not [line for line in after if any(br in line for br in bridges)]
    assert not [line for line in after if a in line or b in line]
    # what stays is the root's base chains (as with iptables), removed on uninstall
    assert set(after) - set(before) <= {line for line in after if chain in line
                                        and not any(br in line for br in bridges)}


def test_ipv6_without_a_subnet_gets_distinct_ula_64s_from_the_default_pool(
        nk: KetchCLI) -> None:
    subnets = []
    for name in ("ula1", "ula2"):
        nk("network", "create", "--ipv6", name)
        info = json.loads(nk("network", "inspect", name).stdout)[0]
        assert info["EnableIPv6"] is True
        v6 = [c for c in info["IPAM"]["Config"] if ":" in c["Subnet"]]
        assert len(v6) == 1
        net = ipaddress.IPv6Network(v6[0]["Subnet"])
        assert net.prefixlen == 64 and net.subnet_of(ipaddress.IPv6Network("fd00::/8"))
        assert v6[0]["Gateway"] == str(net.network_address + 1)
        subnets.append(net)
    assert not subnets[0].overlaps(subnets[1])
    nk("run", "-d", "--name", "u6a", "--network", "ula1", "busybox", "sleep", "60")
    ip6 = nk("inspect", "-f", "{{.NetworkSettings.Networks.ula1.GlobalIPv6Address}}",
             "u6a").stdout.strip()
    assert ipaddress.IPv6Address(ip6) in subnets[0]
    nk("rm", "-f", "u6a")
    nk("network", "rm", "ula1", "ula2")


def test_publish_on_an_ipv6_network_listens_on_ipv6_any_and_reaches_the_v6_address(
        nk: KetchCLI) -> None:
    prefix = _prefix()
    nk("network", "create", "--ipv6", "--subnet", f"{prefix}/64", "pub6")
    port = free_port()
    # httpd listens on the container's IPv6 address only: what answers on [::1] came
    # to that address
    nk("run", "-d", "--name", "web6", "--network", "pub6", "--ip6", f"{prefix}80",
       "-p", f"{port}:80", "busybox", "httpd", "-f", "-p", f"[{prefix}80]:80", "-h", "/www")
    # (retried on any error: until httpd listens, the proxy takes the connection and
    # resets it, which curl's --retry does not retry)
    assert PAGE in fetch(f"http://[::1]:{port}/")
    assert nk("port", "web6", "80").stdout.split() == [f"0.0.0.0:{port}", f"[::]:{port}"]
    nk("rm", "-f", "web6")
    nk("network", "rm", "pub6")


def test_network_connect_ip6_gives_the_container_that_ipv6_address(nk: KetchCLI) -> None:
    prefix = _prefix()
    nk("network", "create", "--ipv6", "--subnet", f"{prefix}/64", "con6")
    nk("run", "-d", "--name", "c6a", "busybox", "sleep", "60")
    nk("network", "connect", "--ip6", f"{prefix}42", "con6", "c6a")
    assert nk("inspect", "-f", "{{.NetworkSettings.Networks.con6.GlobalIPv6Address}}",
              "c6a").stdout.strip() == f"{prefix}42"
    assert f"inet6 {prefix}42/64" in nk("exec", "c6a", "ip", "-o", "addr", "show",
                                         "eth1").stdout
    # a stopped container gets it at its next start, as Docker's does
    nk("network", "create", "--ipv6", "--subnet", f"{_prefix()}/64", "later6")
    later = nk("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
               "later6").stdout.split()[-1].removesuffix("/64")
    nk("stop", "-t", "0", "c6a")
    nk("network", "connect", "--ip6", f"{later}7", "later6", "c6a")
    nk("start", "c6a")
    assert nk("inspect", "-f", "{{.NetworkSettings.Networks.later6.GlobalIPv6Address}}",
              "c6a").stdout.strip() == f"{later}7"
    refused = nk("network", "connect", "--ip6", f"{prefix}42", "bridge", "c6a", check=False)
    assert refused.returncode == 1 and "user defined networks only" in refused.stderr
    nk("rm", "-f", "c6a")
    nk("network", "rm", "con6", "later6")


def test_publish_cycles_on_an_ipv6_network_leave_no_proxy_port_or_rule(nk: KetchCLI) -> None:
    prefix = _prefix()
    nk("network", "create", "--ipv6", "--subnet", f"{prefix}/64", "cyc6")
    nk("run", "--rm", "--network", "cyc6", "busybox", "true")  # chains exist from here
    rules_before = _ip6tables_lines(nk)
    port = free_port()
    for _ in range(5):
        nk("run", "-d", "--name", "cyc", "--network", "cyc6", "-p", f"{port}:80",
           "busybox", "sleep", "60")
        assert nk("port", "cyc", "80").stdout.split() == [f"0.0.0.0:{port}", f"[::]:{port}"]
        nk("rm", "-f", "cyc")
    # the [::] listener went with its container: the port can be bound again
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::", port))
    assert _ip6tables_lines(nk) == rules_before
    proxies = subprocess.run(["pgrep", "-f", f"proxy.py --target {prefix}"],
                             capture_output=True, text=True).stdout
    assert proxies == ""
    nk("network", "rm", "cyc6")
