"""The kernel side of bridge networks: a network's bridge with its gateway addresses,
sysctls and firewall rules, and a container's namespace with its veth pair, addresses
and routes. Nothing here reads or writes ketch.db: the network service decides from
its records what to build or take down, and calls in.

Cost per container on a warm host (bridge and chains exist): one namespace (unshare +
bind mount, in-process), one veth created directly inside it over netlink, address and
route over netlink. No process is started.
"""

from __future__ import annotations

import errno
import fcntl
import os

from ketch.errors import KetchError
from ketch.fdio import read_text, remove_file
from ketch.network import netns
from ketch.network.netlink import Netlink, NetlinkError
from ketch.values import contextmanager

# ipaddress on first use, the rest for annotations: a container's start builds its
# namespace here
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from ketch.network.config import NetworkConfig
    from ketch.network.firewall import Firewall, Rule
    from ketch.network.models import Endpoint, Network


class DeferredStep:
    """Work `setup(later=...)` leaves to its caller: call it once, or `cancel` it."""

    def __init__(self, run: Callable[[], None], cancel: Callable[[], None]) -> None:
        self._run = run
        self._cancel = cancel

    def __call__(self) -> None:
        self._run()

    def cancel(self) -> None:
        self._cancel()


def short_hash(*parts: str, length: int) -> str:
    # Every container's veth name comes from here: CPython's own SHA-256 (`_sha256`)
    # spares `run` the ~6 ms import of hashlib and OpenSSL; the digest is the same.
    try:
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256
    return sha256("\0".join(parts).encode()).hexdigest()[:length]


def write_sysctl(path: str, value: str) -> None:
    try:
        with open(path) as f:
            if f.read().strip() == value:
                return
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise KetchError(f"cannot set {path} to {value}: {e.strerror}") from e


def bridge_netfilter() -> None:
    """Traffic between two ports of one bridge passes iptables only with br_netfilter's
    bridge-nf-call-iptables on, which enable_icc=false needs (Docker sets it too)."""
    path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    if not os.path.exists(path):
        import subprocess

        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)
    if not os.path.exists(path):
        raise KetchError("com.docker.network.bridge.enable_icc=false needs the br_netfilter"
                         " kernel module, which cannot be loaded on this host")
    write_sysctl(path, "1")


class Plumbing:
    """Bridges and container namespaces of one network configuration."""

    def __init__(self, config: NetworkConfig, fw: Firewall, run_dir: str) -> None:
        self.config = config
        self.fw = fw
        self.run_dir = run_dir
        self._boot_id = ""

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialises bridge and DNS set-up between ketch processes of this root."""
        os.makedirs(self.run_dir, exist_ok=True)
        fd = os.open(f"{self.run_dir}/lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- a network's bridge ------------------------------------------------------------
    def marker(self, net: Network) -> str:
        return f"{self.run_dir}/ready-{net.bridge}"

    def _token(self) -> str:
        if not self._boot_id:
            try:
                with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                    self._boot_id = f.read().strip()
            except OSError:
                self._boot_id = "unknown"
        return f"{self._boot_id} {self.fw.prefix}"

    def mtu(self, net: Network) -> int:
        from ketch.network.options import MTU

        return int(net.option(MTU, str(self.config.mtu)))

    def network_rules(self, net: Network) -> list[Rule]:
        """The firewall rules of the network as its options ask for them (iptables,
        and ip6tables for a network with IPv6)."""
        from ketch.network.options import ENABLE_ICC, ENABLE_MASQUERADE, parse_bool

        icc = parse_bool(ENABLE_ICC, net.option(ENABLE_ICC, "true"))
        masquerade = parse_bool(ENABLE_MASQUERADE, net.option(ENABLE_MASQUERADE, "true"))
        rules = self.fw.network_rules(net.bridge, net.subnet, net.gateway, net.internal,
                                      net.resolves_names, icc=icc, masquerade=masquerade)
        if net.ipv6:
            rules += self.fw.network_rules6(net.bridge, net.subnet6, net.internal, icc=icc,
                                            masquerade=masquerade)
        return rules

    def ensure_bridge(self, net: Network, record: Callable[[list[Rule]], None]) -> None:
        """Bridge up with its gateway address, sysctls, chains and the network's rules
        (handed to `record` before the bridge counts as ready). Cheap when already
        done: a marker file (reset by a reboot via the boot id) and the bridge's sysfs
        entry are checked, nothing else."""
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        if net.ipv6:  # containers' IPv6 traffic is routed by the host, as Docker's
            write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")
        marker = self.marker(net)
        try:
            if (read_text(marker) == self._token()
                    and os.path.exists(f"/sys/class/net/{net.bridge}")):
                return
        except OSError:
            pass
        with self.lock():
            with Netlink() as nl:
                index = nl.link_index(net.bridge)
                if index is None:
                    mac = "02:" + ":".join(short_hash(net.id, length=10)[i:i + 2]
                                           for i in range(0, 10, 2))
                    index = nl.create_bridge(net.bridge, mac, self.mtu(net))
                nl.add_address(index, f"{net.gateway}/{net.prefixlen}")
                if net.ipv6:
                    import ipaddress

                    prefix = ipaddress.ip_network(net.subnet6).prefixlen
                    nl.add_address(index, f"{net.gateway6}/{prefix}")
                nl.set_up(index)
            write_sysctl(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet", "1")
            from ketch.network.options import ENABLE_ICC, parse_bool

            if not parse_bool(ENABLE_ICC, net.option(ENABLE_ICC, "true")):
                bridge_netfilter()
            rules = self.network_rules(net)
            self.fw.ensure(rules)
            record(rules)
            with open(marker, "w", encoding="utf-8") as f:
                f.write(self._token())

    def remove_bridge(self, net: Network, rules: Sequence[Rule] | None = None) -> None:
        """The network's rules (`rules` as recorded, else as its options make them)
        and its bridge."""
        self.fw.delete(self.network_rules(net) if rules is None else rules)
        with Netlink() as nl:
            nl.delete_link(net.bridge)
        remove_file(self.marker(net))

    # -- a container's namespace -------------------------------------------------------
    @staticmethod
    def delete_links(names: Iterable[str]) -> None:
        """The host ends of veth pairs (their peers in the namespace go with them)."""
        with Netlink() as nl:
            for name in names:
                nl.delete_link(name)

    def build_namespace(self, path: str, net: Network, ep: Endpoint,
                        default_route: bool, create: bool = True,
                        later: list[DeferredStep] | None = None) -> None:
        """The namespace at `path` (made unless `create` is false) with the endpoint's
        interface; with `later`, the interface is left to a DeferredStep."""
        if create:
            if os.path.exists(path):
                netns.remove(path)  # left behind by a crash; its records are gone
            inner = netns.create(path)
        else:
            inner = netns.enter(path)
        if later is None:
            self.plumb(path, inner, net, ep, default_route)
        else:
            later.append(DeferredStep(lambda: self.plumb(path, inner, net, ep, default_route),
                                      inner.close))

    def plumb(self, path: str, inner: Netlink, net: Network, ep: Endpoint,
              default_route: bool) -> None:
        """The endpoint's veth pair, its address and route; closes `inner`."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                with Netlink() as host:
                    bridge = host.link_index(net.bridge)
                    if bridge is None:
                        raise KetchError(f"bridge {net.bridge} of network {net.name} is missing")
                    try:
                        host.create_veth(ep.host_ifname, ep.ifname, fd, ep.mac, bridge,
                                         self.mtu(net))
                    except NetlinkError as e:
                        if e.errno != errno.EEXIST:
                            raise
                        host.delete_link(ep.host_ifname)  # a leftover of a crashed run
                        host.create_veth(ep.host_ifname, ep.ifname, fd, ep.mac, bridge,
                                         self.mtu(net))
            finally:
                os.close(fd)
            index = inner.link_index(ep.ifname)
            if index is None:
                raise KetchError(f"{ep.ifname} did not appear in the container's namespace")
            inner.add_address(index, ep.cidr)
            if ep.ip6:
                inner.add_address(index, f"{ep.ip6}/{ep.ip6_prefixlen}")
            for ll in ep.link_local:  # Docker's prefixes for link-local addresses
                inner.add_address(index, f"{ll}/16" if "." in ll else f"{ll}/64")
            inner.set_up(index)
            if default_route and not net.internal:
                inner.add_default_route(ep.gateway, index)
                if ep.ip6:  # IPv6 leaves through the bridge's IPv6 gateway
                    inner.add_default_route(ep.gateway6, index)
        finally:
            inner.close()
