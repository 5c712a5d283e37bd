"""Container networking: bridge networks, published ports, container DNS.

`NetworkService` does the work; the port grammar and the hosts/resolv.conf renderers
are pure functions usable without it. Importing this package is cheap: the service
(and netlink, iptables handling) load on first use.
"""

from __future__ import annotations

from ketch.network.files import render_hosts, render_resolv_conf
from ketch.network.models import Endpoint, Network, NetworkAttachment, PortBinding
from ketch.network.ports import (
    format_port_lines,
    format_ports,
    parse_expose,
    parse_publish,
    parse_publish_all,
    port_map,
    publish_all,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.network.config import NetworkConfig
    from ketch.network.service import NetworkService

__all__ = [
    "Endpoint", "Network", "NetworkAttachment", "NetworkConfig", "NetworkService",
    "PortBinding", "format_port_lines", "format_ports", "parse_expose", "parse_publish",
    "parse_publish_all", "port_map", "publish_all", "render_hosts", "render_resolv_conf",
]


def __getattr__(name: str) -> Any:
    if name == "NetworkService":
        from ketch.network.service import NetworkService

        return NetworkService
    if name == "NetworkConfig":
        from ketch.network.config import NetworkConfig

        return NetworkConfig
    raise AttributeError(name)
