"""Kubernetes YAML -> the plan `kube play` carries out: pods, container configs, volumes,
warnings, and the one-line errors for YAML that is not Kubernetes. Pure: nothing runs."""

from __future__ import annotations

import textwrap

import pytest

from ketch.kube.documents import KubeError, load, quantity
from ketch.kube.model import Plan
from ketch.kube.plan import make_plan


def plan_of(text: str) -> Plan:
    return make_plan(load(textwrap.dedent(text), "app.yaml"))


def error_of(text: str) -> str:
    with pytest.raises(KubeError) as e:
        plan_of(text)
    assert e.value.exit_code == 125
    assert "\n" not in str(e.value)
    return str(e.value)


DEPLOYMENT = """
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {GREETING: hello, LEVEL: debug, app.conf: "port=80\\n"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {password: c2VjcmV0}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {tier: front}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}, annotations: {owner: team-a}}
    spec:
      hostname: webhost
      hostAliases: [{ip: 10.0.0.9, hostnames: [db]}]
      terminationGracePeriodSeconds: 3
      securityContext: {runAsUser: 1000, runAsGroup: 1000, supplementalGroups: [44]}
      containers:
      - name: app
        image: registry.example:5000/web:1
        command: [node]
        args: [server.js, --port, $(PORT)]
        workingDir: /app
        env:
        - {name: PORT, value: "80"}
        - {name: URL, value: "http://localhost:$(PORT)/"}
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: cfg, key: GREETING}}
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: creds, key: password}}
        - name: POD
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        envFrom: [{configMapRef: {name: cfg}, prefix: CFG_}]
        ports: [{containerPort: 80, hostPort: 8080, name: http}, {containerPort: 9000}]
        resources:
          limits: {memory: 128Mi, cpu: 500m}
          requests: {memory: 64Mi, cpu: 250m}
        securityContext:
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          capabilities: {add: [NET_ADMIN], drop: [ALL]}
        livenessProbe:
          exec: {command: [cat, /tmp/healthy]}
          periodSeconds: 2
          failureThreshold: 2
          initialDelaySeconds: 1
        volumeMounts:
        - {name: conf, mountPath: /etc/app}
        - {name: data, mountPath: /data}
        - {name: scratch, mountPath: /scratch}
        - {name: logs, mountPath: /logs, readOnly: true}
      - name: sidecar
        image: busybox
        args: [sleep, "1000"]
      volumes:
      - name: conf
        configMap: {name: cfg, items: [{key: app.conf, path: app.conf}]}
      - name: data
        persistentVolumeClaim: {claimName: web-data}
      - name: scratch
        emptyDir: {medium: Memory, sizeLimit: 16Mi}
      - name: logs
        hostPath: {path: /var/log, type: Directory}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: web-data}
spec: {accessModes: [ReadWriteOnce]}
"""


def test_deployment_maps_onto_a_pod_named_like_podmans_with_its_containers() -> None:
    plan = plan_of(DEPLOYMENT)
    assert [p.name for p in plan.pods] == ["web-pod"]
    pod = plan.pods[0]
    assert pod.labels == {"app": "web"}  # the template's, not the Deployment's own
    assert pod.annotations == {"owner": "team-a"}
    assert (pod.hostname, pod.add_hosts) == ("webhost", ["db:10.0.0.9"])
    assert pod.publish == ["8080:80/tcp"]
    assert plan.claims == {"web-data": {}}
    assert [c.name for c in pod.containers] == ["web-pod-app", "web-pod-sidecar"]
    app = pod.containers[0]
    assert app.image == "registry.example:5000/web:1"
    assert app.config["Entrypoint"] == ["node"]
    assert app.config["Cmd"] == ["server.js", "--port", "80"]
    assert app.config["WorkingDir"] == "/app"
    assert app.config["User"] == "1000:1000"
    assert app.config["StopTimeout"] == 3
    env = dict(e.split("=", 1) for e in app.config["Env"])
    assert env["URL"] == "http://localhost:80/"
    assert env["GREETING"] == "hello" and env["CFG_LEVEL"] == "debug"
    assert env["PASSWORD"] == "secret"
    assert env["POD"] == "web-pod"
    hc = app.host_config
    assert hc["RestartPolicy"]["Name"] == "always"
    assert (hc["Memory"], hc["NanoCpus"]) == (128 * 2**20, 500_000_000)
    assert (hc["MemoryReservation"], hc["CpuShares"]) == (64 * 2**20, 256)
    assert hc["ReadonlyRootfs"] is True
    assert (hc["CapAdd"], hc["CapDrop"]) == (["NET_ADMIN"], ["ALL"])
    assert hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["GroupAdd"] == ["44"]
    assert hc["Annotations"] == {"owner": "team-a"}
    assert app.config["Healthcheck"] == {"Test": ["CMD", "cat", "/tmp/healthy"],
                                         "Interval": 2 * 10**9, "Timeout": 10**9,
                                         "Retries": 2, "StartPeriod": 10**9}
    assert app.health_on_failure == "restart"
    mounts = {m.target: (m.kind, m.source, m.read_only) for m in app.mounts}
    assert mounts == {"/etc/app": ("files", "configMap/conf", True),
                      "/data": ("volume", "web-data", False),
                      "/scratch": ("volume", "web-pod-scratch", False),
                      "/logs": ("bind", "/var/log", True)}
    assert pod.volumes == {"web-pod-scratch": {"type": "tmpfs", "device": "tmpfs",
                                               "o": f"size={16 * 2**20}"}}
    assert pod.files == {"configMap/conf": {"app.conf": (b"port=80\n", 0o644)}}
    side = pod.containers[1]
    assert side.config["Cmd"] == ["sleep", "1000"] and "Entrypoint" not in side.config
    assert plan.warnings == []


def test_replicas_make_one_pod_each_and_jobs_and_daemonsets_one() -> None:
    plan = plan_of("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: w}
        spec:
          replicas: 3
          template: {spec: {containers: [{name: c, image: busybox}]}}
        ---
        apiVersion: batch/v1
        kind: Job
        metadata: {name: once}
        spec:
          backoffLimit: 2
          template: {spec: {restartPolicy: OnFailure, containers: [{name: c, image: busybox}]}}
        ---
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {name: agent}
        spec:
          template: {spec: {containers: [{name: c, image: busybox}]}}
        """)
    assert [p.name for p in plan.pods] == ["w-pod-0", "w-pod-1", "w-pod-2", "once-pod",
                                           "agent-pod"]
    job = plan.pods[3].containers[0].host_config["RestartPolicy"]
    assert job == {"Name": "on-failure", "MaximumRetryCount": 2}


def test_what_one_machine_cannot_honour_is_one_warning_line_each() -> None:
    plan = plan_of("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          nodeSelector: {disk: ssd}
          tolerations: [{key: k, operator: Exists}]
          containers:
          - name: c
            image: busybox
            resources: {limits: {nvidia.com/gpu: 1}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: lb}
        spec: {type: LoadBalancer, selector: {app: x}, ports: [{port: 80}]}
        ---
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: ing}
        """)
    w = plan.warnings
    assert len(w) == 5
    assert w[0].startswith("app.yaml: document 3 (Ingress ing): kind Ingress ignored")
    assert any("(Pod p): spec.nodeSelector: ignored" in line for line in w)
    assert any("(Pod p): spec.tolerations: ignored" in line for line in w)
    assert any("containers[0].resources.limits.nvidia.com/gpu: ignored" in line for line in w)
    assert any("(Service lb): spec.type: LoadBalancer ignored" in line for line in w)
    assert all("\n" not in line for line in w)


def test_a_nodeport_service_publishes_its_node_port_on_the_selected_pods() -> None:
    plan = plan_of("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p, labels: {app: web}}
        spec:
          containers: [{name: c, image: busybox, ports: [{containerPort: 80, name: http}]}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          type: NodePort
          selector: {app: web}
          ports: [{port: 8080, targetPort: http, nodePort: 30080}]
        """)
    assert plan.pods[0].publish == ["30080:80/tcp"]


@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("apiVersion: v1\nkind: Pood\nmetadata: {name: p}\n",
     "app.yaml: document 1 (Pood p): kind: unknown kind 'Pood'"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n",
     "app.yaml: document 1 (Pod p): spec.containers: required"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
     "  - {name: c, image: busybox, ports: [{containerPort: '80'}]}\n",
     "app.yaml: document 1 (Pod p): spec.containers[0].ports[0].containerPort: expected"
     " integer, got string '80'"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: b}\n---\n"
     "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
     "  - name: c\n    image: busybox\n    env:\n    - name: X\n"
     "      valueFrom: {configMapKeyRef: {name: cfg, key: nope}}\n",
     "app.yaml: document 2 (Pod p): spec.containers[0].env[0].valueFrom.configMapKeyRef"
     ".key: ConfigMap 'cfg' has no key 'nope'"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n"
     "    spec:\n      containers: [{name: c, imag: busybox}]\n",
     "app.yaml: document 1 (Deployment d): spec.template.spec.containers[0].imag: unknown"
     " field"),
    ("apiVersion: v1\nkind: Deployment\nmetadata: {name: d}\n",
     "app.yaml: document 1 (Deployment d): apiVersion: Deployment is in apps/v1, not v1"),
    ("- just\n- a list\n",
     "app.yaml: document 1: expected a Kubernetes object (a mapping with apiVersion and"
     " kind), got array"),
    ("kind: [\n", "app.yaml: not YAML at line 2, column 1"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
     "  - {name: c, image: busybox, volumeMounts: [{name: v, mountPath: /v}]}\n",
     "app.yaml: document 1 (Pod p): spec.containers[0].volumeMounts[0].name: no volume"
     " named 'v' in the pod's volumes"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: My_Pod}\nspec: {containers: []}\n",
     "app.yaml: document 1 (Pod My_Pod): metadata.name: invalid name 'My_Pod'"),
])
def test_yaml_that_is_not_kubernetes_is_one_line_naming_file_document_and_field(
        yaml_text: str, expected: str) -> None:
    assert error_of(yaml_text).startswith(expected)


def test_two_objects_making_the_same_pod_name_are_refused() -> None:
    msg = error_of("""
        apiVersion: v1
        kind: Pod
        metadata: {name: web-pod}
        spec: {containers: [{name: c, image: busybox}]}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec: {template: {spec: {containers: [{name: c, image: busybox}]}}}
        """)
    assert "document 2 (Deployment web): metadata.name: pod 'web-pod' is already made by" \
        in msg


def test_a_job_must_not_restart_always_and_replicas_cannot_share_a_host_port() -> None:
    assert "restartPolicy: a Job's pods restart Never or OnFailure, got 'Always'" in error_of(
        """
        apiVersion: batch/v1
        kind: Job
        metadata: {name: j}
        spec: {template: {spec: {restartPolicy: Always, containers: [{name: c, image: x}]}}}
        """)
    assert "spec.replicas: 2 replicas cannot all publish host port" in error_of("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d}
        spec:
          replicas: 2
          template:
            spec: {containers: [{name: c, image: x, ports: [{containerPort: 80, hostPort: 80}]}]}
        """)


def test_kubernetes_quantities() -> None:
    assert quantity("128Mi") == 128 * 2**20
    assert quantity("1G") == 1e9
    assert quantity("250m") == 0.25
    assert quantity("1.5") == 1.5
    assert quantity("2e3") == 2000
    assert quantity(3) == 3
    for bad in ("12 MB", "Mi", "", "1.2.3"):
        with pytest.raises(ValueError):
            quantity(bad)


def test_a_readiness_probe_only_marks_health_and_liveness_under_never_kills() -> None:
    plan = plan_of("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          restartPolicy: Never
          containers:
          - name: ready
            image: busybox
            ports: [{containerPort: 8080, name: web}]
            readinessProbe: {httpGet: {path: /up, port: web}, periodSeconds: 3}
          - name: live
            image: busybox
            livenessProbe: {tcpSocket: {port: 5432}, timeoutSeconds: 2}
        """)
    ready, live = plan.pods[0].containers
    assert ready.health_on_failure == ""
    test = ready.config["Healthcheck"]["Test"]
    assert test[0] == "CMD-SHELL" and "http://127.0.0.1:8080/up" in test[1]
    assert ready.config["Healthcheck"]["Interval"] == 3 * 10**9
    assert live.health_on_failure == "kill"
    assert live.config["Healthcheck"]["Test"] == ["CMD-SHELL", "nc -z 127.0.0.1 5432 || exit 1"]
    assert live.config["Healthcheck"]["Timeout"] == 2 * 10**9
    assert live.host_config["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
