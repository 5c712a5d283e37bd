"""One Kubernetes container -> a ContainerPlan: command and args, env (with ConfigMap,
Secret, field and resource references), resources, securityContext, volumeMounts and
the probe that becomes its health check."""

from __future__ import annotations

import re

from ketch.kube.documents import DNS_LABEL, Doc, quantity
from ketch.kube.model import RESTART_POLICIES, ContainerPlan, MountPlan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.kube.model import PodPlan, Source, Volume

DEFAULT_PROBE = {"periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3,
                 "initialDelaySeconds": 0}
_NS = 1_000_000_000
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_VAR_REF = re.compile(r"\$\$|\$\(([^)]*)\)")

# the fields Kubernetes defines (v1 schema), by object
_CONTAINER = frozenset({
    "args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle",
    "livenessProbe", "name", "ports", "readinessProbe", "resizePolicy", "resources",
    "restartPolicy", "restartPolicyRules", "securityContext", "startupProbe", "stdin",
    "stdinOnce", "terminationMessagePath", "terminationMessagePolicy", "tty",
    "volumeDevices", "volumeMounts", "workingDir"})
_CONTAINER_CLUSTER = ("lifecycle", "resizePolicy", "restartPolicy", "restartPolicyRules",
                      "startupProbe", "volumeDevices")
_ENV = frozenset({"name", "value", "valueFrom"})
_ENV_SOURCE = frozenset({"configMapKeyRef", "fieldRef", "fileKeyRef", "resourceFieldRef",
                         "secretKeyRef"})
_ENV_FROM = frozenset({"configMapRef", "prefix", "secretRef"})
_SECURITY = frozenset({"allowPrivilegeEscalation", "appArmorProfile", "capabilities",
                       "privileged", "procMount", "readOnlyRootFilesystem", "runAsGroup",
                       "runAsNonRoot", "runAsUser", "seLinuxOptions", "seccompProfile",
                       "windowsOptions"})
_PROBE = frozenset({"exec", "failureThreshold", "grpc", "httpGet", "initialDelaySeconds",
                    "periodSeconds", "successThreshold", "tcpSocket",
                    "terminationGracePeriodSeconds", "timeoutSeconds"})
_VOLUME_MOUNT = frozenset({"mountPath", "mountPropagation", "name", "readOnly",
                           "recursiveReadOnly", "subPath", "subPathExpr", "bindMountOptions"})


def container_plan(doc: Doc, cpath: str, c: dict[str, Any], pod: PodPlan, spec: dict[str, Any],
               spec_path: str, psec: dict[str, Any], volumes: dict[str, Volume],
               sources: dict[str, dict[str, Source]], warnings: list[str]) -> ContainerPlan:
    doc.check_fields(c, cpath, _CONTAINER)
    name = doc.get(c, "name", "string", cpath, required=True)
    if not DNS_LABEL.fullmatch(name) or len(name) > 63:
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
    hc: dict[str, Any] = {"RestartPolicy": {"Name": RESTART_POLICIES[pod.restart_policy],
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
            n = doc.size(qpath, v) if key == "memory" else None
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
         sources: dict[str, dict[str, Source]], warnings: list[str]) -> list[str]:
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
                resources: dict[str, Any], sources: dict[str, dict[str, Source]],
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


def _mounts(doc: Doc, cpath: str, c: dict[str, Any], volumes: dict[str, Volume],
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
