"""`ketch container ...` and its shortcuts: run, create, start, stop, ps, logs, rm, ...

Size: the container commands' flag declarations (Docker's help text) and their thin
handlers; no behaviour lives here (the flag translation is cli/container_opts.py).
"""

from __future__ import annotations

import os
import sys
import time

from ketch.cli.base import (
    Registry,
    add_filter,
    engine,
    format_each,
    inspect_each,
    json_lines,
    out,
    parse_filters,
)
from ketch.cli.flags import REMAINDER, Namespace, Parser, count_error, exits
from ketch.errors import ImageNotFound, InvalidArgument, KetchError, os_words

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

registry = Registry()

PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedSince": "CREATED", "RunningFor": "CREATED", "CreatedAt": "CREATED AT",
              "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES", "State": "STATE",
              "Size": "SIZE", "Labels": "LABELS", "Mounts": "MOUNTS",
              "Networks": "NETWORKS", "Pod": "POD ID", "PodName": "PODNAME"}
PS_DEFAULT_COLUMNS = ["ID", "Image", "Command", "CreatedSince", "Status", "Ports", "Names"]


def _each(names: list[str], fn, *, echo: bool = True, summary: str = "",
          forgiven: type[KetchError] | None = None) -> int:
    """Apply `fn` to every name; print each name that worked, an error for each that not,
    and, with `summary`, a last line naming those that failed (docker's `start`). An
    error of the `forgiven` kind is reported but fails nothing (docker's `rm -f`)."""
    failed = []
    for n in names:
        try:
            fn(n)
            if echo:
                out(n)
        except KetchError as e:
            sys.stderr.write(f"Error: {e.message}\n")
            if forgiven is None or not isinstance(e, forgiven):
                failed.append(n)
    if failed and summary:
        sys.stderr.write(f"Error: {summary}: {', '.join(failed)}\n")
    return 1 if failed else 0


# -- run / create -------------------------------------------------------------------------
def _create_from_ns(ns: Namespace):
    from ketch.cli.container_opts import build_create_body

    body = build_create_body(ns)
    if ns.network == "host" and (ns.publish or ns.publish_all):
        sys.stderr.write("WARNING: Published ports are discarded when using host network"
                         " mode\n")
    if ns.pull not in ("missing", "always", "never"):
        raise InvalidArgument(f'invalid pull option: "{ns.pull}": must be one of "always",'
                              ' "missing" or "never"')
    cidfile = _open_cidfile(ns.cidfile) if ns.cidfile else None
    try:
        rec = _create_body(ns, body)
    except BaseException:
        if cidfile is not None:
            cidfile.close()
            try:
                os.unlink(ns.cidfile)
            except OSError:  # gone already: nothing to take back
                pass
        raise
    if cidfile is not None:
        with cidfile:
            cidfile.write(rec.id)
    return rec


def _open_cidfile(path: str) -> IO[str]:
    """docker's --cidfile: refused when the file exists, made before the container (so a
    file that cannot be made leaves no container), the ID written once it is created."""
    if os.path.exists(path):
        raise InvalidArgument(f"container ID file found, make sure the other container"
                              f" isn't running or delete {path}")
    try:
        return open(path, "x")
    except OSError as e:
        raise InvalidArgument(f"failed to create the container ID file: open {path}:"
                              f" {os_words(e)}") from None


def _create_body(ns: Namespace, body: dict[str, Any]):
    if ns.pull == "always":
        _pull_for_run(ns.image, ns.quiet, ns.platform)
    warnings: list[str] = []
    try:
        rec = engine().containers.create(body["Config"], body["HostConfig"], name=ns.name,
                                         networking_config=body["NetworkingConfig"],
                                         warnings=warnings, platform=ns.platform,
                                         pod=ns.pod)
    except ImageNotFound:
        if ns.pull != "missing" or _is_image_id(ns.image):
            raise
        # As the docker CLI does: say so, pull, and create again.
        sys.stderr.write(f"Unable to find image '{_with_default_tag(ns.image)}' locally\n")
        _pull_for_run(ns.image, ns.quiet, ns.platform)
        rec = engine().containers.create(body["Config"], body["HostConfig"], name=ns.name,
                                         networking_config=body["NetworkingConfig"],
                                         warnings=warnings, platform=ns.platform,
                                         pod=ns.pod)
    for w in warnings:
        sys.stderr.write(f"WARNING: {w}\n")
    return rec


def _is_image_id(name: str) -> bool:
    from ketch.reference import is_full_image_id

    return is_full_image_id(name)


def _with_default_tag(name: str) -> str:
    from ketch import reference

    try:
        return reference.parse(name).familiar()
    except KetchError:
        return name


def _pull_for_run(name: str, quiet: bool, platform: str | None = None) -> None:
    def say(line: str) -> None:
        if not quiet:
            sys.stderr.write(line + "\n")

    for event in engine().pull(name, quiet=quiet, platform=platform):
        if not getattr(event, "bar", False):
            say(str(event))


@registry.command("create", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a new container",
                  error_exit=125, short_help=False)
def _create(p: Parser) -> None:
    from ketch.cli.container_opts import add_create_flags

    add_create_flags(p)


@_create.handler
def create(ns: Namespace) -> None:
    out(_create_from_ns(ns).id)


@registry.command("run", "[OPTIONS] IMAGE [COMMAND] [ARG...]",
                  "Create and run a new container from an image", error_exit=125,
                  short_help=False)
def _run(p: Parser) -> None:
    from ketch.cli.container_opts import add_create_flags

    add_create_flags(p)
    p.add_argument("-d", "--detach", action="store_true",
                   help="Run container in background and print container ID")
    p.add_argument("--sig-proxy", action="store_true", default=True,
                   help="Proxy received signals to the process (default true)")


@_run.handler
def run(ns: Namespace) -> int:
    from ketch.cli import gcpolicy

    # Creating and starting a container allocates much that lives until the command
    # ends; an attached session turns collection back on once the container runs
    # (run_attached's on_started).
    with gcpolicy.startup_paused():
        return _run_body(ns)


def _not_a_tty() -> InvalidArgument:
    """The docker CLI's own check of `-t` with an attached stdin: its words as they are
    (no "Error:"), exit 1."""
    return exits(InvalidArgument("the input device is not a TTY", bare=True), 1)


def _check_detach_keys(spec: str | None) -> None:
    """A --detach-keys value dockerd would refuse at attach is refused before anything is
    made ('Invalid detach keys (SPEC) provided'), with or without a terminal."""
    if spec:
        engine().containers.check_detach_keys(spec)


def _run_body(ns: Namespace) -> int:
    _check_detach_keys(ns.detach_keys)
    if ns.detach and ns.attach:
        # the docker CLI's own checks, before it asks the daemon: exit 1
        raise exits(InvalidArgument("conflicting options: cannot specify both --attach and"
                                    " --detach"), 1)
    # docker's CheckTty: only an attached stdin must be a terminal for -t
    if ns.tty and ns.interactive and not ns.detach and not sys.stdin.isatty():
        raise _not_a_tty()
    rec = _create_from_ns(ns)
    if ns.detach:
        try:
            engine().containers.start(rec.id)
        except KetchError as e:
            raise _start_failure(e) from None
        out(rec.id)
        return 0
    from ketch.cli import gcpolicy

    c = rec.config
    try:
        return engine().run_attached(rec.id, stdin=ns.interactive, tty=ns.tty,
                                     detach_keys=ns.detach_keys, sig_proxy=ns.sig_proxy,
                                     remove=ns.rm, stdout=bool(c.get("AttachStdout", True)),
                                     stderr=bool(c.get("AttachStderr", True)),
                                     on_started=gcpolicy.long_session_started)
    except KetchError as e:
        raise _start_failure(e) from None


def _start_failure(e: KetchError) -> KetchError:
    """`run`'s exit code for a container that could not start, as the docker CLI picks
    it from the daemon's message: 127 when it says a file is not there, 126 when one
    may not be run, else 125 (a volume that cannot be mounted for want of its device
    is 127 too)."""
    if not e.exit_code_is_specific or e.exit_code == 125:
        text = e.message
        if "executable file not found" in text or "no such file or directory" in text:
            exits(e, 127)
        elif "permission denied" in text or "is a directory" in text:
            exits(e, 126)
    return e


@registry.command("start", "[OPTIONS] CONTAINER [CONTAINER...]",
                  "Start one or more stopped containers")
def _start(p: Parser) -> None:
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-a", "--attach", action="store_true",
                   help="Attach STDOUT/STDERR and forward signals")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="Attach container's STDIN")
    p.add_argument("--detach-keys", metavar="string",
                   help="Override the key sequence for detaching a container")
    p.add_argument("--checkpoint", metavar="string",
                   help="Restore from this checkpoint (not supported: refused)")
    p.add_argument("--checkpoint-dir", metavar="string",
                   help="Use a custom checkpoint storage directory (not supported: refused)")


@_start.handler
def start(ns: Namespace) -> int:
    if ns.checkpoint or ns.checkpoint_dir:
        raise InvalidArgument("checkpoints are not supported: ketch has no checkpoint/restore"
                              " (an experimental Docker feature needing CRIU)")
    svc = engine().containers
    if ns.attach or ns.interactive:
        _check_detach_keys(ns.detach_keys)
        if len(ns.containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        rec = svc.get(ns.containers[0])
        return engine().run_attached(rec.id, stdin=ns.interactive,
                                     tty=bool(rec.config.get("Tty")),
                                     detach_keys=ns.detach_keys, sig_proxy=True,
                                     remove=bool(rec.host_config.get("AutoRemove")))
    return _each(ns.containers, svc.start, summary="failed to start containers")


@registry.command("stop", "[OPTIONS] CONTAINER [CONTAINER...]",
                  "Stop one or more running containers")
def _stop(p: Parser) -> None:
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-s", "--signal", metavar="string", help="Signal to send to the container")
    p.add_argument("-t", "--timeout", "--time", type=int, metavar="int",
                   help="Seconds to wait before killing the container")


@_stop.handler
def stop(ns: Namespace) -> int:
    svc = engine().containers
    return _each(ns.containers, lambda n: svc.stop(n, timeout=ns.timeout, signal=ns.signal))


@registry.command("restart", "[OPTIONS] CONTAINER [CONTAINER...]",
                  "Restart one or more containers")
def _restart(p: Parser) -> None:
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-s", "--signal", metavar="string", help="Signal to send to the container")
    p.add_argument("-t", "--timeout", "--time", type=int, metavar="int",
                   help="Seconds to wait before killing the container")


@_restart.handler
def restart(ns: Namespace) -> int:
    svc = engine().containers
    return _each(ns.containers,
                 lambda n: svc.restart(n, timeout=ns.timeout, signal=ns.signal))


@registry.command("kill", "[OPTIONS] CONTAINER [CONTAINER...]",
                  "Kill one or more running containers")
def _kill(p: Parser) -> None:
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-s", "--signal", default="KILL", metavar="string",
                   help="Signal to send to the container")


@_kill.handler
def kill(ns: Namespace) -> int:
    svc = engine().containers
    return _each(ns.containers, lambda n: svc.kill(n, ns.signal))


@registry.command("pause", "CONTAINER [CONTAINER...]",
                  "Pause all processes within one or more containers")
def _pause(p: Parser) -> None:
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@_pause.handler
def pause(ns: Namespace) -> int:
    return _each(ns.containers, engine().containers.pause)


@registry.command("unpause", "CONTAINER [CONTAINER...]",
                  "Unpause all processes within one or more containers")
def _unpause(p: Parser) -> None:
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@_unpause.handler
def unpause(ns: Namespace) -> int:
    return _each(ns.containers, engine().containers.unpause)


@registry.command("rm", "[OPTIONS] CONTAINER [CONTAINER...]",
                  "Remove one or more containers", aliases=("remove",))
def _rm(p: Parser) -> None:
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the removal of a running container (uses SIGKILL)")
    p.add_argument("-v", "--volumes", action="store_true",
                   help="Remove anonymous volumes associated with the container")
    p.add_argument("-l", "--link", action="store_true", help="Remove the specified link")


@_rm.handler
def rm(ns: Namespace) -> int:
    if ns.link:
        raise InvalidArgument("--link is not supported: ketch keeps no links apart from the"
                              " containers that made them (remove or recreate the container)")
    svc = engine().containers
    if not ns.force:
        return _each(ns.containers, lambda n: svc.remove(n, volumes=ns.volumes))
    # as docker rm -f: a container that is not there is reported, and is no failure
    # (`rm -f NAME` in a clean-up script succeeds whether or not NAME exists)
    from ketch.errors import ContainerNotFound

    return _each(ns.containers, lambda n: svc.remove(n, force=True, volumes=ns.volumes),
                 forgiven=ContainerNotFound)


@registry.command("prune", "[OPTIONS]", "Remove all stopped containers")
def _prune(p: Parser) -> None:
    p.add_argument("--filter", action="append", default=[], metavar="filter",
                   help="Provide filter values (e.g. \"until=<timestamp>\")")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")


@_prune.handler
def prune(ns: Namespace) -> None:
    from ketch.cli.base import confirm
    from ketch.fmt.units import human_size

    if not ns.force and not confirm("WARNING! This will remove all stopped containers.\n"
                                    "Are you sure you want to continue?"):
        return
    res = engine().containers.prune(parse_filters(ns.filter))
    if res.deleted:
        out("Deleted Containers:")
        for cid in res.deleted:
            out(cid)
        out("")
    out(f"Total reclaimed space: {human_size(res.space_reclaimed)}")


# -- ps -------------------------------------------------------------------------------------
@registry.command("ls", "[OPTIONS]", "List containers", aliases=("list", "ps"))
def _ls(p: Parser) -> None:
    p.add_argument("-a", "--all", action="store_true",
                   help="Show all containers (default shows just running)")
    add_filter(p)
    p.add_argument("--format", metavar="string", help="Format output using a custom template")
    p.add_argument("-n", "--last", type=int, default=-1, metavar="int",
                   help="Show n last created containers (includes all states)")
    p.add_argument("-l", "--latest", action="store_true",
                   help="Show the latest created container (includes all states)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("--pod", action="store_true",
                   help="Print the ID and name of the pod the containers are part of")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")


def _ellipsis(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _mount_name(m: dict, no_trunc: bool) -> str:
    """ps's Mounts entry: a volume's name, or a bind mount's source (15 characters)."""
    name = m.get("Name") or m.get("Source") or ""
    return name if no_trunc else _ellipsis(name, 15)


@_ls.handler
def ls(ns: Namespace) -> None:
    from ketch.fmt.ports import displayable_ports
    from ketch.fmt.units import human_size, time_ago

    sizes = ns.size
    if ns.format and ns.format not in ("table", "json"):
        from ketch.fmt.gotemplate import CONTAINER_HEADERS, probe_format

        # as docker ps: a template that cannot work fails before anything is listed,
        # and one that reads .Size turns --size on
        if "Size" in probe_format(ns.format, PS_HEADERS, fields=CONTAINER_HEADERS,
                                  go_type="*formatter.ContainerContext"):
            sizes = True
    items = engine().containers.list(all=ns.all, filters=parse_filters(ns.filter),
                                     limit=ns.last, size=sizes, latest=ns.latest)
    if ns.quiet:
        for c in items:
            out(c["Id"] if ns.no_trunc else c["Id"][:12])
        return
    fmt = ns.format or "table"
    # The default table needs only its columns: skip formatting the others.
    everything = fmt != "table"
    # CreatedAt (Go's time format, through datetime) only for a format that can reach it
    created_at = everything and fmt.strip() == "json"
    if everything and not created_at:
        from ketch.fmt.gotemplate.docker import may_reach

        created_at = may_reach(fmt, "CreatedAt")
    now = time.time()
    rows = []
    for c in items:
        cmd = c["Command"]
        image = c["Image"]
        if not ns.no_trunc:
            cmd = _ellipsis(cmd, 20)
            if image.startswith("sha256:"):
                image = image[7:19]
        # docker's Size column: the writable layer, and the whole when it was measured
        size = human_size(c.get("SizeRw") or 0, 3)
        if c.get("SizeRootFs"):
            size += f" (virtual {human_size(c['SizeRootFs'], 3)})"
        row = {
            "ID": c["Id"] if ns.no_trunc else c["Id"][:12], "Image": image,
            "Command": f'"{cmd}"', "CreatedSince": time_ago(c["Created"], now),
            "Status": c["Status"], "Ports": displayable_ports(c["Ports"]),
            "Names": ",".join(n.lstrip("/") for n in c["Names"]), "Size": size,
        }
        if everything:
            from ketch.fmt.table import labels_column
            from ketch.fmt.units import go_time

            row.update({
                "RunningFor": row["CreatedSince"],
                "CreatedAt": go_time(c["Created"]) if created_at else "",
                "State": c["State"],
                "Labels": labels_column(c["Labels"]),
                "Mounts": ",".join(_mount_name(m, ns.no_trunc) for m in c["Mounts"]),
                "LocalVolumes": str(sum(m.get("Driver") == "local" for m in c["Mounts"])),
                "Networks": ",".join(c["NetworkSettings"]["Networks"]),
            })
        rows.append(row)
    if ns.pod:
        _pod_columns(items, rows, ns.no_trunc)
    if fmt == "json" or fmt.replace(" ", "") == "{{json.}}":
        # docker's {{json .}} of a container: its fields in name order (no CreatedSince,
        # which is the images' column; the platform is not known)
        fields = []
        for r in rows:
            d = {k: v for k, v in r.items() if k != "CreatedSince"}
            d["Platform"] = None
            fields.append(dict(sorted(d.items())))
        format_each("json", fields)
        return
    if fmt == "table":
        from ketch.fmt.table import tabulate

        cols = [*PS_DEFAULT_COLUMNS, "Size"] if sizes else PS_DEFAULT_COLUMNS
        if ns.pod:
            cols = [*cols, "Pod", "PodName"]
        sys.stdout.write(tabulate([[PS_HEADERS[k] for k in cols]]
                                  + [[r[k] for k in cols] for r in rows]))
        return
    from ketch.fmt.gotemplate import CONTAINER_HEADERS, render_table

    sys.stdout.write(render_table(fmt, rows, PS_HEADERS, go_type="*formatter.ContainerContext",
                                  fields=CONTAINER_HEADERS,
                                  labels=[c["Labels"] or {} for c in items]))


def _pod_columns(items: list[dict], rows: list[dict], no_trunc: bool) -> None:
    """Podman's `ps --pod` columns: POD ID and PODNAME (empty outside a pod)."""
    names = {}
    if any(c.get("Pod") for c in items):
        names = {p.id: p.name for p in engine().pods.records.all()}
    for c, row in zip(items, rows, strict=True):
        pod = c.get("Pod") or ""
        row["Pod"] = pod if no_trunc else pod[:12]
        row["PodName"] = names.get(pod, "")


# -- logs / wait / inspect / port / rename --------------------------------------------------
@registry.command("logs", "[OPTIONS] CONTAINER", "Fetch the logs of a container")
def _logs(p: Parser) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("--details", action="store_true", help="Show extra details provided to"
                   " logs")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("--since", metavar="string", help="Show logs since timestamp (e.g."
                   " \"2013-01-02T13:23:37Z\") or relative (e.g. \"42m\" for 42 minutes)")
    p.add_argument("-n", "--tail", default="all", metavar="string",
                   help="Number of lines to show from the end of the logs (default \"all\")")
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("--until", metavar="string", help="Show logs before a timestamp")


@_logs.handler
def logs(ns: Namespace) -> int | None:
    from ketch.fmt.units import parse_timestamp

    now = time.time()
    tail = None
    if ns.tail != "all":
        try:
            tail = int(ns.tail)
        except ValueError:
            tail = None  # dockerd shows the whole log for a --tail that is not a number
        if tail is not None and tail < 0:
            tail = None
    try:
        since = parse_timestamp(ns.since, now) if ns.since else None
        until = parse_timestamp(ns.until, now) if ns.until else None
    except InvalidArgument as e:
        # the docker CLI's own check, in its words (no "Error:"), exit 1
        which = "since" if ns.since and e.message.endswith(f'"{ns.since}"') else "until"
        sys.stderr.write(f'invalid value for "{which}": {e.message}\n')
        return 1
    stdout = sys.stdout.buffer
    stderr = sys.stderr.buffer
    last = None
    for stream, data in engine().containers.logs(ns.container, follow=ns.follow, tail=tail,
                                                 since=since, until=until,
                                                 timestamps=ns.timestamps,
                                                 details=ns.details):
        target = stderr if stream == "stderr" else stdout
        if last is not None and last is not target:
            # keep the log's order when both streams reach one file (`2>&1`, a terminal)
            last.flush()
        last = target
        target.write(data)
        if ns.follow:
            target.flush()
    stdout.flush()
    return None


@registry.command("wait", "CONTAINER [CONTAINER...]",
                  "Block until one or more containers stop, then print their exit codes")
def _wait(p: Parser) -> None:
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@_wait.handler
def wait(ns: Namespace) -> int:
    svc = engine().containers
    rc = 0
    for n in ns.containers:
        try:
            out(str(svc.wait(n)))
        except KetchError as e:
            sys.stderr.write(f"Error: {e.message}\n")
            rc = 1
    return rc


@registry.command("inspect", "[OPTIONS] CONTAINER [CONTAINER...]",
                  "Display detailed information on one or more containers")
def _inspect(p: Parser) -> None:
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-f", "--format", metavar="string",
                   help="Format output using a custom template")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")


@_inspect.handler
def inspect(ns: Namespace) -> int:
    svc = engine().containers
    return inspect_each(ns.containers, lambda n: svc.inspect(n, size=ns.size), ns.format)


@registry.command("port", "CONTAINER [PRIVATE_PORT[/PROTO]]",
                  "List port mappings or a specific mapping for the container")
def _port(p: Parser) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")


@_port.handler
def port(ns: Namespace) -> int:
    lines = engine().containers.port_lines(ns.container, ns.port)
    if ns.port and not lines:
        sys.stderr.write(f"Error: No public port '{ns.port}' published for {ns.container}\n")
        return 1
    for line in lines:
        out(line)
    return 0


@registry.command("rename", "CONTAINER NEW_NAME", "Rename a container")
def _rename(p: Parser) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")


@_rename.handler
def rename(ns: Namespace) -> None:
    engine().containers.rename(ns.container, ns.new_name)


# -- exec / attach / top / diff / commit / cp / stats / export ------------------------------
@registry.command("exec", "[OPTIONS] CONTAINER COMMAND [ARG...]",
                  "Execute a command in a running container")
def _exec(p: Parser) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=REMAINDER, metavar="COMMAND")
    p.add_argument("-d", "--detach", action="store_true",
                   help="Detached mode: run command in the background")
    p.add_argument("--detach-keys", metavar="string",
                   help="Override the key sequence for detaching a container")
    p.add_argument("-e", "--env", action="append", default=[], metavar="list",
                   help="Set environment variables")
    p.add_argument("--env-file", action="append", default=[], metavar="list",
                   help="Read in a file of environment variables")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="Keep STDIN open even if not attached")
    p.add_argument("--privileged", action="store_true",
                   help="Give extended privileges to the command")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-u", "--user", metavar="string",
                   help="Username or UID (format: \"<name|uid>[:<group|gid>]\")")
    p.add_argument("-w", "--workdir", metavar="string",
                   help="Working directory inside the container")


@_exec.handler
def exec_(ns: Namespace) -> int:
    if not ns.command:
        raise count_error("ketch exec", 2, None, 1)  # docker's words
    # docker's CheckTty, as for run: only an attached stdin must be a terminal for -t
    if ns.tty and ns.interactive and not ns.detach and not sys.stdin.isatty():
        raise _not_a_tty()
    _check_detach_keys(ns.detach_keys)
    from ketch.cli.container_opts import environment

    try:
        env = environment(ns.env_file, ns.env)
    except InvalidArgument as e:
        # checked by the docker CLI itself: its words as they are; a bad -e value is a
        # flag error (125), an env file it cannot read exits 1
        e.bare = True
        raise exits(e, 125 if e.message.startswith('invalid argument "') else 1) from None
    return engine().exec(ns.container, ns.command, env=env,
                         user=ns.user, workdir=ns.workdir, tty=ns.tty,
                         stdin=ns.interactive, detach=ns.detach, privileged=ns.privileged,
                         detach_keys=ns.detach_keys)


@registry.command("attach", "[OPTIONS] CONTAINER",
                  "Attach local standard input, output, and error streams to a running"
                  " container")
def _attach(p: Parser) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("--detach-keys", metavar="string",
                   help="Override the key sequence for detaching a container")
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", action="store_true", default=True,
                   help="Proxy all received signals to the process (default true)")


@_attach.handler
def attach(ns: Namespace) -> int:
    _check_detach_keys(ns.detach_keys)
    return engine().attach(ns.container, stdin=not ns.no_stdin,
                           detach_keys=ns.detach_keys, sig_proxy=ns.sig_proxy)


@registry.command("top", "CONTAINER [ps OPTIONS]",
                  "Display the running processes of a container")
def _top(p: Parser) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs=REMAINDER)


@_top.handler
def top(ns: Namespace) -> None:
    from ketch.fmt.tabwriter import tabwrite

    titles, procs = engine().containers.top(ns.container, ns.ps_args)
    sys.stdout.write(tabwrite([titles, *procs], minwidth=20))  # docker top's columns


@registry.command("diff", "CONTAINER",
                  "Inspect changes to files or directories on a container's filesystem")
def _diff(p: Parser) -> None:
    p.add_argument("container", metavar="CONTAINER")


@_diff.handler
def diff(ns: Namespace) -> None:
    for kind, path in engine().containers.diff(ns.container):
        out(f"{'CAD'[kind]} {path}")


@registry.command("commit", "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
                  "Create a new image from a container's changes")
def _commit(p: Parser) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("reference", nargs="?")
    p.add_argument("-a", "--author", metavar="string", help="Author")
    p.add_argument("-c", "--change", action="append", default=[], metavar="list",
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", metavar="string", help="Commit message")
    p.add_argument("-p", "--pause", action="store_true", default=True,
                   help="Pause container during commit (default true)")


@_commit.handler
def commit(ns: Namespace) -> None:
    rec = engine().containers.commit(ns.container, ref=ns.reference, changes=ns.change,
                                     message=ns.message or "", author=ns.author or "",
                                     pause=ns.pause)
    out(rec.id)


@registry.command("cp", "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tketch cp [OPTIONS]"
                  " SRC_PATH|- CONTAINER:DEST_PATH",
                  "Copy files/folders between a container and the local filesystem")
def _cp(p: Parser) -> None:
    p.add_argument("src", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("-a", "--archive", action="store_true",
                   help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true",
                   help="Always follow symbol link in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="Suppress progress output during copy")


def _split_cp(arg: str) -> tuple[str | None, str]:
    if arg.startswith("/") or arg.startswith(".") or arg == "-":
        return None, arg
    name, sep, path = arg.partition(":")
    if sep and name and "/" not in name:
        return name, path
    return None, arg


@_cp.handler
def cp(ns: Namespace) -> None:
    src_c, src = _split_cp(ns.src)
    dst_c, dst = _split_cp(ns.dest)
    if src_c and dst_c:
        raise InvalidArgument("copying between containers is not supported")
    if not src_c and not dst_c:
        raise InvalidArgument("must specify at least one container source")
    if src_c:
        engine().copy_from_container(src_c, src, dst, follow_link=ns.follow_link)
    else:
        assert dst_c is not None
        engine().copy_to_container(dst_c, src, dst, follow_link=ns.follow_link,
                                   copy_uid_gid=ns.archive)


@registry.command("stats", "[OPTIONS] [CONTAINER...]",
                  "Display a live stream of container(s) resource usage statistics")
def _stats(p: Parser) -> None:
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    p.add_argument("-a", "--all", action="store_true",
                   help="Show all containers (default shows just running)")
    p.add_argument("--format", metavar="string", help="Format output using a custom template")
    p.add_argument("--no-stream", action="store_true",
                   help="Disable streaming stats and only pull the first result")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate output")


@_stats.handler
def stats(ns: Namespace) -> int | None:
    from ketch.fmt.gotemplate import render_table

    fmt = ns.format or ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
                        "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")
    if ns.no_trunc:
        fmt = fmt.replace("{{.ID}}", "{{.FullID}}")
    headers = {"ID": "CONTAINER ID", "FullID": "CONTAINER ID", "Container": "CONTAINER",
               "Name": "NAME", "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT",
               "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
    svc = engine().containers
    tty = sys.stdout.isatty()
    while True:
        rows = svc.stats_rows(ns.containers, all=ns.all)
        if fmt == "json":
            # docker's {{json .}} of a stats row: its fields in name order, the ID in full
            # with --no-trunc
            text = json_lines([{k: (r["FullID"] if k == "ID" and ns.no_trunc else v)
                                for k, v in sorted(r.items()) if k != "FullID"}
                               for r in rows])
        else:
            text = render_table(fmt, rows, headers, go_type="*container.statsContext")
        if ns.no_stream:
            sys.stdout.write(text)
            return None
        # streaming: redraw in place on a terminal, as docker does; plain blocks otherwise
        sys.stdout.write(("\033[2J\033[H" if tty else "") + text)
        sys.stdout.flush()
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            return 130  # (as the docker CLI 28; one during sampling exits 130 too)


@registry.command("update", "[OPTIONS] CONTAINER [CONTAINER...]",
                  "Update configuration of one or more containers")
def _update(p: Parser) -> None:
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("--blkio-weight", type=int, metavar="uint16",
                   help="Block IO (relative weight), between 10 and 1000, or 0 to disable")
    p.add_argument("--cpu-period", type=int, metavar="int",
                   help="Limit CPU CFS (Completely Fair Scheduler) period")
    p.add_argument("--cpu-quota", type=int, metavar="int",
                   help="Limit CPU CFS (Completely Fair Scheduler) quota")
    p.add_argument("--cpu-rt-period", type=int, metavar="int",
                   help="Limit the CPU real-time period in microseconds")
    p.add_argument("--cpu-rt-runtime", type=int, metavar="int",
                   help="Limit the CPU real-time runtime in microseconds")
    p.add_argument("-c", "--cpu-shares", type=int, metavar="int",
                   help="CPU shares (relative weight)")
    p.add_argument("--cpus", metavar="decimal", help="Number of CPUs")
    p.add_argument("--cpuset-cpus", metavar="string",
                   help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("--cpuset-mems", metavar="string",
                   help="MEMs in which to allow execution (0-3, 0,1)")
    p.add_argument("--kernel-memory", metavar="bytes",
                   help="Kernel memory limit (deprecated: discarded with a warning)")
    p.add_argument("-m", "--memory", metavar="bytes", help="Memory limit")
    p.add_argument("--memory-reservation", metavar="bytes", help="Memory soft limit")
    p.add_argument("--memory-swap", metavar="bytes",
                   help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
    p.add_argument("--pids-limit", type=int, metavar="int",
                   help="Tune container pids limit (set -1 for unlimited)")
    p.add_argument("--restart", metavar="string",
                   help="Restart policy to apply when a container exits")


@_update.handler
def update(ns: Namespace) -> int:
    changes: dict[str, object] = {}
    try:
        _update_changes(ns, changes)
    except KetchError as e:
        # a flag's value is wrong: docker's flag parsing ends `update` with 125
        raise exits(e, 125) from None
    if not changes:
        raise InvalidArgument("you must provide one or more flags when using this command")
    svc = engine().containers
    rc = 0
    warnings: list[str] = []  # docker/cli prints them after the names, on stdout
    for name in ns.containers:
        try:
            warnings.extend(svc.update(name, changes))
            sys.stdout.write(name + "\n")
        except KetchError as e:
            sys.stderr.write(f"Error: {e.message}\n")
            rc = 1
    if warnings:
        sys.stdout.write("\n".join(warnings) + "\n")
    return rc


def _update_changes(ns: Namespace, changes: dict[str, object]) -> None:
    """The HostConfig changes `update`'s flags ask for (docker/cli parses these)."""
    from ketch.cli.container_opts import _bytes
    from ketch.engine import Engine

    for key, val in (("BlkioWeight", ns.blkio_weight), ("CpuPeriod", ns.cpu_period),
                     ("CpuQuota", ns.cpu_quota), ("CpuShares", ns.cpu_shares),
                     ("CpuRealtimePeriod", ns.cpu_rt_period),
                     ("CpuRealtimeRuntime", ns.cpu_rt_runtime),
                     ("KernelMemory", _bytes(ns.kernel_memory, "--kernel-memory")),
                     ("PidsLimit", ns.pids_limit), ("CpusetCpus", ns.cpuset_cpus),
                     ("CpusetMems", ns.cpuset_mems),
                     ("Memory", _bytes(ns.memory, "-m, --memory")),
                     ("MemoryReservation", _bytes(ns.memory_reservation,
                                                  "--memory-reservation")),
                     ("MemorySwap", _bytes(ns.memory_swap, "--memory-swap"))):
        if val is not None:
            changes[key] = val
    if ns.cpus is not None:
        from fractions import Fraction

        try:
            nano = Fraction(ns.cpus) * 10**9
        except (ValueError, ZeroDivisionError):
            raise InvalidArgument(f'invalid argument "{ns.cpus}" for "--cpus" flag: failed to'
                                  f" parse {ns.cpus} as a rational number") from None
        changes["NanoCpus"] = int(nano)
    if ns.restart is not None:
        changes["RestartPolicy"] = Engine.restart_policy(ns.restart)


@registry.command("export", "[OPTIONS] CONTAINER",
                  "Export a container's filesystem as a tar archive")
def _export(p: Parser) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-o", "--output", metavar="string",
                   help="Write to a file, instead of STDOUT")


@_export.handler
def export(ns: Namespace) -> None:
    engine().export(ns.container, ns.output)


@registry.command("restart-wait", "CONTAINER TOKEN AT", "Wait, then restart a container"
                  " as its restart policy asks (run by ketch itself)")
def _restart_wait(p: Parser) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("token", metavar="TOKEN")
    p.add_argument("at", metavar="AT")


@_restart_wait.handler
def restart_wait(ns: Namespace) -> int:
    return engine().restart_wait(ns.container, ns.token, float(ns.at))


@registry.command("healthcheck", "CONTAINER", "Run a container's health check now and print"
                  " its health (as podman healthcheck run; the health timer runs it)")
def _healthcheck(p: Parser) -> None:
    p.add_argument("container", metavar="CONTAINER")


@_healthcheck.handler
def healthcheck(ns: Namespace) -> int:
    # exit codes the health timer reads (ketch.containers.healthtimer): 0 healthy,
    # 1 unhealthy, 2 starting, 3 nothing to check (gone, not running, no check)
    try:
        status = engine().container_healthcheck(ns.container)
    except KetchError as e:
        sys.stderr.write(f"Error: {e.message}\n")
        return 3
    print(status)
    return {"healthy": 0, "unhealthy": 1}.get(status, 2)


@registry.command("cleanup", "[OPTIONS] CONTAINER", "Finish a container after its process exited"
                  " (run by the container monitor)")
def _cleanup(p: Parser) -> None:
    p.add_argument("--exec", metavar="ID", dest="exec_id",
                   help="Record the end of this detached exec session instead")
    p.add_argument("container", metavar="CONTAINER")


@_cleanup.handler
def cleanup(ns: Namespace) -> None:
    engine().container_cleanup(ns.container, ns.exec_id)
