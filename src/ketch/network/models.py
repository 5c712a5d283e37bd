"""The values the network service hands to the Engine: port bindings, endpoints,
attachments and network records. Plain value classes (ketch.values), no behaviour beyond formatting."""

from __future__ import annotations

from ketch.values import field, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The network drivers ketch has (`docker info`'s Plugins.Network): bridge networks are
# made by `network create`, host and null exist once each.
NETWORK_DRIVERS = ("bridge", "host", "null")


@value(frozen=True)
class PortBinding:
    """One published container port.

    `host_ip` "" means every host address (Docker's 0.0.0.0). `host_port` 0 asks for a
    random free port; `host_port_end` > `host_port` asks for any free port of that range
    (Docker's `-p 8000-8010:80`). The service returns bindings with `host_port` chosen.
    """

    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_port: int = 0
    host_port_end: int = 0

    @property
    def port_key(self) -> str:
        """Docker's key for the container side: "80/tcp"."""
        return f"{self.container_port}/{self.protocol}"

    @property
    def family(self) -> int:
        return 6 if self.host_ip and ":" in self.host_ip else 4

    @property
    def display_ip(self) -> str:
        if self.host_ip:
            return self.host_ip
        return "0.0.0.0"

    def host_address(self) -> str:
        """`0.0.0.0:3000` or `[::1]:3000`, as Docker prints a host side."""
        ip = self.display_ip
        return f"[{ip}]:{self.host_port}" if ":" in ip else f"{ip}:{self.host_port}"

    def __str__(self) -> str:
        return f"{self.host_address()}->{self.port_key}"


@value
class Endpoint:
    """A container's interface on one network."""

    network_id: str
    network_name: str
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    aliases: list[str] = field(default_factory=list)
    endpoint_id: str = ""
    ifname: str = "eth0"
    host_ifname: str = ""
    # `--link-local-ip`: extra addresses on the interface (not kept in the records)
    link_local: list[str] = field(default_factory=list)
    # on a network created with --ipv6: the container's IPv6 address and the gateway's
    ip6: str = ""
    ip6_prefixlen: int = 0
    gateway6: str = ""

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"

    def to_docker(self) -> dict[str, Any]:
        """The value of NetworkSettings.Networks[<name>] in `docker inspect`."""
        return {
            "IPAMConfig": None, "Links": None, "Aliases": list(self.aliases) or None,
            "MacAddress": self.mac, "NetworkID": self.network_id,
            "EndpointID": self.endpoint_id, "Gateway": self.gateway,
            "IPAddress": self.ip, "IPPrefixLen": self.prefixlen,
            "IPv6Gateway": self.gateway6, "GlobalIPv6Address": self.ip6,
            "GlobalIPv6PrefixLen": self.ip6_prefixlen,
            "DriverOpts": None, "DNSNames": list(self.aliases) or None,
        }


@value
class NetworkAttachment:
    """What `setup` built for one container.

    `netns_path` is None for `--network host` (the container keeps the host's network
    namespace); for `container:<id>` it is the other container's namespace.
    `dns_servers` is what the container's resolv.conf should list: the network's DNS
    service on user-defined networks, empty otherwise (render_resolv_conf then copies
    the host's).
    """

    container_id: str
    mode: str
    netns_path: str | None
    networks: dict[str, Endpoint] = field(default_factory=dict)
    ports: list[PortBinding] = field(default_factory=list)
    hostname: str = ""
    dns_servers: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)

    @property
    def primary(self) -> Endpoint | None:
        return next(iter(self.networks.values()), None)

    @property
    def ip(self) -> str:
        ep = self.primary
        return ep.ip if ep else ""


@value
class Network:
    id: str
    name: str
    driver: str
    bridge: str
    subnet: str
    gateway: str
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    builtin: bool = False
    containers: dict[str, Endpoint] = field(default_factory=dict)
    ip_range: str = ""
    aux_addresses: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)  # the driver's `-o` options
    attachable: bool = False
    subnet6: str = ""  # --ipv6: the network's IPv6 subnet and gateway
    gateway6: str = ""
    # the subnet came from the address pool, not --subnet: dockerd takes no --ip there
    pool_subnet: bool = False

    def option(self, key: str, default: str) -> str:
        return self.options.get(key, default)

    @property
    def ipv6(self) -> bool:
        return bool(self.subnet6)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def prefixlen(self) -> int:
        if not self.subnet:
            return 0
        import ipaddress  # (on use: listing networks does not ask)

        return ipaddress.ip_network(self.subnet).prefixlen

    @property
    def resolves_names(self) -> bool:
        """User-defined bridge networks have a DNS service; the default bridge does not."""
        return self.driver == "bridge" and not self.builtin
