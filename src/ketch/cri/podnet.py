"""A CRI sandbox's network settings beyond the ketch pod itself: its namespace put on
the CNI network (cri/cni.py) when the server has a CNI configuration, the kubelet's
DNSConfig for the members' /etc/resolv.conf, and the sandbox's sysctls.

A sandbox on CNI is a ketch pod whose infra has a network namespace of its own with
only `lo` (network mode "none"); the CNI plugins add its interface once the infra runs,
and take it away before the infra stops. Without a CNI configuration a sandbox is on
ketch's default bridge, as an ordinary pod is, with its port mappings published by ketch.
"""

from __future__ import annotations

import json

from cri_api.v1 import api_pb2 as cri

from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ketch.cri.cni import Cni
    from ketch.engine import Engine

NETWORK = "io.ketch.cri.network"  # "cni" on a sandbox attached through CNI
DNS = "io.ketch.cri.dns"

_PROTOCOLS = {cri.TCP: "tcp", cri.UDP: "udp", cri.SCTP: "sctp"}
_IPC_SYSCTLS = ("kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue.")


def uses_cni(cni: Cni | None, config: cri.PodSandboxConfig) -> bool:
    """Whether the sandbox goes on the CNI network: not with the node's network, and
    only when the server has a network configuration."""
    if cni is None:
        return False
    if config.linux.security_context.namespace_options.network == cri.NODE:
        return False
    return cni.network() is not None


def sysctls(config: cri.PodSandboxConfig) -> dict[str, str]:
    """The sandbox's sysctls, none of a namespace it shares with the node (the pod
    refuses those outside its own namespaces, Docker's whitelist)."""
    out = dict(config.linux.sysctls)
    opts = config.linux.security_context.namespace_options
    for key in out:
        if key.startswith("net.") and opts.network == cri.NODE:
            raise InvalidArgument(f"sysctl {key!r} not allowed in host network namespace")
        if key.startswith(_IPC_SYSCTLS) and opts.ipc == cri.NODE:
            raise InvalidArgument(f"sysctl {key!r} not allowed in host IPC namespace")
    return out


def dns_label(config: cri.PodSandboxConfig) -> str:
    d = config.dns_config
    if not (d.servers or d.searches or d.options):
        return ""
    return json.dumps({"servers": list(d.servers), "searches": list(d.searches),
                       "options": list(d.options)})


def member_dns(pod: Any) -> dict[str, str]:
    """Host-config settings that give a member the sandbox's resolv.conf: exactly the
    kubelet's DNSConfig, as containerd writes it (nothing of the host's added); none
    without a DNSConfig (then the host's servers, as for any container)."""
    d = json.loads(pod.labels.get(DNS) or "{}")
    if not d:
        return {}
    lines = []
    if d.get("searches"):
        lines.append("search " + " ".join(d["searches"]))
    lines += [f"nameserver {s}" for s in d.get("servers") or []]
    if d.get("options"):
        lines.append("options " + " ".join(d["options"]))
    return {"_ResolvConf": "".join(f"{line}\n" for line in lines)}


def split_sysctls(values: dict[str, str], on_cni: bool
                  ) -> tuple[dict[str, str], dict[str, str]]:
    """(for the infra's start, for after the CNI ADD): the network ones of a sandbox on
    CNI wait for its interface, which is there only after ADD (`net.ipv4.conf.eth0.*`)."""
    if not on_cni:
        return values, {}
    later = {k: v for k, v in values.items() if k.startswith("net.")}
    return {k: v for k, v in values.items() if k not in later}, later


def _port_mappings(config: cri.PodSandboxConfig) -> list[dict[str, Any]]:
    out = []
    for pm in config.port_mappings:
        if pm.host_port <= 0:
            continue  # as containerd: reachable on the pod's address only
        m: dict[str, Any] = {"hostPort": pm.host_port, "containerPort": pm.container_port,
                             "protocol": _PROTOCOLS.get(pm.protocol, "tcp")}
        if pm.host_ip:
            m["hostIP"] = pm.host_ip
        out.append(m)
    return out


def _netns(e: Engine, pod: Any) -> tuple[str, bool]:
    """The path of the running infra's network namespace, and whether ketch made it
    (pinned at its SandboxKey, made with `lo` up: ketch.network.netns)."""
    infra = e.pods.infra(pod)
    if infra is None or not infra.running or not infra.pid:
        return "", False
    key = (infra.network or {}).get("SandboxKey")  # as `inspect` shows it
    return (key, True) if key else (f"/proc/{infra.pid}/ns/net", False)


def attacher(cni: Cni, pod: Any, config: cri.PodSandboxConfig) -> Callable[[str], None]:
    """What puts the sandbox on the CNI network, given the path of the network namespace
    ketch made for its infra (with `lo` up): the infra's start calls it as soon as the
    namespace exists, so the plugins run beside the runtime's create of the infra, as
    containerd makes the namespace and runs CNI before it starts the sandbox. A failure
    undoes what the plugins did (Cni.add) and fails the infra's start."""
    meta = config.metadata
    args = {"K8S_POD_NAMESPACE": meta.namespace, "K8S_POD_NAME": meta.name,
            "K8S_POD_INFRA_CONTAINER_ID": pod.id, "K8S_POD_UID": meta.uid}
    mappings = _port_mappings(config)

    def attach(netns: str) -> None:
        cni.add(pod.id, netns, args, mappings, lo_up=True)

    return attach


def detach(e: Engine, cni: Cni | None, pod: Any) -> None:
    """Take the sandbox off the CNI network (nothing when it is not on it)."""
    if cni is None or pod.labels.get(NETWORK) != "cni":
        return
    cni.delete(pod.id, _netns(e, pod)[0])


def undo(e: Engine, cni: Cni | None, pod: Any) -> None:
    """Take a sandbox that failed to start off the CNI network, as far as that goes."""
    if cni is not None and pod.labels.get(NETWORK) == "cni":
        cni.forget(pod.id, _netns(e, pod)[0])


def detach_id(cni: Cni | None, pod_id: str) -> None:
    """DEL for a sandbox whose record is gone, from the cache alone."""
    if cni is not None:
        cni.delete(pod_id, "")


def ips(cni: Cni | None, pod: Any) -> list[str] | None:
    """The sandbox's CNI addresses; None when it is not on the CNI network."""
    if pod.labels.get(NETWORK) != "cni":
        return None
    from ketch.cri.cni import pod_ips

    entry = cni.cached(pod.id) if cni is not None else None
    return pod_ips(entry.get("result")) if entry else []


def collect(e: Engine, cni: Cni) -> list[str]:
    """DEL for every cached attachment whose sandbox is gone (removed by `ketch pod rm`
    rather than through the CRI, or while no server ran): its address, host ports and
    cache are released. The sandbox IDs collected."""
    from ketch.errors import NotFound

    gone = []
    for sandbox_id in cni.attached():
        try:
            e.pods.get(sandbox_id)
            continue
        except NotFound:
            pass
        cni.forget(sandbox_id)
        gone.append(sandbox_id)
    return gone

