"""The /etc/hosts and /etc/resolv.conf a container gets (the Engine bind-mounts them).

Docker's rules: on bridge networks the container's resolv.conf copies the host's
search and options lines and its nameservers minus loopback ones (127.0.0.53 means
nothing inside another network namespace); if no nameserver is left it falls back to
Google's public resolvers. On user-defined networks the only nameserver is the
network's DNS service, with `ndots:0` so a bare container name is tried as-is first.
With `--network host` the host's files are used unchanged.
"""

from __future__ import annotations

from ketch.errors import InvalidArgument
from ketch.fdio import read_text

# Annotations only; ipaddress on first use: a container's start renders these files
# (pathlib, collections and ipaddress cost it milliseconds of imports).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from _typeshed import StrPath

    from ketch.network.models import NetworkAttachment

FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")

HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def parse_add_host(spec: str) -> tuple[str, str]:
    """`--add-host name:ip` (or `name=ip`); the IP may be `host-gateway`."""
    sep = "=" if "=" in spec else ":"
    name, _, ip = spec.partition(sep)
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if not name or not ip:
        raise InvalidArgument(f"bad format for add-host: {spec!r}")
    if ip != "host-gateway":
        import ipaddress

        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid IP address in add-host: {ip!r}") from None
    return name, ip


def render_hosts(attachment: NetworkAttachment, hostname: str = "",
                 extra_hosts: Iterable[str | tuple[str, str]] = (), domainname: str = "",
                 host_gateway: str = "", host_hosts: StrPath = "/etc/hosts") -> str:
    """The container's /etc/hosts: localhost lines, `--add-host` entries, then the
    container's own address under its hostname (Docker's order)."""
    gateway = host_gateway or (attachment.primary.gateway if attachment.primary else "")
    extra_lines = []
    for entry in extra_hosts:
        name, ip = parse_add_host(entry) if isinstance(entry, str) else entry
        if ip == "host-gateway":
            if not gateway:
                raise InvalidArgument("unable to derive the IP value for host-gateway")
            ip = gateway
        extra_lines.append(f"{ip}\t{name}\n")
    if attachment.mode == "host":
        try:
            base = read_text(host_hosts)
        except OSError:
            base = HOSTS_HEADER
        if base and not base.endswith("\n"):
            base += "\n"
        return base + "".join(extra_lines)
    out = HOSTS_HEADER + "".join(extra_lines)
    hostname = hostname or attachment.hostname
    if hostname:
        names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
        for ep in attachment.networks.values():
            out += f"{ep.ip}\t{names}\n"
    return out


def _is_loopback(server: str) -> bool:
    from ketch.network.ports import is_dotted_quad

    address = server.split("%", 1)[0]
    if is_dotted_quad(address):
        return address.startswith("127.")
    import ipaddress

    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf."""
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            search = fields[1:]
        elif fields[0] == "options":
            options.extend(fields[1:])
    return servers, search, options


def host_nameservers(resolv_conf: StrPath = "/etc/resolv.conf") -> list[str]:
    try:
        return parse_resolv_conf(read_text(resolv_conf))[0]
    except OSError:
        return []


def render_resolv_conf(attachment: NetworkAttachment, dns: Sequence[str] = (),
                       dns_search: Sequence[str] = (), dns_options: Sequence[str] = (),
                       host_resolv_conf: StrPath = "/etc/resolv.conf") -> str:
    try:
        host_text = read_text(host_resolv_conf)
    except OSError:
        host_text = ""
    if attachment.mode == "host" and not (dns or dns_search or dns_options):
        return host_text
    host_servers, host_search, host_options = parse_resolv_conf(host_text)
    search = [d.strip(" ") for d in dns_search] or list(attachment.dns_search) or host_search
    if search == ["."]:  # docker's --dns-search .: no search domains at all
        search = []
    options = list(dns_options) or host_options
    if attachment.dns_servers:
        # the network's DNS service forwards to --dns (or the host's servers) itself
        servers = list(attachment.dns_servers)
        options = [o for o in options if not o.startswith("ndots:")] + ["ndots:0"]
    elif dns:
        servers = [s.strip() for s in dns]
    elif attachment.mode == "host":
        servers = host_servers
    else:
        servers = [s for s in host_servers if not _is_loopback(s)]
        if not servers:
            servers = list(FALLBACK_NAMESERVERS)
    lines = [f"nameserver {s}" for s in servers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(dict.fromkeys(options)))
    return "\n".join(lines) + "\n"
