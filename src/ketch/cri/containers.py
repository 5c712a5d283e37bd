"""CRI containers as ketch containers that join their sandbox's pod.

The kubelet's container config becomes an Engine API-shaped create (command is the
ENTRYPOINT, args the CMD, as Kubernetes defines them over an image), its metadata,
labels and annotations are kept in the container's labels under `io.ketch.cri.*`, and
conmon writes its log at the kubelet's path (the k8s-file driver's `path`: the CRI log
format, `<RFC 3339 time> <stream> <P|F> <text>`), where the kubelet rotates it: it
renames the file and calls ReopenContainerLog, and conmon opens the path anew.
"""

from __future__ import annotations

import json
import os
import threading

from cri_api.v1 import api_pb2 as cri

from ketch.cri import podnet, sandboxes
from ketch.cri.common import Deadline
from ketch.errors import Conflict, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.engine import Engine

MARK = "io.ketch.cri.container"
META = "io.ketch.cri.metadata"
LABELS = "io.ketch.cri.labels"
ANNOTATIONS = "io.ketch.cri.annotations"
SANDBOX = "io.ketch.cri.sandbox-id"
LOG_PATH = "io.ketch.cri.log-path"

# a root that lacks CAP_SYS_RESOURCE cannot lower oom_score_adj below its own (the
# kubelet asks for -997 for guaranteed pods): keep what can be applied, as containerd's
# restrict_oom_score_adj does
_OOM_FLOOR_FILE = "/proc/self/oom_score_adj"


def _oom_floor() -> int:
    try:
        with open(_OOM_FLOOR_FILE) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return -1000


def _user(sc: cri.LinuxContainerSecurityContext) -> str:
    if sc.HasField("run_as_user"):
        user = str(sc.run_as_user.value)
    else:
        user = sc.run_as_username
    if user and sc.HasField("run_as_group"):
        user += f":{sc.run_as_group.value}"
    return user


def _security_opts(sc: cri.LinuxContainerSecurityContext) -> list[str]:
    opts = []
    if sc.no_new_privs:
        opts.append("no-new-privileges")
    kind = sc.seccomp.profile_type if sc.HasField("seccomp") else cri.SecurityProfile.RuntimeDefault
    if kind == cri.SecurityProfile.Unconfined:
        opts.append("seccomp=unconfined")
    elif kind == cri.SecurityProfile.Localhost:
        opts.append(f"seccomp={sc.seccomp.localhost_ref}")
    return opts


def _binds(mounts: Any) -> list[str]:
    out = []
    for m in mounts:
        if not m.host_path or not m.container_path:
            raise InvalidArgument("a mount needs a host_path and a container_path")
        mode = ["ro" if m.readonly else "rw"]
        if m.propagation == cri.PROPAGATION_HOST_TO_CONTAINER:
            mode.append("rslave")
        elif m.propagation == cri.PROPAGATION_BIDIRECTIONAL:
            mode.append("rshared")
        out.append(f"{m.host_path}:{m.container_path}:{','.join(mode)}")
    return out


def create(e: Engine, pod_id: str, config: cri.ContainerConfig) -> str:
    try:
        pod = e.pods.get(pod_id)
    except NotFound:
        raise NotFound(f"sandbox {pod_id!r} not found") from None
    if pod.labels.get(sandboxes.MARK) != "true":
        raise NotFound(f"sandbox {pod_id!r} not found")
    smeta = json.loads(pod.labels.get(sandboxes.META) or "{}")
    meta = config.metadata
    if not meta.name:
        raise InvalidArgument("container metadata needs a name")
    res = config.linux.resources
    sc = config.linux.security_context
    log_path = ""
    log_dir = pod.labels.get(sandboxes.LOG_DIRECTORY) or ""
    if config.log_path:
        log_path = os.path.join(log_dir, config.log_path) if log_dir else config.log_path
    body: dict[str, Any] = {
        "Image": config.image.image,
        "Entrypoint": list(config.command) or None,
        "Cmd": list(config.args) or None,
        "WorkingDir": config.working_dir,
        "Env": [f"{kv.key}={kv.value}" for kv in config.envs],
        "Tty": config.tty, "OpenStdin": config.stdin, "StdinOnce": config.stdin_once,
        "User": _user(sc),
        "Labels": {MARK: "true", SANDBOX: pod.id, LOG_PATH: log_path,
                   META: json.dumps({"name": meta.name, "attempt": meta.attempt}),
                   LABELS: json.dumps(dict(config.labels)),
                   ANNOTATIONS: json.dumps(dict(config.annotations))},
    }
    if config.stop_signal:
        body["StopSignal"] = cri.Signal.Name(config.stop_signal)
    host: dict[str, Any] = {
        "Binds": _binds(config.mounts),
        "Privileged": sc.privileged, "ReadonlyRootfs": sc.readonly_rootfs,
        "CapAdd": list(sc.capabilities.add_capabilities),
        "CapDrop": list(sc.capabilities.drop_capabilities),
        "SecurityOpt": _security_opts(sc),
    }
    host.update(podnet.member_dns(pod))  # the sandbox's DNSConfig in /etc/resolv.conf
    if log_path:
        if not os.path.isabs(log_path):
            raise InvalidArgument(f"log path {log_path!r} is not absolute: the sandbox"
                                  " needs a log_directory")
        host["LogConfig"] = {"Type": "k8s-file", "Config": {"path": log_path}}
    parent = pod.labels.get(sandboxes.CGROUP_PARENT) or ""
    if parent:  # the kubelet's pod cgroup (cgroupfs driver): the members go under it
        host["CgroupParent"] = parent
    if res.memory_limit_in_bytes:
        host["Memory"] = res.memory_limit_in_bytes
    if res.cpu_shares:
        host["CpuShares"] = res.cpu_shares
    if res.cpu_quota > 0:
        host["CpuQuota"] = res.cpu_quota
    if res.cpu_period:
        host["CpuPeriod"] = res.cpu_period
    if res.cpuset_cpus:
        host["CpusetCpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        host["CpusetMems"] = res.cpuset_mems
    if res.oom_score_adj:
        host["OomScoreAdj"] = max(res.oom_score_adj, _oom_floor())
    name = (f"k8s_{meta.name}_{smeta.get('name', '')}_{smeta.get('namespace', '')}_"
            f"{smeta.get('uid', '')}_{meta.attempt}")
    rec = e.containers.create(body, host, name=name, pod=pod.name)
    return rec.id


def ours(e: Engine, cid: str) -> Any | None:
    try:
        rec = e.containers.get(cid)
    except NotFound:
        return None
    return rec if (rec.config.get("Labels") or {}).get(MARK) == "true" else None


def start(e: Engine, cid: str) -> None:
    if ours(e, cid) is None:
        raise NotFound(f"container {cid!r} not found")
    e.containers.start(cid)


def stop(e: Engine, cid: str, timeout: int) -> None:
    rec = ours(e, cid)
    if rec is None:
        raise NotFound(f"an error occurred when try to find container {cid!r}: not found")
    if rec.running:  # stopping a stopped one is no error
        e.containers.stop(cid, timeout=timeout)


def remove(e: Engine, cid: str) -> None:
    rec = ours(e, cid)
    if rec is None:
        return
    # the log stays: the kubelet removes the files it rotated with it, as it does with
    # containerd's. Containers created before conmon wrote there had a link instead.
    log_path = (rec.config.get("Labels") or {}).get(LOG_PATH) or ""
    e.containers.remove(cid, force=True)
    if log_path and os.path.islink(log_path):
        os.unlink(log_path)


def reopen_log(e: Engine, cid: str) -> None:
    if ours(e, cid) is None:
        raise NotFound(f"container {cid!r} not found")
    e.containers.reopen_log(cid)


_STATES = {"created": cri.CONTAINER_CREATED, "running": cri.CONTAINER_RUNNING,
           "paused": cri.CONTAINER_RUNNING, "restarting": cri.CONTAINER_RUNNING,
           "exited": cri.CONTAINER_EXITED, "dead": cri.CONTAINER_EXITED}


def _ns(seconds: float) -> int:
    return int(seconds * 1e9) if seconds > 0 else 0


def user_labels(rec: Any, key: str) -> dict[str, str]:
    return json.loads((rec.config.get("Labels") or {}).get(key) or "{}")


def meta(rec: Any) -> cri.ContainerMetadata:
    m = user_labels(rec, META)
    return cri.ContainerMetadata(name=str(m.get("name", "")), attempt=int(m.get("attempt", 0)))


def status(e: Engine, cid: str) -> cri.ContainerStatus:
    rec = ours(e, cid)
    if rec is None:
        raise NotFound(f"an error occurred when try to find container {cid!r}: not found")
    code = _STATES.get(rec.state, cri.CONTAINER_UNKNOWN)
    reason = ""
    if code == cri.CONTAINER_EXITED:
        oom = e.containers.inspect(rec.id)["State"].get("OOMKilled")
        reason = "OOMKilled" if oom else "Completed" if rec.exit_code == 0 else "Error"
    labels = rec.config.get("Labels") or {}
    return cri.ContainerStatus(
        id=rec.id, metadata=meta(rec), state=code, created_at=_ns(rec.created),
        started_at=_ns(rec.started_at), finished_at=_ns(rec.finished_at),
        exit_code=rec.exit_code if code == cri.CONTAINER_EXITED else 0,
        image=cri.ImageSpec(image=rec.image_name), image_ref=rec.image_id,
        image_id=rec.image_id, reason=reason, labels=user_labels(rec, LABELS),
        annotations=user_labels(rec, ANNOTATIONS), log_path=labels.get(LOG_PATH, ""))


def listed(e: Engine, flt: cri.ContainerFilter | None) -> list[cri.Container]:
    out = []
    for summary in e.containers.list(all=True, filters={"label": [f"{MARK}=true"]}):
        rec = e.containers.get(summary["Id"])
        labels = rec.config.get("Labels") or {}
        state = _STATES.get(rec.state, cri.CONTAINER_UNKNOWN)
        if flt is not None:
            if flt.id and not rec.id.startswith(flt.id):
                continue
            if flt.pod_sandbox_id and not labels.get(SANDBOX, "").startswith(
                    flt.pod_sandbox_id):
                continue
            if flt.HasField("state") and state != flt.state.state:
                continue
            user = user_labels(rec, LABELS)
            if any(user.get(k) != v for k, v in flt.label_selector.items()):
                continue
        out.append(cri.Container(
            id=rec.id, pod_sandbox_id=labels.get(SANDBOX, ""), metadata=meta(rec),
            image=cri.ImageSpec(image=rec.image_name), image_ref=rec.image_id,
            image_id=rec.image_id, state=state, created_at=_ns(rec.created),
            labels=user_labels(rec, LABELS), annotations=user_labels(rec, ANNOTATIONS)))
    return out


def exec_sync(e: Engine, cid: str, cmd: list[str], timeout: int) -> tuple[bytes, bytes, int]:
    if ours(e, cid) is None:
        raise NotFound(f"container {cid!r} not found")
    if not cmd:
        raise InvalidArgument("no command given to exec")
    eid = e.containers.exec_create(cid, cmd)
    out, err = bytearray(), bytearray()
    result: list[int | None] = []
    failed: list[Exception] = []

    def run() -> None:
        try:
            with e.reopen() as own:  # an Engine holds one SQLite connection per thread
                result.append(own.containers.exec_start(eid, stdout=out.extend,
                                                        stderr=err.extend))
        except Exception as exc:  # noqa: BLE001 (the call's own error, raised below)
            failed.append(exc)

    worker = threading.Thread(target=run, name="cri-exec", daemon=True)
    worker.start()
    worker.join(timeout if timeout > 0 else None)
    if worker.is_alive():
        raise Deadline(f"command {cmd!r} timed out after {timeout}s")
    if failed:
        # a command that could not start (not found, not executable) is the call's
        # error, as containerd answers it: an exec probe of it fails, never exits 0
        raise failed[0]
    code = result[0] if result else None
    return bytes(out), bytes(err), 0 if code is None else code


def check_stream(e: Engine, cid: str, *, tty: bool, stdin: bool, stdout: bool, stderr: bool,
                 cmd: list[str] | None = None) -> None:
    """What Exec and Attach check before they hand out a streaming URL (the kubelet's
    streaming server checks the same)."""
    rec = ours(e, cid)
    if rec is None:
        raise NotFound(f"an error occurred when try to find container {cid!r}: not found")
    if cmd is not None and not cmd:
        raise InvalidArgument("cmd is empty")
    if tty and stderr:
        raise InvalidArgument("tty and stderr cannot both be true")
    if not (stdin or stdout or stderr):
        raise InvalidArgument("one of stdin, stdout, or stderr must be set")
    if not rec.running:
        raise Conflict(f"container {cid!r} is in {rec.state} state, not running")
