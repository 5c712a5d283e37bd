"""The plan `kube play` carries out: pods, their containers (Engine API Config and
HostConfig), volumes and files; made by `ketch.kube.plan`, used by `ketch.kube.play`."""

from __future__ import annotations

from ketch.values import field, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.kube.documents import Doc

# Annotations and labels ketch puts on what it makes, so `kube down` and `generate` find it.
LABEL_KIND = "io.ketch.kube.kind"        # Pod / Deployment / DaemonSet / Job, on the pod
LABEL_OWNER = "io.ketch.kube.owner"      # the object's name, on the pod
LABEL_VOLUME = "io.ketch.kube.pod"       # on an emptyDir volume: the pod it belongs to

# Kubernetes restartPolicy -> the Engine API's RestartPolicy name
RESTART_POLICIES = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}


@value
class MountPlan:
    """One volumeMount: `kind` "volume" (named), "bind" (host path) or "files" (a
    ConfigMap or Secret volume, `source` "configMap/NAME" or "secret/NAME")."""

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


class Source:
    """A ConfigMap or Secret: its keys and their bytes."""

    def __init__(self, doc: Doc, data: dict[str, bytes]) -> None:
        self.doc = doc
        self.data = data


@value
class Volume:
    kind: str                    # volume / bind / tmpfs / files
    source: str                  # volume name, host path, or files volume name
    read_only: bool = False
    options: dict[str, Any] = field(default_factory=dict)
