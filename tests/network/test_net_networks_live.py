"""User-defined networks with real bridges: DNS by name and alias, isolation, internal
networks, outbound traffic, connect/disconnect and the network commands' errors."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from tests.helpers.ports import free_port
from tests.network.helpers import (
    BUSYBOX,
    NetEnv,
    http_get,
    httpd,
    in_netns,
    tcp_server,
)

from ketch.errors import Conflict, Forbidden, InvalidArgument, NotFound
from ketch.network import parse_publish, render_resolv_conf
from ketch.network.procs import start_time

WEB = "a" * 64
CLIENT = "b" * 64
OTHER = "d" * 64
HELLO = "hello from busybox httpd\n"


def nslookup(netns_path: str, name: str, server: str) -> str | None:
    """The address busybox nslookup finds for `name` asking `server`, or None."""
    r = in_netns(netns_path, BUSYBOX, "nslookup", name, server)
    if r.returncode != 0:
        return None
    answers = r.stdout.split("Name:", 1)
    if len(answers) < 2:
        return None
    for line in answers[1].splitlines():
        if line.strip().startswith("Address"):
            return line.split()[-1]
    return None


def wget(netns_path: str, url: str, timeout: float = 3) -> str | None:
    """busybox wget inside the namespace; None when it fails or hangs. (Debian's
    busybox-static 1.35 crashes on `wget -T`, so the timeout is enforced from here.)"""
    try:
        r = in_netns(netns_path, BUSYBOX, "wget", "-q", "-O", "-", url, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return r.stdout if r.returncode == 0 else None


def test_containers_on_a_user_network_resolve_each_other_by_name_and_alias(
        netenv: NetEnv) -> None:
    net = netenv.svc.create_network("ktweb", subnet=netenv.pick_subnet())
    web = netenv.svc.setup(WEB, mode="ktweb", name="web", aliases=["www", "frontend"])
    client = netenv.svc.setup(CLIENT, mode="ktweb", name="client")
    assert client.dns_servers == [net.gateway]
    for name in ("web", "www", "frontend", "WEB", WEB[:12]):
        assert nslookup(client.netns_path, name, net.gateway) == web.ip, name
    assert nslookup(web.netns_path, "client", net.gateway) == client.ip
    assert nslookup(client.netns_path, "no-such-container", net.gateway) is None
    r = in_netns(client.netns_path, BUSYBOX, "nslookup", web.ip, net.gateway)
    assert "name = web" in r.stdout


def test_wget_by_name_with_the_rendered_resolv_conf(netenv: NetEnv, tmp_path: Path) -> None:
    net = netenv.svc.create_network("ktweb", subnet=netenv.pick_subnet())
    web = netenv.svc.setup(WEB, mode="ktweb", name="web")
    client = netenv.svc.setup(CLIENT, mode="ktweb", name="client")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(render_resolv_conf(client))
    assert resolv.read_text().startswith(f"nameserver {net.gateway}\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1\tlocalhost\n")
    # a private mount namespace stands in for the container's: the rendered files are
    # bind-mounted over /etc the way the Engine mounts them
    script = (f"mount --bind {resolv} /etc/resolv.conf && mount --bind {hosts} /etc/hosts"
              f" && {BUSYBOX} wget -q -O - http://web/")
    with httpd(web.netns_path, web.ip, 80, netenv.www):
        r = in_netns(client.netns_path, "unshare", "--mount", "sh", "-c", script, timeout=15)
    assert r.stdout == "hello from busybox httpd\n", r.stderr


def test_default_bridge_does_not_resolve_names(netenv: NetEnv) -> None:
    web = netenv.svc.setup(WEB, name="web")
    client = netenv.svc.setup(CLIENT, name="client")
    assert client.dns_servers == []
    assert nslookup(client.netns_path, "web", web.primary.gateway) is None
    assert "nameserver " + web.primary.gateway not in render_resolv_conf(client)


def test_dns_service_runs_while_the_network_has_containers(netenv: NetEnv) -> None:
    netenv.svc.create_network("ktweb", subnet=netenv.pick_subnet())
    assert netenv.svc.dns_pid("ktweb") is None
    netenv.svc.setup(WEB, mode="ktweb", name="web")
    pid = netenv.svc.dns_pid("ktweb")
    assert pid is not None
    rss_kb = int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])
    assert rss_kb < 20_000, f"DNS service uses {rss_kb} kB"
    netenv.svc.setup(CLIENT, mode="ktweb", name="client")
    assert netenv.svc.dns_pid("ktweb") == pid
    netenv.svc.teardown(WEB)
    assert netenv.svc.dns_pid("ktweb") == pid
    netenv.svc.teardown(CLIENT)
    assert netenv.svc.dns_pid("ktweb") is None
    assert start_time(pid) is None


def test_outbound_reaches_a_server_on_the_bridge_gateway(netenv: NetEnv) -> None:
    att = netenv.svc.setup(WEB)
    gateway = att.primary.gateway
    port = free_port(gateway)
    with tcp_server(gateway, port) as peers:
        assert wget(att.netns_path, f"http://{gateway}:{port}/") == "outbound ok"
    assert peers == [att.ip]


def test_internal_network_has_no_outbound_but_reaches_its_neighbours(netenv: NetEnv) -> None:
    netenv.svc.create_network("ktint", subnet=netenv.pick_subnet(), internal=True)
    inside = netenv.svc.setup(WEB, mode="ktint", name="inside")
    neighbour = netenv.svc.setup(CLIENT, mode="ktint", name="neighbour")
    outside = netenv.svc.setup(OTHER)  # default bridge: has outbound
    target = outside.primary.gateway  # a host address on another bridge
    port = free_port(target)
    with tcp_server(target, port) as peers:
        assert wget(outside.netns_path, f"http://{target}:{port}/") == "outbound ok"
        assert wget(inside.netns_path, f"http://{target}:{port}/") is None
    assert peers == [outside.ip]
    with httpd(neighbour.netns_path, neighbour.ip, 80, netenv.www):
        assert wget(inside.netns_path, "http://neighbour/".replace("neighbour", neighbour.ip))
    assert not any(line.startswith("default") for line in
                   in_netns(inside.netns_path, "ip", "route").stdout.splitlines())


def test_networks_are_isolated_from_each_other(netenv: NetEnv) -> None:
    netenv.svc.create_network("kta", subnet=netenv.pick_subnet())
    netenv.svc.create_network("ktb", subnet=netenv.pick_subnet())
    a = netenv.svc.setup(WEB, mode="kta")
    b = netenv.svc.setup(CLIENT, mode="ktb")
    with httpd(b.netns_path, b.ip, 80, netenv.www):
        assert http_get(b.ip, 80)  # the host reaches it
        assert wget(a.netns_path, f"http://{b.ip}/") is None  # the other network does not


def test_connect_and_disconnect_a_second_network(netenv: NetEnv) -> None:
    net = netenv.svc.create_network("ktweb", subnet=netenv.pick_subnet())
    web = netenv.svc.setup(WEB, mode="ktweb", name="web")
    client = netenv.svc.setup(CLIENT, name="client")  # default bridge
    assert nslookup(client.netns_path, "web", net.gateway) is None
    ep = netenv.svc.connect(CLIENT, "ktweb", aliases=["cli"], name="client")
    assert ep.ifname == "eth1"
    assert set(netenv.svc.attachment(CLIENT).networks) == {"bridge", "ktweb"}
    assert nslookup(client.netns_path, "web", net.gateway) == web.ip
    assert nslookup(web.netns_path, "cli", net.gateway) == ep.ip
    with pytest.raises(Conflict):
        netenv.svc.connect(CLIENT, "ktweb")
    netenv.svc.disconnect(CLIENT, "ktweb")
    assert set(netenv.svc.attachment(CLIENT).networks) == {"bridge"}
    assert nslookup(web.netns_path, "cli", net.gateway) is None
    assert len(netenv.veths()) == 2
    with pytest.raises(NotFound):
        netenv.svc.disconnect(CLIENT, "ktweb")


def test_static_ip_on_user_networks_only(netenv: NetEnv) -> None:
    subnet = netenv.pick_subnet()
    netenv.svc.create_network("ktweb", subnet=subnet)
    wanted = subnet.replace(".0/24", ".77")
    att = netenv.svc.setup(WEB, mode="ktweb", ip=wanted)
    assert att.ip == wanted
    assert in_netns(att.netns_path, "ip", "-4", "-o", "addr").stdout.count(wanted) == 1
    with pytest.raises(Conflict, match="Address already in use"):
        netenv.svc.setup(CLIENT, mode="ktweb", ip=wanted)
    with pytest.raises(InvalidArgument, match="user defined networks only"):
        netenv.svc.setup(CLIENT, ip=netenv.subnet.replace(".0/24", ".9"))


def test_network_commands_follow_dockers_rules(netenv: NetEnv) -> None:
    names = {n.name for n in netenv.svc.list_networks()}
    assert {"bridge", "host", "none"} <= names
    subnet = netenv.pick_subnet()
    net = netenv.svc.create_network("ktweb", subnet=subnet, labels={"team": "a"})
    assert net.subnet == subnet and net.gateway == subnet.replace(".0/24", ".1")
    assert Path(f"/sys/class/net/{net.bridge}").exists()
    assert netenv.svc.inspect_network(net.id[:10]).name == "ktweb"
    with pytest.raises(Conflict, match="network with name ktweb already exists"):
        netenv.svc.create_network("ktweb")
    with pytest.raises(Conflict, match="overlaps"):
        netenv.svc.create_network("ktweb2", subnet=subnet)
    with pytest.raises(InvalidArgument):
        netenv.svc.create_network("bad name!")
    with pytest.raises(Forbidden, match="pre-defined"):
        netenv.svc.remove_network("bridge")
    with pytest.raises(NotFound):
        netenv.svc.remove_network("ktnope")
    netenv.svc.setup(WEB, mode="ktweb")
    assert list(netenv.svc.inspect_network("ktweb").containers) == [WEB]
    with pytest.raises(Forbidden, match="has active endpoints"):
        netenv.svc.remove_network("ktweb")
    auto = netenv.svc.create_network("ktauto")
    assert auto.subnet.endswith("/26")
    netenv.svc.teardown(WEB)
    assert sorted(netenv.svc.prune_networks({"label": ["team=a"]})) == ["ktweb"]
    assert not Path(f"/sys/class/net/{net.bridge}").exists()
    assert netenv.svc.prune_networks() == ["ktauto"]


def test_host_none_and_container_modes(netenv: NetEnv) -> None:
    host = netenv.svc.setup(WEB, mode="host", ports=[])
    assert host.netns_path is None and host.networks == {}
    none = netenv.svc.setup(CLIENT, mode="none")
    links = in_netns(none.netns_path, "ip", "-o", "link").stdout
    assert "lo" in links and "eth0" not in links
    owner = netenv.svc.setup(OTHER)
    joined = netenv.svc.setup("e" * 64, mode=f"container:{OTHER[:12]}")
    assert joined.netns_path == owner.netns_path
    assert joined.ip == owner.ip
    with pytest.raises(InvalidArgument, match="port publishing"):
        netenv.svc.setup("f" * 64, mode=f"container:{OTHER}", ports=[object()])  # type: ignore[list-item]
    netenv.svc.teardown("e" * 64)
    assert Path(owner.netns_path).exists()  # the owner's namespace stays
    for cid in (WEB, CLIENT, OTHER):
        netenv.svc.teardown(cid)
    assert netenv.namespaces() == []


def test_default_subnet_comes_from_the_environment(tmp_path: Path) -> None:
    from ketch.network.config import NetworkConfig

    cfg = NetworkConfig.load(tmp_path, env={"KETCH_BRIDGE_SUBNET": "10.250.42.0/24"})
    assert cfg.bridge_subnet == "10.250.42.0/24"
    (tmp_path / "network.toml").write_text('[network]\nbridge_subnet = "10.250.43.0/24"\n'
                                           'pool = "10.250.128.0/17"\n')
    cfg = NetworkConfig.load(tmp_path, env={})
    assert (cfg.bridge_subnet, cfg.pool) == ("10.250.43.0/24", "10.250.128.0/17")
    with pytest.raises(InvalidArgument):
        NetworkConfig.load(tmp_path, env={"KETCH_BRIDGE_NAME": "x" * 16})


def test_teardown_is_idempotent(netenv: NetEnv) -> None:
    port = free_port()
    att = netenv.svc.setup(WEB, ports=parse_publish(f"{port}:80"))
    assert len(netenv.veths()) == 1 and Path(att.netns_path).exists()
    assert [b.host_port for b in netenv.svc.ports(WEB)] == [port]
    netenv.svc.teardown(WEB)
    gone = {"veths": [], "netns": [], "ports": []}
    assert {"veths": netenv.veths(), "netns": netenv.namespaces(),
            "ports": netenv.svc.ports(WEB)} == gone
    netenv.svc.teardown(WEB)
    netenv.svc.teardown("never-set-up")
    assert {"veths": netenv.veths(), "netns": netenv.namespaces(),
            "ports": netenv.svc.ports(WEB)} == gone


def test_dns_answers_quickly(netenv: NetEnv) -> None:
    net = netenv.svc.create_network("ktweb", subnet=netenv.pick_subnet())
    netenv.svc.setup(WEB, mode="ktweb", name="web")
    client = netenv.svc.setup(CLIENT, mode="ktweb")
    t = time.perf_counter()
    for _ in range(5):
        assert nslookup(client.netns_path, "web", net.gateway)
    assert (time.perf_counter() - t) / 5 < 1.0
    assert subprocess.run(["true"]).returncode == 0


def test_works_beside_a_forward_drop_policy_like_dockers(netenv: NetEnv) -> None:
    """dockerd sets the FORWARD policy to DROP. A DROP at the end of FORWARD for this
    test's bridge stands in for it (the real policy is global and would disturb
    everything else on the host)."""
    server = netenv.svc.setup(WEB, ports=parse_publish(f"{free_port()}:80"))
    client = netenv.svc.setup(CLIENT)
    host_port = server.ports[0].host_port
    drops = [["-i", netenv.bridge, "-j", "DROP"], ["-o", netenv.bridge, "-j", "DROP"]]
    for rule in drops:
        subprocess.run(["iptables", "-A", "FORWARD", *rule], check=True)
    try:
        with httpd(server.netns_path, server.ip, 80, netenv.www):
            # container to container across the bridge
            assert wget(client.netns_path, f"http://{server.ip}/") == HELLO
            # container to a neighbour's published port through the host (hairpin NAT)
            gateway = client.primary.gateway
            assert wget(client.netns_path, f"http://{gateway}:{host_port}/") == HELLO
            assert http_get("127.0.0.1", host_port) == HELLO
    finally:
        for rule in drops:
            subprocess.run(["iptables", "-D", "FORWARD", *rule], check=True)
