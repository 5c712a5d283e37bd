"""`ketch network ...` and the per-container network flags, through the CLI."""

from __future__ import annotations

import json
import os

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
    nk("network", "disconnect", "extra", "client")
    nets = json.loads(nk("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                         "client").stdout)
    assert set(nets) == {"bridge"}
    nk("rm", "-f", "web", "client")
    nk("network", "rm", "extra")


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
