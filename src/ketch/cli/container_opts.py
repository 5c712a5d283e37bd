"""`run`/`create` flags → the Engine API's create body (Config, HostConfig,
NetworkingConfig), as docker/cli builds it. Parsing only; the Engine validates."""

from __future__ import annotations

import os

from ketch.cli.flags import REMAINDER, Namespace, Parser
from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add_create_flags(p: Parser) -> None:
    a = p.add_argument
    a("image", metavar="IMAGE")
    a("command", nargs=REMAINDER, metavar="COMMAND")
    a("-a", "--attach", action="append", default=[], metavar="list",
      help="Attach to STDIN, STDOUT or STDERR")
    a("--add-host", action="append", default=[], metavar="list",
      help="Add a custom host-to-IP mapping (host:ip)")
    a("--cap-add", action="append", default=[], metavar="list", help="Add Linux capabilities")
    a("--cap-drop", action="append", default=[], metavar="list",
      help="Drop Linux capabilities")
    a("--cidfile", metavar="string", help="Write the container ID to the file")
    a("-c", "--cpu-shares", type=int, metavar="int", help="CPU shares (relative weight)")
    a("--cpus", metavar="decimal", help="Number of CPUs")
    a("--cpuset-cpus", metavar="string", help="CPUs in which to allow execution (0-3, 0,1)")
    a("--detach-keys", metavar="string", help="Override the key sequence for detaching a"
      " container")
    a("--dns", action="append", default=[], metavar="list", help="Set custom DNS servers")
    a("--dns-search", action="append", default=[], metavar="list",
      help="Set custom DNS search domains")
    a("--dns-option", action="append", default=[], metavar="list", help="Set DNS options")
    a("-e", "--env", action="append", default=[], metavar="list",
      help="Set environment variables")
    a("--env-file", action="append", default=[], metavar="list",
      help="Read in a file of environment variables")
    a("--entrypoint", metavar="string", help="Overwrite the default ENTRYPOINT of the image")
    a("--expose", action="append", default=[], metavar="list",
      help="Expose a port or a range of ports")
    a("--group-add", action="append", default=[], metavar="list",
      help="Add additional groups to join")
    a("-h", "--hostname", metavar="string", help="Container host name")
    a("--init", action="store_true", help="Run an init inside the container")
    a("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    a("--ip", metavar="string", help="IPv4 address (e.g., 172.30.100.104)")
    a("-l", "--label", action="append", default=[], metavar="list",
      help="Set meta data on a container")
    a("--label-file", action="append", default=[], metavar="list",
      help="Read in a line delimited file of labels")
    a("--log-driver", metavar="string", help="Logging driver for the container")
    a("--log-opt", action="append", default=[], metavar="list",
      help="Log driver options")
    a("-m", "--memory", metavar="bytes", help="Memory limit")
    a("--memory-reservation", metavar="bytes", help="Memory soft limit")
    a("--memory-swap", metavar="bytes",
      help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    a("--mount", action="append", default=[], metavar="mount",
      help="Attach a filesystem mount to the container")
    a("--name", metavar="string", help="Assign a name to the container")
    a("--network", "--net", metavar="network", help="Connect a container to a network")
    a("--network-alias", "--net-alias", action="append", default=[], metavar="list",
      help="Add network-scoped alias for the container")
    a("--no-healthcheck", action="store_true", help="Disable any container-specified"
      " HEALTHCHECK")
    a("--pids-limit", type=int, metavar="int", help="Tune container pids limit (set -1 for"
      " unlimited)")
    a("--platform", metavar="string", help="Set platform if server is multi-platform capable")
    a("--privileged", action="store_true", help="Give extended privileges to this container")
    a("-p", "--publish", action="append", default=[], metavar="list",
      help="Publish a container's port(s) to the host")
    a("-P", "--publish-all", action="store_true",
      help="Publish all exposed ports to random ports")
    a("--pull", default="missing", metavar="string",
      help='Pull image before running ("always", "missing", "never")')
    a("-q", "--quiet", action="store_true", help="Suppress the pull output")
    a("--read-only", action="store_true", help="Mount the container's root filesystem as read"
      " only")
    a("--restart", default="no", metavar="string",
      help="Restart policy to apply when a container exits")
    a("--rm", action="store_true", help="Automatically remove the container and its"
      " associated anonymous volumes when it exits")
    a("--runtime", metavar="string", help="Runtime to use for this container (runc, crun)")
    a("--security-opt", action="append", default=[], metavar="list",
      help="Security Options")
    a("--shm-size", metavar="bytes", help="Size of /dev/shm")
    a("--stop-signal", metavar="string", help="Signal to stop the container")
    a("--stop-timeout", type=int, metavar="int",
      help="Timeout (in seconds) to stop a container")
    a("--sysctl", action="append", default=[], metavar="map", help="Sysctl options")
    a("--tmpfs", action="append", default=[], metavar="list", help="Mount a tmpfs directory")
    a("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    a("--ulimit", action="append", default=[], metavar="ulimit", help="Ulimit options")
    a("-u", "--user", metavar="string",
      help="Username or UID (format: <name|uid>[:<group|gid>])")
    a("-v", "--volume", action="append", default=[], metavar="list",
      help="Bind mount a volume")
    a("-w", "--workdir", metavar="string", help="Working directory inside the container")


def _read_kv_file(path: str, what: str) -> list[str]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InvalidArgument(f"cannot read {what} file {path}: {e.strerror}") from None
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line)
    return out


def _env_entry(e: str) -> str | None:
    if "=" in e or not e:
        if not e.partition("=")[0]:
            raise InvalidArgument(f"invalid environment variable: {e}")
        return e
    # `-e NAME` passes the caller's value, or nothing when it is unset
    return f"{e}={os.environ[e]}" if e in os.environ else None


def _bytes(v: str | None, flag: str) -> int | None:
    if v is None:
        return None
    if v == "-1":
        return -1
    from ketch.fmt.units import parse_size

    try:
        return parse_size(v)
    except InvalidArgument as e:
        raise InvalidArgument(f'invalid argument "{v}" for "{flag}" flag: {e}') from None


def build_create_body(ns: Namespace) -> dict[str, Any]:
    env = []
    for f in ns.env_file:
        for line in _read_kv_file(f, "env"):
            e = _env_entry(line)
            if e:
                env.append(e)
    for e in ns.env:
        try:
            entry = _env_entry(e)
        except InvalidArgument as err:
            raise InvalidArgument(f'invalid argument "{e}" for "-e, --env" flag: {err}'
                                  ) from None
        if entry:
            env.append(entry)
    labels: dict[str, str] = {}
    for f in ns.label_file:
        for line in _read_kv_file(f, "label"):
            k, _, v = line.partition("=")
            labels[k] = v
    for lab in ns.label:
        k, _, v = lab.partition("=")
        labels[k] = v
    exposed: dict[str, dict[str, Any]] = {}
    from ketch.engine import Engine

    for e in ns.expose:
        exposed[Engine.exposed_port(e)] = {}
    port_bindings: dict[str, list[dict[str, str]]] = {}
    for spec in ns.publish:
        for key, binding in Engine.port_bindings(spec):
            exposed.setdefault(key, {})
            port_bindings.setdefault(key, []).append(binding)
    stdin_attach = ns.interactive
    attach = {s.lower() for s in ns.attach}
    config: dict[str, Any] = {
        "Image": ns.image,
        "Cmd": ns.command or None,
        "Env": env or None,
        "Labels": labels or None,
        "ExposedPorts": exposed or None,
        "Tty": ns.tty,
        "OpenStdin": ns.interactive,
        "StdinOnce": ns.interactive,
        "AttachStdin": stdin_attach or "stdin" in attach,
        "AttachStdout": not attach or "stdout" in attach,
        "AttachStderr": not attach or "stderr" in attach,
    }
    if ns.entrypoint is not None:
        import shlex

        config["Entrypoint"] = shlex.split(ns.entrypoint) if ns.entrypoint else [""]
        if ns.entrypoint == "":
            config["Entrypoint"] = None
    if ns.workdir:
        if not ns.workdir.startswith("/"):
            raise InvalidArgument(f"the working directory '{ns.workdir}' is invalid: it needs"
                                  " to be an absolute path")
        config["WorkingDir"] = ns.workdir
    if ns.user:
        config["User"] = ns.user
    if ns.hostname:
        config["Hostname"] = ns.hostname
    if ns.stop_signal:
        config["StopSignal"] = ns.stop_signal
    if ns.stop_timeout is not None:
        config["StopTimeout"] = ns.stop_timeout
    if ns.no_healthcheck:
        config["Healthcheck"] = {"Test": ["NONE"]}
    security_opts, unconfined_paths = Engine.security_opts(ns.security_opt)
    restart_policy = Engine.restart_policy(ns.restart)
    # `-v /path` (no source) is an anonymous volume: Docker puts it in Config.Volumes.
    for v in ns.volume:
        Engine.check_volume_flag(v)
    binds = [v for v in ns.volume if ":" in v]
    for v in ns.volume:
        if ":" not in v:
            config.setdefault("Volumes", {})[v] = {}
    host_config: dict[str, Any] = {
        "Binds": binds or None,
        "PortBindings": port_bindings,
        "PublishAllPorts": ns.publish_all,
        "AutoRemove": ns.rm,
        "NetworkMode": ns.network or "default",
        "RestartPolicy": restart_policy,
        "Privileged": ns.privileged,
        "ReadonlyRootfs": ns.read_only,
        "CapAdd": ns.cap_add or None,
        "CapDrop": ns.cap_drop or None,
        "Dns": ns.dns, "DnsSearch": ns.dns_search, "DnsOptions": ns.dns_option,
        "ExtraHosts": ns.add_host or None,
        "GroupAdd": ns.group_add or None,
        "SecurityOpt": security_opts or None,
        "Runtime": ns.runtime or "runc",
        "Init": ns.init or None,
    }
    if ns.log_driver is not None or ns.log_opt:
        opts = {}
        for o in ns.log_opt:
            k, eq, v = o.partition("=")
            if not eq or not k:
                raise InvalidArgument(f'invalid argument "{o}" for "--log-opt" flag: invalid'
                                      " key value pair format")
            opts[k] = v
        host_config["LogConfig"] = {"Type": ns.log_driver or "", "Config": opts}
    if unconfined_paths:
        host_config["MaskedPaths"] = []
        host_config["ReadonlyPaths"] = []
    mem = _bytes(ns.memory, "-m, --memory")
    if mem is not None:
        host_config["Memory"] = mem
    swap = _bytes(ns.memory_swap, "--memory-swap")
    if swap is not None:
        host_config["MemorySwap"] = swap
    res = _bytes(ns.memory_reservation, "--memory-reservation")
    if res is not None:
        host_config["MemoryReservation"] = res
    if ns.cpus is not None:
        from fractions import Fraction

        try:
            nano = Fraction(ns.cpus) * 10**9
        except (ValueError, ZeroDivisionError):
            raise InvalidArgument(f'invalid argument "{ns.cpus}" for "--cpus" flag: failed to'
                                  f" parse {ns.cpus} as a rational number") from None
        if nano.denominator != 1:
            raise InvalidArgument(f'invalid argument "{ns.cpus}" for "--cpus" flag: value is'
                                  " too precise")
        host_config["NanoCpus"] = int(nano)
    if ns.cpu_shares is not None:
        host_config["CpuShares"] = ns.cpu_shares
    if ns.cpuset_cpus:
        host_config["CpusetCpus"] = ns.cpuset_cpus
    if ns.pids_limit is not None:
        host_config["PidsLimit"] = ns.pids_limit
    if ns.shm_size:
        host_config["ShmSize"] = _bytes(ns.shm_size, "--shm-size")
    if ns.sysctl:
        host_config["Sysctls"] = dict(s.split("=", 1) for s in ns.sysctl if "=" in s)
    if ns.tmpfs:
        tmpfs = {}
        for t in ns.tmpfs:
            path, _, opts = t.partition(":")
            tmpfs[path] = opts
        host_config["Tmpfs"] = tmpfs
    if ns.ulimit:
        ulimits = {}
        for u in ns.ulimit:
            try:
                entry = Engine.ulimit(u)
            except InvalidArgument as e:
                raise InvalidArgument(f'invalid argument "{u}" for "--ulimit" flag: {e}'
                                      ) from None
            ulimits[entry["Name"]] = entry  # the last one given for a name wins, as Docker
        host_config["Ulimits"] = list(ulimits.values())
    if ns.mount:
        host_config["Mounts"] = [parse_mount(m) for m in ns.mount]
    networking: dict[str, Any] = {}
    if ns.network_alias or ns.ip:
        net = ns.network or "bridge"
        networking = {"EndpointsConfig": {net: {
            "Aliases": ns.network_alias or None,
            "IPAMConfig": {"IPv4Address": ns.ip} if ns.ip else None}}}
    return {"Config": config, "HostConfig": host_config, "NetworkingConfig": networking}


def parse_mount(spec: str) -> dict[str, Any]:
    from ketch.engine import Engine

    try:
        return Engine.mount(spec)
    except InvalidArgument as e:
        raise InvalidArgument(f'invalid argument "{spec}" for "--mount" flag:'
                              f" {e.message}") from None
