"""Kubernetes objects -> a plan of pods, containers, volumes and files, made of the
Engine API's container Config/HostConfig shapes. Nothing is created here, so a file that
fails anywhere creates nothing.

The mapping is Podman's where Podman has one: pods named after a Pod (a Deployment's or
DaemonSet's or Job's `NAME-pod`), containers `POD-CONTAINER`, `command` as the entrypoint
and `args` as the command, `hostPort` published by the pod, a liveness probe as a health
check whose failure restarts the container. What one machine cannot honour (scheduling,
cluster networking, service accounts, ...) becomes a warning line, never silence.

Size: one module because it is one mapping, object by object, with the schema's field
lists beside the code that reads them; splitting it would scatter each kind's rules.
"""

from __future__ import annotations

import base64
import binascii
import re

from ketch.kube.documents import Doc, quantity
from ketch.values import field, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Annotations and labels ketch puts on what it makes, so `kube down` and `generate` find it.
LABEL_KIND = "io.ketch.kube.kind"        # Pod / Deployment / DaemonSet / Job, on the pod
LABEL_OWNER = "io.ketch.kube.owner"      # the object's name, on the pod
LABEL_VOLUME = "io.ketch.kube.pod"       # on an emptyDir volume: the pod it belongs to

DEFAULT_PROBE = {"periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3,
                 "initialDelaySeconds": 0}
_NS = 1_000_000_000

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_VAR_REF = re.compile(r"\$\$|\$\(([^)]*)\)")

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
_CONTAINER = frozenset({
    "args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle",
    "livenessProbe", "name", "ports", "readinessProbe", "resizePolicy", "resources",
    "restartPolicy", "restartPolicyRules", "securityContext", "startupProbe", "stdin",
    "stdinOnce", "terminationMessagePath", "terminationMessagePolicy", "tty",
    "volumeDevices", "volumeMounts", "workingDir"})
_CONTAINER_CLUSTER = ("lifecycle", "resizePolicy", "restartPolicy", "restartPolicyRules",
                      "startupProbe", "volumeDevices")
_PORT = frozenset({"containerPort", "hostIP", "hostPort", "name", "protocol"})
_ENV = frozenset({"name", "value", "valueFrom"})
_ENV_SOURCE = frozenset({"configMapKeyRef", "fieldRef", "fileKeyRef", "resourceFieldRef",
                         "secretKeyRef"})
_ENV_FROM = frozenset({"configMapRef", "prefix", "secretRef"})
_SECURITY = frozenset({"allowPrivilegeEscalation", "appArmorProfile", "capabilities",
                       "privileged", "procMount", "readOnlyRootFilesystem", "runAsGroup",
                       "runAsNonRoot", "runAsUser", "seLinuxOptions", "seccompProfile",
                       "windowsOptions"})
_POD_SECURITY = frozenset({"appArmorProfile", "fsGroup", "fsGroupChangePolicy", "runAsGroup",
                           "runAsNonRoot", "runAsUser", "seLinuxChangePolicy",
                           "seLinuxOptions", "seccompProfile", "supplementalGroups",
                           "supplementalGroupsPolicy", "sysctls", "windowsOptions"})
_PROBE = frozenset({"exec", "failureThreshold", "grpc", "httpGet", "initialDelaySeconds",
                    "periodSeconds", "successThreshold", "tcpSocket",
                    "terminationGracePeriodSeconds", "timeoutSeconds"})
_VOLUME_SOURCES = frozenset({
    "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi",
    "downwardAPI", "emptyDir", "ephemeral", "fc", "flexVolume", "flocker",
    "gcePersistentDisk", "gitRepo", "glusterfs", "hostPath", "image", "iscsi", "nfs",
    "persistentVolumeClaim", "photonPersistentDisk", "portworxVolume", "projected",
    "quobyte", "rbd", "scaleIO", "secret", "storageos", "vsphereVolume"})
_VOLUME_MOUNT = frozenset({"mountPath", "mountPropagation", "name", "readOnly",
                           "recursiveReadOnly", "subPath", "subPathExpr", "bindMountOptions"})

# kinds of the Kubernetes API that ketch has nothing to do with: a warning each
_OTHER_KINDS = frozenset({
    "Namespace", "Ingress", "IngressClass", "StatefulSet", "ReplicaSet",
    "ReplicationController", "CronJob", "ServiceAccount", "Role", "RoleBinding",
    "ClusterRole", "ClusterRoleBinding", "NetworkPolicy", "HorizontalPodAutoscaler",
    "PersistentVolume", "StorageClass", "PodDisruptionBudget", "Endpoints",
    "EndpointSlice", "LimitRange", "ResourceQuota", "CustomResourceDefinition",
    "PriorityClass", "PodTemplate", "Event", "Lease", "RuntimeClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"})
_API_VERSIONS = {"Pod": "v1", "ConfigMap": "v1", "Secret": "v1", "Service": "v1",
                 "PersistentVolumeClaim": "v1", "Deployment": "apps/v1",
                 "DaemonSet": "apps/v1", "Job": "batch/v1"}
_RESTART = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}


@value
class MountPlan:
    """One volumeMount: `kind` "volume" (named), "bind" (host path) or "tmpfs"."""

    kind: str
    source: str
    target: str
    read_only: bool = False
    sub_path: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@value
class ContainerPlan:
    name: str                 # POD-CONTAINER
    short: str                # the container's name in the YAML
    image: str
    pull_policy: str          # Always / IfNotPresent / Never
    config: dict[str, Any]
    host_config: dict[str, Any]
    mounts: list[MountPlan] = field(default_factory=list)
    run_as_non_root: bool = False
    health_on_failure: str = ""   # Podman's --health-on-failure for a liveness probe
    port_names: dict[str, int] = field(default_factory=dict)


@value
class PodPlan:
    name: str
    kind: str                 # the object it comes from
    owner: str                # that object's name
    labels: dict[str, str]
    annotations: dict[str, str]
    hostname: str
    publish: list[str]
    add_hosts: list[str]
    host_network: bool
    restart_policy: str       # Kubernetes' value
    containers: list[ContainerPlan] = field(default_factory=list)
    # emptyDir volumes, made for the pod and removed by `kube down`: name -> driver options
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    # ConfigMap/Secret volumes: "configMap/NAME" or "secret/NAME" -> {path: (content, mode)}
    files: dict[str, dict[str, tuple[bytes, int]]] = field(default_factory=dict)


@value
class Plan:
    pods: list[PodPlan] = field(default_factory=list)
    claims: dict[str, dict[str, str]] = field(default_factory=dict)  # PVC -> labels
    warnings: list[str] = field(default_factory=list)


class _Source:
    """A ConfigMap or Secret: its keys and their bytes."""

    def __init__(self, doc: Doc, data: dict[str, bytes]) -> None:
        self.doc = doc
        self.data = data


def make_plan(docs: list[Doc]) -> Plan:
    """Check every document and map it; KubeError (one line, naming file, document and
    field) on the first thing that is not Kubernetes ketch can play."""
    plan = Plan()
    configmaps: dict[str, _Source] = {}
    secrets: dict[str, _Source] = {}
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
            configmaps[name] = _Source(doc, _configmap_data(doc))
        elif kind == "Secret":
            _unique(doc, secrets, name)
            secrets[name] = _Source(doc, _secret_data(doc))
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


def _unique(doc: Doc, known: dict[str, _Source], name: str) -> None:
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
def _workload(doc: Doc, sources: dict[str, dict[str, _Source]], warnings: list[str]
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
         sources: dict[str, dict[str, _Source]], warnings: list[str]) -> PodPlan:
    doc.check_fields(spec, path, _POD_SPEC)
    for key in _POD_SPEC_CLUSTER:
        if spec.get(key) not in (None, [], {}, False):
            warnings.append(doc.warning(f"{path}.{key}", "ignored: ketch runs the pod on"
                                        " this one machine"))
    restart = doc.get(spec, "restartPolicy", "string", path, default="Always")
    if restart not in _RESTART:
        doc.fail(f"{path}.restartPolicy", f"unsupported value {restart!r}: Always,"
                 " OnFailure or Never")
    hostname = doc.get(spec, "hostname", "string", path, default="")
    if hostname and not _DNS_LABEL.fullmatch(hostname):
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
        cp = _container(doc, cpath, c, pod, spec, path, psec, volumes, sources, warnings)
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
@value
class _Volume:
    kind: str                    # volume / bind / tmpfs / files
    source: str                  # volume name, host path, or files volume name
    read_only: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def _volumes(doc: Doc, spec: dict[str, Any], path: str, pod: PodPlan,
             sources: dict[str, dict[str, _Source]], warnings: list[str]
             ) -> dict[str, _Volume]:
    out: dict[str, _Volume] = {}
    for vpath, vol in doc.objects(spec, "volumes", path):
        doc.check_fields(vol, vpath, _VOLUME_SOURCES | {"name"})
        name = doc.get(vol, "name", "string", vpath, required=True)
        if not _DNS_LABEL.fullmatch(name):
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
            out[name] = _Volume("volume", claim,
                                doc.get(src, "readOnly", "boolean", spath, default=False))
        elif kind == "hostPath":
            host = doc.get(src, "path", "string", spath, required=True)
            if not host.startswith("/"):
                doc.fail(f"{spath}.path", f"must be an absolute path, got {host!r}")
            htype = doc.get(src, "type", "string", spath, default="")
            if htype not in ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File",
                             "Socket", "CharDevice", "BlockDevice"):
                doc.fail(f"{spath}.type", f"unsupported value {htype!r}")
            out[name] = _Volume("bind", host, options={"type": htype})
        elif kind == "emptyDir":
            medium = doc.get(src, "medium", "string", spath, default="")
            if medium not in ("", "Memory"):
                doc.fail(f"{spath}.medium", f"unsupported value {medium!r}: \"\" or Memory")
            opts: dict[str, str] = {}
            if medium == "Memory":
                opts = {"type": "tmpfs", "device": "tmpfs"}
                limit = src.get("sizeLimit")
                if limit is not None:
                    opts["o"] = f"size={_bytes(doc, f'{spath}.sizeLimit', limit)}"
            elif src.get("sizeLimit") is not None:
                warnings.append(doc.warning(f"{spath}.sizeLimit", "ignored: a disk-backed"
                                            " emptyDir has no size limit here"))
            vname = f"{pod.name}-{name}"
            pod.volumes[vname] = opts
            out[name] = _Volume("volume", vname)
        elif kind in ("configMap", "secret"):
            out[name] = _Volume("files", f"{kind}/{name}")
            pod.files[f"{kind}/{name}"] = _projected(doc, spath, kind, src, sources[kind])
        else:
            doc.fail(f"{vpath}.{kind}", "unsupported volume source: ketch has"
                     " persistentVolumeClaim, hostPath, emptyDir, configMap and secret")
    return out


def _projected(doc: Doc, spath: str, kind: str, src: dict[str, Any],
               known: dict[str, _Source]) -> dict[str, tuple[bytes, int]]:
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


def _bytes(doc: Doc, path: str, v: object) -> int:
    try:
        n = quantity(v)
    except ValueError:
        doc.fail(path, f"not a quantity: {v!r}")
    if n < 0:
        doc.fail(path, f"must not be negative, got {v!r}")
    return int(n)


# -- containers ---------------------------------------------------------------------------
def _container(doc: Doc, cpath: str, c: dict[str, Any], pod: PodPlan, spec: dict[str, Any],
               spec_path: str, psec: dict[str, Any], volumes: dict[str, _Volume],
               sources: dict[str, dict[str, _Source]], warnings: list[str]) -> ContainerPlan:
    doc.check_fields(c, cpath, _CONTAINER)
    name = doc.get(c, "name", "string", cpath, required=True)
    if not _DNS_LABEL.fullmatch(name) or len(name) > 63:
        doc.fail(f"{cpath}.name", f"invalid container name {name!r}: lower case letters,"
                 " digits and '-', starting and ending with a letter or digit")
    image = doc.get(c, "image", "string", cpath, required=True)
    for key in _CONTAINER_CLUSTER:
        if c.get(key) not in (None, [], {}):
            warnings.append(doc.warning(f"{cpath}.{key}", "ignored: ketch does not run it"))
    pull = doc.get(c, "imagePullPolicy", "string", cpath, default="IfNotPresent")
    if pull not in ("Always", "IfNotPresent", "Never"):
        doc.fail(f"{cpath}.imagePullPolicy", f"unsupported value {pull!r}: Always,"
                 " IfNotPresent or Never")
    resources = _resources(doc, f"{cpath}.resources", doc.obj(c, "resources", cpath),
                           warnings)
    env = _env(doc, cpath, c, pod, resources, sources, warnings)
    env_map = dict(e.split("=", 1) for e in env)
    config: dict[str, Any] = {"Image": image, "Env": env,
                              "Labels": dict(pod.labels) or None}
    command = doc.strings(c, "command", cpath)
    args = doc.strings(c, "args", cpath)
    if "command" in c:
        config["Entrypoint"] = [_expand(a, env_map) for a in command]
        config["Cmd"] = [_expand(a, env_map) for a in args] or None
    elif "args" in c:
        config["Cmd"] = [_expand(a, env_map) for a in args]
    wd = doc.get(c, "workingDir", "string", cpath)
    if wd:
        if not wd.startswith("/"):
            doc.fail(f"{cpath}.workingDir", f"must be an absolute path, got {wd!r}")
        config["WorkingDir"] = wd
    if doc.get(c, "tty", "boolean", cpath, default=False):
        config["Tty"] = True
    if doc.get(c, "stdin", "boolean", cpath, default=False):
        config["OpenStdin"] = True
    hc: dict[str, Any] = {"RestartPolicy": {"Name": _RESTART[pod.restart_policy],
                                            "MaximumRetryCount": 0}}
    hc.update({k: v for k, v in resources.items() if not k.startswith("_")})
    if pod.annotations:
        hc["Annotations"] = dict(pod.annotations)
    non_root = _security(doc, cpath, c, spec_path, psec, config, hc, warnings)
    plan = ContainerPlan(name=f"{pod.name}-{name}", short=name, image=image,
                         pull_policy=pull, config=config, host_config=hc,
                         run_as_non_root=non_root)
    _mounts(doc, cpath, c, volumes, plan)
    _probes(doc, cpath, c, pod, plan, warnings)
    return plan


def _resources(doc: Doc, path: str, res: dict[str, Any], warnings: list[str]
               ) -> dict[str, Any]:
    doc.check_fields(res, path, frozenset({"limits", "requests", "claims"}))
    out: dict[str, Any] = {}
    for section in ("limits", "requests"):
        values = doc.obj(res, section, path)
        for key, v in values.items():
            qpath = f"{path}.{section}.{key}"
            if key not in ("memory", "cpu"):
                warnings.append(doc.warning(qpath, "ignored: ketch limits memory and cpu"))
                continue
            n = _bytes(doc, qpath, v) if key == "memory" else None
            if key == "cpu":
                try:
                    cores = quantity(v)
                except ValueError:
                    doc.fail(qpath, f"not a quantity: {v!r}")
                if cores <= 0:
                    doc.fail(qpath, f"must be more than 0, got {v!r}")
            if section == "limits" and key == "memory":
                out["Memory"] = n
                out["_limits.memory"] = n
            elif section == "limits":
                out["NanoCpus"] = int(cores * _NS)
                out["_limits.cpu"] = cores
            elif key == "memory":
                out["MemoryReservation"] = n
                out["_requests.memory"] = n
            else:
                # the kubelet's mapping of a cpu request onto cgroup shares
                out["CpuShares"] = max(2, int(cores * 1024))
                out["_requests.cpu"] = cores
    if res.get("claims"):
        warnings.append(doc.warning(f"{path}.claims", "ignored: ketch has no resource"
                                    " claims"))
    return out


def _env(doc: Doc, cpath: str, c: dict[str, Any], pod: PodPlan, resources: dict[str, Any],
         sources: dict[str, dict[str, _Source]], warnings: list[str]) -> list[str]:
    values: dict[str, str] = {}
    for epath, ef in doc.objects(c, "envFrom", cpath):
        doc.check_fields(ef, epath, _ENV_FROM)
        prefix = doc.get(ef, "prefix", "string", epath, default="")
        refs = [k for k in ("configMapRef", "secretRef") if k in ef]
        if len(refs) != 1:
            doc.fail(epath, "exactly one of configMapRef and secretRef is required")
        ref = doc.obj(ef, refs[0], epath)
        rpath = f"{epath}.{refs[0]}"
        ref_name = doc.get(ref, "name", "string", rpath, required=True)
        optional = doc.get(ref, "optional", "boolean", rpath, default=False)
        known = sources["configMap" if refs[0] == "configMapRef" else "secret"]
        if ref_name not in known:
            if optional:
                continue
            what = "ConfigMap" if refs[0] == "configMapRef" else "Secret"
            doc.fail(f"{rpath}.name", f"no {what} named {ref_name!r} in the file")
        for k, data in known[ref_name].data.items():
            values[prefix + k] = _text(doc, f"{rpath}.name", data)
    for epath, e in doc.objects(c, "env", cpath):
        doc.check_fields(e, epath, _ENV)
        name = doc.get(e, "name", "string", epath, required=True)
        if not _ENV_NAME.fullmatch(name):
            doc.fail(f"{epath}.name", f"invalid environment variable name {name!r}")
        if "valueFrom" in e:
            v = _value_from(doc, f"{epath}.valueFrom", doc.obj(e, "valueFrom", epath), pod,
                            resources, sources, warnings)
            if v is None:
                continue
            values[name] = v
        else:
            raw = e.get("value")
            if raw is not None and not isinstance(raw, str):
                doc.fail(f"{epath}.value", f"expected string, got {type(raw).__name__}"
                         f" {raw!r} (quote it)")
            values[name] = _expand(raw or "", values)
    return [f"{k}={v}" for k, v in values.items()]


def _value_from(doc: Doc, path: str, src: dict[str, Any], pod: PodPlan,
                resources: dict[str, Any], sources: dict[str, dict[str, _Source]],
                warnings: list[str]) -> str | None:
    doc.check_fields(src, path, _ENV_SOURCE)
    if len(src) != 1:
        doc.fail(path, "exactly one source is required")
    kind = next(iter(src))
    ref = doc.obj(src, kind, path)
    rpath = f"{path}.{kind}"
    if kind in ("configMapKeyRef", "secretKeyRef"):
        name = doc.get(ref, "name", "string", rpath, required=True)
        key = doc.get(ref, "key", "string", rpath, required=True)
        optional = doc.get(ref, "optional", "boolean", rpath, default=False)
        what = "ConfigMap" if kind == "configMapKeyRef" else "Secret"
        known = sources["configMap" if kind == "configMapKeyRef" else "secret"]
        if name not in known:
            if optional:
                return None
            doc.fail(f"{rpath}.name", f"no {what} named {name!r} in the file")
        if key not in known[name].data:
            if optional:
                return None
            doc.fail(f"{rpath}.key", f"{what} {name!r} has no key {key!r}")
        return _text(doc, f"{rpath}.key", known[name].data[key])
    if kind == "fieldRef":
        fpath = doc.get(ref, "fieldPath", "string", rpath, required=True)
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", fpath)
        if fpath == "metadata.name":
            return pod.name
        if fpath == "metadata.namespace":
            return "default"
        if fpath == "spec.nodeName":
            import socket

            return socket.gethostname()
        if m:
            return (pod.labels if m.group(1) == "labels" else pod.annotations).get(
                m.group(2), "")
        warnings.append(doc.warning(f"{rpath}.fieldPath", f"{fpath} is not known before the"
                                    " pod runs: the variable is left out"))
        return None
    if kind == "resourceFieldRef":
        res = doc.get(ref, "resource", "string", rpath, required=True)
        divisor = quantity(ref.get("divisor") or 1)
        have = resources.get(f"_{res}")
        if have is None:
            warnings.append(doc.warning(f"{rpath}.resource", f"{res} is not set on the"
                                        " container: the variable is left out"))
            return None
        import math

        return str(math.ceil(have / divisor))
    warnings.append(doc.warning(rpath, "ignored: ketch has no such source"))
    return None


def _text(doc: Doc, path: str, data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        doc.fail(path, "the value is not UTF-8 text and cannot be an environment variable")


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` references: replaced when VAR is defined, kept otherwise;
    `$$` is a literal `$`."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, text)


def _security(doc: Doc, cpath: str, c: dict[str, Any], spec_path: str, psec: dict[str, Any],
              config: dict[str, Any], hc: dict[str, Any], warnings: list[str]) -> bool:
    sec = doc.obj(c, "securityContext", cpath)
    spath = f"{cpath}.securityContext"
    doc.check_fields(sec, spath, _SECURITY)
    ppath = f"{spec_path}.securityContext"

    def pick(key: str, typ: str) -> Any:
        v = doc.get(sec, key, typ, spath)
        return v if v is not None else doc.get(psec, key, typ, ppath)

    uid, gid = pick("runAsUser", "integer"), pick("runAsGroup", "integer")
    if uid is not None:
        config["User"] = f"{uid}:{gid}" if gid is not None else str(uid)
    elif gid is not None:
        warnings.append(doc.warning(f"{spath}.runAsGroup", "ignored without runAsUser:"
                                    " ketch sets the group together with the user"))
    non_root = bool(pick("runAsNonRoot", "boolean"))
    if non_root and uid == 0:
        doc.fail(f"{spath}.runAsUser", "runAsNonRoot is true but runAsUser is 0")
    groups = doc.get(psec, "supplementalGroups", "array", ppath, default=[])
    if groups:
        hc["GroupAdd"] = [str(g) for g in groups]
    sysctls = {}
    for sp, s in doc.objects(psec, "sysctls", ppath):
        sysctls[doc.get(s, "name", "string", sp, required=True)] = str(
            doc.get(s, "value", "string", sp, required=True))
    if sysctls:
        hc["Sysctls"] = sysctls
    caps = doc.obj(sec, "capabilities", spath)
    doc.check_fields(caps, f"{spath}.capabilities", frozenset({"add", "drop"}))
    if caps.get("add"):
        hc["CapAdd"] = doc.strings(caps, "add", f"{spath}.capabilities")
    if caps.get("drop"):
        hc["CapDrop"] = doc.strings(caps, "drop", f"{spath}.capabilities")
    if doc.get(sec, "privileged", "boolean", spath, default=False):
        hc["Privileged"] = True
    if doc.get(sec, "readOnlyRootFilesystem", "boolean", spath, default=False):
        hc["ReadonlyRootfs"] = True
    opts = []
    if doc.get(sec, "allowPrivilegeEscalation", "boolean", spath) is False:
        opts.append("no-new-privileges")
    seccomp = sec.get("seccompProfile") or psec.get("seccompProfile")
    if isinstance(seccomp, dict):
        stype = seccomp.get("type")
        if stype == "Unconfined":
            opts.append("seccomp=unconfined")
        elif stype == "Localhost":
            warnings.append(doc.warning(f"{spath}.seccompProfile", "Localhost profile"
                                        " ignored: the default profile applies"))
    if opts:
        hc["SecurityOpt"] = opts
    for key in ("procMount", "seLinuxOptions", "appArmorProfile", "windowsOptions"):
        if key in sec:
            warnings.append(doc.warning(f"{spath}.{key}", "ignored: ketch does not apply"
                                        " it"))
    return non_root


def _mounts(doc: Doc, cpath: str, c: dict[str, Any], volumes: dict[str, _Volume],
            plan: ContainerPlan) -> None:
    targets: set[str] = set()
    for mpath, m in doc.objects(c, "volumeMounts", cpath):
        doc.check_fields(m, mpath, _VOLUME_MOUNT)
        name = doc.get(m, "name", "string", mpath, required=True)
        target = doc.get(m, "mountPath", "string", mpath, required=True)
        if not target.startswith("/"):
            doc.fail(f"{mpath}.mountPath", f"must be an absolute path, got {target!r}")
        if target in targets:
            doc.fail(f"{mpath}.mountPath", f"{target} is mounted twice")
        targets.add(target)
        if name not in volumes:
            doc.fail(f"{mpath}.name", f"no volume named {name!r} in the pod's volumes")
        vol = volumes[name]
        ro = doc.get(m, "readOnly", "boolean", mpath, default=False) or vol.read_only
        sub = doc.get(m, "subPath", "string", mpath, default="")
        if sub.startswith("/") or ".." in sub.split("/"):
            doc.fail(f"{mpath}.subPath", f"must be a relative path inside the volume, got"
                     f" {sub!r}")
        if m.get("subPathExpr"):
            doc.fail(f"{mpath}.subPathExpr", "not supported: use subPath")
        if vol.kind == "files":
            ro = True  # ConfigMap and Secret volumes are read-only, as the kubelet makes them
        plan.mounts.append(MountPlan(kind=vol.kind, source=vol.source, target=target,
                                     read_only=ro, sub_path=sub, options=dict(vol.options)))


def _probes(doc: Doc, cpath: str, c: dict[str, Any], pod: PodPlan, plan: ContainerPlan,
            warnings: list[str]) -> None:
    live = doc.obj(c, "livenessProbe", cpath)
    ready = doc.obj(c, "readinessProbe", cpath)
    if live and ready:
        warnings.append(doc.warning(f"{cpath}.readinessProbe", "ignored: ketch runs one"
                                    " health check a container, the liveness probe"))
    probe, key = (live, "livenessProbe") if live else (ready, "readinessProbe")
    if not probe:
        return
    ppath = f"{cpath}.{key}"
    doc.check_fields(probe, ppath, _PROBE)
    actions = [k for k in ("exec", "httpGet", "tcpSocket", "grpc") if k in probe]
    if len(actions) != 1:
        doc.fail(ppath, "exactly one of exec, httpGet, tcpSocket and grpc is required")
    action = actions[0]
    apath = f"{ppath}.{action}"
    spec = doc.obj(probe, action, ppath)
    if action == "exec":
        command = doc.strings(spec, "command", apath)
        if not command:
            doc.fail(f"{apath}.command", "required")
        test = ["CMD", *command]
    elif action == "httpGet":
        port = _probe_port(doc, apath, spec, c)
        host = doc.get(spec, "host", "string", apath, default="") or "127.0.0.1"
        scheme = doc.get(spec, "scheme", "string", apath, default="HTTP").lower()
        if scheme not in ("http", "https"):
            doc.fail(f"{apath}.scheme", f"unsupported value {spec['scheme']!r}")
        url = f"{scheme}://{host}:{port}{doc.get(spec, 'path', 'string', apath, default='/')}"
        headers = [(h.get("name"), h.get("value"))
                   for _, h in doc.objects(spec, "httpHeaders", apath)]
        test = ["CMD-SHELL", _http_probe(url, headers)]
    elif action == "tcpSocket":
        port = _probe_port(doc, apath, spec, c)
        host = doc.get(spec, "host", "string", apath, default="") or "127.0.0.1"
        test = ["CMD-SHELL", f"nc -z {_sh(host)} {port} || exit 1"]
    else:
        warnings.append(doc.warning(apath, "ignored: ketch has no gRPC health probe"))
        return
    numbers = {}
    for k, default in DEFAULT_PROBE.items():
        n = doc.get(probe, k, "integer", ppath, default=default)
        if n < (0 if k == "initialDelaySeconds" else 1):
            doc.fail(f"{ppath}.{k}", f"must be {'0' if k == 'initialDelaySeconds' else '1'}"
                     f" or more, got {n}")
        numbers[k] = n
    plan.config["Healthcheck"] = {
        "Test": test, "Interval": numbers["periodSeconds"] * _NS,
        "Timeout": numbers["timeoutSeconds"] * _NS,
        "Retries": numbers["failureThreshold"],
        "StartPeriod": numbers["initialDelaySeconds"] * _NS}
    if key == "livenessProbe":
        # the kubelet kills a container whose liveness probe fails and the restart policy
        # decides what comes next; Podman maps it so
        plan.health_on_failure = "kill" if pod.restart_policy == "Never" else "restart"


def _probe_port(doc: Doc, apath: str, spec: dict[str, Any], c: dict[str, Any]) -> int:
    port = doc.int_or_string(spec, "port", apath, required=True)
    if isinstance(port, int):
        return port
    for p in c.get("ports") or []:
        if isinstance(p, dict) and p.get("name") == port:
            return int(p.get("containerPort") or 0)
    if port is not None and port.isdigit():
        return int(port)
    doc.fail(f"{apath}.port", f"no container port named {port!r}")


def _sh(word: str) -> str:
    import shlex

    return shlex.quote(word)


def _http_probe(url: str, headers: list[tuple[Any, Any]]) -> str:
    """A probe run inside the container, with whichever HTTP client it has (as Podman's
    probes do): curl, else wget (busybox has it)."""
    curl = " ".join(f"-H {_sh(f'{n}: {v}')}" for n, v in headers)
    wget = " ".join(f"--header {_sh(f'{n}: {v}')}" for n, v in headers)
    return (f"if command -v curl >/dev/null 2>&1; then curl -fsS -o /dev/null {curl}"
            f" {_sh(url)}; else wget -q -O /dev/null {wget} {_sh(url)}; fi || exit 1")


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
