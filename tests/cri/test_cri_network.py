"""CRI sandboxes on a CNI network, as a kubelet's node has one: Debian's bridge,
host-local and portmap plugins (and loopback) from a private configuration directory,
on a private bridge and subnet. The sandbox's address from host-local in its status,
sandboxes reaching each other over those addresses, a hostPort through portmap from the
host's loopback, nothing left after Stop and Remove (across a server restart too), the
kubelet's DNSConfig in /etc/resolv.conf and the sandbox's sysctls. The tests on
`any_runtime` pass on containerd's CRI plugin too."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest
from tests.conftest import ketch_command
from tests.cri.conftest import CniNetwork, Cri, Served, _ketch_cri
from tests.cri.test_cri_pods import _container, _pulled, _sandbox
from tests.helpers.host import wait_for
from tests.helpers.ports import free_port

pytestmark = pytest.mark.xdist_group("cri")  # one worker, one set of servers

HTTPD = ["sh", "-c", "mkdir -p /www && hostname > /www/index.html"
         " && exec httpd -f -p 80 -h /www"]


@pytest.fixture
def busybox(any_runtime: Served, cri_images: dict[str, str]) -> str:
    return _pulled(any_runtime, cri_images["busybox"])


def _start(served: Served, config, image: str, name: str,  # type: ignore[no-untyped-def]
           command: list[str]) -> tuple[str, str]:
    cri = served.cri
    rt = served.runtime
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    cid = rt.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config,
        config=_container(served, name, image, command))).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=cid))
    return pod_id, cid


def _exec(served: Served, cid: str, cmd: list[str]):  # type: ignore[no-untyped-def]
    return served.runtime.ExecSync(served.cri.ExecSyncRequest(container_id=cid, cmd=cmd,
                                                              timeout=10))


def _ip(served: Served, pod_id: str) -> str:
    cri = served.cri
    return served.runtime.PodSandboxStatus(
        cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.network.ip


def _remove(served: Served, pod_id: str) -> None:
    cri = served.cri
    served.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    served.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def _veths(bridge: str) -> list[str]:
    brif = Path(f"/sys/class/net/{bridge}/brif")
    return sorted(p.name for p in brif.iterdir()) if brif.is_dir() else []


def _sandbox_chains(served: Served) -> set[str]:
    """The portmap plugin's chains of the network's sandboxes (CNI-DN-...); its shared
    top chains (CNI-HOSTPORT-...) stay, as they do under every runtime."""
    assert served.network is not None
    return served.network.sandbox_chains()


def test_sandboxes_get_addresses_from_host_local_and_reach_each_other_and_a_host_port(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    served = any_runtime
    network = served.network
    assert network is not None
    port = free_port("127.0.0.1")
    a_conf = _sandbox(served, "net-a", tmp_path / "a", host_port=port)
    b_conf = _sandbox(served, "net-b", tmp_path / "b")
    a, a_cid = _start(served, a_conf, busybox, "web", HTTPD)
    b, b_cid = _start(served, b_conf, busybox, "web", HTTPD)

    a_ip, b_ip = _ip(served, a), _ip(served, b)
    subnet = ipaddress.ip_network(network.subnet)
    assert ipaddress.ip_address(a_ip) in subnet and ipaddress.ip_address(b_ip) in subnet
    assert a_ip != b_ip
    assert network.leases() == sorted([a_ip, b_ip])  # host-local handed them out
    shown = _exec(served, a_cid, ["ip", "-4", "-o", "addr", "show", "eth0"]).stdout.decode()
    assert f" {a_ip}/{subnet.prefixlen} " in shown
    assert len(_veths(network.bridge)) == 2

    # each sandbox reaches the other's server over its CNI address
    def fetched(cid: str, ip: str, name: str) -> bool:
        r = _exec(served, cid, ["wget", "-qO-", f"http://{ip}:80/"])
        return r.exit_code == 0 and r.stdout == f"{name}\n".encode()
    wait_for(lambda: fetched(a_cid, b_ip, "net-b"), timeout=20, what="a to fetch b's page")
    wait_for(lambda: fetched(b_cid, a_ip, "net-a"), timeout=20, what="b to fetch a's page")

    # the hostPort, through portmap, from the host's loopback
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
        assert resp.read() == b"net-a\n"
    for pod_id in (a, b):
        _remove(served, pod_id)


def test_stop_and_remove_leave_no_veth_lease_or_chain_across_a_server_restart(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    served = any_runtime
    network = served.network
    assert network is not None
    cri = served.cri
    rt = served.runtime
    config = _sandbox(served, "gone", tmp_path / "logs", host_port=free_port("127.0.0.1"))
    pod_id, _cid = _start(served, config, busybox, "sleeper", ["sleep", "300"])
    assert network.leases() == [_ip(served, pod_id)]
    assert len(_veths(network.bridge)) == 1
    assert len(_sandbox_chains(served)) == 1
    assert len(network.forward_rules()) == 2  # the firewall plugin's, from and to the pod

    served.restart()  # DEL must work from what was kept on disk

    assert _ip(served, pod_id) == network.leases()[0]
    rt = served.runtime  # the new server's
    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    assert _veths(network.bridge) == []
    assert network.leases() == []
    assert _sandbox_chains(served) == set()
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))  # no error
    assert (_veths(network.bridge), network.leases(), _sandbox_chains(served)) == ([], [],
                                                                                  set())
    assert network.forward_rules() == []
    if isinstance(served, Cri):
        assert not list((served.root / "cri" / "cni").iterdir())  # no cached result left


def test_remove_without_stop_takes_the_sandbox_off_the_network(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    served = any_runtime
    network = served.network
    assert network is not None
    config = _sandbox(served, "unstopped", tmp_path / "logs")
    pod_id, cid = _start(served, config, busybox, "sleeper", ["sleep", "300"])
    assert len(network.leases()) == 1
    cri = served.cri
    served.runtime.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=0))
    served.runtime.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
    served.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    served.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert (_veths(network.bridge), network.leases()) == ([], [])


def test_a_host_network_sandbox_is_not_put_on_the_cni_network(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    served = any_runtime
    network = served.network
    assert network is not None
    cri = served.cri
    config = _sandbox(served, "on-node", tmp_path / "logs")
    config.hostname = ""  # the node's, as the kubelet leaves it for hostNetwork pods
    config.linux.security_context.namespace_options.network = cri.NODE
    pod_id, cid = _start(served, config, busybox, "sleeper", ["sleep", "300"])
    assert network.leases() == [] and _veths(network.bridge) == []
    # the node's own interface, with its MAC address
    mac = _exec(served, cid, ["cat", "/sys/class/net/eth0/address"]).stdout.decode()
    assert mac == Path("/sys/class/net/eth0/address").read_text()
    _remove(served, pod_id)


def test_the_kubelets_dns_config_is_the_containers_resolv_conf(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    served = any_runtime
    cri = served.cri
    config = _sandbox(served, "dns", tmp_path / "logs")
    config.dns_config.CopyFrom(cri.DNSConfig(
        servers=["10.96.0.10"], searches=["default.svc.cluster.local", "svc.cluster.local"],
        options=["ndots:5", "timeout:2"]))
    pod_id, cid = _start(served, config, busybox, "sleeper", ["sleep", "300"])
    assert _exec(served, cid, ["cat", "/etc/resolv.conf"]).stdout == (
        b"search default.svc.cluster.local svc.cluster.local\n"
        b"nameserver 10.96.0.10\noptions ndots:5 timeout:2\n")
    # servers alone (dnsPolicy None): nothing of the node's search domains or options
    only = _sandbox(served, "dns-servers", tmp_path / "logs2")
    only.dns_config.CopyFrom(cri.DNSConfig(servers=["10.96.0.11", "10.96.0.12"]))
    only_id, only_cid = _start(served, only, busybox, "sleeper", ["sleep", "300"])
    assert _exec(served, only_cid, ["cat", "/etc/resolv.conf"]).stdout == (
        b"nameserver 10.96.0.11\nnameserver 10.96.0.12\n")
    for p in (pod_id, only_id):
        _remove(served, p)


def test_the_sandboxs_sysctls_are_set_in_its_namespaces(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    served = any_runtime
    config = _sandbox(served, "tuned", tmp_path / "logs")
    config.linux.sysctls["net.ipv4.ip_unprivileged_port_start"] = "79"
    config.linux.sysctls["kernel.shm_rmid_forced"] = "1"
    config.linux.sysctls["net.ipv4.conf.eth0.arp_ignore"] = "2"  # of the CNI interface
    pod_id, cid = _start(served, config, busybox, "sleeper", ["sleep", "300"])
    got = _exec(served, cid, ["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start",
                              "/proc/sys/kernel/shm_rmid_forced",
                              "/proc/sys/net/ipv4/conf/eth0/arp_ignore"]).stdout
    assert got == b"79\n1\n2\n"
    host = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()
    assert host != "79\n"  # the sandbox's own namespace, not the node's
    _remove(served, pod_id)


def test_a_sysctl_outside_the_sandboxs_namespaces_is_refused_and_nothing_is_left(
        cri_server: Cri, tmp_path: Path) -> None:
    cri = cri_server.cri
    rt = cri_server.runtime
    config = _sandbox(cri_server, "refused", tmp_path / "logs")
    config.linux.sysctls["kernel.panic"] = "10"
    with pytest.raises(grpc.RpcError) as err:
        rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "sysctl 'kernel.panic=10' is not whitelisted"  # Docker's
    config = _sandbox(cri_server, "refused2", tmp_path / "logs")
    config.linux.security_context.namespace_options.network = cri.NODE
    config.linux.sysctls["net.ipv4.ip_forward"] = "1"
    with pytest.raises(grpc.RpcError) as err:
        rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config))
    assert err.value.details() == ("sysctl 'net.ipv4.ip_forward' not allowed in host network"
                                   " namespace")
    # a network sysctl the kernel does not have fails after the CNI ADD: undone too
    config = _sandbox(cri_server, "refused3", tmp_path / "logs")
    config.linux.sysctls["net.ipv4.no_such_setting"] = "1"
    with pytest.raises(grpc.RpcError) as err:
        rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config))
    assert err.value.details() == ("sysctl 'net.ipv4.no_such_setting=1': No such file or"
                                   " directory")
    assert list(rt.ListPodSandbox(cri.ListPodSandboxRequest()).items) == []
    assert cri_server.ketch("ps", "-aq").stdout == ""
    network = cri_server.network
    assert network is not None
    assert (network.leases(), _veths(network.bridge), _sandbox_chains(cri_server)) == (
        [], [], set())
    assert not list((cri_server.root / "cri" / "cni").iterdir())


def test_without_a_cni_config_the_network_is_not_ready_and_sandboxes_use_ketchs_bridge(
        bridge_cri_server: Cri, cri_images: dict[str, str], tmp_path: Path) -> None:
    served = bridge_cri_server
    cri = served.cri
    status = served.runtime.Status(cri.StatusRequest()).status
    network = next(c for c in status.conditions if c.type == "NetworkReady")
    assert (network.status, network.reason) == (False, "NetworkPluginNotReady")
    assert network.message == (f"cni config load failed: no network config found in"
                               f" {tmp_path / 'no-cni'}: cni plugin not initialized")
    busybox = _pulled(served, cri_images["busybox"])
    port = free_port("127.0.0.1")
    config = _sandbox(served, "bridged", tmp_path / "logs", host_port=port)
    pod_id, _cid = _start(served, config, busybox, "web", HTTPD)
    assert ipaddress.ip_address(_ip(served, pod_id))
    wait_for(lambda: _fetch(port) == b"bridged\n", timeout=20, what="the published port")
    _remove(served, pod_id)


def _fetch(port: int) -> bytes:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            return resp.read()
    except OSError:
        return b""


def test_a_relative_cni_directory_is_a_one_line_error(ketch_root: Path, tmp_path: Path
                                                       ) -> None:
    r = subprocess.run([*ketch_command(), "--root", str(ketch_root), "system", "cri",
                        "--listen", f"unix://{tmp_path}/c.sock", "--cni-conf-dir", "net.d"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1  # as for the server's other bad settings
    assert r.stderr.strip().splitlines() == [
        "Error: invalid CNI directory 'net.d': the path must be absolute"]
    assert not (tmp_path / "c.sock").exists()


def test_a_plugin_that_is_not_installed_fails_the_sandbox_and_leaves_nothing(
        ketch_root: Path, tmp_path: Path, cri_network: CniNetwork) -> None:
    conf = tmp_path / "broken"
    conf.mkdir()
    good = json.loads((cri_network.conf_dir / "10-ktcri.conflist").read_text())
    good["plugins"].append({"type": "no-such-plugin"})
    (conf / "10-broken.conflist").write_text(json.dumps(good))
    (conf / "20-unused.conflist").write_text("not even JSON: only the first file counts")
    with _ketch_cri(ketch_root, tmp_path, conf) as served:
        cri = served.cri
        status = served.runtime.Status(cri.StatusRequest()).status
        network = next(c for c in status.conditions if c.type == "NetworkReady")
        assert (network.status, network.reason) == (False, "NetworkPluginNotReady")
        assert network.message == ("cni plugin 'no-such-plugin' of network 'ktcri' not"
                                   " found in /usr/lib/cni")
        with pytest.raises(grpc.RpcError) as err:
            served.runtime.RunPodSandbox(cri.RunPodSandboxRequest(
                config=_sandbox(served, "broken", tmp_path / "logs")))
        assert err.value.details() == ("failed to find plugin 'no-such-plugin' in path"
                                       " [/usr/lib/cni]")
        assert list(served.runtime.ListPodSandbox(cri.ListPodSandboxRequest()).items) == []
        assert served.ketch("ps", "-aq").stdout == ""
        # the plugins before it ran and were undone: no address, no interface, and no
        # firewall rule (its DEL was given the result the plugins before it made)
        assert (cri_network.leases(), _veths(cri_network.bridge)) == ([], [])
        assert cri_network.forward_rules() == []
        assert not list((ketch_root / "cri" / "cni").iterdir())


def test_cni_settings_from_ketch_toml_and_a_single_plugin_conf_file(
        tmp_path: Path, cri_network: CniNetwork) -> None:
    from ketch.cri.cni import Cni, pod_ips
    from ketch.errors import InvalidArgument

    root, conf = tmp_path / "root", tmp_path / "conf"
    root.mkdir()
    conf.mkdir()
    plugin = json.loads((cri_network.conf_dir / "10-ktcri.conflist").read_text())["plugins"][0]
    (conf / "20-single.conf").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "single", **plugin}))
    (conf / "30-later.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "later", "plugins": [{"type": "no-such-plugin"}]}))
    (conf / "05-notes.txt").write_text("not a configuration")
    (root / "ketch.toml").write_text(f'[cri]\ncni_conf_dir = "{conf}"\n'
                                     'cni_bin_dir = ["/nonexistent", "/usr/lib/cni"]\n')
    cni = Cni(str(root))
    assert (cni.conf_dir, cni.bin_dirs) == (str(conf), ["/nonexistent", "/usr/lib/cni"])
    assert cni.not_ready() == ""
    assert Cni(str(root), bin_dirs="/usr/lib/cni").bin_dirs == ["/usr/lib/cni"]  # flag wins
    name = f"ktcni{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    sandbox = "c" * 64
    try:
        result = cni.add(sandbox, f"/run/netns/{name}", {"K8S_POD_NAME": "single"}, [])
        (ip,) = pod_ips(result)
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(cri_network.subnet)
        lease = cri_network.ipam_dir / "single" / ip  # host-local's, per network name
        assert lease.is_file()
        shown = subprocess.run(["ip", "-n", name, "-4", "-o", "addr", "show", "eth0"],
                               capture_output=True, text=True, check=True).stdout
        assert f" {ip}/24 " in shown
    finally:
        cni.delete(sandbox, f"/run/netns/{name}")
        subprocess.run(["ip", "netns", "del", name], check=True)
    assert not lease.exists()
    cni.delete(sandbox)  # again: nothing to do
    (root / "ketch.toml").write_text('[cri]\ncni_confdir = "/etc/cni/net.d"\n')
    with pytest.raises(InvalidArgument) as err:
        Cni(str(root))
    assert err.value.message == f"{root}/ketch.toml: unknown setting [cri] cni_confdir"


def test_a_sandbox_removed_by_ketch_pod_rm_is_taken_off_the_network_by_the_next_server(
        cri_server: Cri, cri_images: dict[str, str], tmp_path: Path) -> None:
    network = cri_server.network
    assert network is not None
    busybox = _pulled(cri_server, cri_images["busybox"])
    config = _sandbox(cri_server, "bypassed", tmp_path / "logs",
                      host_port=free_port("127.0.0.1"))
    pod_id, _cid = _start(cri_server, config, busybox, "sleeper", ["sleep", "300"])
    assert len(network.leases()) == 1 and len(_sandbox_chains(cri_server)) == 1
    cri_server.stop()
    cri_server.ketch("pod", "rm", "-f", "-t", "0", pod_id)  # not through the CRI
    assert len(network.leases()) == 1  # ketch's pods know nothing of CNI
    cri_server.proc = cri_server._start()
    assert (network.leases(), _sandbox_chains(cri_server)) == ([], set())
    assert not list((cri_server.root / "cri" / "cni").iterdir())
