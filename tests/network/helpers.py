"""Helpers for the network tests: isolated names and subnets, traffic probes.

Traffic from these helpers goes only to loopback, to gateway addresses of the test's
own bridges and to the test's own namespaces.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require, require_root, require_tool, worker_index
from tests.helpers.ports import free_port as free_port  # re-exported for the tests
from tests.helpers.ports import free_port_run as free_port_run

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def _routed_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations routed on this host, in every table (what `ip -4 route show
    table all` lists), default routes left out: a netlink dump in this process, where
    an `ip` process per pick cost ~2 ms of CPU and ~8 ms (two picks for each of the
    ~1,500 state roots of a run)."""
    import struct

    from ketch.network.netlink import Netlink, parse_attrs

    rtm_getroute, rta_dst = 26, 1
    with Netlink() as nl:  # struct rtmsg: family, then zeros (every table, type, scope)
        routes = nl.dump(rtm_getroute, struct.pack("=8BI", socket.AF_INET, *[0] * 8))
    nets = []
    for rtmsg in routes:
        dst_len, dst = rtmsg[1], parse_attrs(rtmsg, 12).get(rta_dst)
        if dst_len and dst is not None and len(dst) == 4:
            nets.append(ipaddress.IPv4Network((dst, dst_len), strict=False))
    return nets


def configured_subnets(root: Path) -> list[str]:
    """The bridge subnet and address pool a test root's network.toml gives it
    (isolated_network_config): not routed until the root's bridge exists, so a picker
    for a network of that root must be told to avoid them."""
    import tomllib

    cfg = tomllib.loads((root / "network.toml").read_text())["network"]
    return [cfg["bridge_subnet"], cfg["pool"]]


class SubnetPicker:
    """Random 10.240-254.x.0/24 subnets not routed on this host and not used twice.

    A subnet is only routed once its bridge exists, so two tests running at once could
    pick the same one: each xdist worker picks from its own 10.(240+N).0.0/16."""

    def __init__(self, avoid: Iterable[str] = ()) -> None:
        self.used: list[ipaddress.IPv4Network] = [ipaddress.IPv4Network(a) for a in avoid]
        n = worker_index()
        self.second = (240, 254) if n is None or n > 14 else (240 + n, 240 + n)

    def __call__(self) -> str:
        routed = _routed_networks()
        for _ in range(500):
            net = ipaddress.IPv4Network(
                f"10.{random.randint(*self.second)}.{random.randint(0, 255)}.0/24")
            if any(net.overlaps(r) for r in routed + self.used):
                continue
            self.used.append(net)
            return str(net)
        raise RuntimeError("no free test subnet")


@dataclass
class NetEnv:
    svc: object  # ketch.network.service.NetworkService
    prefix: str
    bridge: str
    chain_prefix: str
    veth_prefix: str
    subnet: str
    pick_subnet: SubnetPicker
    root: Path
    run_root: Path
    www: Path

    def links(self) -> list[str]:
        out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
        return [n for n in names if n.startswith("kt" + self.prefix)]

    def veths(self) -> list[str]:
        return [n for n in self.links() if n.startswith(self.veth_prefix)]

    def rules(self) -> list[str]:
        """This test's iptables and ip6tables lines (chains, rules naming its links)."""
        out = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        if shutil.which("ip6tables-save"):
            out += subprocess.run(["ip6tables-save"], capture_output=True, text=True).stdout
        links = self.links()  # once: it runs `ip link`
        return [line for line in out.splitlines() if self.chain_prefix in line
                or any(b in line for b in links)]

    def namespaces(self) -> list[str]:
        d = self.run_root / "netns"
        return sorted(os.listdir(d)) if d.is_dir() else []


def require_network_tools() -> None:
    require_root()
    for tool in ("iptables-restore", "iptables-save", "nsenter", "ip"):
        require_tool(tool)
    require(os.path.exists(BUSYBOX), "busybox-static is not installed")


# -- traffic helpers --------------------------------------------------------------------

def http_get(host: str, port: int, path: str = "/", timeout: float = 3.0) -> str:
    """A plain HTTP/1.0 GET over a socket: no proxy settings can redirect it."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
        raise AssertionError(f"unexpected response: {head[:200]!r}")
    return body.decode()


def can_connect(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def in_netns(netns_path: str, *argv: str, timeout: float = 10,
             check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={netns_path}", *argv], capture_output=True,
                          text=True, timeout=timeout, check=check)


@contextmanager
def httpd(netns_path: str, ip: str, port: int, www: Path) -> Iterator[None]:
    """busybox httpd serving `www` on `port` inside the namespace; waits until it
    accepts connections on the container address."""
    proc = subprocess.Popen(["nsenter", f"--net={netns_path}", BUSYBOX, "httpd", "-f",
                             "-p", str(port), "-h", str(www)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not can_connect(ip, port, 0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"httpd did not start on {ip}:{port}")
            time.sleep(0.02)
        yield
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def udp_echo(netns_path: str, port: int) -> Iterator[None]:
    """A UDP echo server inside the namespace (python, one datagram at a time)."""
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"s.bind(('0.0.0.0',{port}))\n"
            "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
            "while True:\n"
            "    d,a=s.recvfrom(2048); s.sendto(b'echo:'+d,a)\n")
    proc = subprocess.Popen(["nsenter", f"--net={netns_path}", "python3", "-c", code],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def tcp_server(host: str, port: int, reply: bytes = b"outbound ok") -> Iterator[list[str]]:
    """A one-reply TCP server on a host address; yields the peers it saw."""
    import threading

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(8)
    srv.settimeout(0.2)
    peers: list[str] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, addr = srv.accept()
            except OSError:
                continue
            peers.append(addr[0])
            with conn:
                try:
                    conn.settimeout(2)
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(reply)
                                 + reply)
                except OSError:
                    pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield peers
    finally:
        stop.set()
        t.join()
        srv.close()
