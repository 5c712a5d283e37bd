"""Carrying a kube plan out on an Engine, and taking it down again.

`play` makes, in order: images (built from a folder named after the image beside the
YAML, or pulled), PersistentVolumeClaims as named volumes, then per pod its emptyDir
volumes, the files of its ConfigMap/Secret volumes, the pod and its containers, and
starts it. Everything made is remembered; when a step fails, what this play made is
removed again (images and pre-existing volumes stay) and the error goes on, so a failed
play leaves nothing half-made.

ConfigMap and Secret volumes are files written under `<root>/kube/<pod>/<volume>/`
(the root's own `kube/` is 0700: only root reads a Secret on the host) and bound
read-only into the containers, as the kubelet projects them.
"""

from __future__ import annotations

import os
import shutil

from ketch.errors import Conflict, ImageNotFound, KetchError, NotFound
from ketch.fdio import write_all
from ketch.kube.documents import KubeError, load
from ketch.kube.model import LABEL_KIND, LABEL_OWNER, LABEL_VOLUME
from ketch.kube.plan import WORKLOADS, make_plan
from ketch.values import field, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ketch.engine import Engine
    from ketch.kube.model import ContainerPlan, MountPlan, Plan, PodPlan


@value
class PlayedPod:
    id: str
    name: str
    containers: list[str] = field(default_factory=list)   # container IDs


@value
class PlayReport:
    pods: list[PlayedPod] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)       # volumes this play created
    warnings: list[str] = field(default_factory=list)


@value
class DownReport:
    stopped: list[str] = field(default_factory=list)       # pod IDs
    removed: list[str] = field(default_factory=list)       # pod IDs
    volumes: list[str] = field(default_factory=list)       # emptyDir volumes removed


def read_source(path: str, stdin: Any = None) -> tuple[str, str, str]:
    """(text, name for messages, folder beside it) of FILE or "-"."""
    import sys

    if path == "-":
        data = (stdin or sys.stdin).read()
        if isinstance(data, bytes):
            data = data.decode()
        return data, "<stdin>", os.getcwd()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), path, os.path.dirname(os.path.abspath(path))
    except FileNotFoundError:
        raise KubeError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KubeError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None


def files_dir(engine: Engine, pod: str) -> str:
    return os.path.join(engine.root_dir, "kube", pod)


def play(engine: Engine, text: str, source: str, *, folder: str, replace: bool = False,
         network: str | None = None, build: bool | None = None, start: bool = True,
         configmaps: list[str] | None = None,
         progress: Callable[[str], None] | None = None) -> PlayReport:
    extra = []
    for path in configmaps or ():
        ctext, csource, _ = read_source(path)
        for doc in load(ctext, csource):
            if doc.kind != "ConfigMap":
                doc.fail("kind", f"--configmap files hold ConfigMaps, not {doc.kind}")
            extra.append(doc)
    plan = make_plan(extra + load(text, source))
    report = PlayReport(warnings=list(plan.warnings))
    for pod in plan.pods:
        if pod.host_network and network:
            report.warnings.append(f"pod {pod.name}: hostNetwork: it joins the host's"
                                   f" network, not --network {network}")
    say = progress or (lambda _line: None)
    existing = set(engine.pods.records.names())  # names only: no container is refreshed
    for pod in plan.pods:
        if pod.name in existing and not replace:
            raise Conflict(f"pod {pod.name!r} already exists: remove it, or play with"
                           " --replace")
    _images(engine, plan, folder, build, say)
    if replace:
        for pod in plan.pods:
            if pod.name in existing:
                _down_pod(engine, pod.name, list(pod.volumes), DownReport())
    made = _Made(engine)
    try:
        for claim, labels in plan.claims.items():
            made.volume(claim, labels, {})
        for pod in plan.pods:
            report.pods.append(_play_pod(engine, pod, network, made))
        if start:
            _start(engine, report.pods)
    except BaseException:
        made.undo()
        raise
    report.volumes = made.volumes
    return report


class _Made:
    """What a play created so far, to undo when it fails."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.volumes: list[str] = []
        self.pods: list[str] = []
        self.dirs: list[str] = []

    def volume(self, name: str, labels: dict[str, str], options: dict[str, str]) -> str:
        store = self.engine.volumes
        try:
            return str(store.inspect(name)["Mountpoint"])
        except NotFound:
            pass
        try:
            mountpoint = str(store.create(name, labels=labels, options=options,
                                          exclusive=True)["Mountpoint"])
        except Conflict:  # made meanwhile by another command: not this play's to undo
            return str(store.inspect(name)["Mountpoint"])
        self.volumes.append(name)
        return mountpoint

    def undo(self) -> None:
        for pod in reversed(self.pods):
            try:
                self.engine.pod_rm(pod, force=True, timeout=0)
            except (KetchError, OSError):
                pass
        for name in reversed(self.volumes):
            try:
                self.engine.volumes.remove(name, force=True)
            except (KetchError, OSError):
                pass
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


# -- images -------------------------------------------------------------------------------
def build_folder(folder: str, image: str) -> str | None:
    """The folder Podman builds `image` from: named after the image's last path part
    (tag and digest left off), beside the YAML, with a Containerfile or Dockerfile."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    last = last.split(":", 1)[0]
    path = os.path.join(folder, last)
    if any(os.path.isfile(os.path.join(path, f)) for f in ("Containerfile", "Dockerfile")):
        return path
    return None


def _images(engine: Engine, plan: Plan, folder: str, build: bool | None,
            say: Callable[[str], None]) -> None:
    done: set[str] = set()
    for pod in plan.pods:
        for c in pod.containers:
            if c.image not in done:
                _image(engine, c, folder, build, say)
                done.add(c.image)
            if c.run_as_non_root:
                _check_non_root(engine, c)


def _have(engine: Engine, image: str) -> bool:
    try:
        engine.images.resolve(image)
    except ImageNotFound:
        return False
    return True


def _image(engine: Engine, c: ContainerPlan, folder: str, build: bool | None,
           say: Callable[[str], None]) -> None:
    context = build_folder(folder, c.image) if build is not False else None
    if context and (build or not _have(engine, c.image)):
        say(f"Building {c.image} from {context}")
        dockerfile = os.path.join(context, "Containerfile")
        for ev in engine.build(context, dockerfile if os.path.isfile(dockerfile) else None,
                               tags=[c.image]):
            text = getattr(ev, "text", None)
            if callable(text):
                say(text().rstrip("\n"))
        return
    if c.pull_policy == "Never" or (c.pull_policy == "IfNotPresent"
                                    and _have(engine, c.image)):
        if not _have(engine, c.image):
            raise ImageNotFound(c.image)
        return
    for pulled in engine.pull(c.image):
        say(str(pulled))


def _start(engine: Engine, pods: list[PlayedPod]) -> None:
    """Each pod started as `pod start` starts it (its members created beside its infra,
    all at once), as Podman's play starts each pod; the pods side by side, each in a
    thread with its own Engine (its own database connection), as the Engine API service
    serves concurrent requests. Threads, not forked processes: a copy of a process with
    SQLite connections open must not use SQLite (see ketch.builder.watchdog)."""
    if len(pods) == 1:
        engine.pod_start(pods[0].id)
        return
    import threading

    errors: list[BaseException] = []

    def start(pod_id: str) -> None:
        try:
            with engine.reopen() as mine:
                mine.pod_start(pod_id)
        except BaseException as e:  # noqa: BLE001 (reported by the caller)
            errors.append(e)

    threads = [threading.Thread(target=start, args=(p.id,), name="ketch-kube-start")
               for p in pods]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        first = errors[0]
        if isinstance(first, KetchError):
            raise first
        raise KetchError(f"starting a pod failed: {type(first).__name__}: {first}")


def _check_non_root(engine: Engine, c: ContainerPlan) -> None:
    user = c.config.get("User") or (engine.images.inspect(c.image).get("Config") or {}
                                    ).get("User") or ""
    uid = user.split(":", 1)[0]
    if uid in ("", "0", "root") or not uid.isdigit():
        raise KubeError(f"container {c.short}: runAsNonRoot is set, but the image"
                        f" {c.image} runs as {uid or 'root'} (give runAsUser, or a numeric"
                        " non-root USER in the image)")


# -- pods ---------------------------------------------------------------------------------
def _play_pod(engine: Engine, pod: PodPlan, network: str | None, made: _Made) -> PlayedPod:
    # The pod first: its name is what the pod's files and emptyDirs are kept under, and
    # a play of the same pod at the same moment must fail here, before it touches them
    # (it removed the running pod's ConfigMap files and emptyDirs, and so did its undo).
    labels = {**pod.labels, LABEL_KIND: pod.kind, LABEL_OWNER: pod.owner}
    try:
        rec = engine.pod_create(pod.name, publish=pod.publish,
                                network="host" if pod.host_network else network,
                                hostname=pod.hostname or None, add_hosts=pod.add_hosts,
                                labels=labels)
    except Conflict:
        if pod.name not in engine.pods.records.names():
            raise
        raise Conflict(f"pod {pod.name!r} already exists: remove it, or play with"
                       " --replace") from None
    made.pods.append(rec.id)
    base = files_dir(engine, pod.name)
    shutil.rmtree(base, ignore_errors=True)  # left by a pod of this name removed by hand
    if pod.files:
        os.makedirs(os.path.dirname(base), mode=0o700, exist_ok=True)
        made.dirs.append(base)
        for vol, files in pod.files.items():
            _write_files(os.path.join(base, vol), files)
    for vname, opts in pod.volumes.items():
        _fresh_empty_dir(engine, pod.name, vname)
        made.volume(vname, {LABEL_VOLUME: pod.name}, opts)
    played = PlayedPod(id=rec.id, name=pod.name)
    for c in pod.containers:
        hc = dict(c.host_config)
        hc["Mounts"] = [_mount(engine, pod, m, base, made) for m in c.mounts]
        config = dict(c.config)
        if c.health_on_failure:
            config["HealthcheckOnFailureAction"] = c.health_on_failure  # Podman's name
        ctr = engine.containers.create(config, hc, name=c.name, pod=pod.name)
        played.containers.append(ctr.id)
    return played


def _fresh_empty_dir(engine: Engine, pod: str, name: str) -> None:
    """An emptyDir starts empty: one a pod of this name left behind (removed without
    `kube down`) goes; a volume of that name that is not a pod's is not touched."""
    try:
        labels = engine.volumes.inspect(name).get("Labels") or {}
    except NotFound:
        return
    if labels.get(LABEL_VOLUME) != pod:
        raise Conflict(f"pod {pod}: volume {name} exists and is not this pod's emptyDir")
    engine.volumes.remove(name)


def _write_files(d: str, files: dict[str, tuple[bytes, int]]) -> None:
    os.makedirs(d, mode=0o755, exist_ok=True)
    for rel, (data, mode) in files.items():
        path = os.path.join(d, rel)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            write_all(fd, data)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def _mount(engine: Engine, pod: PodPlan, m: MountPlan, base: str, made: _Made
           ) -> dict[str, Any]:
    if m.kind == "files":
        source = os.path.join(base, m.source)
        if m.sub_path:
            source = os.path.join(source, m.sub_path)
            if not os.path.exists(source):
                raise KubeError(f"pod {pod.name}: subPath {m.sub_path!r} is not a key of"
                                f" volume {m.source!r}")
        return {"Type": "bind", "Source": source, "Target": m.target, "ReadOnly": True}
    if m.kind == "volume":
        if not m.sub_path:
            made.volume(m.source, {}, {})
            return {"Type": "volume", "Source": m.source, "Target": m.target,
                    "ReadOnly": m.read_only}
        mountpoint = made.volume(m.source, {}, {})
        source = os.path.join(mountpoint, m.sub_path)
        os.makedirs(source, exist_ok=True)
        return {"Type": "bind", "Source": source, "Target": m.target,
                "ReadOnly": m.read_only}
    source = _host_path(pod, m.source, m.options.get("type", ""))
    if m.sub_path:
        source = os.path.join(source, m.sub_path)
        os.makedirs(source, exist_ok=True)
    return {"Type": "bind", "Source": source, "Target": m.target, "ReadOnly": m.read_only}


def _host_path(pod: PodPlan, path: str, htype: str) -> str:
    """A hostPath volume checked and made as the kubelet does for its `type`."""
    import stat

    if htype in ("", "DirectoryOrCreate") and not os.path.lexists(path):
        os.makedirs(path, mode=0o755, exist_ok=True)
    elif htype == "FileOrCreate" and not os.path.lexists(path):
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "a"):
            pass
    want = {"Directory": stat.S_ISDIR, "DirectoryOrCreate": stat.S_ISDIR,
            "File": stat.S_ISREG, "FileOrCreate": stat.S_ISREG, "Socket": stat.S_ISSOCK,
            "CharDevice": stat.S_ISCHR, "BlockDevice": stat.S_ISBLK}.get(htype)
    if want is not None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise KubeError(f"pod {pod.name}: hostPath {path} does not exist (type"
                            f" {htype})") from None
        if not want(mode):
            raise KubeError(f"pod {pod.name}: hostPath {path} is not a {htype}")
    return path


# -- down ---------------------------------------------------------------------------------
def down(engine: Engine, text: str, source: str, *, force: bool = False) -> DownReport:
    """Remove the pods the YAML's objects made (found by the labels play gave them, so
    the replicas of a Deployment scaled since are found too), with their containers,
    emptyDir volumes and ConfigMap/Secret files. PersistentVolumeClaims' volumes stay,
    as on a cluster, unless `force` (Podman's `kube down --force`). Only the objects'
    kinds and names are read: a file whose ConfigMaps came from --configmap goes down."""
    docs = load(text, source)
    report = DownReport()
    names: dict[str, None] = {}
    for doc in docs:
        if doc.kind in WORKLOADS and doc.name:
            labels = [f"{LABEL_KIND}={doc.kind}", f"{LABEL_OWNER}={doc.name}"]
            for found in engine.pod_list({"label": labels}):
                names[found["Name"]] = None
    for name in names:
        _down_pod(engine, name, [], report)
    if force:
        for doc in docs:
            if doc.kind != "PersistentVolumeClaim" or not doc.name:
                continue
            try:
                engine.volumes.remove(doc.name)
            except NotFound:
                continue
            report.volumes.append(doc.name)
    return report


def _down_pod(engine: Engine, name: str, volumes: list[str], report: DownReport) -> None:
    try:
        info = engine.pod_inspect(name)
    except NotFound:
        info = None
    if info is not None:
        if info.get("State") == "Running":
            engine.pod_stop(info["Id"])
            report.stopped.append(info["Id"])
        engine.pod_rm(info["Id"], force=True)
        report.removed.append(info["Id"])
    labelled = [v["Name"] for v in engine.volumes.list({"label": [f"{LABEL_VOLUME}={name}"]})]
    for vname in dict.fromkeys(volumes + labelled):
        try:
            engine.volumes.remove(vname)
        except NotFound:
            continue
        report.volumes.append(vname)
    shutil.rmtree(files_dir(engine, name), ignore_errors=True)
