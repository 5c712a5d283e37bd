"""The `-p` / `--expose` / `-P` grammar and the way ports and resolver files render.
Pure functions: no root needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ketch.errors import InvalidArgument
from ketch.network import (
    Endpoint,
    NetworkAttachment,
    PortBinding,
    format_port_lines,
    format_ports,
    parse_expose,
    parse_publish,
    parse_publish_all,
    port_map,
    publish_all,
    render_hosts,
    render_resolv_conf,
)

P = PortBinding

PUBLISH_CASES = [
    ("3000:80", [P(80, "tcp", "", 3000)]),
    ("127.0.0.1:3000:80", [P(80, "tcp", "127.0.0.1", 3000)]),
    ("[::1]:3000:80", [P(80, "tcp", "::1", 3000)]),
    ("::1:3000:80", [P(80, "tcp", "::1", 3000)]),
    ("3000-3002:80-82", [P(80, "tcp", "", 3000), P(81, "tcp", "", 3001),
                         P(82, "tcp", "", 3002)]),
    ("80", [P(80, "tcp", "", 0)]),
    ("80-81", [P(80, "tcp", "", 0), P(81, "tcp", "", 0)]),
    ("3000:80/udp", [P(80, "udp", "", 3000)]),
    ("3000:80/UDP", [P(80, "udp", "", 3000)]),
    ("53/sctp", [P(53, "sctp", "", 0)]),
    ("127.0.0.1::80", [P(80, "tcp", "127.0.0.1", 0)]),
    ("0.0.0.0:3000:80", [P(80, "tcp", "", 3000)]),
    ("8000-8010:80", [P(80, "tcp", "", 8000, 8010)]),
    ("127.0.0.1:3000-3001:80-81/udp", [P(80, "udp", "127.0.0.1", 3000),
                                      P(81, "udp", "127.0.0.1", 3001)]),
    ("80/", [P(80, "tcp", "", 0)]),
]


@pytest.mark.parametrize("spec,expected", PUBLISH_CASES, ids=[c[0] for c in PUBLISH_CASES])
def test_parse_publish_accepts_every_docker_form(spec: str, expected: list[PortBinding]) -> None:
    assert parse_publish(spec) == expected


BAD_PUBLISH = [
    ("abc", "invalid containerPort: abc"),
    ("70000:80", "invalid hostPort: 70000"),
    ("1:2:3:4", "invalid IP address: 1:2"),
    ("3000:70000", "invalid containerPort: 70000"),
    ("3000:80/icmp", "invalid proto: icmp"),
    ("3000:", "no port specified: 3000:<empty>"),
    ("3000-3001:80-83", "invalid ranges specified for container and host Ports: 80-83 and 3000-3001"),
    ("3000:82-80", "invalid containerPort: 82-80"),
    ("[::1:3000:80", "invalid IP address"),
    ("300.1.1.1:3000:80", "invalid IP address: 300.1.1.1"),
    ("+80", "invalid containerPort: +80"),
    ("0", "invalid containerPort: 0"),
    ("-1:80", "invalid hostPort: -1"),
]


@pytest.mark.parametrize("spec,message", BAD_PUBLISH, ids=[c[0] for c in BAD_PUBLISH])
def test_parse_publish_rejects_malformed_specs_with_dockers_messages(spec: str,
                                                                      message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_publish(spec)
    assert message in str(err.value)


def test_repeated_publish_keeps_order_and_drops_duplicates() -> None:
    assert parse_publish_all(["3000:80", "127.0.0.1:3001:80/udp", "3000:80"]) == [
        P(80, "tcp", "", 3000), P(80, "udp", "127.0.0.1", 3001)]


def test_parse_expose_forms_and_errors() -> None:
    assert parse_expose("80") == ["80/tcp"]
    assert parse_expose("53/udp") == ["53/udp"]
    assert parse_expose("8000-8002/tcp") == ["8000/tcp", "8001/tcp", "8002/tcp"]
    with pytest.raises(InvalidArgument, match="invalid port format for --expose: 1:80"):
        parse_expose("1:80")
    with pytest.raises(InvalidArgument, match="invalid range format for --expose"):
        parse_expose("abc")


def test_publish_all_gives_every_exposed_port_a_random_host_port() -> None:
    assert publish_all(["80/tcp", "53/udp", "443"]) == [P(80), P(53, "udp"), P(443)]
    # a port already published with -p is not published twice
    assert publish_all(["80/tcp", "443/tcp"], existing=[P(80, "tcp", "", 8080)]) == [P(443)]


def test_ps_column_reads_like_dockers() -> None:
    same = [P(80, "tcp", "", 80), P(81, "tcp", "", 81), P(82, "tcp", "", 82)]
    assert format_ports(same) == "0.0.0.0:80-82->80-82/tcp"
    moved = [P(80, "tcp", "", 3000), P(81, "tcp", "", 3001), P(53, "udp", "127.0.0.1", 5353)]
    assert format_ports(moved, exposed=["443/tcp", "444/tcp"]) == (
        "443-444/tcp, 127.0.0.1:5353->53/udp, 0.0.0.0:3000->80/tcp, 0.0.0.0:3001->81/tcp")
    assert format_ports([P(80, "tcp", "::1", 3000)]) == "[::1]:3000->80/tcp"


def test_port_command_lines_and_inspect_map() -> None:
    bindings = [P(80, "tcp", "", 3000), P(80, "tcp", "127.0.0.1", 3001)]
    assert format_port_lines(bindings) == ["80/tcp -> 0.0.0.0:3000", "80/tcp -> 127.0.0.1:3001"]
    assert format_port_lines(bindings, "80") == ["0.0.0.0:3000", "127.0.0.1:3001"]
    assert format_port_lines(bindings, "81/tcp") == []
    assert port_map(bindings, exposed=["443/tcp"]) == {
        "443/tcp": None,
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "3000"},
                   {"HostIp": "127.0.0.1", "HostPort": "3001"}]}


def _attachment(mode: str = "bridge", dns: list[str] | None = None) -> NetworkAttachment:
    ep = Endpoint("n" * 64, "bridge", "10.250.0.2", 24, "10.250.0.1", "02:42:0a:fa:00:02")
    return NetworkAttachment("c" * 64, mode, "/run/ketch/netns/c", {"bridge": ep},
                             hostname="abc", dns_servers=dns or [])


def test_hosts_file_lists_localhost_extra_hosts_then_the_container(tmp_path: Path) -> None:
    text = render_hosts(_attachment(), extra_hosts=["db:10.1.2.3", "gw:host-gateway"])
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "10.1.2.3\tdb" in lines
    assert "10.250.0.1\tgw" in lines
    assert lines[-1] == "10.250.0.2\tabc"
    host_hosts = tmp_path / "hosts"
    host_hosts.write_text("127.0.0.1 localhost myhost\n")
    assert render_hosts(_attachment("host"), host_hosts=host_hosts) == host_hosts.read_text()
    with pytest.raises(InvalidArgument):
        render_hosts(_attachment(), extra_hosts=["bad"])


def test_resolv_conf_drops_loopback_servers_and_falls_back_like_docker(tmp_path: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.org\n"
                    "options edns0\n")
    text = render_resolv_conf(_attachment(), host_resolv_conf=host)
    assert text == "nameserver 192.0.2.53\nsearch example.org\noptions edns0\n"
    host.write_text("nameserver 127.0.0.53\nnameserver ::1\n")
    assert render_resolv_conf(_attachment(), host_resolv_conf=host) == (
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
    assert render_resolv_conf(_attachment(), dns=["192.0.2.1"], host_resolv_conf=host) == (
        "nameserver 192.0.2.1\n")
    assert render_resolv_conf(_attachment("host"), host_resolv_conf=host) == host.read_text()


@pytest.mark.parametrize("host_ip", ["127.0.0.1", "0.0.0.0", "10.1.2.3", "255.255.255.255",
                                     "[::1]", "[::ffff:10.0.0.1]", "::", "256.1.1.1",
                                     "01.2.3.4", "1.2.3", "1.2.3.4.5", "a.b.c.d", "１.2.3.4"])
def test_a_published_host_address_is_read_as_python_reads_it(host_ip: str) -> None:
    # (dotted quads are read without ipaddress, whose import `-p 127.0.0.1:...` saves)
    import ipaddress

    try:
        addr = ipaddress.ip_address(host_ip.strip("[]"))
    except ValueError:
        with pytest.raises(InvalidArgument, match="invalid IP address"):
            parse_publish(f"{host_ip}:8080:80")
        return
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    want = "" if str(addr) == "0.0.0.0" else str(addr)
    assert [b.host_ip for b in parse_publish(f"{host_ip}:8080:80")] == [want]


@pytest.mark.parametrize("server", ["127.0.0.1", "127.0.0.53", "127.255.1.2", "::1",
                                    "0:0:0:0:0:0:0:1", "127.0.0.1%lo", "10.255.255.53",
                                    "192.0.2.53", "fe80::1%eth0", "::ffff:127.0.0.1",
                                    "127.00.0.1", "0127.0.0.1", "127.1", "1.2.3.256"])
def test_resolv_conf_drops_exactly_the_servers_python_calls_loopback(
        tmp_path: Path, server: str) -> None:
    # (dotted quads are told apart without ipaddress, whose import a start saves)
    import ipaddress

    try:
        loopback = ipaddress.ip_address(server.split("%")[0]).is_loopback
    except ValueError:
        loopback = False  # not an address: kept, as the container's resolver decides
    host = tmp_path / "resolv.conf"
    host.write_text(f"nameserver {server}\nnameserver 192.0.2.7\n")
    kept = render_resolv_conf(_attachment(), host_resolv_conf=host).split("\n")[:-1]
    want = ["nameserver 192.0.2.7"]
    assert kept == (want if loopback else [f"nameserver {server}", *want])


def test_resolv_conf_on_a_user_network_points_at_its_dns_service(tmp_path: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 192.0.2.53\nsearch example.org\n")
    text = render_resolv_conf(_attachment(dns=["10.250.0.1"]), dns=["192.0.2.9"],
                              host_resolv_conf=host)
    assert text == "nameserver 10.250.0.1\nsearch example.org\noptions ndots:0\n"
