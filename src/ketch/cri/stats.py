"""CRI stats from the Engine's Docker-shaped stats documents (cgroup counters read by
`runc events --stats`): CPU as cumulative core-nanoseconds, memory as the kubelet's
working set (usage minus inactive file pages, as cAdvisor and containerd compute it),
the writable layer's size; a sandbox's as the sum of its running members'."""

from __future__ import annotations

import os
import time

from cri_api.v1 import api_pb2 as cri

from ketch.cri import containers, sandboxes
from ketch.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.engine import Engine


def _doc(e: Engine, cid: str) -> dict[str, Any]:
    return next(iter(e.containers.stats(cid, stream=False, one_shot=True)))


def _working_set(mem: dict[str, Any]) -> int:
    stats = mem.get("stats") or {}
    inactive = stats.get("total_inactive_file", stats.get("inactive_file", 0)) or 0
    usage = mem.get("usage", 0) or 0
    return max(usage - inactive, 0)


def container_stats(e: Engine, cid: str) -> cri.ContainerStats:
    return _sample(e, cid)[0]


def _sample(e: Engine, cid: str) -> tuple[cri.ContainerStats, int]:
    """The container's stats and its number of processes."""
    rec = containers.ours(e, cid)
    if rec is None:
        raise NotFound(f"container {cid!r} not found")
    pids = 0
    now = time.time_ns()
    out = cri.ContainerStats(attributes=cri.ContainerAttributes(
        id=rec.id, metadata=containers.meta(rec),
        labels=containers.user_labels(rec, containers.LABELS),
        annotations=containers.user_labels(rec, containers.ANNOTATIONS)))
    if rec.running:
        doc = _doc(e, rec.id)
        out.cpu.timestamp = now
        out.cpu.usage_core_nano_seconds.value = (
            doc.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0))
        mem = doc.get("memory_stats") or {}
        out.memory.timestamp = now
        out.memory.working_set_bytes.value = _working_set(mem)
        out.memory.usage_bytes.value = mem.get("usage", 0) or 0
        stats = mem.get("stats") or {}
        out.memory.rss_bytes.value = stats.get("total_rss", stats.get("anon", 0)) or 0
        pids = (doc.get("pids_stats") or {}).get("current", 0) or 0
    size = e.containers.inspect(rec.id, size=True).get("SizeRw") or 0
    out.writable_layer.timestamp = now
    out.writable_layer.fs_id.mountpoint = os.path.join(e.root_dir, "containers")
    out.writable_layer.used_bytes.value = size
    return out, pids


def list_container_stats(e: Engine, flt: cri.ContainerStatsFilter | None
                         ) -> list[cri.ContainerStats]:
    cflt = None
    if flt is not None:
        cflt = cri.ContainerFilter(id=flt.id, pod_sandbox_id=flt.pod_sandbox_id,
                                   label_selector=flt.label_selector)
    return [s for s, _ in _running(e, cflt)]


def _running(e: Engine, flt: cri.ContainerFilter | None
             ) -> list[tuple[cri.ContainerStats, int]]:
    return [_sample(e, c.id) for c in containers.listed(e, flt)
            if c.state == cri.CONTAINER_RUNNING]


def sandbox_stats(e: Engine, pod_id: str) -> cri.PodSandboxStats:
    pod = sandboxes.ours(e, pod_id)
    if pod is None:
        raise NotFound(f"sandbox {pod_id!r} not found")
    meta = sandboxes.metadata(pod)
    out = cri.PodSandboxStats(attributes=cri.PodSandboxAttributes(
        id=pod.id, metadata=meta, labels=sandboxes.user_labels(pod, sandboxes.LABELS),
        annotations=sandboxes.user_labels(pod, sandboxes.ANNOTATIONS)))
    sampled = _running(e, cri.ContainerFilter(pod_sandbox_id=pod.id))
    members = [m for m, _ in sampled]
    now = time.time_ns()
    linux = out.linux
    linux.cpu.timestamp = now
    linux.cpu.usage_core_nano_seconds.value = sum(
        m.cpu.usage_core_nano_seconds.value for m in members)
    linux.memory.timestamp = now
    linux.memory.working_set_bytes.value = sum(m.memory.working_set_bytes.value
                                               for m in members)
    linux.memory.usage_bytes.value = sum(m.memory.usage_bytes.value for m in members)
    linux.process.timestamp = now
    linux.process.process_count.value = sum(n for _, n in sampled)
    linux.containers.extend(members)
    return out


def list_sandbox_stats(e: Engine, flt: cri.PodSandboxStatsFilter | None
                       ) -> list[cri.PodSandboxStats]:
    sflt = None
    if flt is not None:
        sflt = cri.PodSandboxFilter(id=flt.id, label_selector=flt.label_selector)
    return [sandbox_stats(e, s.id) for s in sandboxes.listed(e, sflt)
            if s.state == cri.SANDBOX_READY]


def update_resources(e: Engine, cid: str, res: cri.LinuxContainerResources) -> None:
    if containers.ours(e, cid) is None:
        raise NotFound(f"container {cid!r} not found")
    changes: dict[str, Any] = {}
    if res.memory_limit_in_bytes:
        changes["Memory"] = res.memory_limit_in_bytes
    if res.cpu_shares:
        changes["CpuShares"] = res.cpu_shares
    if res.cpu_quota:
        changes["CpuQuota"] = res.cpu_quota
    if res.cpu_period:
        changes["CpuPeriod"] = res.cpu_period
    if res.cpuset_cpus:
        changes["CpusetCpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        changes["CpusetMems"] = res.cpuset_mems
    if changes:
        e.containers.update(cid, changes)

