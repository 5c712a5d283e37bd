"""ContainerSpec → OCI runtime-spec 1.0.2 `config.json`.

This module owns the translation from what a Docker user asked for (a `ContainerSpec`,
already resolved: user IDs are numbers, the rootfs is a directory) to the JSON an OCI
runtime executes. It decides Docker's defaults: capabilities, masked and read-only
paths, default mounts and device rules, rlimits (clamped to what this host allows),
cgroup limits. It never touches the disk except to read host facts (rlimits, the
capability bounding set, whether swap accounting exists, devices for --privileged).

Size: one job, Docker's defaults as an OCI config (capabilities, mounts, devices,
rlimits, cgroups, namespaces, seccomp hook-up), each a small function; the seccomp
profile itself is runtime/seccomp.py.
"""

from __future__ import annotations

import _signal  # not `signal`: its Signals enum imports enum, ms on `create`
import os
import resource
import stat

from ketch.errors import InvalidArgument, os_words
from ketch.oci import DEFAULT_PATH_ENV
from ketch.values import field, value

# typing, collections.abc and pathlib for annotations only, copy on first use, no
# functools (it imports collections): `create` loads this module
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from _typeshed import StrPath

OCI_VERSION = "1.0.2"

DEFAULT_SHM_SIZE = 64 * 1024 * 1024
DEFAULT_CGROUP_PARENT = "/ketch"
STOP_SIGNAL_ANNOTATION = "org.opencontainers.image.stopSignal"

# Linux capability numbers (include/uapi/linux/capability.h); index = bit.
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

# Docker's default set (moby oci/defaults.go); CapEff inside = 0x00000000a80425fb.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

RLIMIT_NAMES: dict[str, str] = {
    "as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}

# What Docker's daemon hands containers (its systemd unit sets LimitNOFILE to the
# kernel's nr_open, 1048576); clamped below to this host's hard limit.
DEFAULT_NOFILE = 1048576

MIN_MEMORY = 6 * 1024 * 1024
CPU_PERIOD = 100_000


@value
class Mount:
    """One entry of config.json `mounts` (bind mounts, volumes, tmpfs)."""

    destination: str
    source: str
    type: str = "bind"
    options: list[str] = field(default_factory=list)

    def to_oci(self) -> dict[str, Any]:
        options = list(self.options)
        # A bind mount without "bind"/"rbind" would be handed to mount(2) as a
        # filesystem type; Docker's bind mounts are recursive.
        if self.type == "bind" and not {"bind", "rbind"} & set(options):
            options.append("rbind")
        return {"destination": self.destination, "type": self.type, "source": self.source,
                "options": options}


@value
class User:
    """The numeric identity the process runs as (see ketch.runtime.users)."""

    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    home: str | None = None


@value
class ContainerSpec:
    """Everything the runtime layer needs to run one container, already resolved."""

    id: str
    rootfs: StrPath
    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    user: User = field(default_factory=User)
    hostname: str | None = None
    terminal: bool = False
    mounts: list[Mount] = field(default_factory=list)
    readonly_rootfs: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    memory: int | None = None
    memory_swap: int | None = None
    memory_reservation: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None
    # None = a new private network namespace; "host" = the host's; else a netns path.
    netns_path: str | None = None
    stop_signal: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    # name ("nofile") → (soft, hard), as `--ulimit nofile=1024:2048`.
    ulimits: dict[str, tuple[int, int]] = field(default_factory=dict)
    shm_size: int = DEFAULT_SHM_SIZE
    no_new_privileges: bool = False
    # Docker-format seccomp profile: "builtin" (Docker's default), JSON text, or
    # "unconfined"; --privileged runs without a filter whatever this says.
    seccomp: str = "builtin"
    # None = Docker's defaults; [] = none (`--security-opt systempaths=unconfined`).
    masked_paths: list[str] | None = None
    readonly_paths: list[str] | None = None
    oom_score_adj: int | None = None
    cgroup_parent: str = DEFAULT_CGROUP_PARENT
    # "shared" / "rslave" when a bind mount propagates that way (as Docker sets it)
    rootfs_propagation: str | None = None
    domainname: str | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    cpu_rt_period: int | None = None
    cpu_rt_runtime: int | None = None
    cpuset_mems: str | None = None
    memory_swappiness: int | None = None
    oom_kill_disable: bool = False
    blkio_weight: int | None = None
    # runtime-spec linux.resources.blockIO lists: throttle*Device, weightDevice
    block_io: dict[str, list[dict[str, int]]] = field(default_factory=dict)
    # namespaces other than the network's: None = a new private one, "host" = the
    # host's (no namespace entry), else a path to join (/proc/<pid>/ns/<kind>)
    pid_ns: str | None = None
    ipc_ns: str | None = None
    uts_ns: str | None = None
    # cgroup namespace: False = the host's (Docker's default on cgroup v1)
    cgroupns_private: bool = False
    # `--ipc none`: a private IPC namespace and no /dev/shm at all
    no_shm: bool = False
    # `--device`: host nodes made in the container (host_devices' shape, with "path"
    # the path inside) and allowed in the device cgroup
    devices: list[dict[str, Any]] = field(default_factory=list)
    # `--device-cgroup-rule`: runtime-spec device rules added after Docker's defaults
    device_rules: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cgroups_path(self) -> str:
        return f"{self.cgroup_parent.rstrip('/') or ''}/{self.id}"


# --- host facts -------------------------------------------------------------------


def _once(func: Callable[[], Any]) -> Callable[[], Any]:
    """`func`'s result, computed at the first call and kept."""
    kept: list[Any] = []

    def cached() -> Any:
        if not kept:
            kept.append(func())
        return kept[0]

    cached.__name__, cached.__doc__ = func.__name__, func.__doc__
    return cached


@_once
def host_capabilities() -> tuple[str, ...]:
    """Capabilities in this process's bounding set: the most any container can get.

    Sandboxed hosts (like this project's CI) lack some capabilities; asking runc for
    one it does not have fails the container, so --privileged means "all we hold".
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    mask = int(line.split()[1], 16)
                    return tuple(name for bit, name in enumerate(ALL_CAPABILITIES)
                                 if mask >> bit & 1)
    except OSError:
        pass
    return ALL_CAPABILITIES


def _host_hard_limit(name: str) -> int | None:
    """The hard limit of this process (None = unlimited): runc inherits it through
    conmon and cannot raise it without CAP_SYS_RESOURCE."""
    rlim = getattr(resource, name, None)
    if rlim is None:
        return None
    _soft, hard = resource.getrlimit(rlim)
    return None if hard == resource.RLIM_INFINITY else hard


@_once
def swap_limit_supported() -> bool:
    if os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"):
        return True
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")  # v2 always has memory.swap.max


# --- helpers ----------------------------------------------------------------------


def normalize_capability(name: str) -> str:
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in ALL_CAPABILITIES:
        raise InvalidArgument(f'invalid capability: unknown capability: "{upper}"')
    return upper


def effective_capabilities(privileged: bool, cap_add: Iterable[str],
                           cap_drop: Iterable[str]) -> list[str]:
    """Docker's rule: start from the default set (all for --privileged), drop, then add."""
    available = host_capabilities()
    if privileged:
        return list(available)
    adds = [normalize_capability(c) for c in cap_add]
    drops = [normalize_capability(c) for c in cap_drop]
    if "ALL" in drops:
        caps: list[str] = []
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in drops]
    if "ALL" in adds:
        caps = list(available)
    else:
        for cap in adds:
            if cap not in available:
                raise InvalidArgument(
                    f"capability {cap} is not available on this host: cannot add it")
            if cap not in caps:
                caps.append(cap)
    return caps


RLIM_INFINITY = 2**64 - 1  # how config.json spells "unlimited" (uint64)


def clamp_rlimit(name: str, soft: int, hard: int) -> tuple[int, int]:
    """Never ask for more than the host's hard limit; soft never above hard.

    Negative values mean unlimited (Docker's `--ulimit core=-1`).
    """
    hard = RLIM_INFINITY if hard < 0 else hard
    soft = RLIM_INFINITY if soft < 0 else soft
    host_hard = _host_hard_limit(name)
    if host_hard is not None:
        hard = min(hard, host_hard)
        soft = min(soft, host_hard)
    return min(soft, hard), hard


def build_rlimits(ulimits: Mapping[str, tuple[int, int]]) -> list[dict[str, Any]]:
    wanted: dict[str, tuple[int, int]] = {"RLIMIT_NOFILE": (DEFAULT_NOFILE, DEFAULT_NOFILE)}
    for key, (soft, hard) in ulimits.items():
        name = RLIMIT_NAMES.get(key.lower()) or (key.upper() if key.upper().startswith(
            "RLIMIT_") else None)
        if name is None or name not in RLIMIT_NAMES.values():
            raise InvalidArgument(f"invalid ulimit type: {key}")
        if hard >= 0 and soft > hard:
            raise InvalidArgument(
                f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        wanted[name] = (soft, hard)
    out = []
    for name, (soft, hard) in wanted.items():
        soft, hard = clamp_rlimit(name, soft, hard)
        out.append({"type": name, "hard": hard, "soft": soft})
    return out


def signal_number(sig: str | int) -> int:
    """`SIGTERM`, `TERM`, `15` → 15; Docker's "Invalid signal" error otherwise."""
    if isinstance(sig, int):
        return sig
    text = sig.strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    # the signal constants of the C module (SIG_DFL, SIG_BLOCK, ... are not signals)
    number = None if text.startswith("SIG_") else getattr(_signal, text, None)
    if isinstance(number, int):
        return number
    # SIGRTMIN+n forms, as Docker accepts.
    if text.startswith("SIGRTMIN+") and text[9:].isdigit():
        return int(_signal.SIGRTMIN) + int(text[9:])
    if text.startswith("SIGRTMAX-") and text[9:].isdigit():
        return int(_signal.SIGRTMAX) - int(text[9:])
    raise InvalidArgument(f"Invalid signal: {sig}")


def _env_has(env: Iterable[str], key: str) -> bool:
    prefix = key + "="
    return any(e.startswith(prefix) for e in env)


def process_env(spec_env: Iterable[str], *, hostname: str | None, home: str | None,
                terminal: bool) -> list[str]:
    """The environment Docker gives a process: PATH, HOSTNAME, TERM and HOME defaults."""
    env = list(spec_env)
    if not _env_has(env, "PATH"):
        env.insert(0, DEFAULT_PATH_ENV)
    if hostname and not _env_has(env, "HOSTNAME"):
        env.append(f"HOSTNAME={hostname}")
    if terminal and not _env_has(env, "TERM"):
        env.append("TERM=xterm")
    if not _env_has(env, "HOME"):
        env.append(f"HOME={home or '/'}")
    return env


def _default_mounts(spec: ContainerSpec) -> list[dict[str, Any]]:
    sys_mode = "rw" if spec.privileged else "ro"
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777",
                     f"size={spec.shm_size // 1024}k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", sys_mode]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", sys_mode]},
    ]


def _device_rule(allow: bool, kind: str | None = None, major: int | None = None,
                 minor: int | None = None, access: str = "rwm") -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": allow, "access": access}
    if kind is not None:
        rule["type"] = kind
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return rule


def _default_device_rules() -> list[dict[str, Any]]:
    # Deny everything, then allow what runc creates in /dev (null, zero, full, random,
    # urandom, tty, console, ptmx, pts) plus mknod of anything (Docker's "c *:* m").
    # Everything else, /dev/net/tun included, stays denied by the first rule; an explicit
    # deny after the wildcard is refused by the cgroup v1 device controller.
    return [
        _device_rule(False),
        _device_rule(True, "c", None, None, "m"),
        _device_rule(True, "b", None, None, "m"),
        _device_rule(True, "c", 1, 3), _device_rule(True, "c", 1, 5),
        _device_rule(True, "c", 1, 7), _device_rule(True, "c", 1, 8),
        _device_rule(True, "c", 1, 9), _device_rule(True, "c", 5, 0),
        _device_rule(True, "c", 5, 1), _device_rule(True, "c", 5, 2),
        _device_rule(True, "c", 136, None),
    ]


_SKIP_HOST_DEVICES = ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console", "/dev/ptmx",
                      "/dev/tty", "/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr",
                      "/dev/core")


def host_devices(root: str = "/dev") -> list[dict[str, Any]]:
    """Every char/block device node of the host, for --privileged (as Docker does)."""
    devices: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames
                       if os.path.join(dirpath, d) not in _SKIP_HOST_DEVICES]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if path in _SKIP_HOST_DEVICES:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode):
                kind = "c"
            elif stat.S_ISBLK(st.st_mode):
                kind = "b"
            else:
                continue
            devices.append({
                "path": path, "type": kind, "major": os.major(st.st_rdev),
                "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
                "uid": st.st_uid, "gid": st.st_gid,
            })
    return devices


def device_node(host_path: str, container_path: str, access: str) -> dict[str, Any]:
    """`--device`: the host node's type and numbers, to be made at `container_path`."""
    try:
        st = os.stat(host_path)
    except OSError as e:
        raise InvalidArgument(f"error gathering device information while adding custom"
                              f" device \"{host_path}\": {os_words(e)}") from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidArgument(f"error gathering device information while adding custom"
                              f" device \"{host_path}\": not a device node")
    return {"path": container_path, "type": kind, "major": os.major(st.st_rdev),
            "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid, "gid": st.st_gid, "access": access}


def parse_device_cgroup_rule(rule: str) -> dict[str, Any]:
    """`c 1:3 rwm`, `a *:* m`: Docker's --device-cgroup-rule grammar → a spec rule."""
    parts = rule.split()
    nums = parts[1].split(":") if len(parts) == 3 else []
    if (len(parts) != 3 or parts[0] not in ("a", "b", "c") or len(nums) != 2
            or not all(n == "*" or n.isdigit() for n in nums)
            or not parts[2] or not set(parts[2]) <= set("rwm") or len(parts[2]) > 3):
        raise InvalidArgument(f"invalid device cgroup format '{rule}'")
    major, minor = (None if n == "*" else int(n) for n in nums)
    return _device_rule(True, parts[0], major, minor, parts[2])


def _memory_resources(spec: ContainerSpec) -> dict[str, Any]:
    memory: dict[str, Any] = {}
    limit = spec.memory or 0
    swap = spec.memory_swap or 0
    if limit < 0:
        raise InvalidArgument("invalid memory limit: must be a positive number of bytes")
    if limit and limit < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if swap and not limit:
        raise InvalidArgument(
            "You should always set the Memory limit when using Memoryswap limit, see usage")
    if limit:
        memory["limit"] = limit
        if swap_limit_supported():
            if swap == 0:
                # Docker: with -m alone the container may use as much swap as memory.
                memory["swap"] = limit * 2
            elif swap == -1:
                memory["swap"] = -1
            elif swap < limit:
                raise InvalidArgument(
                    "Minimum memoryswap limit should be larger than memory limit, see usage")
            else:
                memory["swap"] = swap
    if spec.memory_reservation:
        if limit and spec.memory_reservation > limit:
            raise InvalidArgument(
                "Minimum memory limit can not be less than memory reservation limit, "
                "see usage")
        memory["reservation"] = spec.memory_reservation
    return memory


def _cpu_resources(spec: ContainerSpec) -> dict[str, Any]:
    cpu: dict[str, Any] = {}
    if spec.cpus is not None and spec.cpus != 0:
        ncpu = os.cpu_count() or 1
        if spec.cpus < 0.01 or spec.cpus > ncpu:
            raise InvalidArgument(
                f"Range of CPUs is from 0.01 to {ncpu:.2f}, as there are only {ncpu} CPUs "
                "available")
        cpu["period"] = CPU_PERIOD
        cpu["quota"] = int(round(spec.cpus * CPU_PERIOD))
    if spec.cpu_shares:
        if spec.cpu_shares < 0:
            raise InvalidArgument("invalid CPU shares: must be positive")
        # The kernel's bounds for cpu.shares; Docker clamps the same way.
        cpu["shares"] = max(2, min(262144, spec.cpu_shares))
    if spec.cpu_period:
        cpu["period"] = spec.cpu_period
    if spec.cpu_quota:
        cpu["quota"] = spec.cpu_quota
    if spec.cpu_rt_period:
        cpu["realtimePeriod"] = spec.cpu_rt_period
    if spec.cpu_rt_runtime:
        cpu["realtimeRuntime"] = spec.cpu_rt_runtime
    if spec.cpuset_cpus:
        cpu["cpus"] = spec.cpuset_cpus
    if spec.cpuset_mems:
        cpu["mems"] = spec.cpuset_mems
    return cpu


def _namespaces(spec: ContainerSpec) -> list[dict[str, Any]]:
    namespaces: list[dict[str, Any]] = []
    for kind, where in (("pid", spec.pid_ns), ("ipc", spec.ipc_ns), ("uts", spec.uts_ns)):
        if where is None:
            namespaces.append({"type": kind})
        elif where != "host":
            namespaces.append({"type": kind, "path": where})
    namespaces.append({"type": "mount"})
    if spec.cgroupns_private:
        namespaces.append({"type": "cgroup"})
    if spec.netns_path is None:
        namespaces.append({"type": "network"})
    elif spec.netns_path != "host":
        namespaces.append({"type": "network", "path": spec.netns_path})
    return namespaces


def _oci_user(user: User) -> dict[str, Any]:
    # Docker lists the primary group first among the supplementary ones (moby's
    # getUser), so `id` shows "groups=33(www-data)" rather than no groups at all.
    gids = list(dict.fromkeys([user.gid, *user.additional_gids]))
    return {"uid": user.uid, "gid": user.gid, "additionalGids": gids}


def _seccomp(profile: str, caps: list[str]) -> dict[str, Any] | None:
    """linux.seccomp for `profile` resolved against the container's capabilities, None
    for no filter. As Docker: a kernel without seccomp runs containers unfiltered, but
    refuses a custom profile. The profile module is loaded only here, when a
    config.json is written."""
    if profile == "unconfined":
        return None
    from ketch.runtime.seccomp import (
        default_profile,
        load_profile,
        oci_seccomp,
        seccomp_supported,
    )

    if not seccomp_supported():
        if profile == "builtin":
            return None
        raise InvalidArgument(
            "seccomp is not enabled in your kernel, cannot run a custom seccomp profile")
    doc = default_profile() if profile == "builtin" else load_profile(profile)
    return oci_seccomp(doc, caps)


def generate_config(spec: ContainerSpec) -> dict[str, Any]:
    """Build the OCI runtime-spec 1.0.2 config.json document for `spec`."""
    if not spec.args:
        raise InvalidArgument("no command specified")
    if not spec.id:
        raise InvalidArgument("container ID must not be empty")
    if not spec.cwd.startswith("/"):
        raise InvalidArgument(
            f"the working directory '{spec.cwd}' is invalid, it needs to be an absolute path")

    caps = effective_capabilities(spec.privileged, spec.cap_add, spec.cap_drop)
    user = _oci_user(spec.user)
    process: dict[str, Any] = {
        "terminal": spec.terminal,
        "user": user,
        "args": list(spec.args),
        "env": process_env(spec.env, hostname=spec.hostname, home=spec.user.home,
                           terminal=spec.terminal),
        "cwd": spec.cwd,
        "capabilities": {
            "bounding": list(caps),
            "effective": list(caps),
            "permitted": list(caps),
            # Empty inheritable and ambient sets, as Docker since CVE-2022-24769.
            "inheritable": [],
            "ambient": [],
        },
        "rlimits": build_rlimits(spec.ulimits),
        "noNewPrivileges": spec.no_new_privileges,
    }
    if spec.oom_score_adj is not None:
        process["oomScoreAdj"] = spec.oom_score_adj

    user_destinations = {m.destination.rstrip("/") or "/" for m in spec.mounts}
    if spec.no_shm:
        user_destinations.add("/dev/shm")
    mounts = [m for m in _default_mounts(spec) if m["destination"] not in user_destinations]
    mounts.extend(m.to_oci() for m in spec.mounts)

    resources: dict[str, Any] = {
        "devices": [_device_rule(True)] if spec.privileged else _default_device_rules(),
    }
    if not spec.privileged:
        resources["devices"] += [
            _device_rule(True, d["type"], d["major"], d["minor"], d.get("access", "rwm"))
            for d in spec.devices]
        resources["devices"] += list(spec.device_rules)
    memory = _memory_resources(spec)
    if spec.memory_swappiness is not None:
        memory["swappiness"] = spec.memory_swappiness
    if spec.oom_kill_disable:
        memory["disableOOMKiller"] = True
    if memory:
        resources["memory"] = memory
    cpu = _cpu_resources(spec)
    if cpu:
        resources["cpu"] = cpu
    if spec.pids_limit is not None and spec.pids_limit > 0:
        resources["pids"] = {"limit": spec.pids_limit}
    if spec.blkio_weight or spec.block_io:
        block_io: dict[str, Any] = dict(spec.block_io)
        if spec.blkio_weight:
            block_io["weight"] = spec.blkio_weight
        resources["blockIO"] = block_io

    linux: dict[str, Any] = {
        "namespaces": _namespaces(spec),
        "resources": resources,
        "cgroupsPath": spec.cgroups_path,
        "devices": host_devices() if spec.privileged else [
            {k: v for k, v in d.items() if k != "access"} for d in spec.devices],
    }
    if spec.rootfs_propagation:
        linux["rootfsPropagation"] = spec.rootfs_propagation
    if not spec.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS if spec.masked_paths is None
                                    else spec.masked_paths)
        linux["readonlyPaths"] = list(READONLY_PATHS if spec.readonly_paths is None
                                      else spec.readonly_paths)
        seccomp = _seccomp(spec.seccomp, caps)
        if seccomp is not None:
            linux["seccomp"] = seccomp
    if spec.domainname and spec.uts_ns != "host":
        # runc 1.1 ignores the spec's `domainname`; the UTS sysctl sets it, as moby does
        spec.sysctls = {"kernel.domainname": spec.domainname, **spec.sysctls}
    if spec.sysctls:
        if spec.netns_path == "host" and any(k.startswith("net.") for k in spec.sysctls):
            raise InvalidArgument(
                "sysctl net.* is not allowed when the network namespace is the host's")
        linux["sysctl"] = dict(spec.sysctls)

    annotations = dict(spec.annotations)
    if spec.stop_signal:
        signal_number(spec.stop_signal)  # validate early, with Docker's message
        annotations.setdefault(STOP_SIGNAL_ANNOTATION, spec.stop_signal)

    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": os.fspath(spec.rootfs), "readonly": spec.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    }
    if spec.hostname and spec.uts_ns != "host":
        config["hostname"] = spec.hostname
    if annotations:
        config["annotations"] = annotations
    return config


def exec_process(base: Mapping[str, Any], args: list[str], *, env: Iterable[str] = (),
                 cwd: str | None = None, user: User | None = None, terminal: bool = False,
                 privileged: bool | None = None) -> dict[str, Any]:
    """The `process` object for `docker exec`, derived from the container's config.json.

    The exec'd process inherits the container's environment, working directory, user,
    capabilities and rlimits; `env` entries are added or override, `user`/`cwd`
    replace. `privileged=True` grants every capability this host has.
    """
    if not args:
        raise InvalidArgument("No exec command specified")
    base_process = base.get("process", base)
    import copy

    process = copy.deepcopy(dict(base_process))
    process["args"] = list(args)
    process["terminal"] = terminal
    merged: dict[str, str] = {}
    for entry in list(process.get("env", [])) + list(env):
        key, _, value = entry.partition("=")
        merged[key] = value
    if terminal and "TERM" not in merged:
        merged["TERM"] = "xterm"
    if user is not None:
        process["user"] = _oci_user(user)
        if user.home and not any(e.startswith("HOME=") for e in env):
            merged["HOME"] = user.home
    process["env"] = [f"{k}={v}" for k, v in merged.items()]
    if cwd:
        process["cwd"] = cwd
    if privileged:
        caps = list(host_capabilities())
        process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps,
                                   "inheritable": [], "ambient": []}
    process.pop("consoleSize", None)
    return process
