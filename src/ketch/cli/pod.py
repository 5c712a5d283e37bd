"""`ketch pod ...`: create, ps, inspect, start, stop, restart, kill, pause, unpause, rm,
prune, logs, top: Podman's pod commands, its columns and its exit codes (125 for an
error of the command itself)."""

from __future__ import annotations

import sys
import time

from ketch.cli.base import Registry, engine, inspect_each, out, parse_filters
from ketch.cli.flags import REMAINDER, Namespace, Parser
from ketch.errors import KetchError

registry = Registry()

POD_HEADERS = {"Id": "POD ID", "Name": "NAME", "Status": "STATUS", "Created": "CREATED",
               "InfraId": "INFRA ID", "NumberOfContainers": "# OF CONTAINERS",
               "Labels": "LABELS", "Networks": "NETWORKS"}
POD_COLUMNS = ["Id", "Name", "Status", "Created", "InfraId", "NumberOfContainers"]



def _each(names: list[str], fn, *, echo_id: bool = True) -> int:
    rc = 0
    for n in names:
        try:
            pod = fn(n)
            if echo_id:
                out(pod.id if hasattr(pod, "id") else str(pod))
        except KetchError as e:
            sys.stderr.write(f"Error: {e.message}\n")
            rc = 125
    return rc


@registry.command("create", "[OPTIONS] [NAME]", "Create a new empty pod", error_exit=125)
def _create(p: Parser) -> None:
    p.add_argument("pod_name", nargs="?", metavar="NAME")
    p.add_argument("--add-host", action="append", default=[], metavar="host:ip",
                   help="Add a custom host-to-IP mapping (host:ip)")
    p.add_argument("--hostname", metavar="string", help="Set the pod's hostname")
    p.add_argument("-l", "--label", action="append", default=[], metavar="list",
                   help="Set metadata on pod (default [])")
    p.add_argument("-n", "--name", metavar="string", help="Assign a name to the pod")
    p.add_argument("--network", "--net", metavar="string",
                   help="Connect the pod to a network")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="list",
                   help="Publish a container's port, or a range of ports, to the host")


@_create.handler
def create(ns: Namespace) -> None:
    from ketch.errors import InvalidArgument

    if ns.name and ns.pod_name and ns.name != ns.pod_name:
        raise InvalidArgument("cannot specify the pod name both as --name and as an"
                              " argument")
    labels = {}
    for lab in ns.label:
        k, _, v = lab.partition("=")
        labels[k] = v
    for h in ns.add_host:
        if ":" not in h.strip(":"):
            raise InvalidArgument(f"invalid argument \"{h}\" for \"--add-host\" flag: invalid"
                                  " IP address: expected HOST:IP")
    pod = engine().pod_create(ns.name or ns.pod_name, publish=ns.publish,
                              network=ns.network, hostname=ns.hostname,
                              add_hosts=ns.add_host, labels=labels)
    out(pod.id)


@registry.command("ps", "[OPTIONS]", "List pods", aliases=("ls", "list"), error_exit=125)
def _ps(p: Parser) -> None:
    p.add_argument("-f", "--filter", action="append", default=[], metavar="stringArray",
                   help="Filter output based on conditions given")
    p.add_argument("--format", metavar="string", help="Pretty-print pods to JSON or using a"
                   " Go template")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate pod and"
                   " container IDs")
    p.add_argument("-q", "--quiet", action="store_true", help="Print the numeric IDs of the"
                   " pods only")


@_ps.handler
def ps(ns: Namespace) -> None:
    from ketch.fmt.table import labels_column
    from ketch.fmt.units import time_ago

    pods = engine().pod_list(parse_filters(ns.filter))
    if ns.quiet:
        for p in pods:
            out(p["Id"] if ns.no_trunc else p["Id"][:12])
        return
    if ns.format == "json":
        import json

        sys.stdout.write(json.dumps(pods, indent=4) + "\n")
        return
    now = time.time()
    rows = []
    for p in pods:
        rows.append({
            "Id": p["Id"] if ns.no_trunc else p["Id"][:12], "Name": p["Name"],
            "Status": p["Status"], "Created": time_ago(p["Created"], now),
            "InfraId": p["InfraId"] if ns.no_trunc else p["InfraId"][:12],
            "NumberOfContainers": str(len(p["Containers"])),
            "Labels": labels_column(p["Labels"]),
            "Networks": ",".join(p["Networks"]),
        })
    if ns.format:
        from ketch.fmt.gotemplate import render_table

        sys.stdout.write(render_table(ns.format, rows, POD_HEADERS,
                                      go_type="*entities.ListPodsReport"))
        return
    from ketch.fmt.table import tabulate

    sys.stdout.write(tabulate([[POD_HEADERS[k] for k in POD_COLUMNS]]
                              + [[r[k] for k in POD_COLUMNS] for r in rows]))


@registry.command("inspect", "[OPTIONS] POD [POD...]",
                  "Display detailed information on one or more pods", error_exit=125)
def _inspect(p: Parser) -> None:
    p.add_argument("pods", nargs="+", metavar="POD")
    p.add_argument("-f", "--format", metavar="string",
                   help="Format the output using the given Go template")


@_inspect.handler
def inspect(ns: Namespace) -> int:
    rc = inspect_each(ns.pods, engine().pod_inspect, ns.format)
    return 125 if rc else 0


def _names(p: Parser) -> None:
    p.add_argument("pods", nargs="+", metavar="POD")


@registry.command("start", "POD [POD...]", "Start one or more pods", error_exit=125)
def _start(p: Parser) -> None:
    _names(p)


@_start.handler
def start(ns: Namespace) -> int:
    return _each(ns.pods, engine().pod_start)


@registry.command("stop", "[OPTIONS] POD [POD...]", "Stop one or more pods", error_exit=125)
def _stop(p: Parser) -> None:
    _names(p)
    p.add_argument("-t", "--time", type=int, metavar="int",
                   help="Seconds to wait for the containers to stop before killing them")


@_stop.handler
def stop(ns: Namespace) -> int:
    return _each(ns.pods, lambda n: engine().pod_stop(n, timeout=ns.time))


@registry.command("restart", "POD [POD...]", "Restart one or more pods", error_exit=125)
def _restart(p: Parser) -> None:
    _names(p)


@_restart.handler
def restart(ns: Namespace) -> int:
    return _each(ns.pods, engine().pod_restart)


@registry.command("kill", "[OPTIONS] POD [POD...]",
                  "Send the specified signal or SIGKILL to containers in pod", error_exit=125)
def _kill(p: Parser) -> None:
    _names(p)
    p.add_argument("-s", "--signal", default="KILL", metavar="string",
                   help="Signal to send to the containers in the pod (default \"KILL\")")


@_kill.handler
def kill(ns: Namespace) -> int:
    return _each(ns.pods, lambda n: engine().pod_kill(n, ns.signal))


@registry.command("pause", "POD [POD...]", "Pause one or more pods", error_exit=125)
def _pause(p: Parser) -> None:
    _names(p)


@_pause.handler
def pause(ns: Namespace) -> int:
    return _each(ns.pods, engine().pod_pause)


@registry.command("unpause", "POD [POD...]", "Unpause one or more pods", error_exit=125)
def _unpause(p: Parser) -> None:
    _names(p)


@_unpause.handler
def unpause(ns: Namespace) -> int:
    return _each(ns.pods, engine().pod_unpause)


@registry.command("rm", "[OPTIONS] POD [POD...]", "Remove one or more stopped pods and"
                  " containers", error_exit=125)
def _rm(p: Parser) -> None:
    _names(p)
    p.add_argument("-f", "--force", action="store_true", help="Stop running containers and"
                   " delete all stopped containers before removal of pod")
    p.add_argument("-t", "--time", type=int, metavar="int",
                   help="Seconds to wait for pod stop before killing the containers")


@_rm.handler
def rm(ns: Namespace) -> int:
    return _each(ns.pods, lambda n: engine().pod_rm(n, force=ns.force, timeout=ns.time))


@registry.command("prune", "[OPTIONS]", "Remove all stopped pods and their containers",
                  error_exit=125)
def _prune(p: Parser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")


@_prune.handler
def prune(ns: Namespace) -> None:
    from ketch.cli.base import confirm

    if not ns.force and not confirm("WARNING! This will remove all stopped/exited pods..\n"
                                    "Are you sure you want to continue?"):
        return
    for pid in engine().pod_prune():
        out(pid)


@registry.command("logs", "[OPTIONS] POD", "Fetch logs for pod with one or more containers",
                  error_exit=125)
def _logs(p: Parser) -> None:
    p.add_argument("pod", metavar="POD")
    p.add_argument("-c", "--container", metavar="string",
                   help="Filter logs by container name or id which belongs to pod")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("--names", action="store_true",
                   help="Output container names instead of container IDs in the log")
    p.add_argument("--since", metavar="string", help="Show logs since TIMESTAMP")
    p.add_argument("--tail", default="-1", metavar="int",
                   help="Output the specified number of LINES at the end of the logs")
    p.add_argument("-t", "--timestamps", action="store_true", help="Output the timestamps in"
                   " the log")
    p.add_argument("--until", metavar="string", help="Show logs until TIMESTAMP")


@_logs.handler
def logs(ns: Namespace) -> None:
    from ketch.errors import InvalidArgument
    from ketch.fmt.units import parse_timestamp

    now = time.time()
    try:
        tail: int | None = int(ns.tail)
    except ValueError:
        raise InvalidArgument(f"invalid value for --tail: {ns.tail!r}: expected a number") from None
    if tail is not None and tail < 0:
        tail = None
    since = parse_timestamp(ns.since, now) if ns.since else None
    until = parse_timestamp(ns.until, now) if ns.until else None
    starts: dict[tuple[str, str], bool] = {}
    for rec, stream, data in engine().pod_logs(ns.pod, container=ns.container,
                                               follow=ns.follow, tail=tail, since=since,
                                               until=until, timestamps=ns.timestamps):
        # as Podman's logs of several containers: each line starts with who wrote it
        prefix = ((rec.name if ns.names else rec.id[:12]) + " ").encode()
        key = (rec.id, stream)
        buf = bytearray()
        for line in data.splitlines(keepends=True):
            if starts.get(key, True):
                buf += prefix
            buf += line
            starts[key] = line.endswith(b"\n")
        target = sys.stderr.buffer if stream == "stderr" else sys.stdout.buffer
        target.write(bytes(buf))
        if ns.follow:
            target.flush()
    sys.stdout.flush()


@registry.command("top", "POD [FORMAT-DESCRIPTORS|ARGS...]",
                  "Display the running processes of containers in a pod", error_exit=125)
def _top(p: Parser) -> None:
    p.add_argument("pod", metavar="POD")
    p.add_argument("ps_args", nargs=REMAINDER)


@_top.handler
def top(ns: Namespace) -> None:
    from ketch.fmt.tabwriter import tabwrite

    titles, procs = engine().pod_top(ns.pod, ns.ps_args)
    sys.stdout.write(tabwrite([titles, *procs]))

