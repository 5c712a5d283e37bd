"""`docker update` (POST /containers/{id}/update): a container's resource limits and
restart policy changed after its creation. The new values go into its HostConfig (the
next start uses them) and, while it runs, into its cgroup at once (`runc update`).
As dockerd, a field left out or zero keeps its value."""

from __future__ import annotations

from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.containers.service import ContainerService

INT_FIELDS = ("BlkioWeight", "CpuShares", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod",
              "CpuRealtimeRuntime", "Memory", "MemoryReservation", "MemorySwap",
              "KernelMemory", "NanoCpus", "PidsLimit")
STR_FIELDS = ("CpusetCpus", "CpusetMems")


def _changes(update: dict[str, Any]) -> dict[str, Any]:
    # field names match without regard to case, as Go's encoding/json decodes dockerd's
    names = {k.lower(): k for k in (*INT_FIELDS, *STR_FIELDS, "RestartPolicy")}
    update = {names.get(k.lower(), k): v for k, v in update.items()}
    out: dict[str, Any] = {}
    for k in INT_FIELDS:
        v = update.get(k)
        if v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool):
            raise InvalidArgument(f"invalid {k}: expected an integer")
        if v != 0:
            out[k] = v
    for k in STR_FIELDS:
        v = update.get(k)
        if v is None:
            continue
        if not isinstance(v, str):
            raise InvalidArgument(f"invalid {k}: expected a string")
        if v:
            out[k] = v
    rp = update.get("RestartPolicy")
    if rp is not None:
        if not isinstance(rp, dict):
            raise InvalidArgument("invalid RestartPolicy: expected an object")
        rp = {k.lower(): v for k, v in rp.items()}
        if rp.get("name"):
            out["RestartPolicy"] = {"Name": rp["name"],
                                    "MaximumRetryCount": rp.get("maximumretrycount") or 0}
    return out


def _check_cpu_conflicts(wanted: dict[str, Any], current: dict[str, Any]) -> None:
    """NanoCpus sets the CFS period and quota: once one way is set, the other is not
    updated (dockerd's checks, in its order and words)."""
    nano, had_nano = wanted.get("NanoCpus", 0) > 0, (current.get("NanoCpus") or 0) > 0
    for field, name in (("CpuPeriod", "CPU Period"), ("CpuQuota", "CPU Quota")):
        if nano and (current.get(field) or 0) > 0:
            raise InvalidArgument(f"Conflicting options: Nano CPUs cannot be updated as {name}"
                                  " has already been set")
    for field, name in (("CpuPeriod", "CPU Period"), ("CpuQuota", "CPU Quota")):
        if wanted.get(field, 0) > 0 and had_nano:
            raise InvalidArgument(f"Conflicting options: {name} cannot be updated as NanoCPUs"
                                  " has already been set")


def _cgroup_resources(hc: dict[str, Any]) -> dict[str, Any]:
    """The OCI LinuxResources `runc update` applies, from a HostConfig (the same
    derivation as a start's: swap twice the memory unless set)."""
    from ketch.runtime.spec import CPU_PERIOD, swap_limit_supported

    res: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    limit = hc.get("Memory") or 0
    if limit:
        memory["limit"] = limit
        if swap_limit_supported():
            swap = hc.get("MemorySwap") or 0
            memory["swap"] = limit * 2 if swap == 0 else swap
    if hc.get("MemoryReservation"):
        memory["reservation"] = hc["MemoryReservation"]
    if memory:
        res["memory"] = memory
    cpu: dict[str, Any] = {}
    if hc.get("NanoCpus"):
        cpu["period"] = CPU_PERIOD
        cpu["quota"] = int(round(hc["NanoCpus"] / 1e9 * CPU_PERIOD))
    if hc.get("CpuShares"):
        cpu["shares"] = max(2, min(262144, hc["CpuShares"]))
    if hc.get("CpuPeriod"):
        cpu["period"] = hc["CpuPeriod"]
    if hc.get("CpuQuota"):
        cpu["quota"] = hc["CpuQuota"]
    for key, field in (("cpus", "CpusetCpus"), ("mems", "CpusetMems")):
        if hc.get(field):
            cpu[key] = hc[field]
    if cpu:
        res["cpu"] = cpu
    if hc.get("PidsLimit") and hc["PidsLimit"] > 0:
        res["pids"] = {"limit": hc["PidsLimit"]}
    if hc.get("BlkioWeight"):
        res["blockIO"] = {"weight": hc["BlkioWeight"]}
    if hc.get("CpuRealtimePeriod"):
        res.setdefault("cpu", {})["realtimePeriod"] = hc["CpuRealtimePeriod"]
    if hc.get("CpuRealtimeRuntime"):
        res.setdefault("cpu", {})["realtimeRuntime"] = hc["CpuRealtimeRuntime"]
    return res


def _realtime(hc: dict[str, Any], running: bool) -> None:
    """--cpu-rt-period/--cpu-rt-runtime: refused as at create where the kernel has no
    real-time group scheduling; for a running container, its parent cgroups given the
    budget first (as a start gives them)."""
    import os

    from ketch.containers import options
    from ketch.runtime.spec import DEFAULT_CGROUP_PARENT

    period, runtime = hc.get("CpuRealtimePeriod") or 0, hc.get("CpuRealtimeRuntime") or 0
    if period and not os.path.exists(options._RT_PERIOD):
        raise InvalidArgument("Your kernel does not support cgroup cpu real-time period")
    if runtime and not os.path.exists(options._RT_RUNTIME):
        raise InvalidArgument("Your kernel does not support cgroup cpu real-time runtime")
    if period and runtime and runtime > period:
        raise InvalidArgument("cpu real-time runtime cannot be higher than cpu real-time"
                              " period")
    if running and runtime:
        parent = hc.get("CgroupParent") or DEFAULT_CGROUP_PARENT
        options._reserve_rt_runtime(parent if parent.startswith("/") else "/" + parent,
                                    runtime, period or None)


def update(svc: ContainerService, name_or_id: str, changes: dict[str, Any]) -> list[str]:
    """Apply `changes` (Docker's UpdateConfig: resources and RestartPolicy); the
    warnings (KernelMemory is discarded, as dockerd discards it)."""
    from ketch.containers.hostconfig import check_resources
    from ketch.containers.options import check_cpu_period_quota
    from ketch.containers.restart import validate

    wanted = _changes(changes)
    check_cpu_period_quota(wanted)  # the request alone, as dockerd's
    warnings: list[str] = []
    if wanted.pop("KernelMemory", None):
        # as at create: the kernel deprecated kmem limits (5.4), dockerd discards them
        warnings.append("Your kernel does not support kernel memory limit capabilities or"
                        " the cgroup is not mounted. Limitation discarded.")
    if wanted.get("BlkioWeight"):
        from ketch.containers.options import checked_blkio_weight

        # as at create (and as dockerd's update): discarded where the host has no weight
        if not checked_blkio_weight(wanted["BlkioWeight"], warnings):
            del wanted["BlkioWeight"]
    with svc.locked(name_or_id) as rec:
        hc = dict(rec.host_config)
        hc.update(wanted)
        if ("Memory" in wanted and "MemorySwap" not in wanted
                and (hc.get("MemorySwap") or 0) > 0 and wanted["Memory"] > hc["MemorySwap"]):
            raise InvalidArgument("Memory limit should be smaller than already set memoryswap"
                                  " limit, update the memoryswap at the same time")
        if "MemorySwap" in wanted and not hc.get("Memory"):
            raise InvalidArgument("You should always set the Memory limit when using"
                                  " Memoryswap limit, see usage")
        check_resources(hc)
        _check_cpu_conflicts(wanted, rec.host_config)
        if "RestartPolicy" in wanted:
            if hc.get("AutoRemove") and wanted["RestartPolicy"]["Name"] not in ("", "no"):
                raise InvalidArgument("Restart policy cannot be updated because AutoRemove"
                                      " is enabled for the container")
            validate(hc)
        if "CpuRealtimePeriod" in wanted or "CpuRealtimeRuntime" in wanted:
            _realtime(hc, rec.state in ("running", "paused"))
        if rec.state in ("running", "paused") and any(k != "RestartPolicy" for k in wanted):
            from ketch.errors import RuntimeFailure
            from ketch.runtime.oci import explain_runtime_error

            try:
                svc.lifecycle.monitor(rec).runtime.update(rec.id, _cgroup_resources(hc))
            except RuntimeFailure as e:  # a value the kernel refused, said as at start
                explained = explain_runtime_error(e.message)
                if explained == e.message:
                    raise
                raise InvalidArgument(explained) from None
        svc.records.update(rec.id, host_config=hc)
        svc.event(rec, "update")
    return warnings
