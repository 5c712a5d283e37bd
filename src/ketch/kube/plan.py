"""Kubernetes objects -> a plan of pods, containers, volumes and files, made of the
Engine API's container Config/HostConfig shapes. Nothing is created here, so a file that
fails anywhere creates nothing.

The mapping is Podman's where Podman has one: pods named after a Pod (a Deployment's or
DaemonSet's or Job's `NAME-pod`), containers `POD-CONTAINER`, `command` as the entrypoint
and `args` as the command, `hostPort` published by the pod, a liveness probe as a health
check whose failure restarts the container. What one machine cannot honour (scheduling,
cluster networking, service accounts, ...) becomes a warning line, never silence.

Each container is mapped by `ketch.kube.containers`; the plan's records are in
`ketch.kube.model`.
"""

from __future__ import annotations

import base64
import binascii
import re

from ketch.kube.containers import container_plan
from ketch.kube.documents import DNS_LABEL, Doc
from ketch.kube.model import RESTART_POLICIES, Plan, PodPlan, Source, Volume

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

# -- the fields Kubernetes defines (v1 schema), by object ---------------------------------
_META = frozenset({"annotations", "creationTimestamp", "deletionGracePeriodSeconds",
                   "deletionTimestamp", "finalizers", "generateName", "generation", "labels",
                   "managedFields", "name", "namespace", "ownerReferences", "resourceVersion",
                   "selfLink", "uid"})
_TOP = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_POD_SPEC = frozenset({
    "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers",
    "dnsConfig", "dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases",
    "hostIPC", "hostNetwork", "hostPID", "hostUsers", "hostname", "imagePullSecrets",
    "initContainers", "nodeName", "nodeSelector", "os", "overhead", "preemptionPolicy",
    "priority", "priorityClassName", "readinessGates", "resourceClaims", "resources",
    "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates",
    "securityContext", "serviceAccount", "serviceAccountName", "setHostnameAsFQDN",
    "shareProcessNamespace", "subdomain", "terminationGracePeriodSeconds", "tolerations",
    "topologySpreadConstraints", "volumes"})
# pod fields that only mean something on a cluster: each is a warning when given
_POD_SPEC_CLUSTER = ("activeDeadlineSeconds", "affinity", "ephemeralContainers",
                     "imagePullSecrets", "initContainers", "nodeName", "nodeSelector",
                     "overhead", "preemptionPolicy", "priority", "priorityClassName",
                     "readinessGates", "resourceClaims", "resources", "runtimeClassName",
                     "schedulingGates", "serviceAccount", "serviceAccountName",
                     "setHostnameAsFQDN", "shareProcessNamespace", "subdomain",
                     "tolerations", "topologySpreadConstraints", "hostIPC", "hostUsers")
_PORT = frozenset({"containerPort", "hostIP", "hostPort", "name", "protocol"})
_POD_SECURITY = frozenset({"appArmorProfile", "fsGroup", "fsGroupChangePolicy", "runAsGroup",
                           "runAsNonRoot", "runAsUser", "seLinuxChangePolicy",
                           "seLinuxOptions", "seccompProfile", "supplementalGroups",
                           "supplementalGroupsPolicy", "sysctls", "windowsOptions"})
_VOLUME_SOURCES = frozenset({
    "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi",
    "downwardAPI", "emptyDir", "ephemeral", "fc", "flexVolume", "flocker",
    "gcePersistentDisk", "gitRepo", "glusterfs", "hostPath", "image", "iscsi", "nfs",
    "persistentVolumeClaim", "photonPersistentDisk", "portworxVolume", "projected",
    "quobyte", "rbd", "scaleIO", "secret", "storageos", "vsphereVolume"})
# kinds of the Kubernetes API that ketch has nothing to do with: a warning each
_OTHER_KINDS = frozenset({
    "Namespace", "Ingress", "IngressClass", "StatefulSet", "ReplicaSet",
    "ReplicationController", "CronJob", "ServiceAccount", "Role", "RoleBinding",
    "ClusterRole", "ClusterRoleBinding", "NetworkPolicy", "HorizontalPodAutoscaler",
    "PersistentVolume", "StorageClass", "PodDisruptionBudget", "Endpoints",
    "EndpointSlice", "LimitRange", "ResourceQuota", "CustomResourceDefinition",
    "PriorityClass", "PodTemplate", "Event", "Lease", "RuntimeClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"})
WORKLOADS = ("Pod", "Deployment", "DaemonSet", "Job")  # the kinds that make pods
_API_VERSIONS = {"Pod": "v1", "ConfigMap": "v1", "Secret": "v1", "Service": "v1",
                 "PersistentVolumeClaim": "v1", "Deployment": "apps/v1",
                 "DaemonSet": "apps/v1", "Job": "batch/v1"}


def make_plan(docs: list[Doc]) -> Plan:
    """Check every document and map it; KubeError (one line, naming file, document and
    field) on the first thing that is not Kubernetes ketch can play."""
    plan = Plan()
    configmaps: dict[str, Source] = {}
    secrets: dict[str, Source] = {}
    workloads: list[Doc] = []
    services: list[Doc] = []
    for doc in docs:
        kind = doc.kind
        if kind in _OTHER_KINDS:
            plan.warnings.append(f"{doc.where()}: kind {kind} ignored: ketch plays Pods,"
                                 " Deployments, DaemonSets, Jobs, ConfigMaps, Secrets,"
                                 " PersistentVolumeClaims and Services")
            continue
        if kind not in _API_VERSIONS:
            doc.fail("kind", f"unknown kind {kind!r}")
        want = _API_VERSIONS[kind]
        if doc.body["apiVersion"] != want:
            doc.fail("apiVersion", f"{kind} is in {want}, not {doc.body['apiVersion']}")
        doc.check_fields(doc.body, "", _TOP | ({"data", "stringData", "binaryData",
                                                "immutable", "type"}
                                               if kind in ("ConfigMap", "Secret") else set()))
        meta = doc.obj(doc.body, "metadata", "", required=True)
        doc.check_fields(meta, "metadata", _META)
        name = doc.get(meta, "name", "string", "metadata", required=True)
        if not _DNS_SUBDOMAIN.fullmatch(name) or len(name) > 253:
            doc.fail("metadata.name", f"invalid name {name!r}: lower case letters, digits,"
                     " '-' and '.', starting and ending with a letter or digit")
        doc.string_map(meta, "labels", "metadata")
        doc.string_map(meta, "annotations", "metadata")
        if kind == "ConfigMap":
            _unique(doc, configmaps, name)
            configmaps[name] = Source(doc, _configmap_data(doc))
        elif kind == "Secret":
            _unique(doc, secrets, name)
            secrets[name] = Source(doc, _secret_data(doc))
        elif kind == "PersistentVolumeClaim":
            _claim(doc, plan)
        elif kind == "Service":
            services.append(doc)
        else:
            workloads.append(doc)
    sources = {"configMap": configmaps, "secret": secrets}
    seen: dict[str, Doc] = {}
    for doc in workloads:
        for pod in _workload(doc, sources, plan.warnings):
            if pod.name in seen:
                doc.fail("metadata.name", f"pod {pod.name!r} is already made by"
                         f" {seen[pod.name].where()}")
            seen[pod.name] = doc
            plan.pods.append(pod)
    for doc in services:
        _service(doc, plan)
    if not plan.pods and not plan.claims and not configmaps and not secrets:
        plan.warnings.append(f"{docs[0].source}: nothing to play")
    return plan


def _unique(doc: Doc, known: dict[str, Source], name: str) -> None:
    if name in known:
        doc.fail("metadata.name", f"{doc.kind} {name!r} is defined twice (first in"
                 f" {known[name].doc.where()})")


def _configmap_data(doc: Doc) -> dict[str, bytes]:
    data = {k: v.encode() for k, v in doc.string_map(doc.body, "data", "").items()}
    for k, v in doc.string_map(doc.body, "binaryData", "").items():
        data[k] = _b64(doc, f"binaryData.{k}", v)
    return data


def _secret_data(doc: Doc) -> dict[str, bytes]:
    data = {k: _b64(doc, f"data.{k}", v)
            for k, v in doc.string_map(doc.body, "data", "").items()}
    for k, v in doc.string_map(doc.body, "stringData", "").items():
        data[k] = v.encode()
    return data


def _b64(doc: Doc, path: str, text: str) -> bytes:
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        doc.fail(path, "not base64")


def _claim(doc: Doc, plan: Plan) -> None:
    spec = doc.obj(doc.body, "spec", "")
    name = doc.body["metadata"]["name"]
    storage = doc.obj(doc.obj(spec, "resources", "spec"), "requests", "spec.resources")
    if "storage" in storage:
        plan.warnings.append(doc.warning("spec.resources.requests.storage",
                                         "ignored: a ketch volume has no size limit"))
    if spec.get("storageClassName"):
        plan.warnings.append(doc.warning("spec.storageClassName",
                                         "ignored: ketch has local volumes only"))
    labels = dict(doc.string_map(doc.body["metadata"], "labels", "metadata"))
    plan.claims[name] = labels


# -- workloads ----------------------------------------------------------------------------
def _workload(doc: Doc, sources: dict[str, dict[str, Source]], warnings: list[str]
              ) -> list[PodPlan]:
    meta = doc.body["metadata"]
    name = meta["name"]
    if doc.kind == "Pod":
        spec = doc.obj(doc.body, "spec", "", required=True)
        return [_pod(doc, name, meta, spec, "spec", sources, warnings)]
    spec = doc.obj(doc.body, "spec", "", required=True)
    template = doc.obj(spec, "template", "spec", required=True)
    doc.check_fields(template, "spec.template", frozenset({"metadata", "spec"}))
    tmeta = doc.obj(template, "metadata", "spec.template")
    doc.check_fields(tmeta, "spec.template.metadata", _META)
    pspec = doc.obj(template, "spec", "spec.template", required=True)
    # a pod gets the template's labels and annotations, as on a cluster (the object's
    # own are the object's)
    merged = {"labels": doc.string_map(tmeta, "labels", "spec.template.metadata"),
              "annotations": doc.string_map(tmeta, "annotations", "spec.template.metadata")}
    path = "spec.template.spec"
    replicas = 1
    if doc.kind == "Deployment":
        replicas = doc.get(spec, "replicas", "integer", "spec", default=1)
        if replicas < 0:
            doc.fail("spec.replicas", f"must be 0 or more, got {replicas}")
    elif doc.kind == "Job":
        restart = pspec.get("restartPolicy")
        if restart not in ("Never", "OnFailure"):
            doc.fail(f"{path}.restartPolicy", "a Job's pods restart Never or OnFailure,"
                     f" got {restart!r}")
        for key in ("completions", "parallelism"):
            n = doc.get(spec, key, "integer", "spec", default=1)
            if n != 1:
                warnings.append(doc.warning(f"spec.{key}", f"ignored ({n}): ketch runs"
                                            " one pod for a Job"))
    pods = []
    for i in range(replicas):
        pod_name = f"{name}-pod" if replicas == 1 else f"{name}-pod-{i}"
        pod = _pod(doc, pod_name, merged, pspec, path, sources, warnings if i == 0 else [])
        if pod.publish and replicas > 1:
            doc.fail("spec.replicas", f"{replicas} replicas cannot all publish host port"
                     f" {pod.publish[0]}: one machine has each host port once")
        if doc.kind == "Job":
            limit = doc.get(spec, "backoffLimit", "integer", "spec", default=6)
            for c in pod.containers:
                if c.host_config["RestartPolicy"]["Name"] == "on-failure":
                    c.host_config["RestartPolicy"]["MaximumRetryCount"] = limit
        pods.append(pod)
    return pods


def _pod(doc: Doc, pod_name: str, meta: dict[str, Any], spec: dict[str, Any], path: str,
         sources: dict[str, dict[str, Source]], warnings: list[str]) -> PodPlan:
    doc.check_fields(spec, path, _POD_SPEC)
    for key in _POD_SPEC_CLUSTER:
        if spec.get(key) not in (None, [], {}, False):
            warnings.append(doc.warning(f"{path}.{key}", "ignored: ketch runs the pod on"
                                        " this one machine"))
    restart = doc.get(spec, "restartPolicy", "string", path, default="Always")
    if restart not in RESTART_POLICIES:
        doc.fail(f"{path}.restartPolicy", f"unsupported value {restart!r}: Always,"
                 " OnFailure or Never")
    hostname = doc.get(spec, "hostname", "string", path, default="")
    if hostname and not DNS_LABEL.fullmatch(hostname):
        doc.fail(f"{path}.hostname", f"invalid host name {hostname!r}")
    host_network = doc.get(spec, "hostNetwork", "boolean", path, default=False)
    host_pid = doc.get(spec, "hostPID", "boolean", path, default=False)
    grace = doc.get(spec, "terminationGracePeriodSeconds", "integer", path)
    labels = dict(meta.get("labels") or {})
    annotations = dict(meta.get("annotations") or {})
    pod = PodPlan(name=pod_name, kind=doc.kind, owner=doc.body["metadata"]["name"],
                  labels=labels, annotations=annotations, hostname=hostname, publish=[],
                  add_hosts=[], host_network=host_network, restart_policy=restart)
    for apath, alias in doc.objects(spec, "hostAliases", path):
        ip = doc.get(alias, "ip", "string", apath, required=True)
        for h in doc.strings(alias, "hostnames", apath):
            pod.add_hosts.append(f"{h}:{ip}")
    dns: dict[str, Any] = {}
    dns_config = doc.obj(spec, "dnsConfig", path)
    if dns_config:
        dns["Dns"] = doc.strings(dns_config, "nameservers", f"{path}.dnsConfig")
        dns["DnsSearch"] = doc.strings(dns_config, "searches", f"{path}.dnsConfig")
        dns["DnsOptions"] = [
            o["name"] + (f":{o['value']}" if o.get("value") is not None else "")
            for _, o in doc.objects(dns_config, "options", f"{path}.dnsConfig")
            if isinstance(o.get("name"), str)]
    psec = doc.obj(spec, "securityContext", path)
    doc.check_fields(psec, f"{path}.securityContext", _POD_SECURITY)
    for key in ("fsGroup", "fsGroupChangePolicy", "seLinuxOptions", "appArmorProfile",
                "windowsOptions", "supplementalGroupsPolicy", "seLinuxChangePolicy"):
        if key in psec:
            warnings.append(doc.warning(f"{path}.securityContext.{key}", "ignored: ketch"
                                        " does not apply it"))
    volumes = _volumes(doc, spec, path, pod, sources, warnings)
    containers = doc.objects(spec, "containers", path, required=True)
    if not containers:
        doc.fail(f"{path}.containers", "required: a pod has at least one container")
    names: set[str] = set()
    ports_seen: set[tuple[str, int, str]] = set()
    for cpath, c in containers:
        cp = container_plan(doc, cpath, c, pod, spec, path, psec, volumes, sources, warnings)
        if cp.short in names:
            doc.fail(f"{cpath}.name", f"duplicate container name {cp.short!r}")
        names.add(cp.short)
        for key in ("Dns", "DnsSearch", "DnsOptions"):
            if dns.get(key):
                cp.host_config[key] = list(dns[key])
        if host_pid:
            cp.host_config["PidMode"] = "host"
        if grace is not None:
            cp.config["StopTimeout"] = grace
        for hp in _ports(doc, cpath, c, ports_seen, cp.port_names):
            pod.publish.append(hp)
        pod.containers.append(cp)
    return pod


def _ports(doc: Doc, cpath: str, c: dict[str, Any], seen: set[tuple[str, int, str]],
           names: dict[str, int]) -> list[str]:
    out = []
    for ppath, port in doc.objects(c, "ports", cpath):
        doc.check_fields(port, ppath, _PORT)
        cport = doc.get(port, "containerPort", "integer", ppath, required=True)
        if not 0 < cport < 65536:
            doc.fail(f"{ppath}.containerPort", f"must be 1-65535, got {cport}")
        proto = doc.get(port, "protocol", "string", ppath, default="TCP")
        if proto not in ("TCP", "UDP", "SCTP"):
            doc.fail(f"{ppath}.protocol", f"unsupported value {proto!r}: TCP, UDP or SCTP")
        host_port = doc.get(port, "hostPort", "integer", ppath, default=0)
        if not 0 <= host_port < 65536:
            doc.fail(f"{ppath}.hostPort", f"must be 1-65535, got {host_port}")
        host_ip = doc.get(port, "hostIP", "string", ppath, default="")
        pname = doc.get(port, "name", "string", ppath)
        if pname:
            names[pname] = cport
        if not host_port:
            continue
        key = (host_ip, host_port, proto)
        if key in seen:
            doc.fail(f"{ppath}.hostPort", f"host port {host_port}/{proto} is published"
                     " twice in the pod")
        seen.add(key)
        ip = f"[{host_ip}]" if ":" in host_ip else host_ip
        out.append(f"{ip + ':' if ip else ''}{host_port}:{cport}/{proto.lower()}")
    return out


# -- volumes ------------------------------------------------------------------------------
def _volumes(doc: Doc, spec: dict[str, Any], path: str, pod: PodPlan,
             sources: dict[str, dict[str, Source]], warnings: list[str]
             ) -> dict[str, Volume]:
    out: dict[str, Volume] = {}
    for vpath, vol in doc.objects(spec, "volumes", path):
        doc.check_fields(vol, vpath, _VOLUME_SOURCES | {"name"})
        name = doc.get(vol, "name", "string", vpath, required=True)
        if not DNS_LABEL.fullmatch(name):
            doc.fail(f"{vpath}.name", f"invalid volume name {name!r}")
        if name in out:
            doc.fail(f"{vpath}.name", f"duplicate volume name {name!r}")
        given = [k for k in vol if k != "name"]
        if len(given) != 1:
            doc.fail(vpath, "exactly one volume source is required, got"
                     f" {', '.join(given) or 'none'}")
        kind = given[0]
        src = doc.obj(vol, kind, vpath)
        spath = f"{vpath}.{kind}"
        if kind == "persistentVolumeClaim":
            claim = doc.get(src, "claimName", "string", spath, required=True)
            out[name] = Volume("volume", claim,
                                doc.get(src, "readOnly", "boolean", spath, default=False))
        elif kind == "hostPath":
            host = doc.get(src, "path", "string", spath, required=True)
            if not host.startswith("/"):
                doc.fail(f"{spath}.path", f"must be an absolute path, got {host!r}")
            htype = doc.get(src, "type", "string", spath, default="")
            if htype not in ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File",
                             "Socket", "CharDevice", "BlockDevice"):
                doc.fail(f"{spath}.type", f"unsupported value {htype!r}")
            out[name] = Volume("bind", host, options={"type": htype})
        elif kind == "emptyDir":
            medium = doc.get(src, "medium", "string", spath, default="")
            if medium not in ("", "Memory"):
                doc.fail(f"{spath}.medium", f"unsupported value {medium!r}: \"\" or Memory")
            opts: dict[str, str] = {}
            if medium == "Memory":
                opts = {"type": "tmpfs", "device": "tmpfs"}
                limit = src.get("sizeLimit")
                if limit is not None:
                    opts["o"] = f"size={doc.size(f'{spath}.sizeLimit', limit)}"
            elif src.get("sizeLimit") is not None:
                warnings.append(doc.warning(f"{spath}.sizeLimit", "ignored: a disk-backed"
                                            " emptyDir has no size limit here"))
            vname = f"{pod.name}-{name}"
            pod.volumes[vname] = opts
            out[name] = Volume("volume", vname)
        elif kind in ("configMap", "secret"):
            out[name] = Volume("files", f"{kind}/{name}")
            pod.files[f"{kind}/{name}"] = _projected(doc, spath, kind, src, sources[kind])
        else:
            doc.fail(f"{vpath}.{kind}", "unsupported volume source: ketch has"
                     " persistentVolumeClaim, hostPath, emptyDir, configMap and secret")
    return out


def _projected(doc: Doc, spath: str, kind: str, src: dict[str, Any],
               known: dict[str, Source]) -> dict[str, tuple[bytes, int]]:
    key_name = "name" if kind == "configMap" else "secretName"
    ref = doc.get(src, key_name, "string", spath, required=True)
    optional = doc.get(src, "optional", "boolean", spath, default=False)
    mode = doc.get(src, "defaultMode", "integer", spath, default=0o644)
    if not 0 <= mode <= 0o777:
        doc.fail(f"{spath}.defaultMode", f"must be 0-0777 (0-511), got {mode}")
    what = "ConfigMap" if kind == "configMap" else "Secret"
    if ref not in known:
        if optional:
            return {}
        doc.fail(f"{spath}.{key_name}", f"no {what} named {ref!r} in the file")
    data = known[ref].data
    items = doc.objects(src, "items", spath)
    if not items:
        return {k: (v, mode) for k, v in data.items()}
    out = {}
    for ipath, item in items:
        key = doc.get(item, "key", "string", ipath, required=True)
        rel = doc.get(item, "path", "string", ipath, required=True)
        if rel.startswith("/") or ".." in rel.split("/"):
            doc.fail(f"{ipath}.path", f"must be a relative path inside the volume, got {rel!r}")
        imode = doc.get(item, "mode", "integer", ipath, default=mode)
        if key not in data:
            if optional:
                continue
            doc.fail(f"{ipath}.key", f"{what} {ref!r} has no key {key!r}")
        out[rel] = (data[key], imode)
    return out


# -- services -----------------------------------------------------------------------------
def _service(doc: Doc, plan: Plan) -> None:
    spec = doc.obj(doc.body, "spec", "")
    stype = doc.get(spec, "type", "string", "spec", default="ClusterIP")
    if stype != "NodePort":
        plan.warnings.append(doc.warning("spec.type", f"{stype} ignored: ketch gives no"
                                         " cluster IP or load balancer; reach the pod"
                                         " through its hostPort or a NodePort Service"))
        return
    selector = doc.string_map(spec, "selector", "spec")
    pods = [p for p in plan.pods
            if selector and all(p.labels.get(k) == v for k, v in selector.items())]
    if not pods:
        plan.warnings.append(doc.warning("spec.selector", "selects no pod in the file:"
                                         " nothing published"))
        return
    for ppath, port in doc.objects(spec, "ports", "spec", required=True):
        node_port = doc.get(port, "nodePort", "integer", ppath)
        number = doc.get(port, "port", "integer", ppath, required=True)
        target = doc.int_or_string(port, "targetPort", ppath) or number
        proto = doc.get(port, "protocol", "string", ppath, default="TCP").lower()
        if node_port is None:
            plan.warnings.append(doc.warning(f"{ppath}.nodePort", "not given: ketch"
                                             " publishes only a fixed nodePort"))
            continue
        for pod in pods:
            cport = target if isinstance(target, int) else _named_port(pod, doc, ppath,
                                                                        target)
            spec_str = f"{node_port}:{cport}/{proto}"
            if spec_str not in pod.publish:
                if any(p.split(":")[-2] == str(node_port) for p in pod.publish):
                    doc.fail(f"{ppath}.nodePort", f"host port {node_port} is already"
                             f" published by pod {pod.name}")
                pod.publish.append(spec_str)


def _named_port(pod: PodPlan, doc: Doc, ppath: str, name: str) -> int:
    for c in pod.containers:
        if name in c.port_names:
            return c.port_names[name]
    if name.isdigit():
        return int(name)
    doc.fail(f"{ppath}.targetPort", f"no container port named {name!r} in pod {pod.name}")
