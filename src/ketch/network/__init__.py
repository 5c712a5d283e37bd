"""Container networking: bridge networks, published ports, container DNS.

`NetworkService` does the work; the port grammar and the hosts/resolv.conf renderers
are pure functions usable without it. Importing this package costs nothing: each name
below loads its module on first use (a submodule such as `ketch.network.lookup` is
imported without the port grammar, the file renderers, `ipaddress` and `pathlib`).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.network.config import NetworkConfig
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
    from ketch.network.service import NetworkService

__all__ = [
    "Endpoint", "Network", "NetworkAttachment", "NetworkConfig", "NetworkService",
    "PortBinding", "format_port_lines", "format_ports", "parse_expose", "parse_publish",
    "parse_publish_all", "port_map", "publish_all", "render_hosts", "render_resolv_conf",
]


_HOMES = {
    "Endpoint": "models", "Network": "models", "NetworkAttachment": "models",
    "PortBinding": "models", "NetworkConfig": "config", "NetworkService": "service",
    "render_hosts": "files", "render_resolv_conf": "files",
    **dict.fromkeys(("format_port_lines", "format_ports", "parse_expose", "parse_publish",
                     "parse_publish_all", "port_map", "publish_all"), "ports"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(name)
    module = __import__(f"ketch.network.{home}", fromlist=[name])
    return getattr(module, name)
