"""CRI pod sandboxes as ketch pods: an infra container holding the network, IPC and UTS
namespaces, which the sandbox's containers join (ketch.pods).

What the kubelet gave (metadata, labels, annotations) is kept in the pod's labels under
`io.ketch.cri.*`, so the state on disk is all a restarted server needs, and only pods
made through the CRI are listed to the kubelet (it removes sandboxes it does not know).
"""

from __future__ import annotations

import functools
import json
import time
from concurrent.futures import ThreadPoolExecutor

from cri_api.v1 import api_pb2 as cri

from ketch.cri import podnet
from ketch.errors import InvalidArgument, NotFound
from ketch.ids import is_full_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ketch.cri.cni import Cni
    from ketch.engine import Engine

MARK = "io.ketch.cri.sandbox"
META = "io.ketch.cri.metadata"
LABELS = "io.ketch.cri.labels"
ANNOTATIONS = "io.ketch.cri.annotations"
LOG_DIRECTORY = "io.ketch.cri.log-directory"
CGROUP_PARENT = "io.ketch.cri.cgroup-parent"

_PROTOCOLS = {cri.TCP: "tcp", cri.UDP: "udp", cri.SCTP: "sctp"}


def pod_name(meta: cri.PodSandboxMetadata) -> str:
    """A unique, valid ketch name for the sandbox (Kubernetes names are DNS labels)."""
    return f"k8s_{meta.name}_{meta.namespace}_{meta.uid}_{meta.attempt}"


def _publish(config: cri.PodSandboxConfig) -> list[str]:
    out = []
    for pm in config.port_mappings:
        if not pm.host_port:
            continue  # no host port: reachable on the pod's address only
        proto = _PROTOCOLS.get(pm.protocol, "tcp")
        host = f"{pm.host_ip}:" if pm.host_ip else ""
        out.append(f"{host}{pm.host_port}:{pm.container_port}/{proto}")
    return out


def run(e: Engine, config: cri.PodSandboxConfig, cni: Cni | None = None) -> str:
    meta = config.metadata
    if not meta.name or not meta.namespace or not meta.uid:
        raise InvalidArgument("sandbox metadata needs a name, a namespace and a uid")
    sysctls = podnet.sysctls(config)
    on_cni = podnet.uses_cni(cni, config)
    ns = config.linux.security_context.namespace_options
    network = "host" if ns.network == cri.NODE else "none" if on_cni else None
    labels = {
        MARK: "true",
        META: json.dumps({"name": meta.name, "namespace": meta.namespace,
                          "uid": meta.uid, "attempt": meta.attempt}),
        LABELS: json.dumps(dict(config.labels)),
        ANNOTATIONS: json.dumps(dict(config.annotations)),
        LOG_DIRECTORY: config.log_directory,
        CGROUP_PARENT: config.linux.cgroup_parent,
        podnet.DNS: podnet.dns_label(config),
    }
    if on_cni:
        labels[podnet.NETWORK] = "cni"
    pod = e.pod_create(pod_name(meta), publish=[] if on_cni else _publish(config),
                       network=network, hostname=config.hostname or None, labels=labels)
    now, after_add = podnet.split_sysctls(sysctls, on_cni)
    try:
        e.pod_sysctls(pod.id, now)
        if on_cni:
            assert cni is not None
            infra = e.pods.infra(pod)
            if infra is None:
                raise InvalidArgument(f"sandbox {pod.id} has no infra container")
            # on the network while the runtime creates the infra (podnet.attacher)
            e.containers.start(infra.id, network_ready=podnet.attacher(cni, pod, config))
        e.pod_start(pod.id)
        if on_cni:
            e.pod_sysctls(pod.id, after_add)
    except BaseException:
        podnet.undo(e, cni, pod)
        e.pod_rm(pod.id, force=True, timeout=0)
        raise
    return pod.id


def ours(e: Engine, pod_id: str) -> Any | None:
    try:
        pod = e.pods.get(pod_id)
    except NotFound:
        return None
    return pod if pod.labels.get(MARK) == "true" else None


def stop(e: Engine, pod_id: str, cni: Cni | None = None) -> None:
    pod = ours(e, pod_id)
    if pod is None:
        raise NotFound(f"an error occurred when try to find sandbox {pod_id!r}: not found")
    # The kubelet has given each container its grace period through StopContainer
    # before this call; what still runs is killed at once, as containerd does (a stop
    # timeout here would hold the call for every member ignoring SIGTERM). Taking the
    # sandbox off the CNI network (while its namespace is there: containerd tears the
    # network down before the sandbox's process stops; a failure leaves the cache for
    # Remove) and stopping the members do not depend on each other: they run at once,
    # each a few runtime and plugin processes mostly waited for. The infra goes last.
    jobs: list[Callable[[], None]] = [lambda: podnet.detach(e, cni, pod)]
    jobs += [functools.partial(_kill_member, e, m.id) for m in e.pods.members(pod)
             if m.state in ("running", "paused", "restarting")]
    _at_once(jobs)
    e.pod_stop(pod_id, timeout=0)  # a stopped sandbox stops again without an error


def _kill_member(e: Engine, cid: str) -> None:
    with e.reopen() as own:  # an Engine holds one SQLite connection per thread
        own.containers.stop(cid, timeout=0)


def _remove_member(e: Engine, cid: str) -> None:
    with e.reopen() as own:
        own.containers.remove(cid, force=True)


def _at_once(jobs: list[Callable[[], None]]) -> None:
    """Run the jobs at once; the first error (in the jobs' order) is raised once all
    are done."""
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="cri-pod") as pool:
        futures = [pool.submit(job) for job in jobs]
    for future in futures:
        future.result()


def remove(e: Engine, pod_id: str, cni: Cni | None = None) -> None:
    pod = ours(e, pod_id)
    if pod is not None:
        # the members' directories go at once (each container's removal waits mostly on
        # the filesystem), beside the DEL (a no-op after StopPodSandbox's); then the pod
        jobs: list[Callable[[], None]] = [lambda: podnet.detach(e, cni, pod)]
        jobs += [functools.partial(_remove_member, e, m.id) for m in e.pods.members(pod)]
        _at_once(jobs)
        e.pod_rm(pod_id, force=True, timeout=0)
    elif is_full_id(pod_id):
        podnet.detach_id(cni, pod_id)  # the pod went another way: its CNI state too


def metadata(pod: Any) -> cri.PodSandboxMetadata:
    m = json.loads(pod.labels.get(META) or "{}")
    return cri.PodSandboxMetadata(name=m.get("name", ""), namespace=m.get("namespace", ""),
                                  uid=m.get("uid", ""), attempt=m.get("attempt", 0))


def _state(e: Engine, pod: Any) -> cri.PodSandboxState.ValueType:
    infra = e.pods.infra(pod)
    return cri.SANDBOX_READY if infra is not None and infra.running else cri.SANDBOX_NOTREADY


def user_labels(pod: Any, key: str) -> dict[str, str]:
    return json.loads(pod.labels.get(key) or "{}")


def status(e: Engine, pod_id: str, cni: Cni | None = None) -> cri.PodSandboxStatus:
    pod = ours(e, pod_id)
    if pod is None:
        raise NotFound(f"an error occurred when try to find sandbox {pod_id!r}: not found")
    ip = ""
    infra = e.pods.infra(pod)
    on_cni = podnet.ips(cni, pod)
    extra: list[str] = []
    if on_cni is not None:
        ip, extra = (on_cni[0], on_cni[1:]) if on_cni else ("", [])
    elif infra is not None and infra.running:
        settings = e.containers.inspect(infra.id).get("NetworkSettings") or {}
        ip = settings.get("IPAddress") or next(
            (n.get("IPAddress") for n in (settings.get("Networks") or {}).values()
             if n.get("IPAddress")), "")
    network = pod.config.get("Network") or "bridge"
    mode = cri.NODE if network == "host" else cri.POD
    return cri.PodSandboxStatus(
        id=pod.id, metadata=metadata(pod), state=_state(e, pod),
        created_at=int(pod.created * 1e9),
        network=cri.PodSandboxNetworkStatus(
            ip=ip, additional_ips=[cri.PodIP(ip=x) for x in extra]),
        linux=cri.LinuxPodSandboxStatus(namespaces=cri.Namespace(options=cri.NamespaceOption(
            network=mode, pid=cri.CONTAINER, ipc=cri.POD))),
        labels=user_labels(pod, LABELS), annotations=user_labels(pod, ANNOTATIONS))


def listed(e: Engine, flt: cri.PodSandboxFilter | None) -> list[cri.PodSandbox]:
    out = []
    for entry in e.pod_list({"label": [f"{MARK}=true"]}):
        pod = e.pods.get(entry["Id"])
        if flt is not None:
            if flt.id and not pod.id.startswith(flt.id):
                continue
            if flt.HasField("state") and _state(e, pod) != flt.state.state:
                continue
            labels = user_labels(pod, LABELS)
            if any(labels.get(k) != v for k, v in flt.label_selector.items()):
                continue
        out.append(cri.PodSandbox(
            id=pod.id, metadata=metadata(pod), state=_state(e, pod),
            created_at=int(pod.created * 1e9), labels=user_labels(pod, LABELS),
            annotations=user_labels(pod, ANNOTATIONS)))
    return out


def now_ns() -> int:
    return time.time_ns()
