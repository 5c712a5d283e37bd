"""Request bodies read as dockerd reads them: Go's encoding/json matches a JSON key to a
struct field exactly, or else without regard to case (`"cmd"` fills `Cmd`), while the
keys of a map (labels, ports, sysctls, driver options) stay as sent.

`canonical(doc, SCHEMA)` renames the keys of `doc` that match a field of SCHEMA only
when case is ignored, at every level the schema describes, so the handlers and the
Engine read Docker's spelling. Keys the schema does not know are kept as sent (the
Engine ignores or refuses them as before). The schemas list the fields of moby's
api/swagger.yaml (v1.45) that a client can send.
"""

from __future__ import annotations

from typing import cast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    # a field's shape: None for a value whose keys (if any) are data, a Schema for an
    # object, [Schema] for a list of objects, {"*": Shape} for a map of such values
    Shape: TypeAlias = "None | Schema | list[Schema] | dict[str, Shape]"
    Schema: TypeAlias = "dict[str, Shape]"


def canonical(doc: Any, schema: Schema) -> Any:
    """`doc` with its field names spelled as in `schema` (a new dict; `doc` is kept)."""
    if not isinstance(doc, dict):
        return doc
    folded = _folded(schema)
    out: dict[str, Any] = {}
    key: str
    for key, value in doc.items():  # JSON object keys are strings
        name = key if key in schema else folded.get(key.lower(), key)
        if name != key and name in doc:
            name = key  # a key spelled exactly elsewhere in the body wins
        out[name] = _shaped(value, schema.get(name))
    return out


def _shaped(value: Any, shape: Shape) -> Any:
    if shape is None:
        return value
    if isinstance(shape, list):
        if isinstance(value, list):
            return [canonical(v, shape[0]) for v in value]
        return value
    if "*" in shape and len(shape) == 1:  # a map: its keys are data, its values shaped
        inner = shape["*"]
        if isinstance(value, dict):
            return {k: _shaped(v, inner) for k, v in value.items()}
        return value
    return canonical(value, cast("Schema", shape))


_FOLDED: dict[int, dict[str, str]] = {}


def _folded(schema: Schema) -> dict[str, str]:
    f = _FOLDED.get(id(schema))
    if f is None:
        f = _FOLDED[id(schema)] = {k.lower(): k for k in schema}
    return f


def _fields(*names: str, **nested: Shape) -> Schema:
    out: Schema = dict.fromkeys(names)
    out.update(nested)
    return out


HEALTHCHECK = _fields("Test", "Interval", "Timeout", "Retries", "StartPeriod",
                      "StartInterval")
_THROTTLE = _fields("Path", "Rate")
RESOURCES = _fields(
    "CpuShares", "Memory", "CgroupParent", "BlkioWeight", "CpuPeriod", "CpuQuota",
    "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems",
    "DeviceCgroupRules", "KernelMemory", "KernelMemoryTCP", "MemoryReservation",
    "MemorySwap", "MemorySwappiness", "NanoCpus", "OomKillDisable", "Init", "PidsLimit",
    "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth",
    BlkioWeightDevice=[_fields("Path", "Weight")],
    BlkioDeviceReadBps=[_THROTTLE], BlkioDeviceWriteBps=[_THROTTLE],
    BlkioDeviceReadIOps=[_THROTTLE], BlkioDeviceWriteIOps=[_THROTTLE],
    Devices=[_fields("PathOnHost", "PathInContainer", "CgroupPermissions")],
    DeviceRequests=[_fields("Driver", "Count", "DeviceIDs", "Capabilities", "Options")],
    Ulimits=[_fields("Name", "Soft", "Hard")],
)
UPDATE = {**RESOURCES, "RestartPolicy": _fields("Name", "MaximumRetryCount")}
MOUNT = _fields(
    "Target", "Source", "Type", "ReadOnly", "Consistency",
    BindOptions=_fields("Propagation", "NonRecursive", "CreateMountpoint",
                        "ReadOnlyNonRecursive", "ReadOnlyForceRecursive"),
    VolumeOptions=_fields("NoCopy", "Labels", "Subpath",
                          DriverConfig=_fields("Name", "Options")),
    TmpfsOptions=_fields("SizeBytes", "Mode", "Options"),
)
HOST_CONFIG = {**RESOURCES, **_fields(
    "Binds", "ContainerIDFile", "NetworkMode", "AutoRemove",
    "VolumeDriver", "VolumesFrom", "ConsoleSize", "Annotations", "CapAdd", "CapDrop",
    "CgroupnsMode", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd", "IpcMode",
    "Cgroup", "Links", "OomScoreAdj", "PidMode", "Privileged", "PublishAllPorts",
    "ReadonlyRootfs", "SecurityOpt", "StorageOpt", "Tmpfs", "UTSMode", "UsernsMode",
    "ShmSize", "Sysctls", "Runtime", "Isolation", "MaskedPaths", "ReadonlyPaths",
    LogConfig=_fields("Type", "Config"),
    RestartPolicy=_fields("Name", "MaximumRetryCount"),
    Mounts=[MOUNT],
    PortBindings={"*": [_fields("HostIp", "HostPort")]},
)}
ENDPOINT = _fields(
    "Links", "Aliases", "MacAddress", "DriverOpts", "NetworkID", "EndpointID", "Gateway",
    "IPAddress", "IPPrefixLen", "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen",
    "DNSNames",
    IPAMConfig=_fields("IPv4Address", "IPv6Address", "LinkLocalIPs"),
)
NETWORKING_CONFIG = _fields(EndpointsConfig={"*": ENDPOINT})
CONTAINER_CREATE = _fields(
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "ArgsEscaped", "Image",
    "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild",
    "Labels", "StopSignal", "StopTimeout", "Shell",
    Healthcheck=HEALTHCHECK, HostConfig=HOST_CONFIG, NetworkingConfig=NETWORKING_CONFIG,
)
EXEC_CREATE = _fields("AttachStdin", "AttachStdout", "AttachStderr", "ConsoleSize",
                      "DetachKeys", "Tty", "Env", "Cmd", "Privileged", "User", "WorkingDir")
EXEC_START = _fields("Detach", "Tty", "ConsoleSize")
_IPAM = _fields("Driver", "Options",
                Config=[_fields("Subnet", "IPRange", "Gateway", "AuxiliaryAddresses")])
NETWORK_CREATE = _fields("Name", "CheckDuplicate", "Driver", "Scope", "Internal",
                         "Attachable", "Ingress", "ConfigOnly", "EnableIPv6", "Options",
                         "Labels", IPAM=_IPAM, ConfigFrom=_fields("Network"))
NETWORK_CONNECT = _fields("Container", EndpointConfig=ENDPOINT)
NETWORK_DISCONNECT = _fields("Container", "Force")
VOLUME_CREATE = _fields("Name", "Driver", "DriverOpts", "Labels", "ClusterVolumeSpec")
