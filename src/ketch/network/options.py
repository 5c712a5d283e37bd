"""`network create`'s options: the bridge driver's `-o` keys Docker 20.10 knows, checked
at create (nothing is made when one is wrong), and the table of the command's flags."""

from __future__ import annotations

from ketch.errors import InvalidArgument

# (no re or ipaddress at import: a container's start reads the MTU key from here)

BRIDGE_NAME = "com.docker.network.bridge.name"
ENABLE_ICC = "com.docker.network.bridge.enable_icc"
ENABLE_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
HOST_BINDING_IPV4 = "com.docker.network.bridge.host_binding_ipv4"
MTU = "com.docker.network.driver.mtu"
DRIVER_OPTIONS = (BRIDGE_NAME, ENABLE_ICC, ENABLE_MASQUERADE, HOST_BINDING_IPV4, MTU)

_IFNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_bool(key: str, value: str) -> bool:
    """Go's strconv.ParseBool, which Docker's bridge driver uses for its switches."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgument(f'failed to parse {key} value: invalid boolean "{value}"')


def check_driver_options(options: dict[str, str]) -> None:
    """Refuse a key the bridge driver does not have (Docker would store it and do
    nothing) and a value it cannot use."""
    for key, value in options.items():
        if key not in DRIVER_OPTIONS:
            raise InvalidArgument(f'unsupported bridge driver option "{key}": ketch knows '
                                  + ", ".join(DRIVER_OPTIONS))
        if key in (ENABLE_ICC, ENABLE_MASQUERADE):
            parse_bool(key, value)
        elif key == BRIDGE_NAME and not (0 < len(value) <= 15
                                         and _IFNAME_CHARS.issuperset(value)):
            raise InvalidArgument(f"invalid bridge name {value!r}: at most 15 letters, digits,"
                                  " '_', '.' or '-'")
        elif key == HOST_BINDING_IPV4:
            import ipaddress

            try:
                ip = ipaddress.ip_address(value)
            except ValueError:
                ip = None
            if ip is None or ip.version != 4:
                raise InvalidArgument(f"invalid IPv4 address for {key}: {value!r}")
        elif key == MTU:
            try:
                mtu = int(value)
            except ValueError:
                mtu = 0
            if not 68 <= mtu <= 65535:
                raise InvalidArgument(f"invalid MTU number: {value!r} (68 to 65535)")


# Every `network create` flag and how it takes effect (tests/containers/test_option_table.py
# keeps this table, the declared flags and the tests in step).
NETWORK_CREATE_OPTIONS: dict[str, str] = {
    "--attachable": "recorded (Attachable in inspect); any container may join a bridge",
    "--aux-address": "addresses reserved in the subnet, never given to a container",
    "--config-from": "refused: ketch has no configuration-only networks",
    "--config-only": "refused: ketch has no configuration-only networks",
    "--driver": "bridge only ('host' and 'null' exist once, other drivers are refused)",
    "--gateway": "the bridge's address and the containers' default route",
    "--ingress": "refused: swarm routing mesh",
    "--internal": "no route out and no masquerading: only the network's own members",
    "--ip-range": "containers get addresses from this part of the subnet",
    "--ipam-driver": "only 'default'",
    "--ipam-opt": "refused: ketch's default IPAM driver takes no options",
    "--ipv6": "IPv6 addresses on the bridge and the containers (the IPv6 --subnet, else a"
              " ULA /64), their IPv6 default route, ip6tables isolation, -p also on [::]",
    "--label": "Labels of the network",
    "--opt": "bridge driver options: bridge.name, enable_icc, enable_ip_masquerade,"
             " host_binding_ipv4, driver.mtu; any other key refused",
    "--scope": "only 'local'",
    "--subnet": "the network's IPv4 subnet (overlaps with networks and host routes refused)",
}


# The flags of every `ketch network` command (the index is ketch.optiontables).
OPTIONS: dict[str, dict[str, str]] = {
    "connect": {
        "--alias": "DNS names of the container on that network",
        "--ip": "the container's address on that network",
        "--ip6": "the container's IPv6 address on a network made with --ipv6",
    },
    "create": NETWORK_CREATE_OPTIONS,
    "disconnect": {"--force": "as without it: a local container is disconnected whatever"
                              " its state (Docker's force matters for swarm only)"},
    "inspect": {
        "--format": "a Go template run on each network, or 'json'",
        "--verbose": "as without it: Docker's verbose view adds a swarm network's services,"
                     " and ketch's networks are local",
    },
    "ls": {
        "--filter": "Docker's network filters (driver, id, label, name, scope, type,"
                    " dangling)",
        "--format": "a Go template per row, 'table ...' or 'json'",
        "--no-trunc": "full IDs",
        "--quiet": "only IDs",
    },
    "prune": {
        "--filter": "Docker's prune filters (until, label) select what is removed",
        "--force": "no confirmation prompt",
    },
    "rm": {"--force": "a network that does not exist is no error"},
}
