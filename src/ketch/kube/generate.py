"""Pods and containers -> Kubernetes YAML (`kube generate`), the reverse of `play`:
what `play` reads, written so that playing it makes an equivalent pod and any cluster
accepts it (tests check it with kubernetes-validate and the official client's models).

Only what differs from the image is written (command, args, env, workingDir), as a
cluster takes the rest from the image too. An image is named by a tag that carries a
registry host when it has one (the name it was pushed under), else by the name the
container was made from.
"""

from __future__ import annotations

import base64
import os
import re

from ketch.errors import InvalidArgument, NotFound
from ketch.kube.model import LABEL_KIND, LABEL_OWNER, LABEL_VOLUME

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.containers.records import ContainerRecord
    from ketch.engine import Engine

_NS = 1_000_000_000
_RESTART = {"always": "Always", "unless-stopped": "Always", "on-failure": "OnFailure",
            "no": "Never", "": "Never"}


def generate(engine: Engine, names: list[str], *, kind: str = "pod",
             service: bool = False) -> str:
    import yaml

    if kind not in ("pod", "deployment"):
        raise InvalidArgument(f"invalid type {kind!r}: pod or deployment")
    if not names:
        raise InvalidArgument("give at least one pod or container name")
    docs: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    for name in names:
        pod = _pod_source(engine, name)
        obj = _object(engine, pod, kind)
        docs.extend(pod.extra)
        docs.append(obj)
        if service:
            svc = _service(pod, obj)
            if svc is not None:
                services.append(svc)
    head = ("# Made by ketch kube generate: `ketch kube play` or `kubectl apply -f` this"
            " file.\n")
    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
        # file contents as literal blocks, as people write ConfigMaps
        style = "|" if "\n" in data and data.strip() == data.rstrip("\n") else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(str, text)
    return head + "---\n".join(yaml.dump(d, Dumper=Dumper, sort_keys=False,
                                         default_flow_style=False)
                               for d in services + docs)


class _PodSource:
    """A pod, or a lone container, as the material of one Kubernetes pod."""

    def __init__(self, name: str, labels: dict[str, str], hostname: str,
                 ports: dict[str, Any], hosts: list[str],
                 members: list[ContainerRecord], prefix: str) -> None:
        self.name = name
        self.labels = labels
        self.hostname = hostname
        self.ports = ports
        self.hosts = hosts
        self.members = members
        self.prefix = prefix
        self.extra: list[dict[str, Any]] = []    # ConfigMaps and Secrets its volumes need


def _pod_source(engine: Engine, name: str) -> _PodSource:
    try:
        info = engine.pod_inspect(name)
    except NotFound:
        info = None
    if info is not None:
        members = [engine.containers.get(c["Id"]) for c in info["Containers"]
                   if c["Id"] != info.get("InfraContainerID")]
        if not members:
            raise InvalidArgument(f"pod {info['Name']} has no containers to describe")
        infra = info.get("InfraConfig") or {}
        return _PodSource(info["Name"], dict(info.get("Labels") or {}),
                          info.get("Hostname") or "", infra.get("PortBindings") or {},
                          list(infra.get("HostAdd") or []), members, info["Name"] + "-")
    try:
        rec = engine.containers.get(name)
    except NotFound:
        raise NotFound(f"{name} does not refer to a pod or a container") from None
    hc = rec.host_config
    if hc.get("_Pod") or hc.get("_PodInfra"):
        raise InvalidArgument(f"container {rec.name} is part of a pod: generate the pod")
    return _PodSource(f"{rec.name}-pod", {}, "", hc.get("PortBindings") or {},
                      list(hc.get("ExtraHosts") or []), [rec], "")


def _dns_label(text: str) -> str:
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return out[:63].strip("-") or "ctr"


def _object(engine: Engine, pod: _PodSource, kind: str) -> dict[str, Any]:
    labels = {k: v for k, v in pod.labels.items() if not k.startswith("io.ketch.kube.")}
    kube_kind = pod.labels.get(LABEL_KIND, "")
    owner = pod.labels.get(LABEL_OWNER, "")
    labels.setdefault("app", _dns_label(owner or pod.name))
    containers = []
    volumes: dict[str, dict[str, Any]] = {}
    annotations: dict[str, str] = {}
    restart = "Always" if kind == "deployment" else ""
    for i, rec in enumerate(pod.members):
        c, vols, policy = _container(engine, rec, pod, first=i == 0)
        containers.append(c)
        volumes.update(vols)
        annotations.update(rec.host_config.get("Annotations") or {})
        restart = restart or policy
    spec: dict[str, Any] = {"containers": containers}
    if pod.hostname and pod.hostname != pod.name:  # a pod's host name is its name
        spec["hostname"] = pod.hostname
    aliases: dict[str, list[str]] = {}
    for line in pod.hosts:
        host, _, ip = line.partition(":")
        aliases.setdefault(ip, []).append(host)
    if aliases:
        spec["hostAliases"] = [{"ip": ip, "hostnames": h} for ip, h in aliases.items()]
    spec["restartPolicy"] = restart or "Never"
    # play sets each member's stop timeout from the pod's grace period; one a member
    # carries (from play or `--stop-timeout`) goes back, the longest if they differ
    grace = [int(t) for rec in pod.members
             if (t := rec.config.get("StopTimeout")) is not None]
    if grace:
        spec["terminationGracePeriodSeconds"] = max(grace)
    if volumes:
        spec["volumes"] = list(volumes.values())
    meta: dict[str, Any] = {"labels": labels}
    if annotations:
        meta["annotations"] = annotations
    if kind == "pod":
        name = pod.name
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, **meta}, "spec": spec}
    # a pod ketch played from a Deployment keeps that name, so play makes it again
    name = owner if owner and kube_kind == "Deployment" else f"{pod.name}-deployment"
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": labels["app"]}},
                     "template": {"metadata": meta, "spec": spec}}}


def _image_name(engine: Engine, rec: ContainerRecord) -> tuple[str, dict[str, Any]]:
    """The image name a cluster can pull, and the image's config."""
    given = rec.config.get("Image") or rec.image_name
    try:
        info = engine.images.inspect(rec.image_id)
    except NotFound:
        return given, {}
    tags = list(info.get("RepoTags") or [])
    pushed = [t for t in tags if _has_registry(t)]
    if pushed:
        name = pushed[0]
    elif given in tags or (given and not re.fullmatch(r"(sha256:)?[0-9a-f]{6,64}", given)):
        name = given
    else:
        name = tags[0] if tags else given
    return name, info.get("Config") or {}


def _has_registry(ref: str) -> bool:
    first, slash, _ = ref.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _container(engine: Engine, rec: ContainerRecord, pod: _PodSource, *, first: bool
               ) -> tuple[dict[str, Any], dict[str, dict[str, Any]], str]:
    cfg, hc = rec.config, rec.host_config
    image, icfg = _image_name(engine, rec)
    short = rec.name[len(pod.prefix):] if rec.name.startswith(pod.prefix) else rec.name
    c: dict[str, Any] = {"name": _dns_label(short), "image": image}
    entry, cmd = cfg.get("Entrypoint") or [], cfg.get("Cmd") or []
    if entry != (icfg.get("Entrypoint") or []):
        c["command"] = list(entry)
        if cmd:
            c["args"] = list(cmd)
    elif cmd != (icfg.get("Cmd") or []):
        c["args"] = list(cmd)
    image_env = set(icfg.get("Env") or [])
    env = []
    for e in cfg.get("Env") or []:
        if e in image_env:
            continue
        k, _, v = e.partition("=")
        if k in ("PATH", "HOSTNAME") and v and not image_env:
            continue  # what every container gets
        env.append({"name": k, "value": v})
    if env:
        c["env"] = env
    if cfg.get("WorkingDir") and cfg["WorkingDir"] != (icfg.get("WorkingDir") or ""):
        c["workingDir"] = cfg["WorkingDir"]
    if first:
        ports = _ports(pod.ports)
        if ports:
            c["ports"] = ports
    sec = _security(cfg, hc, icfg)
    if sec:
        c["securityContext"] = sec
    res = _resources(hc)
    if res:
        c["resources"] = res
    probe = _probe(cfg.get("Healthcheck"), icfg.get("Healthcheck"))
    if probe:
        action = cfg.get("HealthcheckOnFailureAction") or ""
        c["livenessProbe" if action in ("restart", "kill") else "readinessProbe"] = probe
    if cfg.get("Tty"):
        c["tty"] = True
    if cfg.get("OpenStdin"):
        c["stdin"] = True
    mounts, volumes = _mounts(engine, hc, pod)
    if mounts:
        c["volumeMounts"] = mounts
    policy = _RESTART.get((hc.get("RestartPolicy") or {}).get("Name") or "", "Never")
    return c, volumes, policy


def _ports(bindings: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, binds in sorted(bindings.items()):
        port, _, proto = key.partition("/")
        for b in binds or [{}]:
            p: dict[str, Any] = {"containerPort": int(port)}
            if b.get("HostPort"):
                p["hostPort"] = int(b["HostPort"])
            if b.get("HostIp") and b["HostIp"] not in ("0.0.0.0", "::"):
                p["hostIP"] = b["HostIp"]
            p["protocol"] = (proto or "tcp").upper()
            out.append(p)
    return out


def _security(cfg: dict[str, Any], hc: dict[str, Any], icfg: dict[str, Any]
              ) -> dict[str, Any]:
    sec: dict[str, Any] = {}
    user = cfg.get("User") or ""
    if user and user != (icfg.get("User") or ""):
        uid, _, gid = user.partition(":")
        if uid.isdigit():
            sec["runAsUser"] = int(uid)
        if gid.isdigit():
            sec["runAsGroup"] = int(gid)
    # Kubernetes names capabilities without the CAP_ prefix the container keeps
    caps: dict[str, list[str]] = {}
    if hc.get("CapAdd"):
        caps["add"] = [c.removeprefix("CAP_") for c in hc["CapAdd"]]
    if hc.get("CapDrop"):
        caps["drop"] = [c.removeprefix("CAP_") for c in hc["CapDrop"]]
    if caps:
        sec["capabilities"] = caps
    if hc.get("Privileged"):
        sec["privileged"] = True
    if hc.get("ReadonlyRootfs"):
        sec["readOnlyRootFilesystem"] = True
    opts = hc.get("SecurityOpt") or []
    if "no-new-privileges" in opts or "no-new-privileges:true" in opts:
        sec["allowPrivilegeEscalation"] = False
    if "seccomp=unconfined" in opts or "seccomp:unconfined" in opts:
        sec["seccompProfile"] = {"type": "Unconfined"}
    return sec


def _quantity(n: int) -> str:
    for suffix, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n and n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def _resources(hc: dict[str, Any]) -> dict[str, Any]:
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if hc.get("Memory"):
        limits["memory"] = _quantity(int(hc["Memory"]))
    if hc.get("NanoCpus"):
        limits["cpu"] = f"{round(int(hc['NanoCpus']) / 1_000_000)}m"
    if hc.get("MemoryReservation"):
        requests["memory"] = _quantity(int(hc["MemoryReservation"]))
    if hc.get("CpuShares"):
        requests["cpu"] = f"{max(1, round(int(hc['CpuShares']) * 1000 / 1024))}m"
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
    if requests:
        out["requests"] = requests
    return out


def _seconds(ns: Any, default: int) -> int:
    if not ns:
        return default
    return max(1, -(-int(ns) // _NS))


def _probe(check: dict[str, Any] | None, image_check: dict[str, Any] | None
           ) -> dict[str, Any] | None:
    if not check or check == image_check:
        return None
    test = list(check.get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    command = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", *test[1:]]
    probe: dict[str, Any] = {"exec": {"command": command},
                             "periodSeconds": _seconds(check.get("Interval"), 30),
                             "timeoutSeconds": _seconds(check.get("Timeout"), 30),
                             "failureThreshold": int(check.get("Retries") or 3)}
    if check.get("StartPeriod"):
        probe["initialDelaySeconds"] = _seconds(check["StartPeriod"], 0)
    return probe


def _mounts(engine: Engine, hc: dict[str, Any], pod: _PodSource
            ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    mounts: list[dict[str, Any]] = []
    volumes: dict[str, dict[str, Any]] = {}
    specs = list(hc.get("Mounts") or [])
    for b in hc.get("Binds") or []:
        parts = b.split(":")
        ro = len(parts) > 2 and "ro" in parts[2].split(",")
        kind = "bind" if parts[0].startswith("/") else "volume"
        specs.append({"Type": kind, "Source": parts[0], "Target": parts[1], "ReadOnly": ro})
    for t, opts in (hc.get("Tmpfs") or {}).items():
        specs.append({"Type": "tmpfs", "Target": t, "_opts": opts})
    for m in specs:
        target = m.get("Target") or m.get("Destination") or ""
        source = m.get("Source") or ""
        mtype = m.get("Type") or "volume"
        if mtype == "volume" and source:
            labels = _volume_labels(engine, source)
            if labels.get(LABEL_VOLUME) == pod.name and source.startswith(pod.prefix):
                vname = _dns_label(source[len(pod.prefix):])
                volumes[vname] = {"name": vname, "emptyDir": {}}
            else:
                vname = _dns_label(source)
                volumes[vname] = {"name": vname,
                                  "persistentVolumeClaim": {"claimName": source}}
        elif mtype == "bind" and _projected(engine, pod, source, volumes):
            vname = _dns_label(os.path.basename(source))
        elif mtype == "bind":
            vname = _dns_label(source.strip("/").replace("/", "-")) or "root"
            vname = vname[:63]
            volumes[vname] = {"name": vname, "hostPath": {"path": source}}
        elif mtype == "tmpfs":
            vname = _dns_label(target.strip("/").replace("/", "-")) or "tmp"
            volumes[vname] = {"name": vname, "emptyDir": {"medium": "Memory"}}
        else:
            continue
        mount = {"name": vname, "mountPath": target}
        if m.get("ReadOnly"):
            mount["readOnly"] = True
        mounts.append(mount)
    return mounts, volumes


def _volume_labels(engine: Engine, name: str) -> dict[str, str]:
    try:
        return dict(engine.volumes.inspect(name).get("Labels") or {})
    except NotFound:
        return {}


def _service(pod: _PodSource, obj: dict[str, Any]) -> dict[str, Any] | None:
    ports = []
    for key, binds in sorted(pod.ports.items()):
        port, _, proto = key.partition("/")
        for b in binds or [{}]:
            p: dict[str, Any] = {"name": f"{port}-{proto or 'tcp'}", "port": int(port),
                                 "targetPort": int(port), "protocol": (proto or "tcp").upper()}
            host = int(b.get("HostPort") or 0)
            if 30000 <= host <= 32767:  # the cluster's default NodePort range
                p["nodePort"] = host
            ports.append(p)
    if not ports:
        return None
    name = obj["metadata"]["name"]
    labels = (obj["metadata"].get("labels") if obj["kind"] == "Pod"
              else obj["spec"]["template"]["metadata"]["labels"])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": labels["app"]},
                     "ports": ports}}


def _projected(engine: Engine, pod: _PodSource, source: str,
               volumes: dict[str, dict[str, Any]]) -> bool:
    """A bind of a ConfigMap/Secret volume `play` wrote: the volume, and the object
    with the files' contents (a Secret's too: the YAML is what a cluster needs)."""
    from ketch.kube.play import files_dir

    kind_dir, vol = os.path.split(source)
    base, kind = os.path.split(kind_dir)
    if base != files_dir(engine, pod.name) or kind not in ("configMap", "secret"):
        return False
    vname = _dns_label(vol)
    obj_name = _dns_label(f"{pod.name}-{vol}")
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    items = []
    for top, _dirs, files in os.walk(source):
        for f in sorted(files):
            path = os.path.join(top, f)
            rel = os.path.relpath(path, source)
            key = rel.replace("/", "-")
            with open(path, "rb") as fh:
                content = fh.read()
            if kind == "secret":
                data[key] = base64.b64encode(content).decode()
            else:
                try:
                    data[key] = content.decode()
                except UnicodeDecodeError:
                    binary[key] = base64.b64encode(content).decode()
            items.append({"key": key, "path": rel})
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap" if kind == "configMap"
                           else "Secret", "metadata": {"name": obj_name}}
    if data:
        obj["data"] = data
    if binary:
        obj["binaryData"] = binary
    pod.extra.append(obj)
    ref: dict[str, Any] = ({"name": obj_name} if kind == "configMap"
                           else {"secretName": obj_name})
    if any(i["key"] != i["path"] for i in items):
        ref["items"] = items
    volumes[vname] = {"name": vname, kind: ref}
    return True
