"""HostConfig options that are not mounts, network or resources already handled in
lifecycle: checked at `create` with Docker's messages (nothing is created when one is
wrong), and resolved at `start` into ContainerSpec fields (namespaces to join, device
nodes, cgroup settings)."""

from __future__ import annotations

import os

from ketch.errors import Conflict, InvalidArgument, os_words

TYPE_CHECKING = False  # typing only for annotations: it is not on create's path
if TYPE_CHECKING:
    from typing import Any

    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService
    from ketch.runtime.spec import ContainerSpec

RUNTIMES = ("runc", "crun")

# docker's CLI accepts only sysctls that are namespaced per container (opts.ValidateSysctl)
SYSCTL_NAMES = frozenset((
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
    "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"))
SYSCTL_PREFIXES = ("net.", "fs.mqueue.")

# dockerd's defaults for a container with a network namespace of its own (moby's
# adaptContainerSettings): unprivileged ICMP echo sockets without CAP_NET_RAW, and ports
# below 1024 without CAP_NET_BIND_SERVICE (a `USER node` app listening on 80). A value
# the user gives wins; a kernel without the key gets neither.
_DEFAULT_NET_SYSCTLS = (("net.ipv4.ping_group_range", "0 2147483647"),
                        ("net.ipv4.ip_unprivileged_port_start", "0"))


def sysctls(hc: dict[str, Any]) -> dict[str, str]:
    """The container's sysctls: the user's, and dockerd's network defaults when its
    network namespace is its own (not the host's, another container's, or a pod infra's
    namespace, which Podman and the CRI leave as the kernel has it)."""
    out = dict(hc.get("Sysctls") or {})
    mode = hc.get("NetworkMode") or "default"
    if mode == "host" or mode.startswith("container:") or hc.get("_PodInfra"):
        return out
    for key, value in _DEFAULT_NET_SYSCTLS:
        if key not in out and os.path.exists("/proc/sys/" + key.replace(".", "/")):
            out[key] = value
    return out


_BLKIO_WEIGHT_FILES = ("/sys/fs/cgroup/blkio/blkio.weight", "/sys/fs/cgroup/blkio/blkio.bfq.weight",
                       "/sys/fs/cgroup/io.weight", "/sys/fs/cgroup/io.bfq.weight")


# real-time group scheduling (CONFIG_RT_GROUP_SCHED) shows as these files on cgroup v1;
# cgroup v2 has no real-time controller
_CPU_V1 = "/sys/fs/cgroup/cpu"
_RT_PERIOD = f"{_CPU_V1}/cpu.rt_period_us"
_RT_RUNTIME = f"{_CPU_V1}/cpu.rt_runtime_us"


def _reserve_rt_runtime(parent: str, runtime: int, period: int | None) -> None:
    """A cgroup gets real-time bandwidth (runtime per period) only out of its parent's
    (none for a new cgroup): give each ancestor of the container's cgroup at least the
    container's share, as dockerd's --cpu-rt-runtime gives its parent cgroup a budget."""
    share = runtime / (period or 1_000_000)  # a new cgroup's period is the kernel's 1 s
    import math

    path = _CPU_V1
    for part in [p for p in parent.split("/") if p]:
        path = f"{path}/{part}"
        os.makedirs(path, exist_ok=True)
        f = f"{path}/cpu.rt_runtime_us"
        with open(f"{path}/cpu.rt_period_us") as fh:
            needed = math.ceil(share * int(fh.read().strip()))
        with open(f) as fh:
            if int(fh.read().strip() or 0) >= needed:
                continue
        try:
            with open(f, "w") as fh:
                fh.write(str(needed))
        except OSError as e:
            raise InvalidArgument(
                f"cannot give cgroup {path[len(_CPU_V1):]} {needed} µs of real-time runtime:"
                f" {os_words(e)} (the host's budget is"
                f" {open(_RT_RUNTIME).read().strip()} µs in each period, shared by its"
                " cgroups)") from None


def _namespace_mode(value: str, kind: str, allowed: tuple[str, ...]) -> None:
    if value in allowed or (value.startswith("container:") and len(value) > 10
                            and "container" in allowed):
        return
    raise InvalidArgument(f"invalid {kind} mode: {value}")


def default_cgroupns_mode() -> str:
    """dockerd's default: a private cgroup namespace on cgroup v2, the host's on v1."""
    return "private" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "host"


def blkio_weight_supported() -> bool:
    return any(os.path.exists(p) for p in _BLKIO_WEIGHT_FILES)


def checked_blkio_weight(weight: int, warnings: list[str]) -> int:
    """--blkio-weight as dockerd takes it at create and at update: 0 (discarded, with its
    warning) where the host has no blkio weight file, whatever the value (dockerd looks
    there first), else refused out of range."""
    if not blkio_weight_supported():
        warnings.append("Your kernel does not support Block I/O weight or the cgroup is"
                        " not mounted. Weight discarded.")
        return 0
    if not 10 <= weight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    return weight


def validate(svc: ContainerService, hc: dict[str, Any], config: dict[str, Any],
             warnings: list[str]) -> None:
    """Docker's create-time checks of these options; settings this host cannot apply
    are dropped with Docker's warning, as dockerd does."""
    runtime = hc.get("Runtime") or "runc"
    if runtime not in RUNTIMES:
        raise InvalidArgument(f"Unknown runtime specified {runtime}")
    if (hc.get("Isolation") or "default") != "default":
        raise InvalidArgument(f'Invalid isolation: "{hc["Isolation"]}" - linux only supports'
                              " 'default'")
    if (hc.get("UsernsMode") or "host") != "host":
        raise InvalidArgument("--userns: invalid USER mode")
    if hc.get("StorageOpt"):
        raise InvalidArgument("--storage-opt is supported only for overlay over xfs with"
                              " 'pquota' mount option")
    driver = hc.get("VolumeDriver") or "local"
    if driver != "local":
        raise InvalidArgument(f'error looking up volume plugin {driver}: plugin "{driver}"'
                              " not found")
    if hc.get("DeviceRequests"):
        caps = [c for r in hc["DeviceRequests"] for c in (r.get("Capabilities") or [])]
        raise InvalidArgument(
            f'could not select device driver "" with capabilities: {_go_list(caps)}:'
            " ketch has no GPU support")
    for key, value in (hc.get("Sysctls") or {}).items():
        if key not in SYSCTL_NAMES and not key.startswith(SYSCTL_PREFIXES):
            raise InvalidArgument(f"sysctl '{key}={value}' is not whitelisted")
    adj = hc.get("OomScoreAdj")
    if adj is not None and not -1000 <= adj <= 1000:
        raise InvalidArgument(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidArgument(
            f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    check_cpu_period_quota(hc)
    rt_period, rt_runtime = hc.get("CpuRealtimePeriod") or 0, hc.get("CpuRealtimeRuntime") or 0
    if rt_period and not os.path.exists(_RT_PERIOD):
        raise InvalidArgument("Your kernel does not support cgroup cpu real-time period")
    if rt_runtime and not os.path.exists(_RT_RUNTIME):
        raise InvalidArgument("Your kernel does not support cgroup cpu real-time runtime")
    if rt_period and rt_runtime and rt_runtime > rt_period:
        raise InvalidArgument("cpu real-time runtime cannot be higher than cpu real-time"
                              " period")
    if hc.get("BlkioWeight"):
        hc["BlkioWeight"] = checked_blkio_weight(hc["BlkioWeight"], warnings)
    if hc.get("BlkioWeightDevice") and not blkio_weight_supported():
        warnings.append("Your kernel does not support BPS Block I/O weight_device or the"
                        " cgroup is not mounted. Weight-device discarded.")
        hc["BlkioWeightDevice"] = None
    for key in _THROTTLES:
        for entry in hc.get(key) or []:
            _block_device(entry["Path"])
    if hc.get("KernelMemory"):
        # memory.kmem.limit_in_bytes is deprecated since Linux 5.4 and a no-op since 6.x:
        # dropped, as dockerd drops it where the kernel cannot apply it
        warnings.append("Your kernel does not support kernel memory limit capabilities or"
                        " the cgroup is not mounted. Limitation discarded.")
        hc["KernelMemory"] = 0
    if hc.get("OomKillDisable") and not hc.get("Memory"):
        warnings.append("Disabling the OOM killer on containers without setting a"
                        " '-m/--memory' limit may be dangerous.")
    for key, kind, allowed in (("PidMode", "PID", ("", "host", "container")),
                               ("IpcMode", "IPC", ("", "private", "shareable", "host",
                                                   "none", "container")),
                               # a pod member joins its infra's (ketch.pods)
                               ("UTSMode", "UTS", ("", "host", "container") if hc.get("_Pod")
                                else ("", "host")),
                               ("CgroupnsMode", "cgroup namespace", ("", "host", "private"))):
        mode = hc.get(key) or ""
        _namespace_mode(mode, kind, allowed)
        if mode.startswith("container:"):
            svc.get(mode.split(":", 1)[1])  # No such container: ... at create, as Docker
    # dockerd's defaults, recorded as it records them (inspect shows them)
    hc["IpcMode"] = hc.get("IpcMode") or "private"
    hc["CgroupnsMode"] = hc.get("CgroupnsMode") or default_cgroupns_mode()
    mac = config.get("MacAddress")
    if mac and not _valid_mac(mac):
        raise InvalidArgument(f"{mac} is not a valid mac address")
    parent = hc.get("CgroupParent") or ""
    if ".." in parent.split("/"):
        raise InvalidArgument(f"invalid cgroup parent {parent!r}: '..' is not allowed")
    if hc.get("Links") and (hc.get("NetworkMode") or "") == "host":
        raise InvalidArgument("conflicting options: host type networking can't be used with"
                              " links. This would result in undefined behavior")
    for link in hc.get("Links") or []:
        name, _, alias = link.partition(":")
        if not name or ":" in alias:
            raise InvalidArgument(f"invalid link format: {link}")
        svc.get(name.lstrip("/"))
    for spec in hc.get("VolumesFrom") or []:
        name, _, mode = spec.partition(":")
        if mode and mode not in ("ro", "rw", "z", "Z"):
            raise InvalidArgument(f"invalid mode for volumes-from: {mode}")
        svc.get(name)
    from ketch.runtime.spec import parse_device_cgroup_rule

    for rule in hc.get("DeviceCgroupRules") or []:
        parse_device_cgroup_rule(rule)
    for dev in hc.get("Devices") or []:
        if not dev.get("PathInContainer", "").startswith("/"):
            raise InvalidArgument(f"invalid device specification: {dev.get('PathOnHost')}:"
                                  f"{dev.get('PathInContainer')}: the container path must"
                                  " be absolute")
        _host_device(dev.get("PathOnHost") or "")


def check_cpu_period_quota(hc: dict[str, Any]) -> None:
    """dockerd's checks of NanoCpus, CpuPeriod and CpuQuota (at create and, on the
    request alone, at update)."""
    period, quota = hc.get("CpuPeriod") or 0, hc.get("CpuQuota") or 0
    if hc.get("NanoCpus") and period:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if hc.get("NanoCpus") and quota:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger"
                              " than 1s (i.e. 1000000)")
    if quota and quota < 1000 and quota != -1:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")


def check_endpoints(networking: dict[str, Any], has_ipv6: Any) -> None:
    """Endpoint settings checked at create: an IPv6 address (--ip6) needs a network
    made with --ipv6 (`has_ipv6(name)`); link-local addresses must be link-local."""
    import ipaddress

    for name, ep in ((networking or {}).get("EndpointsConfig") or {}).items():
        # the built-in networks have no DNS to answer an alias: dockerd refuses them
        if (ep or {}).get("Aliases") and name in ("bridge", "default", "host", "none"):
            raise InvalidArgument("network-scoped aliases are only supported for"
                                  " user-defined networks")
        ipam = (ep or {}).get("IPAMConfig") or {}
        v6 = ipam.get("IPv6Address")
        if v6 and not has_ipv6(name):
            raise InvalidArgument(f"Invalid address {v6}: It does not belong to any of this"
                                  f" network's subnets ({name} was not created with --ipv6)")
        for ll in ipam.get("LinkLocalIPs") or []:
            try:
                addr = ipaddress.ip_address(ll)
            except ValueError:
                addr = None
            if addr is None or not addr.is_link_local:
                raise InvalidArgument(f"invalid link-local IP address: {ll}: not in"
                                      " 169.254.0.0/16 or fe80::/10")


def _host_device(path: str) -> None:
    """Docker's create-time check of `--device`: the host path is a device node or a
    directory of them (as /dev/snd)."""
    import stat

    from ketch.fmt.gofmt import quote

    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument("error gathering device information while adding custom device"
                              f" {quote(path)}: {os_words(e)}") from None
    if not (stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise InvalidArgument("error gathering device information while adding custom device"
                              f" {quote(path)}: not a device node")


_THROTTLES = {"BlkioDeviceReadBps": "throttleReadBpsDevice",
              "BlkioDeviceWriteBps": "throttleWriteBpsDevice",
              "BlkioDeviceReadIOps": "throttleReadIOPSDevice",
              "BlkioDeviceWriteIOps": "throttleWriteIOPSDevice"}


def _block_device(path: str) -> tuple[int, int]:
    """(major, minor) of the host's device node at `path`."""
    import stat

    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument(f"error getting device information for {path}:"
                              f" {os_words(e)}") from None
    if not (stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        raise InvalidArgument(f"{path} is not a device")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def _valid_mac(mac: str) -> bool:
    parts = mac.replace("-", ":").split(":")
    return len(parts) == 6 and all(len(p) == 2 and all(ch in "0123456789abcdefABCDEF"
                                                       for ch in p) for p in parts)


def _go_list(caps: list[Any]) -> str:
    """Go's %v of [][]string: [[gpu]]."""
    return "[" + " ".join("[" + " ".join(map(str, c)) + "]" for c in caps) + "]"


def _joined(svc: ContainerService, mode: str, kind: str, what: str) -> str:
    """`container:X` → X's namespace file; X must be running, or be a pod's infra whose
    namespaces are pinned (it is being started beside this container: podns)."""
    other = svc.get(mode.split(":", 1)[1])
    pinned = None
    if other.host_config.get("_PodInfra"):
        from ketch.containers import podns

        pinned = podns.pinned(svc, other.id, kind)
    if pinned is None and (other.state not in ("running", "paused") or not other.pid):
        raise Conflict(f"cannot join {what} of a non running container: {other.id}")
    if kind == "ipc" and (other.host_config.get("IpcMode") or "private") not in (
            "shareable", "host"):
        raise Conflict(f"cannot join IPC of a non-shareable container: {other.id}: use"
                       " --ipc shareable for it")
    return pinned or f"/proc/{other.pid}/ns/{kind}"


def apply(svc: ContainerService, rec: ContainerRecord, spec: ContainerSpec) -> None:
    """Fill the spec fields of these options for `start`."""
    from ketch.runtime.spec import device_node, parse_device_cgroup_rule

    hc = rec.host_config
    c = rec.config
    spec.domainname = c.get("Domainname") or None
    spec.oom_score_adj = hc.get("OomScoreAdj")
    spec.cpu_period = hc.get("CpuPeriod") or None
    spec.cpu_quota = hc.get("CpuQuota") or None
    spec.cpuset_mems = hc.get("CpusetMems") or None
    spec.cpu_rt_period = hc.get("CpuRealtimePeriod") or None
    spec.cpu_rt_runtime = hc.get("CpuRealtimeRuntime") or None
    swappiness = hc.get("MemorySwappiness")
    spec.memory_swappiness = None if swappiness in (None, -1) else swappiness
    spec.oom_kill_disable = bool(hc.get("OomKillDisable"))
    spec.blkio_weight = hc.get("BlkioWeight") or None
    for key, field in _THROTTLES.items():
        entries = []
        for entry in hc.get(key) or []:
            major, minor = _block_device(entry["Path"])
            entries.append({"major": major, "minor": minor, "rate": entry["Rate"]})
        if entries:
            spec.block_io[field] = entries
    weights = []
    for entry in hc.get("BlkioWeightDevice") or []:
        major, minor = _block_device(entry["Path"])
        weights.append({"major": major, "minor": minor, "weight": entry["Weight"]})
    if weights:
        spec.block_io["weightDevice"] = weights
    parent = hc.get("CgroupParent")
    if parent:
        spec.cgroup_parent = parent if parent.startswith("/") else "/" + parent
    spec.cgroupns_private = (hc.get("CgroupnsMode") or default_cgroupns_mode()) == "private"
    for key, kind, what in (("PidMode", "pid", "PID"), ("IpcMode", "ipc", "IPC"),
                            ("UTSMode", "uts", "UTS")):
        mode = hc.get(key) or ""
        if mode == "host":
            setattr(spec, f"{kind}_ns", "host")
        elif mode.startswith("container:"):
            setattr(spec, f"{kind}_ns", _joined(svc, mode, kind, what))
    spec.no_shm = hc.get("IpcMode") == "none"
    spec.devices = [device_node(d["PathOnHost"], d.get("PathInContainer") or d["PathOnHost"],
                                d.get("CgroupPermissions") or "rwm")
                    for d in hc.get("Devices") or []]
    spec.device_rules = [parse_device_cgroup_rule(r) for r in hc.get("DeviceCgroupRules") or []]
    if spec.cpu_rt_runtime:
        _reserve_rt_runtime(spec.cgroup_parent, spec.cpu_rt_runtime, spec.cpu_rt_period)


def links(svc: ContainerService, rec: ContainerRecord, net: dict[str, Any]
          ) -> tuple[list[tuple[str, str]], list[str]]:
    """`--link name[:alias]`: /etc/hosts entries (names, IP) and Docker's legacy link
    environment (ALIAS_NAME, ALIAS_PORT_80_TCP_ADDR, ALIAS_ENV_X, ...). The linked
    container must be running, on a network this container is on."""
    hosts: list[tuple[str, str]] = []
    env: list[str] = []
    mine = set((net.get("Networks") or {}).keys())
    for link in rec.host_config.get("Links") or []:
        name, _, alias = link.partition(":")
        other = svc.get(name.lstrip("/"))
        alias = alias or other.name
        if other.state not in ("running", "paused"):
            raise Conflict(f"Cannot link to a non running container: /{other.name} AS"
                           f" /{rec.name}/{alias}")
        nets = other.network.get("Networks") or {}
        shared = [n for n in nets if n in mine]
        if not shared:
            raise Conflict(f"Cannot link to /{other.name}, as it does not belong to the"
                           " default network")
        ip = nets[shared[0]].get("IPAddress") or ""
        names = [alias] + [n for n in (other.id[:12], other.name) if n != alias]
        hosts.append((" ".join(names), ip))
        prefix = "".join(ch if ch.isalnum() else "_" for ch in alias).upper()
        env.append(f"{prefix}_NAME=/{rec.name}/{alias}")
        ports = []
        for key in other.config.get("ExposedPorts") or {}:
            port, _, proto = key.partition("/")
            ports.append((int(port), proto or "tcp"))
        for i, (port, proto) in enumerate(sorted(ports)):
            url = f"{proto}://{ip}:{port}"
            if i == 0:
                env.append(f"{prefix}_PORT={url}")
            key = f"{prefix}_PORT_{port}_{proto.upper()}"
            env += [f"{key}={url}", f"{key}_ADDR={ip}", f"{key}_PORT={port}",
                    f"{key}_PROTO={proto}"]
        for entry in other.config.get("Env") or []:
            k, _, v = entry.partition("=")
            if k not in ("HOME", "PATH"):
                env.append(f"{prefix}_ENV_{k}={v}")
    return hosts, env


def volumes_from(svc: ContainerService, rec: ContainerRecord) -> list[tuple[dict[str, Any], bool]]:
    """`--volumes-from X[:ro|rw]`: X's volume and bind mounts, each with whether the
    new container gets it read-only (X's own mode unless `:ro`/`:rw` overrides)."""
    out: list[tuple[dict[str, Any], bool]] = []
    for spec in rec.host_config.get("VolumesFrom") or []:
        name, _, mode = spec.partition(":")
        other = svc.get(name)
        mounts = other.extra.get("Mounts") or []
        if not mounts and (other.host_config.get("Binds") or other.host_config.get("Mounts")
                           or other.config.get("Volumes")):
            raise Conflict(f"cannot take volumes from container {other.name}: it has never"
                           " been started, so its volumes do not exist yet")
        for m in mounts:
            ro = (mode == "ro") or (mode != "rw" and not m.get("RW", True))
            out.append((m, ro))
    return out


# Every `run`/`create` flag and how it takes effect (tests/containers/test_option_table.py
# keeps this table, the declared flags and the tests in step: a flag cannot be added
# without an entry here and a test that uses it).
CREATE_OPTIONS: dict[str, str] = {
    "--add-host": "HostConfig.ExtraHosts → lines of the container's /etc/hosts",
    "--attach": "Config.Attach* → which streams an attached run copies",
    "--blkio-weight": "blockIO.weight (discarded with Docker's warning without a weight file)",
    "--blkio-weight-device": "blockIO.weightDevice (discarded like --blkio-weight)",
    "--cap-add": "process capabilities added to Docker's default set",
    "--cap-drop": "process capabilities removed from Docker's default set",
    "--cgroup-parent": "cgroupsPath <parent>/<id>",
    "--cgroupns": "a cgroup namespace or the host's",
    "--cidfile": "the CLI writes the new container's ID to the file",
    "--cpu-period": "cpu.cfs_period_us",
    "--cpu-quota": "cpu.cfs_quota_us",
    "--cpu-rt-period": "cpu.rt_period_us (refused without real-time group scheduling)",
    "--cpu-rt-runtime": "cpu.rt_runtime_us, the parent cgroups given that budget (refused"
                        " without real-time group scheduling)",
    "--cpu-shares": "cpu.shares",
    "--cpus": "cpu quota over a 100 ms period",
    "--cpuset-cpus": "cpuset.cpus (a CPU the host lacks: Docker's one-line error)",
    "--cpuset-mems": "cpuset.mems",
    "--detach-keys": "the key sequence an attached session detaches on",
    "--device": "a device node in the container's /dev, allowed in the device cgroup",
    "--device-cgroup-rule": "an extra device cgroup rule",
    "--device-read-bps": "blkio.throttle.read_bps_device",
    "--device-read-iops": "blkio.throttle.read_iops_device",
    "--device-write-bps": "blkio.throttle.write_bps_device",
    "--device-write-iops": "blkio.throttle.write_iops_device",
    "--disable-content-trust": "accepted; ketch verifies no signatures",
    "--dns": "nameserver lines of the container's resolv.conf",
    "--dns-option": "options line of the container's resolv.conf",
    "--dns-search": "search line of the container's resolv.conf",
    "--domainname": "kernel.domainname in the container's UTS namespace",
    "--entrypoint": "Config.Entrypoint, one word",
    "--env": "process environment",
    "--env-file": "process environment, read by the CLI",
    "--expose": "Config.ExposedPorts, one entry per port of a range",
    "--gpus": "refused: ketch has no GPU support",
    "--group-add": "supplementary groups of the process",
    "--health-cmd": "Config.Healthcheck.Test CMD-SHELL, run by the health timer"
                    " (ketch.containers.health)",
    "--health-interval": "Config.Healthcheck.Interval: the wait between checks",
    "--health-on-failure": "Config.HealthcheckOnFailureAction (Podman's): kill, stop or"
                           " restart a container that turned unhealthy",
    "--health-retries": "Config.Healthcheck.Retries: failures in a row that make it"
                        " unhealthy",
    "--health-start-interval": "Config.Healthcheck.StartInterval: the wait between checks"
                               " while starting in the start period",
    "--health-start-period": "Config.Healthcheck.StartPeriod: failures in it do not count"
                             " while starting",
    "--health-timeout": "Config.Healthcheck.Timeout: a check running longer is killed and"
                        " fails",
    "--hostname": "the UTS host name and /etc/hostname",
    "--init": "tini as PID 1: zombies reaped, signals forwarded",
    "--interactive": "the container's stdin stays open and is attached",
    "--ip": "the address on a user-defined network (refused on the default bridge)",
    "--ip6": "the IPv6 address on a network created with --ipv6 (refused on others)",
    "--link-local-ip": "extra link-local addresses (169.254.0.0/16, fe80::/10) on eth0",
    "--ipc": "a private, shareable, host, none or another container's IPC namespace",
    "--isolation": "only 'default', as Docker on Linux",
    "--kernel-memory": "accepted and discarded with Docker's warning",
    "--label": "Config.Labels",
    "--label-file": "Config.Labels, lines without '=' left out",
    "--link": "an /etc/hosts entry and Docker's legacy link environment",
    "--log-driver": "HostConfig.LogConfig.Type (ketch.containers.logconfig)",
    "--log-opt": "HostConfig.LogConfig.Config (ketch.containers.logconfig); k8s-file's"
                 " path= is where conmon writes the log",
    "--mac-address": "the MAC address of eth0",
    "--memory": "memory.limit_in_bytes / memory.max",
    "--memory-reservation": "memory.soft_limit_in_bytes / memory.low",
    "--memory-swap": "memory plus swap limit",
    "--memory-swappiness": "memory.swappiness",
    "--mount": "bind, volume and tmpfs mounts",
    "--name": "the container's name",
    "--network": "bridge, host, none, container:X or a user-defined network",
    "--network-alias": "DNS names on a user-defined network",
    "--no-healthcheck": "Config.Healthcheck NONE",
    "--oom-kill-disable": "memory.oom_control (with Docker's warning without -m)",
    "--oom-score-adj": "the process's oom_score_adj",
    "--pid": "the host's or another container's PID namespace",
    "--pids-limit": "pids.max",
    "--pod": "joins the pod's infra namespaces (network, IPC, UTS): ketch.pods.service.join",
    "--platform": "a local image of another platform is not used; that platform is pulled",
    "--privileged": "every capability in ketch's bounding set and every host device",
    "--publish": "host ports forwarded to the container",
    "--publish-all": "every exposed port on a host port from ip_local_port_range",
    "--pull": "pull always, when missing, or never",
    "--quiet": "no pull progress",
    "--read-only": "a read-only root filesystem",
    "--restart": "HostConfig.RestartPolicy",
    "--rm": "the container is removed when it exits",
    "--runtime": "runc or crun; anything else refused at create",
    "--security-opt": "no-new-privileges, seccomp, apparmor, label options",
    "--shm-size": "size of /dev/shm",
    "--stop-signal": "the signal `stop` sends",
    "--stop-timeout": "seconds `stop` waits before SIGKILL",
    "--storage-opt": "refused: overlay on the host filesystem has no per-container size",
    "--sysctl": "namespaced sysctls (Docker's list), others refused",
    "--tmpfs": "tmpfs mounts",
    "--tty": "a pseudo-terminal for the process",
    "--ulimit": "process rlimits",
    "--user": "the process's user and group",
    "--userns": "only 'host' (no user-namespace remapping)",
    "--uts": "the host's UTS namespace",
    "--volume": "bind mounts and volumes",
    "--volume-driver": "only 'local'",
    "--volumes-from": "another container's volume and bind mounts",
    "--workdir": "the process's working directory",
}


# Every `exec` flag and how it takes effect (same test as CREATE_OPTIONS).
EXEC_OPTIONS: dict[str, str] = {
    "--detach": "the process runs on; the command returns once it started",
    "--detach-keys": "the key sequence that ends the attached session, the process going on",
    "--env": "process environment, over the container's",
    "--env-file": "process environment, read by the CLI",
    "--interactive": "the process's stdin is this command's",
    "--privileged": "every capability in ketch's bounding set for the process",
    "--tty": "a pseudo-terminal for the process",
    "--user": "the process's user and group",
    "--workdir": "the process's working directory",
}
