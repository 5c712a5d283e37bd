"""`ketch volume ...`: create, ls, inspect, rm and prune named and anonymous volumes."""

from __future__ import annotations

import sys

from ketch.cli.base import (
    Registry,
    add_filter,
    engine,
    format_each,
    inspect_each,
    out,
    parse_filters,
)
from ketch.cli.flags import Namespace, Parser
from ketch.errors import InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.containers.volumes import VolumeStore

registry = Registry()

VOLUME_HEADERS = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
                  "Scope": "SCOPE", "Labels": "LABELS"}


def _store() -> VolumeStore:
    return engine().volumes


def _kv(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        k, _, v = item.partition("=")
        if not k:
            raise InvalidArgument(f"invalid {what}: {item!r}")
        out[k] = v
    return out


@registry.command("create", "[OPTIONS] [VOLUME]", "Create a volume")
def _create(p: Parser) -> None:
    p.add_argument("name", nargs="?", metavar="VOLUME")
    p.add_argument("-d", "--driver", default="local", metavar="string",
                   help='Specify volume driver name (default "local")')
    p.add_argument("--label", action="append", default=[], metavar="list",
                   help="Set metadata for a volume")
    p.add_argument("--name", dest="name_flag", metavar="string", help="Specify volume name")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="map",
                   help="Set driver specific options")


@_create.handler
def create(ns: Namespace) -> None:
    if ns.name and ns.name_flag and ns.name != ns.name_flag:
        raise InvalidArgument("conflicting options: cannot specify a volume-name through"
                              " both --name and as a positional arg")
    v = _store().create(ns.name or ns.name_flag, labels=_kv(ns.label, "label"),
                        options=_kv(ns.opt, "option"), driver=ns.driver)
    out(v["Name"])


@registry.command("ls", "[OPTIONS]", "List volumes", aliases=("list",))
def _ls(p: Parser) -> None:
    add_filter(p)
    p.add_argument("--format", metavar="string", help="Format output using a custom template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")


@_ls.handler
def ls(ns: Namespace) -> None:
    from ketch.fmt.gotemplate import render_table
    from ketch.fmt.table import labels_column

    vols = _store().list(parse_filters(ns.filter))
    if ns.quiet:
        for v in vols:
            out(v["Name"])
        return
    # docker's volume context, its fields in name order ({{json .}}): what a listing does
    # not measure (links, size) and what only cluster volumes have are "N/A"
    rows = [{"Availability": "N/A", "Driver": v["Driver"], "Group": "N/A",
             "Labels": labels_column(v["Labels"]),
             "Links": "N/A", "Mountpoint": v["Mountpoint"], "Name": v["Name"],
             "Scope": v["Scope"], "Size": "N/A", "Status": "N/A"} for v in vols]
    fmt = ns.format
    if fmt == "json":
        format_each("json", rows)
        return
    if not fmt or fmt == "table":
        fmt = "table {{.Driver}}\t{{.Name}}"
    sys.stdout.write(render_table(fmt, rows, VOLUME_HEADERS, go_type="*formatter.volumeContext",
                                  fields={"Links": "LINKS", "Size": "SIZE", "Group": "GROUP",
                                          "Availability": "AVAILABILITY", "Status": "STATUS"},
                                  labels=[v["Labels"] or {} for v in vols]))


@registry.command("inspect", "[OPTIONS] VOLUME [VOLUME...]",
                  "Display detailed information on one or more volumes")
def _inspect(p: Parser) -> None:
    p.add_argument("volumes", nargs="+", metavar="VOLUME")
    p.add_argument("-f", "--format", metavar="string",
                   help="Format output using a custom template")


@_inspect.handler
def inspect(ns: Namespace) -> int:

    store = _store()
    return inspect_each(ns.volumes, store.inspect, ns.format, go_type="volume.Volume")


@registry.command("rm", "[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes",
                  aliases=("remove",))
def _rm(p: Parser) -> None:
    p.add_argument("volumes", nargs="+", metavar="VOLUME")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the removal of one or more volumes")


@_rm.handler
def rm(ns: Namespace) -> int:
    store = _store()
    rc = 0
    for name in ns.volumes:
        try:
            # -f only forgives a missing volume; Docker never removes one in use
            store.remove(name, missing_ok=ns.force)
            out(name)
        except KetchError as e:
            sys.stderr.write(f"Error: {e.message}\n")
            rc = 1
    return rc


@registry.command("prune", "[OPTIONS]", "Remove unused local volumes")
def _prune(p: Parser) -> None:
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused volumes, not just anonymous ones")
    p.add_argument("--filter", action="append", default=[], metavar="filter",
                   help="Provide filter values (e.g. \"label=<label>\")")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")


@_prune.handler
def prune(ns: Namespace) -> None:
    from ketch.cli.base import confirm
    from ketch.fmt.units import human_size

    filters = parse_filters(ns.filter)
    everything = ns.all or any(v.lower() in ("true", "1") for v in filters.get("all", []))
    if not ns.force:
        warning = ("WARNING! This will remove all local volumes not used by at least one"
                   " container." if everything else
                   "WARNING! This will remove anonymous local volumes not used by at least"
                   " one container.")
        if not confirm(warning + "\nAre you sure you want to continue?"):
            return
    removed, space = _store().prune(all=ns.all, filters=filters)
    if removed:
        out("Deleted Volumes:")
        for name in removed:
            out(name)
        out("")
    out(f"Total reclaimed space: {human_size(space)}")
