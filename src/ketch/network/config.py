"""Network settings: default bridge, address pools, device and chain names.

Sources, later ones win: built-in defaults, `<state root>/network.toml` (or the file
named by KETCH_NETWORK_CONFIG), then environment variables. Every name ketch gives a
kernel object (bridge, veth, iptables chain) comes from here, so a test suite can run
beside a real installation with its own prefixes and never touch the real objects.
"""

from __future__ import annotations

import os

from ketch import values
from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


# Podman takes 10.88.0.0/16 and Docker 172.17.0.0/16 (then 172.18-31, 192.168.x), so
# the defaults sit in a part of 10/8 neither of them uses.
DEFAULT_BRIDGE_SUBNET = "10.193.0.0/16"
DEFAULT_POOL = "10.194.0.0/15"

# A state root other than the default one gets its own default bridge, chains and
# subnet (a /24 of this range, starting at one derived from the root's path), so two
# roots on one host never share an address allocator or hand out the same address.
DEFAULT_ROOT = "/var/lib/ketch"
DERIVED_SUBNETS = "10.192.0.0/16"
DERIVED_PREFIXLEN = 24

ENV_KEYS = {
    "bridge_subnet": "KETCH_BRIDGE_SUBNET",
    "bridge_name": "KETCH_BRIDGE_NAME",
    "pool": "KETCH_NETWORK_POOL",
    "mtu": "KETCH_NETWORK_MTU",
}


@values.value
class NetworkConfig:
    bridge_name: str = "ketch0"
    bridge_subnet: str = DEFAULT_BRIDGE_SUBNET
    bridge_gateway: str | None = None
    # user-defined networks without --subnet get the next free /pool_prefixlen here
    pool: str = DEFAULT_POOL
    pool_prefixlen: int = 24
    mtu: int = 1500
    bridge_prefix: str = "kbr-"        # user network bridges: kbr-<network id>
    veth_prefix: str = "kv"            # host side of a container's veth pair
    chain_prefix: str = "KETCH"        # iptables chains: KETCH, KETCH-FORWARD, ...
    # None: forward container DNS queries to the host's resolv.conf nameservers
    dns_upstreams: list[str] | None = None
    resolv_conf: str = "/etc/resolv.conf"
    # random host ports come from here; None reads net.ipv4.ip_local_port_range
    port_range: tuple[int, int] | None = None
    # the default bridge's subnet is derived from the state root (not configured): it is
    # checked against the host's routes when the bridge is made, and moved if taken
    derived_subnet: bool = False

    @classmethod
    def load(cls, state_root: str | os.PathLike[str] | None = None,
             env: dict[str, str] | None = None) -> NetworkConfig:
        env = dict(os.environ) if env is None else env
        cfg = cls()
        path = env.get("KETCH_NETWORK_CONFIG")
        candidate = path or (os.path.join(state_root, "network.toml") if state_root else None)
        given: set[str] = set()
        if candidate is not None and os.path.isfile(candidate):
            from ketch import tomlfile  # parsed once per change (see ketch.tomlfile)

            data = tomlfile.read(str(candidate), str(state_root) if state_root else None)
            cfg.update(data.get("network", data))
            given.update(data.get("network", data))
        for key, var in ENV_KEYS.items():
            if env.get(var):
                cfg.update({key: env[var]})
                given.add(key)
        if state_root is not None and os.path.abspath(state_root) != DEFAULT_ROOT:
            cfg.derive(str(os.path.abspath(state_root)), given)
        return cfg

    def derive(self, root: str, given: set[str]) -> None:
        """Names and subnet of a non-default state root, from its path (what the
        configuration sets itself is kept)."""
        h = derived_hash(root)
        if "bridge_name" not in given:
            self.bridge_name = f"ketch-{h[:8]}"
        if "chain_prefix" not in given:
            self.chain_prefix = f"K{h[:8].upper()}"
        if "bridge_subnet" not in given:
            self.bridge_subnet = derived_first_subnet(root)
            self.derived_subnet = "bridge_gateway" not in given

    def update(self, data: dict[str, Any]) -> None:
        known = set(values.fields_of(self))
        for key, value in data.items():
            if key not in known:
                raise InvalidArgument(f"unknown network setting {key!r}")
            if key in ("mtu", "pool_prefixlen"):
                value = int(value)
            elif key == "port_range" and value is not None:
                lo, hi = value.split("-") if isinstance(value, str) else value
                value = (int(lo), int(hi))
            setattr(self, key, value)
        self.validate()

    def validate(self) -> None:
        if len(self.bridge_name) > 15:
            raise InvalidArgument(f"bridge name {self.bridge_name!r} is longer than 15 characters")
        if len(self.bridge_prefix) > 10 or len(self.veth_prefix) > 10:
            raise InvalidArgument("bridge and veth prefixes must be at most 10 characters")
        if len(self.chain_prefix) > 14:
            raise InvalidArgument("chain prefix must be at most 14 characters")
        if not 68 <= self.mtu <= 65535:
            raise InvalidArgument(f"invalid MTU {self.mtu}")

    def local_port_range(self) -> tuple[int, int]:
        if self.port_range:
            return self.port_range
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                lo, hi = f.read().split()
            return int(lo), int(hi)
        except (OSError, ValueError):
            return 32768, 60999


def derived_hash(root: str) -> str:
    try:
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256
    return sha256(root.encode()).hexdigest()


def derived_first_subnet(root: str) -> str:
    """`derived_subnets(root)[0]`, without making the other 255, nor importing ipaddress
    (every command in such a root reads its network configuration)."""
    addr, _, plen = DERIVED_SUBNETS.partition("/")
    base = 0
    for octet in addr.split("."):
        base = base * 256 + int(octet)
    start = int(derived_hash(root)[8:16], 16) % 2 ** (DERIVED_PREFIXLEN - int(plen))
    return f"{_ipv4_text(base + start * 2 ** (32 - DERIVED_PREFIXLEN))}/{DERIVED_PREFIXLEN}"


def first_host4(cidr: str) -> str | None:
    """The first host address of an IPv4 subnet written in its normal form ("a.b.c.0/n",
    n at most 30), as ipaddress's `hosts()` gives it; None for anything else. (What the
    built-in networks' check needs on every command, without importing ipaddress.)"""
    addr, _, plen = cidr.partition("/")
    parts = addr.split(".")
    if len(parts) != 4 or not (plen.isascii() and plen.isdigit()) or int(plen) > 30:
        return None
    value = 0
    for part in parts:
        if not (part.isascii() and part.isdigit()) or len(part) > 3 or int(part) > 255 \
                or (part[0] == "0" and part != "0"):
            return None
        value = value * 256 + int(part)
    if value & (0xFFFFFFFF >> int(plen)):  # host bits set: not the normal form
        return None
    return _ipv4_text(value + 1)


def _ipv4_text(value: int) -> str:
    return ".".join(str(value >> shift & 255) for shift in (24, 16, 8, 0))


def derived_subnets(root: str) -> list[Any]:
    """The /24s a root's default bridge may take, in the order it tries them: the one
    its path hashes to first, then the following ones."""
    import ipaddress

    space = list(ipaddress.ip_network(DERIVED_SUBNETS).subnets(new_prefix=DERIVED_PREFIXLEN))
    start = int(derived_hash(root)[8:16], 16) % len(space)
    return space[start:] + space[:start]
