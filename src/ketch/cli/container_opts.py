"""`run`/`create` flags → the Engine API's create body (Config, HostConfig,
NetworkingConfig), as docker/cli builds it. Parsing only; the Engine validates."""

from __future__ import annotations

import os

from ketch.cli.flags import REMAINDER, Namespace, Parser
from ketch.errors import InvalidArgument, os_words

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _duration(text: str) -> int:
    """A pflag duration flag ("200ms", "1m30s") in nanoseconds."""
    from ketch.fmt.units import parse_duration

    try:
        return round(parse_duration(text) * 1_000_000_000)
    except InvalidArgument as e:
        raise ValueError(e.message) from None


def _health_config(ns: Namespace, config: dict[str, Any]) -> None:
    """Config.Healthcheck from the --health-* flags, as docker/cli builds it."""
    durations = {"interval": ns.health_interval, "timeout": ns.health_timeout,
                 "start-period": ns.health_start_period,
                 "start-interval": ns.health_start_interval}
    given = bool(ns.health_cmd) or ns.health_retries != 0 or any(durations.values())
    if ns.no_healthcheck:
        if given:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        config["Healthcheck"] = {"Test": ["NONE"]}
    elif given:
        for name, value in durations.items():
            if value < 0:
                raise InvalidArgument(f"--health-{name} cannot be negative")
        if ns.health_retries < 0:
            raise InvalidArgument("--health-retries cannot be negative")
        config["Healthcheck"] = {
            "Test": ["CMD-SHELL", ns.health_cmd] if ns.health_cmd else None,
            "Interval": ns.health_interval, "Timeout": ns.health_timeout,
            "StartPeriod": ns.health_start_period,
            "StartInterval": ns.health_start_interval, "Retries": ns.health_retries,
        }
    if ns.health_on_failure is not None:
        config["HealthcheckOnFailureAction"] = ns.health_on_failure


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
    a("--blkio-weight", type=int, metavar="uint16",
      help="Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)")
    a("--blkio-weight-device", action="append", default=[], metavar="list",
      help="Block IO weight (relative device weight)")
    a("--cgroup-parent", metavar="string", help="Optional parent cgroup for the container")
    a("--cgroupns", metavar="string",
      help='Cgroup namespace to use (host|private): "host" runs the container in the'
           ' host\'s cgroup namespace, "private" in its own (default "private")')
    a("--cidfile", metavar="string", help="Write the container ID to the file")
    a("--cpu-period", type=int, metavar="int", help="Limit CPU CFS (Completely Fair"
      " Scheduler) period")
    a("--cpu-quota", type=int, metavar="int", help="Limit CPU CFS (Completely Fair"
      " Scheduler) quota")
    a("--cpu-rt-period", type=int, metavar="int",
      help="Limit CPU real-time period in microseconds")
    a("--cpu-rt-runtime", type=int, metavar="int",
      help="Limit CPU real-time runtime in microseconds")
    a("-c", "--cpu-shares", type=int, metavar="int", help="CPU shares (relative weight)")
    a("--cpus", metavar="decimal", help="Number of CPUs")
    a("--cpuset-cpus", metavar="string", help="CPUs in which to allow execution (0-3, 0,1)")
    a("--cpuset-mems", metavar="string", help="MEMs in which to allow execution (0-3, 0,1)")
    a("--device", action="append", default=[], metavar="list",
      help="Add a host device to the container")
    a("--device-cgroup-rule", action="append", default=[], metavar="list",
      help="Add a rule to the cgroup allowed devices list")
    a("--device-read-bps", action="append", default=[], metavar="list",
      help="Limit read rate (bytes per second) from a device")
    a("--device-read-iops", action="append", default=[], metavar="list",
      help="Limit read rate (IO per second) from a device")
    a("--device-write-bps", action="append", default=[], metavar="list",
      help="Limit write rate (bytes per second) to a device")
    a("--device-write-iops", action="append", default=[], metavar="list",
      help="Limit write rate (IO per second) to a device")
    a("--disable-content-trust", action="store_true", default=True,
      help="Skip image verification (default true; ketch verifies no signatures)")
    a("--detach-keys", metavar="string", help="Override the key sequence for detaching a"
      " container")
    a("--dns", action="append", default=[], metavar="list", help="Set custom DNS servers")
    a("--dns-search", action="append", default=[], metavar="list",
      help="Set custom DNS search domains")
    a("--dns-option", action="append", default=[], metavar="list", help="Set DNS options")
    a("--domainname", metavar="string", help="Container NIS domain name")
    a("-e", "--env", action="append", default=[], metavar="list",
      help="Set environment variables")
    a("--env-file", action="append", default=[], metavar="list",
      help="Read in a file of environment variables")
    a("--entrypoint", metavar="string", help="Overwrite the default ENTRYPOINT of the image")
    a("--expose", action="append", default=[], metavar="list",
      help="Expose a port or a range of ports")
    a("--gpus", metavar="gpu-request", help="GPU devices to add to the container ('all' to"
      " pass all GPUs); ketch has no GPU support and refuses it")
    a("--group-add", action="append", default=[], metavar="list",
      help="Add additional groups to join")
    a("--health-cmd", metavar="string", help="Command to run to check health")
    a("--health-interval", type=_duration, default=0, metavar="duration",
      help="Time between running the check (ms|s|m|h) (default 0s)")
    a("--health-on-failure", metavar="string",
      help="Action to take once the container turns unhealthy: none, kill, restart or"
           " stop (Podman's flag; default none)")
    a("--health-retries", type=int, default=0, metavar="int",
      help="Consecutive failures needed to report unhealthy")
    a("--health-start-interval", type=_duration, default=0, metavar="duration",
      help="Time between running the check during the start period (ms|s|m|h)"
           " (default 0s)")
    a("--health-start-period", type=_duration, default=0, metavar="duration",
      help="Start period for the container to initialize before starting health-retries"
           " countdown (ms|s|m|h) (default 0s)")
    a("--health-timeout", type=_duration, default=0, metavar="duration",
      help="Maximum time to allow one check to run (ms|s|m|h) (default 0s)")
    a("-h", "--hostname", metavar="string", help="Container host name")
    a("--init", action="store_true", help="Run an init inside the container")
    a("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    a("--ip", metavar="string", help="IPv4 address (e.g., 172.30.100.104)")
    a("--ip6", metavar="string", help="IPv6 address (e.g., 2001:db8::33): refused, ketch"
      " networks are IPv4 only")
    a("--ipc", metavar="string", help="IPC mode to use (private, shareable, host,"
      " container:NAME)")
    a("--isolation", metavar="string", help="Container isolation technology (Linux has"
      " only 'default')")
    a("--kernel-memory", metavar="bytes", help="Kernel memory limit (deprecated: accepted"
      " and ignored, with a warning)")
    a("-l", "--label", action="append", default=[], metavar="list",
      help="Set meta data on a container")
    a("--label-file", action="append", default=[], metavar="list",
      help="Read in a line delimited file of labels")
    a("--link", action="append", default=[], metavar="list",
      help="Add link to another container (name[:alias]): /etc/hosts entries and the"
           " legacy <ALIAS>_PORT_* environment")
    a("--link-local-ip", action="append", default=[], metavar="list",
      help="Container IPv4/IPv6 link-local addresses")
    a("--log-driver", metavar="string", help="Logging driver for the container")
    a("--log-opt", action="append", default=[], metavar="list",
      help="Log driver options")
    a("--mac-address", metavar="string", help="Container MAC address (e.g.,"
      " 92:d0:c6:0a:29:33)")
    a("-m", "--memory", metavar="bytes", help="Memory limit")
    a("--memory-reservation", metavar="bytes", help="Memory soft limit")
    a("--memory-swap", metavar="bytes",
      help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    a("--memory-swappiness", type=int, default=-1, metavar="int",
      help="Tune container memory swappiness (0 to 100) (default -1)")
    a("--mount", action="append", default=[], metavar="mount",
      help="Attach a filesystem mount to the container")
    a("--name", metavar="string", help="Assign a name to the container")
    a("--network", "--net", metavar="network", help="Connect a container to a network")
    a("--network-alias", "--net-alias", action="append", default=[], metavar="list",
      help="Add network-scoped alias for the container")
    a("--no-healthcheck", action="store_true", help="Disable any container-specified"
      " HEALTHCHECK")
    a("--oom-kill-disable", action="store_true", help="Disable OOM Killer")
    a("--oom-score-adj", type=int, metavar="int", help="Tune host's OOM preferences (-1000"
      " to 1000)")
    a("--pid", metavar="string", help="PID namespace to use (host, container:NAME)")
    a("--pids-limit", type=int, metavar="int", help="Tune container pids limit (set -1 for"
      " unlimited)")
    a("--platform", metavar="string", help="Set platform if server is multi-platform capable")
    a("--pod", metavar="string", help="Run container in an existing pod (its network, IPC"
      " and UTS namespaces)")
    a("--privileged", action="store_true",
      help="Give extended privileges to this container (every capability ketch's own"
           " bounding set holds, all host devices)")
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
    a("--storage-opt", action="append", default=[], metavar="list",
      help="Storage driver options for the container (refused: ketch's overlay has no"
           " per-container size)")
    a("--stop-signal", metavar="string", help="Signal to stop the container")
    a("--stop-timeout", type=int, metavar="int",
      help="Timeout (in seconds) to stop a container")
    a("--sysctl", action="append", default=[], metavar="map", help="Sysctl options")
    a("--tmpfs", action="append", default=[], metavar="list", help="Mount a tmpfs directory")
    a("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    a("--ulimit", action="append", default=[], metavar="ulimit", help="Ulimit options")
    a("--userns", metavar="string", help="User namespace to use (host: the only mode"
      " without user-namespace remapping)")
    a("--uts", metavar="string", help="UTS namespace to use (host)")
    a("-u", "--user", metavar="string",
      help="Username or UID (format: <name|uid>[:<group|gid>])")
    a("-v", "--volume", action="append", default=[], metavar="list",
      help="Bind mount a volume")
    a("--volume-driver", metavar="string", help="Optional volume driver for the container"
      " (local)")
    a("--volumes-from", action="append", default=[], metavar="list",
      help="Mount volumes from the specified container(s)")
    a("-w", "--workdir", metavar="string", help="Working directory inside the container")


def _read_kv_file(path: str) -> list[str]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        # as the docker CLI's: Go's error for the open
        raise InvalidArgument(f"open {path}: {os_words(e)}") from None
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


def environment(env_files: list[str], env: list[str]) -> list[str]:
    """`--env-file` entries, then `-e`: NAME=value, or NAME alone for the caller's value."""
    out = []
    for f in env_files:
        for line in _read_kv_file(f):
            e = _env_entry(line)
            if e:
                out.append(e)
    for e in env:
        try:
            entry = _env_entry(e)
        except InvalidArgument as err:
            raise InvalidArgument(f'invalid argument "{e}" for "-e, --env" flag: {err}'
                                  ) from None
        if entry:
            out.append(entry)
    return out


def build_create_body(ns: Namespace) -> dict[str, Any]:
    env = environment(ns.env_file, ns.env)
    labels: dict[str, str] = {}
    for f in ns.label_file:
        for line in _read_kv_file(f):
            k, eq, v = line.partition("=")
            if eq:  # docker's label files ignore a line without "="
                labels[k] = v
    for lab in ns.label:
        k, _, v = lab.partition("=")
        if not k.strip():  # docker/cli's ValidateLabel
            raise InvalidArgument(f'invalid argument "{lab}" for "-l, --label" flag: invalid'
                                  f" label '{lab}': empty name")
        labels[k] = v
    exposed: dict[str, dict[str, Any]] = {}
    from ketch.engine import Engine

    for e in ns.expose:
        for key in Engine.exposed_ports(e):  # a range is one entry per port, as docker's
            exposed[key] = {}
    port_bindings: dict[str, list[dict[str, str]]] = {}
    for spec in ns.publish:
        for key, binding in Engine.port_bindings(spec):
            exposed.setdefault(key, {})
            port_bindings.setdefault(key, []).append(binding)
    stdin_attach = ns.interactive
    attach = {s.lower() for s in ns.attach}
    for s in attach:
        if s not in ("stdin", "stdout", "stderr"):
            raise InvalidArgument(f"valid streams are STDIN, STDOUT and STDERR, not {s!r}")
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
    if getattr(ns, "detach", False):
        # docker run -d: nothing is attached, and an open stdin (-di) stays open for
        # every later attach instead of closing after the first one
        config.update(AttachStdin=False, AttachStdout=False, AttachStderr=False,
                      StdinOnce=False)
    if ns.entrypoint is not None:
        # docker keeps the value as one word: `--entrypoint "sh -c"` runs "sh -c"; an
        # empty one is sent as [""], which resets the image's entrypoint
        config["Entrypoint"] = [ns.entrypoint]
    if ns.workdir:
        if not ns.workdir.startswith("/"):
            raise InvalidArgument(f"the working directory '{ns.workdir}' is invalid: it needs"
                                  " to be an absolute path")
        config["WorkingDir"] = ns.workdir
    if ns.user:
        config["User"] = ns.user
    if ns.hostname:
        config["Hostname"] = ns.hostname
    if ns.domainname:
        config["Domainname"] = ns.domainname
    if ns.mac_address:
        config["MacAddress"] = ns.mac_address
    if ns.stop_signal:
        config["StopSignal"] = ns.stop_signal
    if ns.stop_timeout is not None:
        config["StopTimeout"] = ns.stop_timeout
    _health_config(ns, config)
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
        "VolumesFrom": ns.volumes_from or None,
        "PidMode": ns.pid or "",
        "IpcMode": ns.ipc or "",
        "UTSMode": ns.uts or "",
        "CgroupnsMode": ns.cgroupns or "",
        "CgroupParent": ns.cgroup_parent or "",
        "Devices": [parse_device(d) for d in ns.device] or None,
        "DeviceCgroupRules": ns.device_cgroup_rule or None,
        "OomKillDisable": ns.oom_kill_disable,
        "Links": ns.link or None,
        "Isolation": ns.isolation or "",
        "UsernsMode": ns.userns or "",
        "VolumeDriver": ns.volume_driver or "",
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
    if ns.storage_opt:
        host_config["StorageOpt"] = dict(o.partition("=")[::2] for o in ns.storage_opt)
    if ns.gpus is not None:
        host_config["DeviceRequests"] = [{"Driver": "", "Count": -1 if ns.gpus == "all"
                                          else 0, "Capabilities": [["gpu"]],
                                          "Options": {}, "DeviceIDs": None}]
    for key, val in (("OomScoreAdj", ns.oom_score_adj), ("CpuPeriod", ns.cpu_period),
                     ("CpuQuota", ns.cpu_quota), ("BlkioWeight", ns.blkio_weight),
                     ("CpuRealtimePeriod", ns.cpu_rt_period),
                     ("CpuRealtimeRuntime", ns.cpu_rt_runtime)):
        if val is not None:
            host_config[key] = val
    if ns.cpuset_mems:
        host_config["CpusetMems"] = ns.cpuset_mems
    for key, specs, bps in (("BlkioDeviceReadBps", ns.device_read_bps, True),
                            ("BlkioDeviceWriteBps", ns.device_write_bps, True),
                            ("BlkioDeviceReadIOps", ns.device_read_iops, False),
                            ("BlkioDeviceWriteIOps", ns.device_write_iops, False)):
        if specs:
            host_config[key] = [_throttle(s, bps) for s in specs]
    if ns.blkio_weight_device:
        host_config["BlkioWeightDevice"] = [_weight_device(s) for s in ns.blkio_weight_device]
    if ns.memory_swappiness != -1:
        host_config["MemorySwappiness"] = ns.memory_swappiness
    kmem = _bytes(ns.kernel_memory, "--kernel-memory")
    if kmem is not None:
        host_config["KernelMemory"] = kmem
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
        sysctls = {}
        for s in ns.sysctl:
            k, eq, v = s.partition("=")
            if not eq:
                raise InvalidArgument(f"invalid argument \"{s}\" for \"--sysctl\" flag:"
                                      f" sysctl '{s}' is not whitelisted")
            sysctls[k] = v
        host_config["Sysctls"] = sysctls
    if ns.tmpfs:
        tmpfs = {}
        for t in ns.tmpfs:
            path, _, opts = t.partition(":")
            tmpfs[path] = opts
        host_config["Tmpfs"] = tmpfs
    if ns.ulimit:
        host_config["Ulimits"] = ulimits_from(ns.ulimit)
    if ns.mount:
        host_config["Mounts"] = [parse_mount(m) for m in ns.mount]
    networking: dict[str, Any] = {}
    if ns.network_alias or ns.ip or ns.ip6 or ns.link_local_ip:
        net = ns.network or "bridge"
        ipam = {k: v for k, v in (("IPv4Address", ns.ip), ("IPv6Address", ns.ip6),
                                  ("LinkLocalIPs", ns.link_local_ip)) if v}
        networking = {"EndpointsConfig": {net: {
            "Aliases": ns.network_alias or None, "IPAMConfig": ipam or None}}}
    return {"Config": config, "HostConfig": host_config, "NetworkingConfig": networking}


def _throttle(spec: str, bps: bool) -> dict[str, Any]:
    """`/dev/sda:1mb` (bps) or `/dev/sda:100` (iops), checked as docker's CLI does."""
    path, sep, rate = spec.rpartition(":")
    if not sep or not path:
        raise InvalidArgument(f"bad format: {spec}")
    if not path.startswith("/dev/"):
        raise InvalidArgument(f"bad format for device path: {path}")
    try:
        if bps:
            from ketch.fmt.units import parse_size

            value = parse_size(rate)
        else:
            value = int(rate)
        if value < 0:
            raise ValueError(rate)
    except (ValueError, InvalidArgument):
        unit = "[<unit>]" if bps else ""
        extra = " Unit is optional and can be kb, mb, or gb" if bps else ""
        raise InvalidArgument(f"invalid rate for device: {spec}. The correct format is"
                              f" <device-path>:<number>{unit}. Number must be a positive"
                              f" integer.{extra}") from None
    return {"Path": path, "Rate": value}


def _weight_device(spec: str) -> dict[str, Any]:
    path, sep, weight = spec.rpartition(":")
    if not sep or not path.startswith("/dev/"):
        raise InvalidArgument(f"bad format for device path: {spec}")
    if not weight.isdigit() or not (10 <= int(weight) <= 1000 or int(weight) == 0):
        raise InvalidArgument(f"invalid weight for device: {spec}")
    return {"Path": path, "Weight": int(weight)}


def parse_device(spec: str) -> dict[str, str]:
    """`--device /dev/x[:/dev/in-container][:rwm]` → HostConfig.Devices, as docker's
    parseDevice (a second field made only of r, w and m is the permissions)."""
    parts = spec.split(":")
    src = parts[0]
    dst = ""
    perms = "rwm"
    if len(parts) == 3:
        dst, perms = parts[1], parts[2]
    elif len(parts) == 2:
        if parts[1] and set(parts[1]) <= set("rwm"):
            perms = parts[1]
        else:
            dst = parts[1]
    elif len(parts) != 1 or not src:
        raise InvalidArgument(f"invalid device specification: {spec}")
    if not perms or not set(perms) <= set("rwm"):
        raise InvalidArgument(f"invalid device mode: {perms}")
    return {"PathOnHost": src, "PathInContainer": dst or src,
            "CgroupPermissions": perms}


def parse_mount(spec: str) -> dict[str, Any]:
    from ketch.engine import Engine

    try:
        return Engine.mount(spec)
    except InvalidArgument as e:
        raise InvalidArgument(f'invalid argument "{spec}" for "--mount" flag:'
                              f" {e.message}") from None


def ulimits_from(flags: list[str]) -> list[dict[str, Any]]:
    """`--ulimit` values (run, create, build) as HostConfig.Ulimits; the last one given
    for a name wins, as in Docker."""
    from ketch.engine import Engine

    ulimits: dict[str, dict[str, Any]] = {}
    for u in flags:
        try:
            entry = Engine.ulimit(u)
        except InvalidArgument as e:
            raise InvalidArgument(f'invalid argument "{u}" for "--ulimit" flag: {e}'
                                  ) from None
        ulimits[entry["Name"]] = entry
    return list(ulimits.values())
