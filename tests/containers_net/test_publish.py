"""Networking as a Docker user meets it: `-p` in every form, `-P`, EXPOSE alone, names on
user networks, outbound traffic, conflicts and leaks — real containers (busybox httpd),
real bridges, real iptables. Traffic goes only to loopback, to the test's own bridge
gateway and to the test's own containers."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, require
from tests.containers_net.helpers import PAGE, fetch, gateway, httpd, unreachable
from tests.helpers.host import serve_http
from tests.helpers.ports import free_port, free_port_run


def test_publish_host_port_reaches_container_on_loopback_and_gateway(net_ketch: KetchCLI
                                                                      ) -> None:
    port = free_port()
    httpd(net_ketch, "-p", f"{port}:80")
    assert PAGE in fetch(f"http://127.0.0.1:{port}/")
    assert PAGE in fetch(f"http://{gateway(net_ketch)}:{port}/")
    assert net_ketch("port", "web").stdout.strip() == f"80/tcp -> 0.0.0.0:{port}"
    ps = net_ketch("ps", "--format", "{{.Ports}}").stdout.strip()
    assert ps == f"0.0.0.0:{port}->80/tcp"


def test_publish_on_loopback_only(net_ketch: KetchCLI) -> None:
    port = free_port()
    httpd(net_ketch, "-p", f"127.0.0.1:{port}:80")
    assert PAGE in fetch(f"http://127.0.0.1:{port}/")
    assert unreachable(f"http://{gateway(net_ketch)}:{port}/")
    assert net_ketch("port", "web", "80").stdout.strip() == f"127.0.0.1:{port}"


def test_publish_ipv6_loopback(net_ketch: KetchCLI) -> None:
    require(Path("/proc/net/if_inet6").exists(), "IPv6 on this kernel")
    port = free_port()
    httpd(net_ketch, "-p", f"[::1]:{port}:80")
    assert PAGE in fetch(f"http://[::1]:{port}/")


def test_publish_port_ranges(net_ketch: KetchCLI) -> None:
    p = free_port()
    while True:
        ok = True
        for q in (p + 1,):
            with socket.socket() as s:
                try:
                    s.bind(("0.0.0.0", q))
                except OSError:
                    ok = False
        if ok:
            break
        p = free_port()
    cid = net_ketch("run", "-d", "--name", "web", "-p", f"{p}-{p + 1}:80-81", "busybox", "sh",
                    "-c", "httpd -p 80 -h /www && httpd -f -p 81 -h /www").stdout.strip()
    assert cid
    assert PAGE in fetch(f"http://127.0.0.1:{p}/")
    assert PAGE in fetch(f"http://127.0.0.1:{p + 1}/")


def test_ps_groups_a_published_range_as_docker_does(net_ketch: KetchCLI) -> None:
    # `-p 80-82:80-82` on free ports: Docker's PORTS column shows the run once.
    p = free_port_run(3)
    span = f"{p}-{p + 2}"
    net_ketch("run", "-d", "--name", "ranged", "-p", f"{span}:{span}", "busybox", "sleep",
              "60")
    assert net_ketch("port", "ranged").stdout.splitlines() == [
        f"{q}/tcp -> 0.0.0.0:{q}" for q in range(p, p + 3)]
    expected = f"0.0.0.0:{span}->{span}/tcp"
    assert net_ketch("ps", "--format", "{{.Ports}}").stdout.strip() == expected
    header, row = net_ketch("ps").stdout.splitlines()
    column = header.index("PORTS")
    assert row[column:].startswith(expected + "   "), row


def test_publish_random_host_port_is_reported_by_port(net_ketch: KetchCLI) -> None:
    httpd(net_ketch, "-p", "80")
    line = net_ketch("port", "web", "80/tcp").stdout.strip()
    host_port = int(line.rsplit(":", 1)[1])
    assert PAGE in fetch(f"http://127.0.0.1:{host_port}/")


def test_publish_udp(net_ketch: KetchCLI) -> None:
    # Debian's busybox has no UDP server applet, so a listener runs in the container's
    # network namespace: exactly where the published port must deliver.
    port = free_port()
    net_ketch("run", "-d", "--name", "udp", "-p", f"{port}:9999/udp", "busybox", "sleep",
              "60")
    sandbox = net_ketch("inspect", "-f", "{{.NetworkSettings.SandboxKey}}",
                        "udp").stdout.strip()
    listener = subprocess.Popen(
        ["nsenter", f"--net={sandbox}", sys.executable, "-c",
         "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
         "s.bind(('0.0.0.0', 9999)); s.settimeout(10); print(s.recvfrom(100)[0].decode(),"
         " flush=True)"], stdout=subprocess.PIPE, text=True)
    try:
        import time

        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"ping-udp", ("127.0.0.1", port))
            if listener.poll() is not None:
                break
            time.sleep(0.1)
        out, _ = listener.communicate(timeout=10)
    finally:
        if listener.poll() is None:
            listener.kill()
    assert "ping-udp" in out
    assert net_ketch("port", "udp").stdout.strip() == f"9999/udp -> 0.0.0.0:{port}"


def test_repeated_publish_flags(net_ketch: KetchCLI) -> None:
    a, b = free_port(), free_port()
    httpd(net_ketch, "-p", f"{a}:80", "-p", f"127.0.0.1:{b}:80")
    assert PAGE in fetch(f"http://127.0.0.1:{a}/")
    assert PAGE in fetch(f"http://127.0.0.1:{b}/")


def test_expose_alone_publishes_nothing(net_ketch: KetchCLI) -> None:
    net_ketch("run", "-d", "--name", "web", "web")
    assert net_ketch("port", "web").stdout.strip() == ""
    assert net_ketch("ps", "--format", "{{.Ports}}").stdout.strip() == "80/tcp"
    ip = net_ketch("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web").stdout.strip()
    assert PAGE in fetch(f"http://{ip}/")  # the container itself listens


def test_publish_all_uses_exposed_ports(net_ketch: KetchCLI) -> None:
    net_ketch("run", "-d", "--name", "web", "-P", "web")
    line = net_ketch("port", "web", "80").stdout.strip()
    assert line.startswith("0.0.0.0:")
    assert PAGE in fetch(f"http://127.0.0.1:{line.rsplit(':', 1)[1]}/")


def test_containers_on_a_user_network_reach_each_other_by_name(net_ketch: KetchCLI) -> None:
    net_ketch("network", "create", "appnet")
    httpd(net_ketch, "--network", "appnet", "--network-alias", "frontend")
    for host in ("web", "frontend"):
        r = net_ketch("run", "--rm", "--network", "appnet", "busybox", "wget", "-q", "-O",
                      "-", f"http://{host}/")
        assert PAGE in r.stdout
    net_ketch("rm", "-f", "web")
    net_ketch("network", "rm", "appnet")


def test_default_bridge_does_not_resolve_container_names(net_ketch: KetchCLI) -> None:
    net_ketch("network", "create", "named")
    httpd(net_ketch, "--network", "named", name="web")
    named_gw = gateway(net_ketch, "named")
    # The user network's DNS service answers for "web" ...
    r = net_ketch("run", "--rm", "--network", "named", "busybox", "nslookup", "web", named_gw)
    assert "Address" in r.stdout.split("web")[-1]
    # ... and on the default bridge nothing answers on the gateway: no DNS service there.
    httpd(net_ketch, name="web2")
    bridge_gw = gateway(net_ketch)
    r = net_ketch("run", "--rm", "busybox", "timeout", "5", "nslookup", "web2", bridge_gw,
                  check=False)
    assert r.returncode != 0
    resolv = net_ketch("run", "--rm", "busybox", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {bridge_gw}" not in resolv
    net_ketch("rm", "-f", "web")
    net_ketch("network", "rm", "named")


def test_container_reaches_a_server_on_the_bridge_gateway(net_ketch: KetchCLI) -> None:
    net_ketch("run", "--rm", "busybox", "true")  # brings the bridge up
    gw = gateway(net_ketch)
    with serve_http(gw, body=b"host says hi\n") as server:
        r = net_ketch("run", "--rm", "busybox", "wget", "-q", "-O", "-",
                      f"http://{gw}:{server.server_port}/")
    assert "host says hi" in r.stdout


def test_internal_network_has_no_outbound(net_ketch: KetchCLI) -> None:
    net_ketch("network", "create", "--internal", "closed")
    net_ketch("run", "--rm", "busybox", "true")
    gw = gateway(net_ketch)
    with serve_http(gw, body=b"host says hi\n") as server:
        url = f"http://{gw}:{server.server_port}/"
        # busybox's wget -T crashes; `timeout` bounds the attempt instead
        closed = net_ketch("run", "--rm", "--network", "closed", "busybox", "timeout", "3",
                           "wget", "-q", "-O", "-", url, check=False)
        open_ = net_ketch("run", "--rm", "busybox", "timeout", "3", "wget", "-q", "-O", "-",
                          url, check=False)
    assert "host says hi" in open_.stdout  # the same request works from the bridge
    assert closed.returncode != 0 and "host says hi" not in closed.stdout
    net_ketch("network", "rm", "closed")


def test_host_port_in_use_fails_run_with_125_and_leaves_nothing(net_ketch: KetchCLI) -> None:
    port = free_port()
    httpd(net_ketch, "-p", f"{port}:80")
    r = net_ketch("run", "-d", "--name", "second", "-p", f"{port}:80", "busybox", "sleep",
                  "100", check=False)
    assert r.returncode == 125
    assert "port is already allocated" in r.stderr
    states = net_ketch("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.split("\n")
    assert "second running" not in states


def test_host_port_used_by_another_program_is_refused(net_ketch: KetchCLI) -> None:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        r = net_ketch("run", "--rm", "-p", f"{port}:80", "busybox", "true", check=False)
    assert r.returncode == 125
    assert "already" in r.stderr


@pytest.mark.parametrize("spec", ["abc", "70000:80", "1:2:3:4", "80:abc"])
def test_malformed_publish_is_rejected_before_anything_is_created(net_ketch: KetchCLI,
                                                                   spec: str) -> None:
    r = net_ketch("run", "-d", "-p", spec, "busybox", "true", check=False)
    assert r.returncode == 125
    assert r.stderr.startswith("Error: ") and len(r.stderr.strip().splitlines()) == 1
    assert net_ketch("ps", "-aq").stdout.strip() == ""


def _kernel_objects(prefix_veth: str, chain: str, netns_dir: Path) -> tuple[int, int, int]:
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    veths = sum(1 for line in links.splitlines() if prefix_veth in line)
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    rules += subprocess.run(["ip6tables-save"], capture_output=True, text=True).stdout
    nrules = sum(1 for line in rules.splitlines() if chain in line)
    ns = len(list(netns_dir.iterdir())) if netns_dir.is_dir() else 0
    return veths, nrules, ns


# The default bridge of these cycles gets a /28: 13 addresses for containers (.2-.14).
# IPAM hands them out round robin, so 16 cycles go round the whole pool and take freed
# addresses again; a lease that a removal failed to give back would use the pool up
# within these cycles and make `run` fail, where on a /24 it would take 250 cycles.
# A veth, rule or namespace left by a cycle shows after one cycle; the 50-cycle run of
# the same set-up and tear-down without runc is tests/network/test_net_lifecycle.py.
PUBLISH_CYCLES = 16


def test_publish_cycles_round_the_address_pool_leave_no_veth_rule_lease_or_namespace(
        net_ketch: KetchCLI) -> None:
    toml = net_ketch.root / "network.toml"
    cfg = toml.read_text()
    veth = cfg.split('veth_prefix = "')[1].split('"')[0]
    chain = cfg.split('chain_prefix = "')[1].split('"')[0]
    subnet = cfg.split('bridge_subnet = "')[1].split('"')[0]
    small = ipaddress.ip_network(subnet).network_address
    toml.write_text(cfg.replace(f'bridge_subnet = "{subnet}"', f'bridge_subnet = "{small}/28"'))
    netns_dir = net_ketch.root / "run" / "netns"
    net_ketch("run", "--rm", "busybox", "true")  # bridge and static chains exist from here
    before = _kernel_objects(veth, chain, netns_dir)
    leases_before = net_ketch("network", "inspect", "-f", "{{len .Containers}}",
                              "bridge").stdout.strip()
    addresses = []
    for _ in range(PUBLISH_CYCLES):
        port = free_port()
        net_ketch("run", "-d", "--name", "cyc", "-p", f"{port}:80", "busybox", "sleep", "60")
        addresses.append(net_ketch("inspect", "-f", "{{.NetworkSettings.IPAddress}}",
                                   "cyc").stdout.strip())
        net_ketch("rm", "-f", "cyc")
    pool = {str(small + i) for i in range(2, 15)}
    assert set(addresses) == pool  # every address of the pool, some of them twice
    assert _kernel_objects(veth, chain, netns_dir) == before
    assert net_ketch("network", "inspect", "-f", "{{len .Containers}}",
                     "bridge").stdout.strip() == leases_before
