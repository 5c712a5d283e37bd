"""The OCI spec of a container's start: what its record says (command, init, user,
resources, security options, namespaces), over what the start has acquired for it (the
mounted rootfs, the mounts, the network). `Lifecycle.start` writes it as config.json."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from _typeshed import StrPath

    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService
    from ketch.runtime.spec import ContainerSpec, Mount, User


def container_spec(svc: ContainerService, rec: ContainerRecord, rootfs: StrPath, user: User,
                   wd: str, mounts: list[Mount], net: dict[str, Any]) -> ContainerSpec:
    from ketch.containers import options
    from ketch.containers.security import parse_security_opts
    from ketch.runtime.spec import ContainerSpec

    c = rec.config
    hc = rec.host_config
    args = list(c.get("Entrypoint") or []) + list(c.get("Cmd") or [])
    if hc.get("Init") or (hc.get("Init") is None and svc.settings.init):
        # Docker's docker-init: tini as PID 1 reaps orphans and forwards signals
        from ketch.containers.settings import INIT_TARGET
        from ketch.runtime.spec import Mount

        mounts.append(Mount(INIT_TARGET, svc.settings.init_binary(), "bind",
                            ["bind", "ro"]))
        args = [INIT_TARGET, "--", *args]
    nano = hc.get("NanoCpus") or 0
    spec = ContainerSpec(
        id=rec.id, rootfs=rootfs, args=args, env=list(c.get("Env") or []),
        cwd=wd, user=user, hostname=c.get("Hostname") or rec.id[:12],
        terminal=bool(c.get("Tty")), mounts=mounts,
        readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
        privileged=bool(hc.get("Privileged")),
        cap_add=list(hc.get("CapAdd") or []), cap_drop=list(hc.get("CapDrop") or []),
        memory=hc.get("Memory") or None, memory_swap=hc.get("MemorySwap") or None,
        memory_reservation=hc.get("MemoryReservation") or None,
        cpus=(nano / 1e9) if nano else None, cpu_shares=hc.get("CpuShares") or None,
        cpuset_cpus=hc.get("CpusetCpus") or None,
        pids_limit=hc.get("PidsLimit") or None,
        netns_path=net.get("netns"), stop_signal=c.get("StopSignal"),
        sysctls=options.sysctls(hc),
        ulimits={u["Name"]: (u["Soft"], u["Hard"]) for u in hc.get("Ulimits") or []},
    )
    if hc.get("ShmSize"):
        spec.shm_size = hc["ShmSize"]
    security = parse_security_opts(hc.get("SecurityOpt"))
    spec.seccomp = security.seccomp
    spec.no_new_privileges = security.no_new_privileges
    if hc.get("MaskedPaths") is not None:
        spec.masked_paths = list(hc["MaskedPaths"])
    if hc.get("ReadonlyPaths") is not None:
        spec.readonly_paths = list(hc["ReadonlyPaths"])
    options.apply(svc, rec, spec)
    return spec
