"""Container statistics in Docker's shape (moby's StatsResponse, as GET
/containers/{id}/stats answers and `docker stats` reads): cgroup counters through the
runtime (`runc events --stats`, cgroup v1 and v2 alike), the host's CPU time from
/proc/stat and the container's network counters from its namespace's /proc/PID/net/dev.
`ketch stats` renders its table from the same documents, with the docker CLI's formulas.
"""

from __future__ import annotations

import os
import time

from ketch.errors import KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService

ZERO_TIME = "0001-01-01T00:00:00Z"


def _now() -> str:
    import datetime

    t = time.time_ns()
    sec, frac = divmod(t, 1_000_000_000)
    text = datetime.datetime.fromtimestamp(sec, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{frac:09d}Z"


def system_cpu_ns() -> int:
    """Host CPU time as dockerd reads it: /proc/stat's first line, in ns."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def networks(pid: int) -> dict[str, dict[str, int]]:
    """Per interface counters of the process's network namespace (loopback left out)."""
    out: dict[str, dict[str, int]] = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        fields = rest.split()
        if name == "lo" or len(fields) < 12:
            continue
        v = [int(x) for x in fields]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2],
                     "rx_dropped": v[3], "tx_bytes": v[8], "tx_packets": v[9],
                     "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def _raw(svc: ContainerService, rec: ContainerRecord) -> dict[str, Any]:
    try:
        return svc.lifecycle.monitor(rec).runtime.stats(rec.id)
    except KetchError:
        return {}


def _cpu(raw: dict[str, Any], system: int) -> dict[str, Any]:
    usage = (raw.get("cpu") or {}).get("usage") or {}
    throttling = (raw.get("cpu") or {}).get("throttling") or {}
    cpu_usage: dict[str, Any] = {"total_usage": usage.get("total") or 0,
                                 "usage_in_kernelmode": usage.get("kernel") or 0,
                                 "usage_in_usermode": usage.get("user") or 0}
    percpu = usage.get("percpu")
    if percpu:
        cpu_usage["percpu_usage"] = percpu
    online = len(percpu or []) or len((raw.get("cpuset") or {}).get("cpus") or []) \
        or os.cpu_count() or 1
    return {"cpu_usage": cpu_usage, "system_cpu_usage": system, "online_cpus": online,
            "throttling_data": {"periods": throttling.get("periods") or 0,
                                "throttled_periods": throttling.get("throttled_periods") or 0,
                                "throttled_time": throttling.get("throttled_time") or 0}}


def _memory(raw: dict[str, Any]) -> dict[str, Any]:
    mem = raw.get("memory") or {}
    if not mem:
        return {}
    usage = mem.get("usage") or {}
    out: dict[str, Any] = {"usage": usage.get("usage") or 0,
                           "stats": dict(mem.get("raw") or mem.get("stats") or {}),
                           "limit": usage.get("limit") or 0}
    if "max" in usage:
        out["max_usage"] = usage["max"]
    if "failcnt" in usage:
        out["failcnt"] = usage["failcnt"]
    host = _host_memory()
    if host and (not out["limit"] or out["limit"] > host):
        out["limit"] = host  # "no limit": the host's memory, as dockerd reports it
    return out


def _host_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0


def _blkio(raw: dict[str, Any]) -> dict[str, Any]:
    blk = raw.get("blkio") or {}

    def entries(key: str) -> list[dict[str, Any]] | None:
        rows = blk.get(key)
        if not rows:
            return None
        return [{"major": e.get("major", 0), "minor": e.get("minor", 0),
                 "op": str(e.get("op", "")), "value": e.get("value", 0)} for e in rows]

    return {"io_service_bytes_recursive": entries("ioServiceBytesRecursive"),
            "io_serviced_recursive": entries("ioServicedRecursive"),
            "io_queue_recursive": entries("ioQueuedRecursive"),
            "io_service_time_recursive": entries("ioServiceTimeRecursive"),
            "io_wait_time_recursive": entries("ioWaitTimeRecursive"),
            "io_merged_recursive": entries("ioMergedRecursive"),
            "io_time_recursive": entries("ioTimeRecursive"),
            "sectors_recursive": entries("sectorsRecursive")}


def _empty_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                          "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def document(svc: ContainerService, rec: ContainerRecord,
             pre: dict[str, Any] | None = None) -> dict[str, Any]:
    """One StatsResponse of `rec`; `pre` the previous one (its cpu_stats and read
    become precpu_stats and preread). A container that is not running gets the empty
    document dockerd sends for it."""
    doc: dict[str, Any] = {
        "name": "/" + rec.name, "id": rec.id, "read": ZERO_TIME, "preread": ZERO_TIME,
        "pids_stats": {}, "blkio_stats": _blkio({}), "num_procs": 0, "storage_stats": {},
        "cpu_stats": _empty_cpu(), "precpu_stats": _empty_cpu(), "memory_stats": {},
    }
    if pre is not None:
        doc["preread"] = pre["read"]
        doc["precpu_stats"] = pre["cpu_stats"]
    if rec.state not in ("running", "paused"):
        return doc
    raw = _raw(svc, rec)
    system = system_cpu_ns()
    doc["read"] = _now()
    if not raw:
        return doc
    pids = raw.get("pids") or {}
    doc["pids_stats"] = {"current": pids.get("current") or 0}
    if pids.get("limit"):
        doc["pids_stats"]["limit"] = pids["limit"]
    doc["cpu_stats"] = _cpu(raw, system)
    doc["memory_stats"] = _memory(raw)
    doc["blkio_stats"] = _blkio(raw)
    nets = networks(rec.pid) if rec.pid else {}
    if nets:
        doc["networks"] = nets
    return doc


def stream(svc: ContainerService, name_or_id: str, *, follow: bool = True,
           one_shot: bool = False, interval: float = 1.0,
           cancelled: Callable[[], bool] | None = None) -> Iterator[dict[str, Any]]:
    """Docker's stats: `follow` a document every `interval` seconds while the container
    runs; else one, with precpu_stats from a first sample `interval` before (none with
    `one_shot`). A stopped container gives one empty document."""
    rec = svc.get(name_or_id)
    cid = rec.id

    def current() -> ContainerRecord | None:
        cur = svc.records.get(cid)
        return svc._refresh(cur) if cur is not None else None

    pre = None
    if not follow and not one_shot and rec.state in ("running", "paused"):
        pre = document(svc, rec)
        time.sleep(interval)
        rec = current() or rec
    while True:
        doc = document(svc, rec, pre)
        yield doc
        if not follow or rec.state not in ("running", "paused"):
            return
        pre = doc
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline:
            if cancelled is not None and cancelled():
                return
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        cur = current()
        if cur is None:
            return
        rec = cur


def row(doc: dict[str, Any], given: str) -> dict[str, str]:
    """One `docker stats` table row from a StatsResponse, as the docker CLI computes it
    (CPU % over the interval between precpu and cpu, memory without the inactive file
    cache)."""
    from ketch.fmt.units import human_size

    cid = doc["id"]
    out = {"ID": cid[:12], "FullID": cid, "Name": doc["name"].lstrip("/"),
           "Container": given, "CPUPerc": "0.00%", "MemUsage": "0B / 0B",
           "MemPerc": "0.00%", "NetIO": "0B / 0B", "BlockIO": "0B / 0B", "PIDs": "0"}
    if doc["read"] == ZERO_TIME:
        return out
    cpu, pre = doc["cpu_stats"], doc["precpu_stats"]
    cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    percent = 0.0
    if cpu_delta > 0 and sys_delta > 0:
        percent = cpu_delta / sys_delta * cpu.get("online_cpus", 1) * 100
    mem = doc["memory_stats"]
    usage, limit = mem.get("usage", 0), mem.get("limit", 0)
    stats = mem.get("stats") or {}
    inactive = stats.get("total_inactive_file", stats.get("inactive_file", 0)) or 0
    if inactive < usage:
        usage -= inactive
    rd = wr = 0
    for e in doc["blkio_stats"].get("io_service_bytes_recursive") or []:
        op = e["op"].lower()
        if op == "read":
            rd += int(e["value"])
        elif op == "write":
            wr += int(e["value"])
    rx = sum(n["rx_bytes"] for n in (doc.get("networks") or {}).values())
    tx = sum(n["tx_bytes"] for n in (doc.get("networks") or {}).values())
    out.update({
        "CPUPerc": f"{percent:.2f}%",
        "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}",
        "MemPerc": f"{(usage / limit * 100) if limit else 0.0:.2f}%",
        "NetIO": f"{human_size(rx, 3)} / {human_size(tx, 3)}",
        "BlockIO": f"{human_size(rd, 3)} / {human_size(wr, 3)}",
        "PIDs": str(doc["pids_stats"].get("current") or 0),
    })
    return out


def bytes_size(n: float) -> str:
    """go-units BytesSize: binary units, four significant digits ("1.5MiB")."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}"


def sample_rows(svc: ContainerService, recs: list[tuple[str, ContainerRecord]],
                interval: float) -> list[dict[str, str]]:
    """Two Docker stats documents per container, `interval` apart (sampled in parallel),
    rendered as `docker stats` rows."""
    from concurrent.futures import ThreadPoolExecutor

    def sample_all(pre: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(recs)))) as pool:
            return list(pool.map(lambda i: document(
                svc, recs[i][1], pre[i] if pre else None), range(len(recs))))

    if not recs:
        return []
    first = sample_all(None)
    if any(r.state in ("running", "paused") for _, r in recs):
        time.sleep(interval)
    second = sample_all(first)
    return [row(doc, given) for doc, (given, _) in zip(second, recs, strict=True)]
