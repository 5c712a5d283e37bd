"""`ketch system ...`, version, info, inspect."""

from __future__ import annotations

import os
import sys

from ketch.cli.base import (
    Registry,
    check_args,
    engine,
    format_each,
    format_one,
    out,
    positional,
    print_json,
)
from ketch.cli.flags import Namespace, Parser, exits
from ketch.errors import InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

registry = Registry()


@registry.command("version", "[OPTIONS]", "Show the ketch version information")
def _version(p: Parser) -> None:
    p.add_argument("-f", "--format", metavar="string",
                   help="Format output using a custom template")


@_version.handler
def version(ns: Namespace) -> int | None:
    from ketch import __version__

    v = engine().version()
    data = {"Client": {"Version": __version__, "ApiVersion": v["ApiVersion"],
                       "GoVersion": v["GoVersion"], "Os": "linux", "Arch": v["Arch"]},
            "Server": v}
    if ns.format:
        return format_one(ns.format, data, name="version", go_type="system.versionInfo")
    out(f"Client:\n Version:           {__version__}\n API version:       {v['ApiVersion']}\n"
        f" Python version:    {v['GoVersion'].removeprefix('python')}\n OS/Arch:           linux/"
        f"{v['Arch']}\n\nServer: ketch (daemonless)\n Engine:\n  Version:          "
        f"{v['Version']}\n  API version:      {v['ApiVersion']} (minimum version"
        f" {v['MinAPIVersion']})\n  OS/Arch:          linux/{v['Arch']}\n"
        f"  Kernel version:   {v['KernelVersion']}")
    return None


@registry.command("info", "[OPTIONS]", "Display system-wide information")
def _info(p: Parser) -> None:
    p.add_argument("-f", "--format", metavar="string",
                   help="Format output using a custom template")


@_info.handler
def info(ns: Namespace) -> int | None:
    i = engine().info()
    if ns.format:
        return format_one(ns.format, i, name="", go_type="system.dockerInfo")
    lines = [
        "Server:",
        f" Containers: {i['Containers']}",
        f"  Running: {i['ContainersRunning']}",
        f"  Paused: {i['ContainersPaused']}",
        f"  Stopped: {i['ContainersStopped']}",
        f" Images: {i['Images']}",
        f" Server Version: {i['ServerVersion']}",
        f" Storage Driver: {i['Driver']}",
        f"  Backing Filesystem: {i['DriverStatus'][0][1]}",
        f" Logging Driver: {i['LoggingDriver']}",
        f" Cgroup Driver: {i['CgroupDriver']}",
        f" Cgroup Version: {i['CgroupVersion']}",
        " Plugins:",
        *(f"  {kind}: {' '.join(names)}" for kind, names in i["Plugins"].items() if names),
        " Runtimes: " + " ".join(i["Runtimes"]),
        f" Default Runtime: {i['DefaultRuntime']}",
        f" Init Binary: {i['InitBinary']}",
        f" runc version: {i['RuncCommit']['ID']}",
        *_security_lines(i.get("SecurityOptions") or []),
        f" Kernel Version: {i['KernelVersion']}",
        f" Operating System: {i['OperatingSystem']}",
        f" OSType: {i['OSType']}",
        f" Architecture: {i['Architecture']}",
        f" CPUs: {i['NCPU']}",
        f" Total Memory: {i['MemTotal'] / (1 << 30):.2f}GiB",
        f" Name: {i['Name']}",
        f" Ketch Root Dir: {i['DockerRootDir']}",
        " Daemon: none (daemonless)",
    ]
    out("\n".join(lines))
    return None


def _security_lines(options: list[str]) -> list[str]:
    """docker info's layout: `name=seccomp,profile=builtin` → "seccomp", "Profile: builtin"."""
    if not options:
        return []
    lines = [" Security Options:"]
    for opt in options:
        fields = dict(kv.partition("=")[::2] for kv in opt.split(","))
        lines.append(f"  {fields.pop('name', opt)}")
        lines.extend(f"   {k.capitalize()}: {v}" for k, v in fields.items())
    return lines


@registry.command("df", "[OPTIONS]", "Show ketch disk usage")
def _df(p: Parser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="Show detailed information"
                   " on space usage")
    p.add_argument("--format", metavar="string", help="Format output using a custom template")


@_df.handler
def df(ns: Namespace) -> None:
    from ketch.fmt.gotemplate import render_table
    from ketch.fmt.units import human_size

    d = engine().system_df()
    images = d["Images"]
    active_images = [i for i in images if i["Containers"] > 0]
    img_size = d["LayersSize"]
    # docker/cli's disk-usage formatter: what images in use hold exclusively is not
    # reclaimable; everything else is.
    used = sum(i["Size"] - i["SharedSize"] for i in images
               if i["Containers"] > 0 and i["SharedSize"] >= 0)
    conts = d["Containers"]
    running = [c for c in conts if c.get("State") == "running"]
    c_size = sum(c.get("SizeRw", 0) for c in conts)
    c_reclaim = sum(c.get("SizeRw", 0) for c in conts if c.get("State") != "running")

    vols = d["Volumes"]
    v_size = sum(v["UsageData"]["Size"] for v in vols)
    v_reclaim = sum(v["UsageData"]["Size"] for v in vols if v["UsageData"]["RefCount"] == 0)

    def pct(part: int, whole: int) -> str:
        if whole <= 0:
            return human_size(part)
        return f"{human_size(part)} ({part * 100 // whole}%)"

    rows = [
        {"Type": "Images", "TotalCount": str(len(images)), "Active": str(len(active_images)),
         "Size": human_size(img_size), "Reclaimable": pct(img_size - used, img_size)},
        {"Type": "Containers", "TotalCount": str(len(conts)), "Active": str(len(running)),
         "Size": human_size(c_size), "Reclaimable": pct(c_reclaim, c_size)},
        {"Type": "Local Volumes", "TotalCount": str(len(vols)),
         "Active": str(sum(1 for v in vols if v["UsageData"]["RefCount"] > 0)),
         "Size": human_size(v_size), "Reclaimable": pct(v_reclaim, v_size)},
        {"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B",
         "Reclaimable": "0B"},
    ]
    if ns.verbose:  # as docker: the verbose listing whatever --format says
        sys.stdout.write(_df_verbose(d))
        return
    if ns.format == "json":
        format_each("json", rows)
        return
    fmt = ns.format or ("table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t"
                        "{{.Reclaimable}}")
    # each row is a context of its own type in docker; the images row comes first, so a
    # field no row has fails there, in its type's words
    sys.stdout.write(render_table(fmt, rows, {
        "Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
        "Reclaimable": "RECLAIMABLE"}, go_type="*formatter.diskUsageImagesContext"))


def _df_verbose(d: dict[str, Any]) -> str:
    """docker/cli's verbose disk-usage listing: images, containers, volumes, build cache."""
    import time

    from ketch.fmt.table import tabulate
    from ketch.fmt.units import human_size, time_ago

    now = time.time()
    images = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE",
               "UNIQUE SIZE", "CONTAINERS"]]
    for i in d["Images"]:
        shared = i["SharedSize"] if i["SharedSize"] >= 0 else 0
        for tag in i["RepoTags"] or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            images.append([repo, t, i["Id"].removeprefix("sha256:")[:12],
                           time_ago(i["Created"], now), human_size(i["Size"], 3),
                           human_size(shared, 3), human_size(i["Size"] - shared, 3),
                           str(i["Containers"])])
    conts = [["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED",
              "STATUS", "NAMES"]]
    for c in d["Containers"]:
        cmd = c["Command"] if len(c["Command"]) <= 20 else c["Command"][:19] + "…"
        local = sum(1 for m in c.get("Mounts") or [] if m.get("Type") == "volume")
        conts.append([c["Id"][:12], c["Image"], f'"{cmd}"', str(local),
                      human_size(c.get("SizeRw", 0), 3), time_ago(c["Created"], now),
                      c["Status"], ",".join(n.lstrip("/") for n in c["Names"])])
    vols = [["VOLUME NAME", "LINKS", "SIZE"]]
    for v in d["Volumes"]:
        # (docker's volume table prints HumanSize: four digits, where the others have 3)
        vols.append([v["Name"], str(v["UsageData"]["RefCount"]),
                     human_size(v["UsageData"]["Size"])])
    cache = [["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"]]
    return ("Images space usage:\n\n" + tabulate(images) + "\nContainers space usage:\n\n"
            + tabulate(conts) + "\nLocal Volumes space usage:\n\n" + tabulate(vols)
            + "\nBuild cache usage: 0B\n\n" + tabulate(cache))


@registry.command("prune", "[OPTIONS]", "Remove unused data")
def _prune(p: Parser) -> None:
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused images not just dangling ones")
    p.add_argument("--filter", action="append", default=[], metavar="filter",
                   help="Provide filter values (e.g. 'label=<key>=<value>')")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--volumes", action="store_true", help="Prune anonymous volumes")


@_prune.handler
def prune(ns: Namespace) -> None:
    """docker/cli's system prune: stopped containers, unused networks, (anonymous
    volumes,) dangling or unused images, build cache; each part's report, one total."""
    from ketch.cli.base import confirm, parse_filters
    from ketch.fmt.units import human_size

    filters = parse_filters(ns.filter)
    if not ns.force:
        items = ["all stopped containers", "all networks not used by at least one container"]
        if ns.volumes:
            items.append("anonymous volumes not used by at least one container")
        items += (["all images without at least one container associated to them",
                   "all build cache"] if ns.all else
                  ["all dangling images", "all dangling build cache"])
        text = "WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items)
        if not confirm(text + "\nAre you sure you want to continue?"):
            return
    e = engine()
    space = 0

    def section(title: str, lines: list[str]) -> None:
        if lines:  # docker/cli: the part's lines, then a blank line
            sys.stdout.write(title + "\n" + "".join(f"{line}\n" for line in lines) + "\n")

    res = e.containers.prune(filters)
    space += res.space_reclaimed
    section("Deleted Containers:", list(res.deleted))
    section("Deleted Networks:", list(e.networks.prune_networks(filters)))
    if ns.volumes:
        removed, volume_space = e.volumes.prune(all=False, filters=filters)
        space += volume_space
        section("Deleted Volumes:", list(removed))
    report = e.images.prune(all=ns.all, filters=filters)
    space += report.space_reclaimed
    section("Deleted Images:", [f"{k.lower()}: {v}" for item in report.deleted
                                for k, v in item.items()])
    cache = e.build_prune(all=ns.all)
    space += cache.space_reclaimed
    section("Deleted build cache objects:", [v for item in cache.deleted
                                             for v in item.values()])
    out(f"Total reclaimed space: {human_size(space)}")


@registry.command("check", "[OPTIONS]",
                  "Find (and with --repair, finish or undo) what killed ketch commands left")
def _check(p: Parser) -> None:
    p.add_argument("-r", "--repair", action="store_true",
                   help="Repair what is found (roll interrupted operations back or forward)")


@_check.handler
def check(ns: Namespace) -> int:
    found = engine(recover=False).check(repair=ns.repair)
    for what, outcome in found:
        out(f"{outcome}: {what}")
    if not found:
        out("No problems found")
    return 1 if any(outcome != "repaired" for _what, outcome in found) else 0


@registry.command("inspect", "[OPTIONS] NAME|ID [NAME|ID...]",
                  "Return low-level information on ketch objects")
def _inspect(p: Parser) -> None:
    positional(p, "NAME|ID")
    p.add_argument("-f", "--format", metavar="string",
                   help="Format output using a custom template")
    p.add_argument("-s", "--size", action="store_true",
                   help="Display total file sizes if the type is container")
    p.add_argument("--type", metavar="string",
                   help="Return JSON for specified type (container, image, network, volume)")


@_inspect.handler
def inspect(ns: Namespace) -> int:
    from ketch.errors import NotFound

    types = ("container", "image", "network", "volume")
    if ns.type is not None and ns.type not in types:
        # the docker CLI's own check, in its words (no "Error:")
        sys.stderr.write(f'unknown type: "{ns.type}": must be one of '
                         + ", ".join(f'"{t}"' for t in types) + "\n")
        return 1
    e = engine()
    if ns.type in (None, "container"):
        # a container service that cannot be had (its state root runs containers under
        # another run root) is the command's error, not a miss of each name
        e.containers  # noqa: B018
    results = []
    rc = 0
    for name in check_args(ns, 1):
        found = None
        lookups = []
        if ns.type in (None, "container"):
            lookups.append(lambda n: e.containers.inspect(n, size=ns.size))
        # each service is built when its turn comes: a container found first needs
        # neither the image store nor the volumes
        if ns.type in (None, "image"):
            lookups.append(lambda n: e.images.inspect(n))
        if ns.type in (None, "network"):
            lookups.append(e.network_inspect)
        if ns.type in (None, "volume"):
            lookups.append(lambda n: e.volumes.inspect(n))
        missed: KetchError | None = None
        for look in lookups:
            try:
                found = look(name)
                break
            except NotFound as err:
                missed = err
                continue
            except KetchError as err:
                missed = err
                continue
        if found is None:
            # one type asked for: its own "not found"; else docker's "No such object"
            message = missed.message if ns.type and missed else f"No such object: {name}"
            sys.stderr.write(f"Error: {message}\n")
            rc = 1
        else:
            results.append(found)
    if ns.format:
        rc = format_each(ns.format, results) or rc
    else:
        print_json(results)
    return rc


@registry.command("events", "[OPTIONS]", "Get real time events from the server")
def _events(p: Parser) -> None:
    p.add_argument("-f", "--filter", action="append", default=[], metavar="filter",
                   help="Filter output based on conditions provided")
    p.add_argument("--format", metavar="string",
                   help="Format output using a custom template: 'json' or a Go template")
    p.add_argument("--since", metavar="string", help="Show all events created since timestamp")
    p.add_argument("--until", metavar="string", help="Stream events until this timestamp")


@_events.handler
def events(ns: Namespace) -> int | None:
    import time

    from ketch.cli.base import parse_filters
    from ketch.errors import InvalidArgument
    from ketch.fmt.units import parse_timestamp

    now = time.time()
    try:  # the docker CLI's own check, in its words (no "Error:"), exit 1
        for value in (ns.since, ns.until):
            if value:
                parse_timestamp(value, now)
    except InvalidArgument as e:
        sys.stderr.write(e.message + "\n")
        return 1
    stream = engine().events(since=ns.since, until=ns.until,
                             filters=parse_filters(ns.filter))
    render = _event_renderer(ns.format)
    try:
        for ev in stream:
            sys.stdout.write(render(ev) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 130  # Ctrl-C ends the stream, no message, 130: the docker CLI 28's exit
    return None


def _event_renderer(fmt: str | None) -> Callable[[dict[str, Any]], str]:
    from ketch.fmt import events as render

    if not fmt:
        return render.plain
    if fmt.strip() in ("json", "{{json .}}"):
        import json

        return lambda ev: json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
    from ketch.errors import KetchError
    from ketch.fmt.gotemplate import Template

    # as docker events: the template is tried on an empty message before any event is
    # read, and one that does not parse or reads a field a message lacks exits 64
    try:
        template = Template(fmt)
        template.execute(render.template_view({}))
    except KetchError as e:
        # docker's words for it: "Error parsing format: template: ..."
        raise exits(KetchError("Error parsing format: "
                               + e.message.removeprefix("template parsing error: "),
                               bare=True), 64) from None
    return lambda ev: template.execute(render.template_view(ev))


@registry.command("restart-policies", "[OPTIONS]",
                  "Start the containers whose restart policy wants them running (at boot)")
def _restart_policies(p: Parser) -> None:
    p.add_argument("--print-unit", action="store_true",
                   help="Print a systemd unit that runs this command at boot")


@_restart_policies.handler
def restart_policies(ns: Namespace) -> None:
    if ns.print_unit:
        sys.stdout.write(engine().restart_policies_unit())
        return
    for name in engine().restore_restart_policies():
        out(name)


@registry.command("service", "[OPTIONS] [URI]",
                  "Serve the Docker Engine API (default unix:///run/ketch/ketch.sock)")
def _service(p: Parser) -> None:
    p.add_argument("uri", nargs="?", metavar="URI")
    p.add_argument("-t", "--time", type=int, default=5, metavar="int",
                   help="Time until the service exits when idle, in seconds; 0 for"
                   " never (default 5)")


@_service.handler
def service(ns: Namespace) -> None:
    if ns.time < 0:
        raise InvalidArgument(f"invalid --time {ns.time}: must be 0 or more seconds")
    _become("ketch.api", ns.uri or "", str(ns.time))


def _become(package: str, *args: str) -> None:
    """Replace this process with a server's own program (`python -m PACKAGE ROOT RUN_ROOT
    ARGS...`), run with the interpreter and module path this one runs with: the CLI never
    loads the server's stack (HTTP, gRPC), and the long-running server keeps none of the
    CLI's short-lived-process tuning."""
    from ketch.launcher import python_command

    e = engine()
    argv = python_command(f"from {package}.__main__ import main; sys.exit(main())")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], [*argv, e.root_dir, e.run_root_dir, *args])


@registry.command("cri", "[OPTIONS]",
                  "Serve the Kubernetes CRI (default unix:///run/ketch/cri.sock)")
def _cri(p: Parser) -> None:
    p.add_argument("--listen", metavar="string", default="",
                   help="Socket to serve on (unix:///path)")
    p.add_argument("--stream-address", metavar="string", default="",
                   help="Address of the streaming server for exec, attach and"
                        " port-forward (default 127.0.0.1:0, a free port)")
    p.add_argument("--cni-conf-dir", metavar="string", default="",
                   help="Directory of the CNI network configuration for pod sandboxes"
                        " (default /etc/cni/net.d)")
    p.add_argument("--cni-bin-dir", metavar="string", default="",
                   help="Directories of the CNI plugins, colon-separated (default"
                        " /opt/cni/bin:/usr/lib/cni)")


@_cri.handler
def cri(ns: Namespace) -> None:
    _become("ketch.cri", ns.listen, ns.stream_address, ns.cni_conf_dir, ns.cni_bin_dir)
