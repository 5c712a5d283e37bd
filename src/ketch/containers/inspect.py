"""`inspect`: a container's document in the Engine API's shape (ContainerJSON), from its
record, its paths and its network endpoints."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService

ZERO_TIME = "0001-01-01T00:00:00Z"


def _ts(t: float) -> str:
    if not t:
        return ZERO_TIME
    from ketch.fmt.units import rfc3339nano

    return rfc3339nano(t)


# HostConfig fields dockerd always shows (Go struct fields without omitempty), with the
# value a container made without them has, so that templates such as
# `{{.HostConfig.BlkioWeight}}` print 0 as Docker's do instead of failing
_HOST_CONFIG_ZEROS: tuple[tuple[str, Any], ...] = (
    ("ContainerIDFile", ""), ("ConsoleSize", [0, 0]), ("Cgroup", ""), ("OomScoreAdj", 0),
    ("ShmSize", 64 << 20), ("CpuShares", 0), ("Memory", 0), ("NanoCpus", 0),
    ("BlkioWeight", 0), ("BlkioWeightDevice", []), ("BlkioDeviceReadBps", []),
    ("BlkioDeviceWriteBps", []), ("BlkioDeviceReadIOps", []), ("BlkioDeviceWriteIOps", []),
    ("CpuPeriod", 0), ("CpuQuota", 0), ("CpuRealtimePeriod", 0), ("CpuRealtimeRuntime", 0),
    ("CpusetCpus", ""), ("CpusetMems", ""), ("MemoryReservation", 0), ("MemorySwap", 0),
    ("MemorySwappiness", None), ("PidsLimit", None), ("Ulimits", None), ("CpuCount", 0),
    ("CpuPercent", 0), ("IOMaximumIOps", 0), ("IOMaximumBandwidth", 0),
)


def document(svc: ContainerService, name_or_id: str, *,
             size: bool = False) -> dict[str, Any]:
    """Docker's container inspect document (GET /containers/{id}/json)."""
    r = svc.get(name_or_id)
    path, args = svc.command_line(r)
    # string paths: an inspect needs no pathlib (its import is a fifth of the command)
    d = os.path.join(svc.engine.root_dir, "containers", r.id)
    lowers = [svc.engine.layers.diff_dir(c) for c in reversed(r.chain_ids)]
    hc = {k: v for k, v in r.host_config.items() if not k.startswith("_")}
    hc.setdefault("NetworkMode", "bridge")
    hc.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
    hc.setdefault("PortBindings", {})
    hc.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    hc.setdefault("AutoRemove", False)
    hc.setdefault("Binds", None)
    hc.setdefault("Privileged", False)
    hc.setdefault("ReadonlyRootfs", False)
    hc.setdefault("Runtime", "runc")
    for key, zero in _HOST_CONFIG_ZEROS:
        if key not in hc:
            hc[key] = list(zero) if isinstance(zero, list) else zero
    if not (hc.get("LogConfig") or {}).get("Type"):
        # Docker's default driver name: clients (docker-py's `run`) read the logs
        # back through the API only for drivers that keep them, as ketch's log does
        hc["LogConfig"] = {"Type": "json-file", "Config": {}}
    cfg = dict(r.config)
    cfg.setdefault("AttachStdin", False)
    cfg.setdefault("AttachStdout", False)
    cfg.setdefault("AttachStderr", False)
    cfg.setdefault("Tty", False)
    cfg.setdefault("OpenStdin", False)
    cfg.setdefault("StdinOnce", False)
    cfg.setdefault("Domainname", "")
    cfg.setdefault("User", "")
    cfg.setdefault("WorkingDir", "")
    out: dict[str, Any] = {
        "Id": r.id, "Created": _ts(r.created), "Path": path, "Args": args,
        "State": {
            # Docker counts a restarting container as running
            "Status": r.state, "Running": r.running,
            "Paused": r.state == "paused", "Restarting": r.state == "restarting",
            "OOMKilled": bool(r.extra.get("OOMKilled")), "Dead": r.state == "dead",
            "Pid": r.pid if r.state in ("running", "paused") else 0,
            "ExitCode": r.exit_code, "Error": r.error,
            "StartedAt": _ts(r.started_at), "FinishedAt": _ts(r.finished_at),
        },
        "Image": r.image_id,
        "ResolvConfPath": os.path.join(d, "resolv.conf"),
        "HostnamePath": os.path.join(d, "hostname"), "HostsPath": os.path.join(d, "hosts"),
        "LogPath": _log_path(hc, d),
        "Name": "/" + r.name,
        "RestartCount": r.restart_count, "Driver": "overlay2", "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": _running_execs(svc, r) or None,
        "HostConfig": hc,
        "GraphDriver": {"Name": "overlay2", "Data": {
            "LowerDir": ":".join(lowers), "MergedDir": os.path.join(d, "merged"),
            "UpperDir": os.path.join(d, "upper"), "WorkDir": os.path.join(d, "work")}},
        "Mounts": r.extra.get("Mounts") or [],
        "Config": cfg,
        "NetworkSettings": network_settings(svc, r),
    }
    from ketch.containers.health import read as read_health

    health = read_health(svc, r)
    if health is not None:
        out["State"]["Health"] = health
    if size:
        out["SizeRw"] = svc.size_rw(r)
        out["SizeRootFs"] = out["SizeRw"] + svc._image_size(r)
    return out


def _log_path(hc: dict[str, Any], d: str) -> str:
    from ketch.containers.logconfig import log_file, reads_back

    if not reads_back(hc):
        return ""
    own = os.path.join(d, "ctr.log")
    path = log_file(hc, own)
    if path != own:  # a k8s-file driver's path option, shown as a Path spells it
        from pathlib import PurePath

        path = str(PurePath(path))
    return path


def network_settings(svc: ContainerService, r: ContainerRecord) -> dict[str, Any]:
    n = r.network or {}
    ports: dict[str, Any] = {}
    for key in (r.config.get("ExposedPorts") or {}):
        ports[key] = None
    for p in n.get("Ports") or []:
        if "PublicPort" not in p:
            continue
        key = f"{p['PrivatePort']}/{p['Type']}"
        ports.setdefault(key, None)
        ports[key] = (ports[key] or []) + [{"HostIp": p.get("IP", "0.0.0.0"),
                                             "HostPort": str(p["PublicPort"])}]
    nets = svc.networks(r)
    primary = nets.get("bridge") or (next(iter(nets.values())) if nets else {})
    return {
        "Bridge": "", "SandboxID": "", "SandboxKey": n.get("SandboxKey", ""),
        "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports if r.state in ("running", "paused") else {},
        "Gateway": primary.get("Gateway", ""), "IPAddress": primary.get("IPAddress", ""),
        "IPPrefixLen": primary.get("IPPrefixLen", 0),
        "MacAddress": primary.get("MacAddress", ""),
        "Networks": nets,
    }


def _running_execs(svc: ContainerService, rec: ContainerRecord) -> list[str]:
    if rec.state not in ("running", "paused"):
        return []
    from ketch.containers import execs

    return execs.running_ids(svc, rec.id) if execs.may_be_running(svc, rec.id) else []
