"""`ketch network ...`: create, ls, inspect, rm, connect, disconnect, prune."""

from __future__ import annotations

import sys

from ketch.cli.base import (
    Registry,
    engine,
    format_each,
    inspect_each,
    out,
    parse_filters,
)
from ketch.cli.flags import Namespace, Parser
from ketch.errors import InvalidArgument, KetchError

registry = Registry()


@registry.command("create", "[OPTIONS] NETWORK", "Create a network")
def _create(p: Parser) -> None:
    p.add_argument("name", metavar="NETWORK")
    p.add_argument("--attachable", action="store_true",
                   help="Enable manual container attachment")
    p.add_argument("--aux-address", action="append", default=[], metavar="map",
                   help="Auxiliary IPv4 or IPv6 addresses used by Network driver")
    p.add_argument("--config-from", metavar="string",
                   help="The network from which to copy the configuration")
    p.add_argument("--config-only", action="store_true",
                   help="Create a configuration only network")
    p.add_argument("-d", "--driver", default="bridge", metavar="string",
                   help="Driver to manage the Network (default \"bridge\")")
    p.add_argument("--gateway", action="append", default=[], metavar="strings",
                   help="IPv4 or IPv6 Gateway for the master subnet")
    p.add_argument("--ingress", action="store_true",
                   help="Create swarm routing-mesh network")
    p.add_argument("--internal", action="store_true",
                   help="Restrict external access to the network")
    p.add_argument("--ip-range", action="append", default=[], metavar="strings",
                   help="Allocate container ip from a sub-range")
    p.add_argument("--ipam-driver", default="default", metavar="string",
                   help="IP Address Management Driver (default \"default\")")
    p.add_argument("--ipam-opt", action="append", default=[], metavar="map",
                   help="Set IPAM driver specific options")
    p.add_argument("--ipv6", action="store_true", help="Enable IPv6 networking")
    p.add_argument("--label", action="append", default=[], metavar="list",
                   help="Set metadata on a network")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="map",
                   help="Set driver specific options")
    p.add_argument("--scope", default="local", metavar="string",
                   help="Control the network's scope")
    p.add_argument("--subnet", action="append", default=[], metavar="strings",
                   help="Subnet in CIDR format that represents a network segment")


def _map(values: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not eq or not k:
            raise InvalidArgument(f'invalid argument "{v}" for "{flag}" flag: invalid key'
                                  " value pair format")
        out[k] = val
    return out


def _one(values: list[str], what: str) -> str | None:
    if len(values) > 1:
        raise InvalidArgument(f"ketch networks have one subnet of each IP version: more"
                              f" than one {what} given")
    return values[0] if values else None


@_create.handler
def create(ns: Namespace) -> None:
    labels = dict((lab.split("=", 1) + [""])[:2] for lab in ns.label)
    v6 = [s for s in ns.subnet if ":" in s]
    gw6 = [g for g in ns.gateway if ":" in g]
    net = engine().networks.create_network(
        ns.name, subnet=_one([s for s in ns.subnet if ":" not in s], "IPv4 --subnet"),
        gateway=_one([g for g in ns.gateway if ":" not in g], "IPv4 --gateway"),
        subnet6=_one(v6, "IPv6 --subnet"), gateway6=_one(gw6, "IPv6 --gateway"),
        internal=ns.internal, driver=ns.driver, labels=labels,
        ip_range=_one(ns.ip_range, "--ip-range"),
        aux_addresses=_map(ns.aux_address, "--aux-address"),
        options=_map(ns.opt, "-o, --opt"), attachable=ns.attachable,
        ipam_driver=ns.ipam_driver, ipam_options=_map(ns.ipam_opt, "--ipam-opt"),
        ipv6=ns.ipv6, scope=ns.scope, config_only=ns.config_only,
        config_from=ns.config_from, ingress=ns.ingress)
    out(net.id)


@registry.command("ls", "[OPTIONS]", "List networks", aliases=("list",))
def _ls(p: Parser) -> None:
    p.add_argument("-f", "--filter", action="append", default=[], metavar="filter",
                   help="Provide filter values (e.g. \"driver=bridge\")")
    p.add_argument("--format", metavar="string", help="Format output using a custom template")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")


@_ls.handler
def ls(ns: Namespace) -> None:
    from ketch.fmt.gotemplate import render_table
    from ketch.fmt.table import labels_column
    from ketch.fmt.units import go_time

    filters = parse_filters(ns.filter)
    rows, labels = [], []
    for n in engine().networks.list_networks(filters):
        rows.append({"ID": n.id if ns.no_trunc else n.id[:12], "Name": n.name,
                     "Driver": n.driver, "Scope": "local",
                     "Internal": str(n.internal).lower(), "IPv6": str(n.ipv6).lower(),
                     "Labels": labels_column(n.labels),
                     "CreatedAt": go_time(n.created)})
        labels.append(n.labels)
    if ns.quiet:
        for r in rows:
            out(r["ID"])
        return
    if ns.format == "json":
        format_each("json", rows)
        return
    fmt = ns.format or "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
    sys.stdout.write(render_table(fmt, rows, {"ID": "NETWORK ID", "Name": "NAME",
                                              "Driver": "DRIVER", "Scope": "SCOPE",
                                              "Internal": "INTERNAL", "IPv6": "IPV6"},
                                  go_type="*network.networkContext",
                                  fields={"Labels": "LABELS", "CreatedAt": "CREATED AT"},
                                  labels=labels))


@registry.command("inspect", "[OPTIONS] NETWORK [NETWORK...]",
                  "Display detailed information on one or more networks")
def _inspect(p: Parser) -> None:
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.add_argument("-f", "--format", metavar="string",
                   help="Format output using a custom template")
    # Docker's verbose view adds a swarm network's services; a local network has none
    p.add_argument("-v", "--verbose", action="store_true",
                   help="Verbose output for diagnostics")


@_inspect.handler
def inspect(ns: Namespace) -> int:
    return inspect_each(ns.networks, engine().network_inspect, ns.format)


@registry.command("rm", "NETWORK [NETWORK...]", "Remove one or more networks",
                  aliases=("remove",))
def _rm(p: Parser) -> None:
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.add_argument("-f", "--force", action="store_true",
                   help="Do not error if the network does not exist")


@_rm.handler
def rm(ns: Namespace) -> int:
    from ketch.errors import NotFound

    rc = 0
    for name in ns.networks:
        try:
            engine().networks.remove_network(name)
            out(name)
        except NotFound as err:
            if not ns.force:
                sys.stderr.write(f"Error: {err.message}\n")
                rc = 1
        except KetchError as err:
            sys.stderr.write(f"Error: {err.message}\n")
            rc = 1
    return rc


@registry.command("connect", "[OPTIONS] NETWORK CONTAINER", "Connect a container to a"
                  " network")
def _connect(p: Parser) -> None:
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("--alias", action="append", default=[], metavar="strings",
                   help="Add network-scoped alias for the container")
    p.add_argument("--ip", metavar="string", help="IPv4 address (e.g., \"172.30.100.104\")")
    p.add_argument("--ip6", metavar="string", help="IPv6 address (e.g., \"2001:db8::33\")")


@_connect.handler
def connect(ns: Namespace) -> None:
    engine().network_connect(ns.network, ns.container, aliases=ns.alias, ip=ns.ip,
                             ip6=ns.ip6)


@registry.command("disconnect", "[OPTIONS] NETWORK CONTAINER",
                  "Disconnect a container from a network")
def _disconnect(p: Parser) -> None:
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the container to disconnect from a network")


@_disconnect.handler
def disconnect(ns: Namespace) -> None:
    engine().network_disconnect(ns.network, ns.container)


@registry.command("prune", "[OPTIONS]", "Remove all unused networks")
def _prune(p: Parser) -> None:
    p.add_argument("--filter", action="append", default=[], metavar="filter",
                   help="Provide filter values (e.g. \"label=<key>=<value>\")")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")


@_prune.handler
def prune(ns: Namespace) -> None:
    from ketch.cli.base import confirm

    if not ns.force and not confirm("WARNING! This will remove all custom networks not used"
                                    " by at least one container.\nAre you sure you want to"
                                    " continue?"):
        return
    removed = engine().networks.prune_networks(parse_filters(ns.filter))
    if removed:
        out("Deleted Networks:")
        for name in removed:
            out(name)
