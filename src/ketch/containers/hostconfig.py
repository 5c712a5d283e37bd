"""Checks on a create request (Config, HostConfig) before anything is made, with the
messages the Docker daemon gives for the same values.

Every front door (the CLI today, the API server later) goes through
ContainerService.create, which calls `validate` first: a request refused here leaves no
container, volume or directory behind. Where Docker accepts a value that can only fail
later (a CPU quota under the kernel's 1 ms, negative CPU shares, a cpuset naming CPUs
the host lacks), it is refused here instead of at `start` with runc's text.
"""

from __future__ import annotations

import os
import posixpath

from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MIN_MEMORY = 6 * 1024 * 1024  # Docker's floor for a memory limit or reservation
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

# The rlimits Docker lets a container set (go-units' table; "as" is left out as there).
ULIMIT_NAMES = frozenset({
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
    "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"})

# Mode words a `-v src:dst:mode` may carry, by group; one of each group at most.
_RW_MODES = {"rw", "ro", "ro-non-recursive", "ro-force-recursive", "rro"}
_LABEL_MODES = {"z", "Z"}
_PROPAGATION_MODES = {"private", "rprivate", "slave", "rslave", "shared", "rshared"}
_COPY_MODES = {"nocopy"}
_CONSISTENCY_MODES = {"consistent", "cached", "delegated"}
_MODE_GROUPS = (_RW_MODES, _LABEL_MODES, _PROPAGATION_MODES, _COPY_MODES, _CONSISTENCY_MODES)


def valid_mount_mode(mode: str) -> bool:
    if mode == "":
        return True
    counts = [0] * len(_MODE_GROUPS)
    for word in mode.split(","):
        for i, group in enumerate(_MODE_GROUPS):
            if word in group:
                counts[i] += 1
                break
        else:
            return False
    return max(counts) <= 1


def check_volume_flag(spec: str) -> None:
    """What the docker CLI refuses in a `-v` value before sending it (its compose-style
    volume parser): an empty value, an empty field, more than three fields."""
    if spec == "":
        raise InvalidArgument("invalid empty volume spec")
    if len(spec) <= 2:
        return
    fields = spec.split(":")
    for i, field in enumerate(fields):
        if field == "":
            raise InvalidArgument(f"invalid spec: {spec}: empty section between colons")
        if i == 3:
            raise InvalidArgument(f"invalid spec: {spec}: too many colons")


def parse_bind(spec: str) -> tuple[str, str, str]:
    """A HostConfig.Binds entry → (source, target, mode), as the daemon parses it."""
    bad_spec = f"invalid volume specification: '{spec}'"
    parts = spec.split(":", 3)
    if parts[0] == "" or len(parts) not in (2, 3):
        raise InvalidArgument(bad_spec)
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    if len(parts) == 2 and valid_mount_mode(target):
        raise InvalidArgument(bad_spec)  # `/data:ro`: a mode where the target belongs
    if not valid_mount_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    kind = "bind" if source.startswith("/") else "volume"
    _check_target(target, f"{bad_spec}: invalid mount config for type \"{kind}\"")
    return source, target, mode


def _check_target(target: str, context: str) -> None:
    if not target:
        raise InvalidArgument(f"{context}: field Target must not be empty")
    if _is_root(target):
        raise InvalidArgument(f"{context}: invalid specification: destination can't be '/'")
    if not target.startswith("/"):
        raise InvalidArgument(f"{context}: invalid mount path: '{target}' mount path must be"
                              " absolute")


def _is_root(target: str) -> bool:
    # normpath keeps a leading "//" (POSIX leaves its meaning open); it is "/" here
    return posixpath.normpath(target) in ("/", "//")


def parse_ulimit(text: str) -> dict[str, Any]:
    """`nofile=1024[:2048]` → {"Name", "Soft", "Hard"}, with go-units' messages."""
    name, eq, values = text.partition("=")
    if not eq:
        raise InvalidArgument(f"invalid ulimit argument: {text}")
    if name not in ULIMIT_NAMES:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    parts = values.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"too many limit value arguments - {values}, can only have up"
                              " to two, `soft[:hard]`")
    soft = _ulimit_value(parts[0])
    hard = _ulimit_value(parts[1]) if len(parts) == 2 else soft
    entry = {"Name": name, "Soft": soft, "Hard": hard}
    check_ulimit(entry)
    return entry


def _ulimit_value(s: str) -> int:
    if s == "infinity":
        return -1
    import re

    if not re.fullmatch(r"[+-]?[0-9]+", s):
        raise InvalidArgument(f'strconv.ParseInt: parsing "{s}": invalid syntax')
    v = int(s)
    if not INT64_MIN <= v <= INT64_MAX:
        raise InvalidArgument(f'strconv.ParseInt: parsing "{s}": value out of range')
    return v


def check_ulimit(u: dict[str, Any]) -> None:
    name, soft, hard = u.get("Name"), u.get("Soft"), u.get("Hard")
    if name not in ULIMIT_NAMES:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    if not isinstance(soft, int) or not isinstance(hard, int):
        raise InvalidArgument(f"invalid ulimit {name}: Soft and Hard must be integers")
    if hard != -1:
        if soft == -1:
            raise InvalidArgument("ulimit soft limit must be less than or equal to hard"
                                  f" limit: soft: -1 (unlimited), hard: {hard}")
        if soft > hard:
            raise InvalidArgument("ulimit soft limit must be less than or equal to hard"
                                  f" limit: {soft} > {hard}")


def _int_field(hc: dict[str, Any], key: str) -> int:
    v = hc.get(key)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgument(f"invalid {key}: {v!r} is not an integer")
    if not INT64_MIN <= v <= INT64_MAX:
        raise InvalidArgument(f"invalid {key}: {v} is out of range (a signed 64-bit number)")
    return v


def available_cpus() -> set[int]:
    """The CPUs this host lets containers use (the root cpuset, as Docker reads it)."""
    for path in ("/sys/fs/cgroup/cpuset.cpus.effective",
                 "/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
                 "/sys/fs/cgroup/cpuset/cpuset.cpus",
                 "/sys/devices/system/cpu/online"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text:
            return parse_uint_list(text)
    return set(os.sched_getaffinity(0))


def parse_uint_list(text: str) -> set[int]:
    """`0-3,5` → {0, 1, 2, 3, 5}; Docker's "invalid format" for anything else."""
    out: set[int] = set()
    if text == "":
        return out
    bad = InvalidArgument(f"invalid format: {text}")
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()) or not lo.isascii():
            raise bad
        low, high = int(lo), int(hi) if dash else int(lo)
        if high < low or high > 1 << 20:
            raise bad
        out.update(range(low, high + 1))
    return out


def _format_cpus(cpus: set[int]) -> str:
    ranges: list[list[int]] = []
    for c in sorted(cpus):
        if ranges and c == ranges[-1][1] + 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def check_resources(hc: dict[str, Any]) -> None:
    """HostConfig's resource fields, in the order and with the words of the daemon."""
    memory = _int_field(hc, "Memory")
    swap = _int_field(hc, "MemorySwap")
    reservation = _int_field(hc, "MemoryReservation")
    if memory != 0 and memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage")
    if memory == 0 and swap > 0:
        raise InvalidArgument(
            "You should always set the Memory limit when using Memoryswap limit, see usage")
    if swap < -1:
        raise InvalidArgument(f"invalid MemorySwap: {swap} (use -1 for unlimited swap)")
    if reservation < 0:
        raise InvalidArgument(f"invalid MemoryReservation: {reservation} is negative")
    if reservation > 0 and reservation < MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation"
                              " limit, see usage")
    nano = _int_field(hc, "NanoCpus")
    ncpu = len(os.sched_getaffinity(0))
    # Docker lets 0 < NanoCpus < 0.01 CPU through to fail in the kernel at start
    # (a CFS quota under 1 ms); its own message names 0.01 as the floor, so ketch
    # refuses those here too.
    if nano < 0 or nano > ncpu * 10**9 or 0 < nano < 10**7:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only"
                              f" {ncpu} CPUs available")
    if _int_field(hc, "CpuShares") < 0:
        raise InvalidArgument("shares: invalid argument")
    _int_field(hc, "PidsLimit")
    cpuset = hc.get("CpusetCpus") or ""
    if cpuset:
        try:
            wanted = parse_uint_list(cpuset)
        except InvalidArgument as e:
            raise InvalidArgument(f"Invalid value {cpuset} for cpuset cpus: {e}") from None
        have = available_cpus()
        if not wanted <= have:
            raise InvalidArgument(f"Requested CPUs are not available - requested {cpuset},"
                                  f" available: {_format_cpus(have)}")
    if _int_field(hc, "ShmSize") < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    for u in hc.get("Ulimits") or []:
        check_ulimit(u)


def check_env(config: dict[str, Any]) -> None:
    for e in config.get("Env") or []:
        if not isinstance(e, str) or e.partition("=")[0] == "":
            raise InvalidArgument(f"invalid environment variable: {e}")


def check_mounts(config: dict[str, Any], hc: dict[str, Any]) -> None:
    for spec in hc.get("Binds") or []:
        parse_bind(spec)
    for target in config.get("Volumes") or {}:
        _check_target(target, f"invalid volume specification: '{target}': invalid mount"
                              " config for type \"volume\"")
    for m in hc.get("Mounts") or []:
        _check_target(m.get("Target") or "", f"invalid mount config for type"
                                             f" \"{m.get('Type')}\"")
    for target in hc.get("Tmpfs") or {}:
        if _is_root(target):
            raise InvalidArgument("invalid specification: destination can't be '/'")
        if not target.startswith("/"):
            raise InvalidArgument(f"invalid mount path: '{target}' mount path must be"
                                  " absolute")


# Config fields by JSON type, as the daemon decodes them (an API client may send any JSON)
_STR_FIELDS = ("Image", "Hostname", "Domainname", "User", "WorkingDir", "StopSignal",
               "MacAddress")
_BOOL_FIELDS = ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin",
                "StdinOnce", "NetworkDisabled", "ArgsEscaped")
_STR_LIST_FIELDS = ("Env", "OnBuild", "Shell")
_STR_SLICE_FIELDS = ("Cmd", "Entrypoint")  # Docker's StrSlice: a string or strings
_OBJECT_FIELDS = ("Labels", "ExposedPorts", "Volumes")


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _wrong(name: str, v: Any, want: str) -> InvalidArgument:
    return InvalidArgument(f"invalid {name}: expected {want}, got {_json_type(v)}")


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# a JSON type's name in the messages, and its test
_KINDS: dict[str, Callable[[Any], bool]] = {
    "a string": lambda v: isinstance(v, str),
    "a boolean": lambda v: isinstance(v, bool),
    "an array of strings": _strings,
    "an object": lambda v: isinstance(v, dict),
    "an object of strings": lambda v: isinstance(v, dict) and all(
        isinstance(x, str) for x in v.values()),
    "an array of objects": lambda v: isinstance(v, list) and all(
        isinstance(x, dict) for x in v),
}


def _check_kinds(doc: dict[str, Any], fields: dict[str, tuple[str, ...]],
                 prefix: str = "") -> None:
    """Each field of `doc` named in `fields` (a kind of _KINDS: names) is of that kind
    or null; `prefix` names `doc` in the message ("LogConfig.")."""
    for kind, names in fields.items():
        ok = _KINDS[kind]
        for name in names:
            v = doc.get(name)
            if v is not None and not ok(v):
                raise _wrong(prefix + name, v, kind)


def check_config_types(config: dict[str, Any]) -> None:
    """The JSON types of a create request's Config (null is always allowed). A string
    Cmd or Entrypoint is taken as a one-element list, as the daemon does."""
    for name in _STR_SLICE_FIELDS:
        v = config.get(name)
        if isinstance(v, str):
            config[name] = [v]
        elif v is not None and not _strings(v):
            raise _wrong(name, v, "a string or an array of strings")
    _check_kinds(config, {"a string": _STR_FIELDS, "a boolean": _BOOL_FIELDS,
                          "an array of strings": _STR_LIST_FIELDS,
                          "an object": _OBJECT_FIELDS})
    labels = config.get("Labels") or {}
    if not all(isinstance(v, str) for v in labels.values()):
        raise InvalidArgument("invalid Labels: every value must be a string")
    timeout = config.get("StopTimeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)):
        raise _wrong("StopTimeout", timeout, "an integer")


# HostConfig fields by JSON type, the ones the engine reads as such (others are checked
# where they are read: resources, ports, devices)
_HC_STR_FIELDS = ("CpusetCpus", "CpusetMems", "NetworkMode", "IpcMode", "PidMode",
                  "UTSMode", "UsernsMode", "CgroupnsMode", "CgroupParent", "Runtime",
                  "VolumeDriver", "Isolation")
_HC_STR_LIST_FIELDS = ("Binds", "CapAdd", "CapDrop", "Dns", "DnsOptions", "DnsSearch",
                       "ExtraHosts", "GroupAdd", "SecurityOpt", "VolumesFrom", "Links",
                       "MaskedPaths", "ReadonlyPaths", "DeviceCgroupRules")
_HC_STR_MAP_FIELDS = ("Tmpfs", "Sysctls", "StorageOpt")
_HC_OBJECT_LIST_FIELDS = ("Mounts", "Ulimits")
# objects, and the kinds of their own fields
_HC_OBJECT_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "RestartPolicy": {"a string": ("Name",)},
    "LogConfig": {"a string": ("Type",), "an object of strings": ("Config",)},
}


def check_host_config_types(hc: dict[str, Any]) -> None:
    """The JSON types of a create request's HostConfig fields (null is always allowed),
    so that a client's wrong type is refused in a line rather than met as a crash."""
    _check_kinds(hc, {"a string": _HC_STR_FIELDS, "an array of strings": _HC_STR_LIST_FIELDS,
                      "an object of strings": _HC_STR_MAP_FIELDS,
                      "an array of objects": _HC_OBJECT_LIST_FIELDS})
    for name, fields in _HC_OBJECT_FIELDS.items():
        sub = hc.get(name)
        if sub is not None:
            if not isinstance(sub, dict):
                raise _wrong(name, sub, "an object")
            _check_kinds(sub, fields, prefix=f"{name}.")


def check_exposed_ports(config: dict[str, Any]) -> None:
    """dockerd's check of Config.ExposedPorts: each key PORT[/PROTO] with a port number
    (a range, as an image's EXPOSE keeps it, is let through). Not network.ports'
    parser: it brings `re` and the network models onto create's lean import path."""
    for key in config.get("ExposedPorts") or {}:
        port = str(key).partition("/")[0]
        numbers = port.split("-", 1)
        if not all(n.isascii() and n.isdigit() and int(n) <= 65535 for n in numbers):
            raise InvalidArgument(f'invalid port specification: "{port}"')


def _is_domain(name: str) -> bool:
    """A DNS name as docker/cli's --dns-search accepts it: dot-separated labels of
    letters, digits and inner hyphens (a trailing dot allowed), with a letter somewhere,
    under 255 characters."""
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    return (0 < len(name) < 255 and any(c.isalpha() for c in name)
            and all(label and label.isascii() and label.replace("-", "").isalnum()
                    and label[0] != "-" and label[-1] != "-" for label in labels))


def check_dns(hc: dict[str, Any]) -> None:
    """HostConfig.Dns must hold IP addresses and DnsSearch domains ("." for none), as
    docker/cli checks them: anything else would end up as a broken line in the
    container's resolv.conf (a search "domain" with a space in it is two)."""
    servers = hc.get("Dns") or []
    if servers:
        import ipaddress

        for server in servers:
            try:
                ipaddress.ip_address(str(server).strip())
            except ValueError:
                raise InvalidArgument(
                    f"IP address is not correctly formatted: {server}") from None
    for domain in hc.get("DnsSearch") or []:
        if str(domain).strip(" ") != "." and not _is_domain(str(domain).strip(" ")):
            raise InvalidArgument(f"{domain} is not a valid domain")


def check_capabilities(hc: dict[str, Any]) -> None:
    """CapAdd and CapDrop as dockerd keeps them: upper case with the CAP_ prefix ("ALL"
    as it is), and an unknown name refused at create ('invalid CapAdd: unknown
    capability: "CAP_BOGUS"'), not at the first start."""
    from ketch.runtime.spec import normalize_capability

    for key in ("CapAdd", "CapDrop"):
        names = hc.get(key)
        if not names:
            continue
        try:
            hc[key] = [normalize_capability(str(n)) for n in names]
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid {key}: "
                                  + e.message.removeprefix("invalid capability: ")) from None


def validate(config: dict[str, Any], hc: dict[str, Any]) -> None:
    """Refuse a create request the daemon would refuse; changes nothing but the form of
    a string Cmd/Entrypoint and of capability names."""
    check_config_types(config)
    check_host_config_types(hc)
    check_env(config)
    check_exposed_ports(config)
    if config.get("Healthcheck") is not None or config.get("HealthcheckOnFailureAction"):
        from ketch.containers.health import validate as validate_health

        validate_health(config)
    check_mounts(config, hc)
    check_resources(hc)
    check_dns(hc)
    check_capabilities(hc)
