"""Published ports with real namespaces, veths, bridges and iptables: busybox httpd
inside a namespace, fetched from the host through every `-p` form."""

from __future__ import annotations

import socket

import pytest
from tests.helpers.ports import free_port, free_port_run
from tests.network.helpers import (
    NetEnv,
    can_connect,
    http_get,
    httpd,
    udp_echo,
)

from ketch.errors import Conflict, InvalidArgument
from ketch.network import PortBinding, parse_publish, publish_all

CID = "c0ffee" + "0" * 58
HELLO = "hello from busybox httpd\n"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_published_port_answers_on_loopback_and_on_the_bridge_gateway(netenv: NetEnv) -> None:
    port = free_port()
    att = netenv.svc.setup(CID, ports=parse_publish(f"{port}:80"))
    assert [(b.container_port, b.host_port) for b in att.ports] == [(80, port)]
    gateway = att.primary.gateway
    with httpd(att.netns_path, att.ip, 80, netenv.www):
        assert http_get("127.0.0.1", port) == HELLO
        assert http_get(gateway, port) == HELLO
    assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "1"


def test_port_bound_to_127_0_0_1_is_not_published_on_other_addresses(netenv: NetEnv) -> None:
    port = free_port()
    att = netenv.svc.setup(CID, ports=parse_publish(f"127.0.0.1:{port}:80"))
    with httpd(att.netns_path, att.ip, 80, netenv.www):
        assert http_get("127.0.0.1", port) == HELLO
        assert not can_connect(att.primary.gateway, port)


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_port_published_on_ipv6_loopback(netenv: NetEnv) -> None:
    port = free_port("::1")
    att = netenv.svc.setup(CID, ports=parse_publish(f"[::1]:{port}:80"))
    with httpd(att.netns_path, att.ip, 80, netenv.www):
        assert http_get("::1", port) == HELLO
    netenv.svc.teardown(CID)
    assert not can_connect("::1", port)  # the proxy went with the container


def test_port_range_publishes_each_port(netenv: NetEnv) -> None:
    start = free_port_run(3)
    att = netenv.svc.setup(CID, ports=parse_publish(f"{start}-{start + 2}:80-82"))
    assert sorted(b.host_port for b in att.ports) == [start, start + 1, start + 2]
    for i in range(3):
        with httpd(att.netns_path, att.ip, 80 + i, netenv.www):
            assert http_get("127.0.0.1", start + i) == HELLO


def test_random_host_port_is_chosen_free_recorded_and_reachable(netenv: NetEnv) -> None:
    att = netenv.svc.setup(CID, ports=parse_publish("80") + parse_publish("127.0.0.1::81"))
    by_port = {b.container_port: b for b in att.ports}
    lo, hi = netenv.svc.config.local_port_range()
    assert lo <= by_port[80].host_port <= hi
    assert netenv.svc.ports(CID) == att.ports
    with httpd(att.netns_path, att.ip, 80, netenv.www):
        assert http_get("127.0.0.1", by_port[80].host_port) == HELLO


def test_publish_all_reaches_exposed_port_through_the_reported_port(netenv: NetEnv) -> None:
    att = netenv.svc.setup(CID, ports=publish_all(["80/tcp"]))
    (binding,) = netenv.svc.ports(CID)
    assert binding.container_port == 80 and binding.host_port > 0
    with httpd(att.netns_path, att.ip, 80, netenv.www):
        assert http_get("127.0.0.1", binding.host_port) == HELLO


def test_exposed_but_unpublished_port_is_not_reachable_from_host_ports(netenv: NetEnv) -> None:
    port = free_port()
    att = netenv.svc.setup(CID)  # EXPOSE only documents: nothing published
    with httpd(att.netns_path, att.ip, port, netenv.www):
        assert http_get(att.ip, port) == HELLO  # the server is up...
        assert not can_connect("127.0.0.1", port)  # ...but no host port leads to it
        assert not can_connect(att.primary.gateway, port)


def test_udp_port_is_published(netenv: NetEnv) -> None:
    port = free_port(kind=socket.SOCK_DGRAM)
    att = netenv.svc.setup(CID, ports=parse_publish(f"{port}:5353/udp"))
    with udp_echo(att.netns_path, 5353):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.sendto(b"ping", ("127.0.0.1", port))
            assert s.recvfrom(100)[0] == b"echo:ping"


def test_udp_client_reaches_the_next_container_on_the_same_port(netenv: NetEnv) -> None:
    """A client that keeps sending from one source port must not stay stuck on the
    conntrack entry of a container that is gone."""
    port = free_port(kind=socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(3)
        first = netenv.svc.setup(CID, ports=parse_publish(f"{port}:5353/udp"))
        with udp_echo(first.netns_path, 5353):
            client.sendto(b"one", ("127.0.0.1", port))
            assert client.recvfrom(100)[0] == b"echo:one"
        netenv.svc.teardown(CID)
        second = netenv.svc.setup("b" * 64, ports=parse_publish(f"{port}:5353/udp"))
        assert second.ip != first.ip
        with udp_echo(second.netns_path, 5353):
            client.sendto(b"two", ("127.0.0.1", port))
            assert client.recvfrom(100)[0] == b"echo:two"


def test_repeated_publish_flags_all_apply(netenv: NetEnv) -> None:
    a, b = free_port(), free_port()
    while b == a:
        b = free_port()
    att = netenv.svc.setup(CID, ports=parse_publish(f"{a}:80") + parse_publish(f"127.0.0.1:{b}:80"))
    with httpd(att.netns_path, att.ip, 80, netenv.www):
        assert http_get("127.0.0.1", a) == HELLO
        assert http_get("127.0.0.1", b) == HELLO


def _nothing_of(netenv: NetEnv, cid: str) -> None:
    assert netenv.svc.attachment(cid) is None
    assert netenv.svc.ports(cid) == []
    assert cid not in netenv.namespaces()
    rows = netenv.svc.db.conn.execute(
        "SELECT COUNT(*) FROM net_endpoints WHERE container_id=?", (cid,)).fetchone()[0]
    assert rows == 0


def test_port_already_allocated_by_ketch_is_refused_before_anything_is_built(
        netenv: NetEnv) -> None:
    port = free_port()
    netenv.svc.setup(CID, ports=parse_publish(f"{port}:80"))
    veths = netenv.veths()
    other = "b" * 64
    with pytest.raises(Conflict) as err:
        netenv.svc.setup(other, ports=parse_publish(f"{port}:80"))
    assert str(err.value) == f"Bind for 0.0.0.0:{port} failed: port is already allocated"
    _nothing_of(netenv, other)
    assert netenv.veths() == veths
    # a specific address collides with the wildcard too
    with pytest.raises(Conflict):
        netenv.svc.setup(other, ports=parse_publish(f"127.0.0.1:{port}:80"))
    _nothing_of(netenv, other)


def test_port_held_by_another_program_is_refused(netenv: NetEnv) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        with pytest.raises(Conflict, match=f"Bind for 0.0.0.0:{port} failed: port is already allocated"):
            netenv.svc.setup(CID, ports=parse_publish(f"{port}:80"))
        _nothing_of(netenv, CID)
    finally:
        holder.close()


def test_random_ports_skip_ports_in_use_and_report_exhaustion(netenv: NetEnv) -> None:
    busy = free_port_run(2)
    holder = socket.socket()
    holder.bind(("0.0.0.0", busy))
    holder.listen(1)
    try:
        netenv.svc.config.port_range = (busy, busy)
        with pytest.raises(Conflict, match="all ports are allocated"):
            netenv.svc.setup(CID, ports=[PortBinding(80)])
        _nothing_of(netenv, CID)
        netenv.svc.config.port_range = (busy, busy + 1)
        att = netenv.svc.setup(CID, ports=[PortBinding(80)])
        assert att.ports[0].host_port == busy + 1
        # a host range with one container port takes the first free port of the range
        att2 = netenv.svc.setup("b" * 64, ports=parse_publish(f"{busy}-{busy + 2}:80"))
        assert att2.ports[0].host_port == busy + 2
    finally:
        holder.close()


def test_released_port_can_be_taken_again(netenv: NetEnv) -> None:
    port = free_port()
    netenv.svc.setup(CID, ports=parse_publish(f"{port}:80"))
    netenv.svc.teardown(CID)
    att = netenv.svc.setup("b" * 64, ports=parse_publish(f"{port}:80"))
    with httpd(att.netns_path, att.ip, 80, netenv.www):
        assert http_get("127.0.0.1", port) == HELLO


def test_ipv6_sctp_is_refused(netenv: NetEnv) -> None:
    with pytest.raises(InvalidArgument):
        netenv.svc.setup(CID, ports=parse_publish("[::1]:3000:80/sctp"))
    _nothing_of(netenv, CID)
