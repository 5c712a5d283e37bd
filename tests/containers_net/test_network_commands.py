"""`ketch network ...` and the per-container network flags, through the CLI."""

from __future__ import annotations

import ipaddress
import json
import os
import re

import pytest
from tests.conftest import KetchCLI
from tests.containers_net.helpers import PAGE, fetch, httpd
from tests.helpers.ports import free_port


@pytest.fixture
def nk(net_ketch: KetchCLI) -> KetchCLI:
    return net_ketch


def test_network_ls_lists_the_builtin_networks(nk: KetchCLI) -> None:
    out = nk("network", "ls").stdout.splitlines()
    assert out[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    names = {line.split()[1]: line.split()[2] for line in out[1:]}
    assert names == {"bridge": "bridge", "host": "host", "none": "null"}


def test_network_create_inspect_rm_and_prune(nk: KetchCLI) -> None:
    net_id = nk("network", "create", "--label", "team=a", "n1").stdout.strip()
    assert len(net_id) == 64
    info = json.loads(nk("network", "inspect", "n1").stdout)[0]
    assert info["Name"] == "n1" and info["Id"] == net_id and info["Driver"] == "bridge"
    assert info["Labels"] == {"team": "a"}
    assert info["IPAM"]["Config"][0]["Subnet"]
    r = nk("network", "create", "n1", check=False)
    assert r.returncode == 1 and "already exists" in r.stderr
    nk("network", "create", "n2")
    assert nk("network", "prune", "-f", "--filter", "label=team=a").stdout.split() == [
        "Deleted", "Networks:", "n1"]
    assert nk("network", "rm", "n2").stdout.strip() == "n2"
    r = nk("network", "inspect", "n2", check=False)
    assert r.returncode == 1
    r = nk("network", "rm", "bridge", check=False)
    assert r.returncode == 1 and "pre-defined" in r.stderr


def test_network_create_with_subnet_and_static_ip(nk: KetchCLI) -> None:
    cfg = (nk.root / "network.toml").read_text()
    pool = cfg.split('pool = "')[1].split('"')[0]  # a /24 reserved for this test root
    base = pool.rsplit(".", 1)[0]
    nk("network", "create", "--subnet", f"{base}.0/26", "--gateway", f"{base}.1", "fixed")
    nk("run", "-d", "--name", "pinned", "--network", "fixed", "--ip", f"{base}.10",
       "busybox", "sleep", "60")
    ip = nk("inspect", "-f", "{{.NetworkSettings.Networks.fixed.IPAddress}}",
            "pinned").stdout.strip()
    assert ip == f"{base}.10"
    addr = nk("exec", "pinned", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert f"{base}.10/26" in addr
    nk("rm", "-f", "pinned")
    nk("network", "rm", "fixed")


def test_network_connect_ip_gives_the_container_that_address(nk: KetchCLI) -> None:
    cfg = (nk.root / "network.toml").read_text()
    base = cfg.split('pool = "')[1].split('"')[0].rsplit(".", 1)[0]
    nk("network", "create", "--subnet", f"{base}.0/26", "later")
    nk("run", "-d", "--name", "joiner", "busybox", "sleep", "60")
    nk("network", "connect", "--ip", f"{base}.20", "later", "joiner")
    addr = nk("exec", "joiner", "ip", "-4", "-o", "addr").stdout
    assert f"{base}.20/26" in addr
    nk("rm", "-f", "joiner")
    nk("network", "rm", "later")


def test_an_address_is_refused_on_a_network_whose_subnet_came_from_the_pool(
        nk: KetchCLI) -> None:
    # dockerd takes --ip only where the user configured the subnet, at start (20.10 lets
    # the create through, as ketch does) and on connect, in its words
    nk("network", "create", "pooled")
    subnet = nk("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
                "pooled").stdout.strip()
    addr = subnet.rsplit(".", 1)[0] + ".9"
    message = ("Error: user specified IP address is supported only when connecting to"
               " networks with user configured subnets\n")
    r = nk("run", "-d", "--name", "pinned", "--network", "pooled", "--ip", addr, "busybox",
           "true", check=False)
    assert (r.returncode, r.stderr) == (125, message)
    assert nk("inspect", "-f", "{{.State.Status}}", "pinned").stdout == "created\n"
    nk("rm", "pinned")
    nk("run", "-d", "--name", "joiner", "busybox", "sleep", "60")
    r = nk("network", "connect", "--ip", addr, "pooled", "joiner", check=False)
    assert (r.returncode, r.stderr) == (1, message)
    assert nk("inspect", "-f", "{{len .NetworkSettings.Networks}}", "joiner").stdout == "1\n"
    nk("rm", "-f", "joiner")
    nk("network", "rm", "pooled")


def test_network_ls_no_trunc_shows_full_ids(nk: KetchCLI) -> None:
    full = nk("network", "inspect", "-f", "{{.Id}}", "bridge").stdout.strip()
    assert len(full) == 64
    rows = nk("network", "ls", "--no-trunc", "-f", "name=bridge").stdout.splitlines()
    assert rows[1].split()[0] == full
    rows = nk("network", "ls", "-f", "name=bridge").stdout.splitlines()
    assert rows[1].split()[0] == full[:12]
    # as dockerd's, name= and id= are regular expressions searched in the name and ID:
    # scripts check that a network exists with name=^NAME$
    assert nk("network", "ls", "-q", "-f", "name=^bridge$").stdout == full[:12] + "\n"
    assert nk("network", "ls", "-q", "-f", "name=^bridg$").stdout == ""
    assert nk("network", "ls", "--format", "{{.Name}}", "-f", "name=^(bridge|host)$"
              ).stdout.split() == ["bridge", "host"]
    assert nk("network", "ls", "-q", "-f", f"id=^{full[:6]}").stdout == full[:12] + "\n"


def test_network_ls_labels_and_created_at_as_docker_prints_them(nk: KetchCLI) -> None:
    nk("network", "create", "--label", "a=b", "--label", "c=d", "lbl")
    try:
        out = nk("network", "ls", "-f", "name=lbl", "--format",
                 "{{.Labels}}|{{.CreatedAt}}").stdout
        created = nk("network", "inspect", "-f", "{{.Created}}", "lbl").stdout.strip()
    finally:
        nk("network", "rm", "lbl")
    labels, _, at = out.rstrip("\n").partition("|")
    assert labels == "a=b,c=d"
    # Go's time.Time.String() in the local zone: the inspect time's seconds, then its
    # fraction without trailing zeros
    m = re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:(\d\d(?:\.\d+)?) [+-]\d{4} \S+", at)
    assert m is not None, at
    fraction = created[20:].rstrip("Z")[:6].rstrip("0")
    assert m.group(1) == created[17:19] + (f".{fraction}" if fraction else "")


def test_network_inspect_verbose_shows_a_local_network_as_it_is(nk: KetchCLI) -> None:
    plain = json.loads(nk("network", "inspect", "bridge").stdout)
    verbose = json.loads(nk("network", "inspect", "--verbose", "bridge").stdout)
    assert verbose == plain and verbose[0]["Scope"] == "local"


def test_network_rm_is_refused_while_a_container_uses_it(nk: KetchCLI) -> None:
    nk("network", "create", "busy")
    nk("run", "-d", "--name", "user", "--network", "busy", "busybox", "sleep", "60")
    r = nk("network", "rm", "busy", check=False)
    assert r.returncode == 1 and "active endpoints" in r.stderr
    assert "busy" in nk("network", "ls", "--format", "{{.Name}}").stdout.split()
    nk("rm", "-f", "user")
    nk("network", "rm", "busy")


def test_connect_and_disconnect_a_running_container(nk: KetchCLI) -> None:
    nk("network", "create", "extra")
    httpd(nk, "--network", "extra", name="web")
    nk("run", "-d", "--name", "client", "busybox", "sleep", "60")
    web_ip = nk("inspect", "-f", "{{.NetworkSettings.Networks.extra.IPAddress}}",
                "web").stdout.strip()
    # Not on "extra" yet: the bridge container cannot reach it (networks are isolated).
    r = nk("exec", "client", "timeout", "3", "wget", "-q", "-O", "-", f"http://{web_ip}/",
           check=False)
    assert PAGE not in r.stdout
    nk("network", "connect", "--alias", "cli", "extra", "client")
    r = nk("exec", "client", "wget", "-q", "-O", "-", f"http://{web_ip}/")
    assert PAGE in r.stdout
    # ... and "web" resolves "client" by its alias through the network's DNS service
    r = nk("exec", "web", "nslookup", "cli")
    assert "Address" in r.stdout.split("cli")[-1]
    nets = json.loads(nk("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                         "client").stdout)
    assert set(nets) == {"bridge", "extra"}
    # as dockerd: the default bridge has no DNS names; on "extra" the aliases given plus
    # the short ID, and every name the DNS answers (name, alias, short ID = hostname)
    short = nk("inspect", "-f", "{{.Id}}", "client").stdout.strip()[:12]
    assert (nets["bridge"]["Aliases"], nets["bridge"]["DNSNames"]) == (None, None)
    assert nets["extra"]["Aliases"] == ["cli", short]
    assert nets["extra"]["DNSNames"] == ["client", "cli", short]
    again = nk("network", "connect", "extra", "client", check=False)
    assert (again.returncode, again.stderr) == (
        1, "Error: endpoint with name client already exists in network extra\n")
    nk("network", "disconnect", "extra", "client")
    nets = json.loads(nk("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                         "client").stdout)
    assert set(nets) == {"bridge"}
    nk("rm", "-f", "web", "client")
    nk("network", "rm", "extra")


@pytest.mark.parametrize("running", [False, True], ids=["created", "running"])
def test_connects_at_the_same_time_are_all_kept(nk: KetchCLI, running: bool) -> None:
    """`network connect` of one container to several networks at once (compose does so):
    each connect changes the container's record under its lock, so none is lost."""
    from concurrent.futures import ThreadPoolExecutor

    names = [f"par{i}" for i in range(4)]
    for name in names:
        nk("network", "create", name)
    if running:
        nk("run", "-d", "--name", "multi", "busybox", "sleep", "60")
    else:
        nk("create", "--name", "multi", "busybox", "sleep", "60")
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda n: nk("network", "connect", n, "multi"), names))
    if not running:
        nk("start", "multi")
    nets = json.loads(nk("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                         "multi").stdout)
    assert set(nets) == {"bridge", *names}
    addresses = nk("exec", "multi", "ip", "-4", "-o", "addr").stdout
    assert all(nets[n]["IPAddress"] in addresses for n in names)
    nk("rm", "-f", "multi")
    nk("network", "rm", *names)


def test_hostname_add_host_and_dns_flags_shape_the_container_files(nk: KetchCLI) -> None:
    r = nk("run", "--rm", "-h", "box1", "--add-host", "db.local:10.1.2.3", "--dns",
           "127.0.0.1", "--dns-search", "example.test", "busybox", "sh", "-c",
           "hostname; cat /etc/hosts; cat /etc/resolv.conf")
    lines = r.stdout.splitlines()
    assert lines[0] == "box1"
    assert "10.1.2.3\tdb.local" in lines
    assert any(line.endswith("\tbox1") for line in lines)
    assert "nameserver 127.0.0.1" in lines
    assert "search example.test" in lines


def test_network_none_has_only_loopback_and_host_shares_the_host(nk: KetchCLI) -> None:
    links = nk("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    # the very namespace of the host (its links come and go with other tests' networks)
    inside = nk("run", "--rm", "--network", "host", "busybox", "readlink",
                "/proc/self/ns/net").stdout
    assert inside == os.readlink("/proc/self/ns/net") + "\n"


def test_container_network_mode_shares_another_containers_namespace(nk: KetchCLI) -> None:
    httpd(nk, name="web")
    r = nk("run", "--rm", "--network", "container:web", "busybox", "wget", "-q", "-O", "-",
           "http://127.0.0.1/")
    assert PAGE in r.stdout


def test_joining_the_network_of_a_stopped_container_says_it_is_not_running(
        nk: KetchCLI) -> None:
    """dockerd's words (getNetworkedContainer): the container exists, it has no network
    while stopped. Before: "No such container: ID", of a container that `ps -a` lists."""
    owner = nk("run", "-d", "--name", "owner", "busybox", "sleep", "300").stdout.strip()
    joiner = nk("create", "--network", "container:owner", "busybox", "true").stdout.strip()
    nk("stop", "-t", "0", "owner")
    r = nk("start", joiner, check=False)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.splitlines()[0] == (
        f"Error: cannot join network of a non running container: {owner}")
    assert nk("inspect", "-f", "{{.State.Status}}", joiner).stdout == "created\n"


def test_restarted_container_gets_its_published_port_back(nk: KetchCLI) -> None:
    port = free_port()
    httpd(nk, "-p", f"{port}:80")
    nk("stop", "-t", "1", "web")
    assert nk("port", "web").stdout.strip() == ""
    nk("start", "web")
    assert PAGE in fetch(f"http://127.0.0.1:{port}/")
    nk("restart", "-t", "1", "web")
    assert PAGE in fetch(f"http://127.0.0.1:{port}/")
    assert nk("port", "web").stdout.strip() == f"80/tcp -> 0.0.0.0:{port}"
    # docker's parse of PRIVATE_PORT (strconv.ParseUint(port, 10, 16)) and its messages
    for arg, why in (("abc", "invalid syntax"), ("70000", "value out of range")):
        bad = nk("port", "web", arg, check=False)
        assert (bad.returncode, bad.stderr) == (1, f"Error: invalid port ({arg}):"
                                                f" strconv.ParseUint: parsing \"{arg}\":"
                                                f" {why}\n")
    miss = nk("port", "web", "81/udp", check=False)
    assert miss.stderr == "Error: No public port '81/udp' published for web\n"


# -- network create's IPAM and driver options -------------------------------------------
def _pool_base(nk: KetchCLI) -> str:
    cfg = (nk.root / "network.toml").read_text()
    return cfg.split('pool = "')[1].split('"')[0].rsplit(".", 1)[0]  # this root's /24


def test_ip_range_gives_addresses_from_the_range_and_aux_addresses_are_never_assigned(
        nk: KetchCLI) -> None:
    base = _pool_base(nk)
    nk("network", "create", "--subnet", f"{base}.0/26", "--ip-range", f"{base}.16/29",
       "--aux-address", f"router={base}.16", "--aux-address", f"printer={base}.17",
       "ranged")
    ipam = json.loads(nk("network", "inspect", "-f", "{{json .IPAM.Config}}",
                         "ranged").stdout)[0]
    assert ipam["IPRange"] == f"{base}.16/29"
    assert ipam["AuxiliaryAddresses"] == {"router": f"{base}.16", "printer": f"{base}.17"}
    ips = []
    for i in range(6):  # the /29 holds .16-.23: six left once the two aux are reserved
        nk("run", "-d", "--name", f"r{i}", "--network", "ranged", "busybox", "sleep", "60")
        ips.append(nk("inspect", "-f", "{{.NetworkSettings.Networks.ranged.IPAddress}}",
                      f"r{i}").stdout.strip())
    assert sorted(ips, key=lambda a: int(a.rsplit(".", 1)[1])) == [
        f"{base}.{n}" for n in range(18, 24)]
    full = nk("run", "-d", "--name", "r6", "--network", "ranged", "busybox", "sleep", "60",
              check=False)
    assert full.returncode != 0 and "no available IPv4 addresses" in full.stderr
    nk("rm", "-f", "r6", check=False)
    # an address outside the range but inside the subnet may still be asked for
    nk("run", "-d", "--name", "outside", "--network", "ranged", "--ip", f"{base}.40",
       "busybox", "sleep", "60")
    aux = nk("run", "-d", "--name", "onaux", "--network", "ranged", "--ip", f"{base}.17",
             "busybox", "sleep", "60", check=False)
    assert aux.returncode == 125 and "Address already in use" in aux.stderr
    nk("rm", "-f", "onaux", "outside", *[f"r{i}" for i in range(6)])
    nk("network", "rm", "ranged")


def test_bridge_options_name_the_bridge_set_the_mtu_and_the_default_host_ip(
        nk: KetchCLI) -> None:
    bridge = "kt" + os.urandom(4).hex()
    port = free_port()
    nk("network", "create", "-o", f"com.docker.network.bridge.name={bridge}",
       "-o", "com.docker.network.driver.mtu=1400",
       "-o", "com.docker.network.bridge.host_binding_ipv4=127.0.0.1", "--attachable", "opts")
    try:
        assert os.path.exists(f"/sys/class/net/{bridge}")
        assert open(f"/sys/class/net/{bridge}/mtu").read().strip() == "1400"
        info = json.loads(nk("network", "inspect", "opts").stdout)[0]
        assert info["Attachable"] is True
        assert info["Options"]["com.docker.network.driver.mtu"] == "1400"
        httpd(nk, "--network", "opts", "-p", f"{port}:80")
        assert nk("exec", "web", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == "1400"
        assert nk("port", "web").stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"
        assert PAGE in fetch(f"http://127.0.0.1:{port}/")
    finally:
        nk("rm", "-f", "web", check=False)
        nk("network", "rm", "opts")
    assert not os.path.exists(f"/sys/class/net/{bridge}")


def test_enable_icc_false_keeps_containers_of_a_network_apart(nk: KetchCLI) -> None:
    for name, icc in (("together", "true"), ("apart", "false")):
        nk("network", "create", "-o", f"com.docker.network.bridge.enable_icc={icc}", name)
        httpd(nk, "--network", name, name=f"{name}-web")
        ip = nk("inspect", "-f", f"{{{{.NetworkSettings.Networks.{name}.IPAddress}}}}",
                f"{name}-web").stdout.strip()
        nk("run", "-d", "--name", f"{name}-client", "--network", name, "busybox", "sleep",
           "60")
        # busybox's wget -T crashes; `timeout` bounds the attempt instead
        p = nk("exec", f"{name}-client", "timeout", "3", "wget", "-q", "-O", "-",
               f"http://{ip}/", check=False)
        if icc == "true":
            assert PAGE in p.stdout
        else:
            assert p.returncode != 0 and PAGE not in p.stdout
        nk("rm", "-f", f"{name}-client")
        nk("rm", "-f", f"{name}-web")
        nk("network", "rm", name)
    # ketch turned on what the rule needs to see traffic within a bridge
    assert open("/proc/sys/net/bridge/bridge-nf-call-iptables").read().strip() == "1"


def test_enable_ip_masquerade_false_leaves_out_the_masquerade_rule(nk: KetchCLI) -> None:
    import subprocess

    base = _pool_base(nk)
    nk("network", "create", "--subnet", f"{base}.64/26", "-o",
       "com.docker.network.bridge.enable_ip_masquerade=false", "nomasq")
    nk("network", "create", "--subnet", f"{base}.128/26", "masq")
    nat = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True,
                         text=True, check=True).stdout
    outward = [line for line in nat.splitlines() if "! -o" in line and "MASQUERADE" in line]
    assert any(f"-s {base}.128/26" in line for line in outward)
    assert not any(f"-s {base}.64/26" in line for line in outward)
    nk("network", "rm", "nomasq", "masq")


@pytest.mark.parametrize("args, message", [
    (["--ipv6", "--gateway", "fd00:1::1"], "an IPv6 --gateway needs an IPv6 --subnet"),
    (["--subnet", "fd00:1::/64"], "an IPv6 --subnet or --gateway needs --ipv6"),
    (["--ipv6", "--subnet", "fd00:1::/64", "--subnet", "fd00:2::/64"],
     "more than one IPv6 --subnet"),
    (["--ipam-opt", "a=b"], "takes no options (--ipam-opt)"),
    (["--ipam-driver", "dhcp"], 'plugin "dhcp" not found'),
    (["-o", "com.docker.network.bridge.bogus=1"],
     'unsupported bridge driver option "com.docker.network.bridge.bogus"'),
    (["-o", "com.docker.network.bridge.enable_icc=maybe"], 'invalid boolean "maybe"'),
    (["-o", "com.docker.network.driver.mtu=9"], "invalid MTU number"),
    (["-o", "noequals"], "invalid key value pair format"),
    (["--config-only"], "configuration-only networks"),
    (["--config-from", "x"], "configuration-only networks"),
    (["--ingress"], "swarm mode"),
    (["--scope", "swarm"], 'invalid scope "swarm"'),
    (["--ip-range", "10.99.0.0/28"], "must have a corresponding subnet"),
    (["--subnet", "SUBNET", "--ip-range", "10.99.0.0/28"], "no matching subnet for range"),
    (["--subnet", "SUBNET", "--aux-address", "x=10.99.0.5"],
     "no matching subnet for aux-address 10.99.0.5"),
    (["--subnet", "SUBNET", "--subnet", "SUBNET"], "more than one IPv4 --subnet"),
])
def test_network_create_refuses_what_ketch_cannot_do_and_creates_nothing(
        nk: KetchCLI, args: list[str], message: str) -> None:
    base = _pool_base(nk)
    args = [f"{base}.0/26" if a == "SUBNET" else a for a in args]
    p = nk("network", "create", *args, "refused", check=False)
    assert p.returncode == 1
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "refused" not in nk("network", "ls", "--format", "{{.Name}}").stdout.split()


def test_link_local_ip_adds_addresses_to_eth0_and_ip6_needs_an_ipv6_network(nk: KetchCLI) -> None:
    nk("network", "create", "ll")
    nk("run", "-d", "--name", "ll1", "--network", "ll", "--link-local-ip", "169.254.10.10",
       "--link-local-ip", "fe80::a:1", "busybox", "sleep", "60")
    addrs = nk("exec", "ll1", "ip", "-o", "addr", "show", "eth0").stdout
    assert "inet 169.254.10.10/16" in addrs and "inet6 fe80::a:1/64" in addrs
    ipam = json.loads(nk("inspect", "-f", "{{json .NetworkSettings.Networks.ll.IPAMConfig}}",
                         "ll1").stdout)
    assert ipam == {"LinkLocalIPs": ["169.254.10.10", "fe80::a:1"]}
    for args, message in (
            (["--network", "ll", "--link-local-ip", "10.0.0.1"],
             "invalid link-local IP address: 10.0.0.1"),
            (["--network", "ll", "--ip6", "fd00::5"], "Invalid address fd00::5: It does not"
             " belong to any of this network's subnets (ll was not created with --ipv6)")):
        p = nk("run", "--name", "refused", *args, "busybox", "true", check=False)
        assert p.returncode == 125 and message in p.stderr
        assert "refused" not in nk("ps", "-a", "--format", "{{.Names}}").stdout.split()
    nk("rm", "-f", "ll1")
    nk("network", "rm", "ll")


def test_ipv6_network_gives_the_bridge_and_containers_ipv6_addresses(nk: KetchCLI) -> None:
    # canonical, as ketch prints it (a random "0c3d" group is printed "c3d")
    prefix = str(ipaddress.IPv6Address((0xFD << 120)
                                       | (int.from_bytes(os.urandom(5), "big") << 80)))
    nk("network", "create", "--ipv6", "--subnet", f"{prefix}/64", "v6net")
    info = json.loads(nk("network", "inspect", "v6net").stdout)[0]
    assert info["EnableIPv6"] is True
    assert {"Subnet": f"{prefix}/64", "Gateway": f"{prefix}1"} in info["IPAM"]["Config"]
    assert nk("network", "ls", "-f", "name=v6net", "--format", "{{.IPv6}}").stdout == "true\n"
    httpd(nk, "--network", "v6net", "--ip6", f"{prefix}80", name="web6")
    nk("run", "-d", "--name", "c6", "--network", "v6net", "busybox", "sleep", "60")
    ip6 = nk("inspect", "-f", "{{.NetworkSettings.Networks.v6net.GlobalIPv6Address}}"
             " {{.NetworkSettings.Networks.v6net.GlobalIPv6PrefixLen}}"
             " {{.NetworkSettings.Networks.v6net.IPv6Gateway}}", "c6").stdout.split()
    assert ip6[0].startswith(prefix) and ip6[1:] == ["64", f"{prefix}1"]
    assert f"inet6 {ip6[0]}/64" in nk("exec", "c6", "ip", "-o", "addr", "show",
                                      "eth0").stdout
    # container to container over IPv6, and the host to a container through the bridge
    r = nk("exec", "c6", "timeout", "5", "wget", "-q", "-O", "-", f"http://[{prefix}80]/")
    assert PAGE in r.stdout
    assert PAGE in fetch(f"http://[{prefix}80]/")
    # the network's DNS answers AAAA queries with the container's IPv6 address
    r = nk("exec", "c6", "nslookup", "-type=AAAA", "web6")
    assert f"{prefix}80" in r.stdout.split("web6")[-1]
    taken = nk("run", "--network", "v6net", "--ip6", f"{prefix}80", "--name", "dup",
               "busybox", "true", check=False)
    assert taken.returncode == 125 and "Address already in use" in taken.stderr
    nk("rm", "-f", "web6", "c6", "dup")
    nk("network", "rm", "v6net")
