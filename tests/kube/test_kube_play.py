"""`ketch kube play` / `kube down` / `kube generate` on real runc, with the busybox image:
ConfigMaps and Secrets as env and files, a claim's volume across down and play, generate
of a running pod validated and played back, bad input refused with nothing made."""

from __future__ import annotations

import json

from tests.conftest import require
from tests.helpers.host import fetch
from tests.helpers.ports import free_port
from tests.kube.conftest import KubeCLI
from tests.pods.conftest import CLI_POLL

WEB = """
apiVersion: v1
kind: ConfigMap
metadata: {{name: site}}
data:
  GREETING: hello from a ConfigMap
  index.html: <h1>served from a ConfigMap</h1>
---
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox
    command: [httpd, -f, -p, "80", -h, /www]
    ports: [{{containerPort: 80, hostPort: {port}}}]
    volumeMounts: [{{name: site, mountPath: /www}}]
  - name: shell
    image: busybox
    command: [sleep, "600"]
    env:
    - name: GREETING
      valueFrom: {{configMapKeyRef: {{name: site, key: GREETING}}}}
    envFrom: [{{secretRef: {{name: creds}}, prefix: DB_}}]
    volumeMounts: [{{name: creds, mountPath: /run/creds}}]
  volumes:
  - name: site
    configMap: {{name: site, items: [{{key: index.html, path: index.html}}]}}
  - name: creds
    secret: {{secretName: creds, defaultMode: 0400}}
"""


def test_configmap_and_secret_as_env_and_as_mounted_files(kk: KubeCLI) -> None:
    port = free_port()
    path = kk.yaml(WEB.format(port=port))
    out = kk("kube", "play", str(path)).stdout.splitlines()
    assert out[0] == "Pod:" and out[2] == "Containers:"
    assert kk.containers() == sorted(["web-httpd", "web-shell",
                                      f"{out[1][:12]}-infra"])
    assert fetch(f"http://127.0.0.1:{port}/") == "<h1>served from a ConfigMap</h1>"
    env = kk.exec("web-shell", "echo \"$GREETING|$DB_password\"")
    assert env == "hello from a ConfigMap|s3cret\n"
    assert kk.exec("web-shell", "stat -c '%a %n' /run/creds/password; cat"
                   " /run/creds/password") == "400 /run/creds/password\ns3cret"
    # the projected files are read-only in the container, as the kubelet makes them
    refused = kk("exec", "web-httpd", "sh", "-c", "echo x > /www/index.html", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr

    # generate writes the ConfigMap and Secret volumes back with their objects
    text = kk("kube", "generate", "web").stdout
    docs = _validated(text)
    assert [d["kind"] for d in docs] == ["ConfigMap", "Secret", "Pod"]
    assert docs[2]["spec"]["terminationGracePeriodSeconds"] == 1  # as played

    down = kk("kube", "down", str(path)).stdout.splitlines()
    assert down == ["Pods stopped:", out[1], "Pods removed:", out[1]]
    assert kk.pods() == [] and kk.containers() == []
    assert not (kk.root / "kube" / "web").exists()

    again = kk.yaml(text, "generated.yaml")
    kk("kube", "play", str(again))
    assert fetch(f"http://127.0.0.1:{port}/") == "<h1>served from a ConfigMap</h1>"
    assert kk.exec("web-shell", "echo \"$GREETING|$DB_password\"; cat /run/creds/password"
                   ) == "hello from a ConfigMap|s3cret\ns3cret"
    kk("kube", "down", str(again))


def _validated(text: str) -> list[dict]:
    """The documents of generated YAML, each checked with kubernetes-validate (strict)
    and loaded into the official client's model of its kind."""
    try:
        import kubernetes_validate as kv
        from kubernetes import client
    except ImportError:
        require(False, "the test dependencies kubernetes-validate and kubernetes")
    import yaml

    docs = list(yaml.safe_load_all(text))
    api = client.ApiClient()
    for d in docs:
        kv.validate(d, kv.latest_version(), strict=True)  # raises on what a cluster refuses
        model = api.deserialize(json.dumps(d), f"V1{d['kind']}", "application/json")
        assert model.metadata.name == d["metadata"]["name"]
    return docs


CLAIM = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: notes-data}
spec:
  accessModes: [ReadWriteOnce]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: notes}
spec:
  selector: {matchLabels: {app: notes}}
  template:
    metadata: {labels: {app: notes}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: busybox
        command: [sleep, "600"]
        volumeMounts:
        - {name: data, mountPath: /data}
        - {name: cache, mountPath: /cache}
      volumes:
      - name: data
        persistentVolumeClaim: {claimName: notes-data}
      - name: cache
        emptyDir: {}
"""


def test_a_claims_volume_survives_down_and_play_and_an_empty_dir_does_not(kk: KubeCLI
                                                                          ) -> None:
    path = kk.yaml(CLAIM)
    played = kk("kube", "play", str(path)).stdout
    assert "Volumes:\nnotes-data\n" in played
    kk.exec("notes-pod-app", "echo kept > /data/note; echo gone > /cache/note")
    down = kk("kube", "down", str(path)).stdout
    assert down.endswith("Volumes removed:\nnotes-pod-cache\n")
    assert kk("volume", "ls", "-q").stdout.split() == ["notes-data"]

    kk("kube", "play", str(path))
    assert kk.exec("notes-pod-app", "cat /data/note; ls /cache") == "kept\n"
    # a pod removed by hand leaves its emptyDir volume; the next play starts it empty
    kk.exec("notes-pod-app", "echo stale > /cache/note")
    kk("pod", "rm", "-f", "notes-pod")
    kk("kube", "play", str(path))
    assert kk.exec("notes-pod-app", "ls /cache") == ""
    down = kk("kube", "down", "--force", str(path)).stdout
    assert down.endswith("Volumes removed:\nnotes-pod-cache\nnotes-data\n")
    assert kk("volume", "ls", "-q").stdout.split() == []


def test_generate_of_a_running_pod_validates_and_plays_back(kk: KubeCLI) -> None:
    port = free_port()
    kk("pod", "create", "--name", "demo", "-p", f"{port}:80", "--label", "app=demo")
    kk("volume", "create", "demo-data")
    kk("run", "-d", "--pod", "demo", "--name", "demo-web", "-e", "MESSAGE=hi", "-m", "64m",
       "--cap-drop", "NET_RAW", "-v", "demo-data:/www", "--restart", "always",
       "--stop-timeout", "1",
       "busybox", "sh", "-c", "echo \"$MESSAGE\" > /www/index.html; exec httpd -f -p 80"
       " -h /www")
    assert fetch(f"http://127.0.0.1:{port}/") == "hi\n"

    text = kk("kube", "generate", "--service", "demo").stdout
    docs = _validated(text)
    assert [d["kind"] for d in docs] == ["Service", "Pod"]
    pod = docs[1]
    ctr = pod["spec"]["containers"][0]
    assert ctr["name"] == "web" and ctr["image"] == "busybox"
    assert {"name": "MESSAGE", "value": "hi"} in ctr["env"]
    assert ctr["ports"] == [{"containerPort": 80, "hostPort": port, "protocol": "TCP"}]
    assert ctr["resources"] == {"limits": {"memory": "64Mi"}}
    assert ctr["securityContext"] == {"capabilities": {"drop": ["NET_RAW"]}}
    assert pod["spec"]["restartPolicy"] == "Always"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 1  # the member's --stop-timeout
    assert pod["spec"]["volumes"] == [{"name": "demo-data",
                                       "persistentVolumeClaim": {"claimName": "demo-data"}}]

    # a Deployment of it is valid too, and names the image by the tag it was pushed under
    kk("tag", "busybox", "registry.example:5000/team/busybox:1")
    (deployment,) = _validated(kk("kube", "generate", "--type", "deployment", "demo").stdout)
    template = deployment["spec"]["template"]
    assert deployment["metadata"]["name"] == "demo-deployment"
    assert template["metadata"]["labels"] == {"app": "demo"}
    assert template["spec"]["containers"][0]["image"] == "registry.example:5000/team/busybox:1"
    kk("rmi", "registry.example:5000/team/busybox:1")

    kk("pod", "rm", "-f", "demo")
    played = kk.yaml(text, "generated.yaml")
    kk("kube", "play", str(played))
    assert fetch(f"http://127.0.0.1:{port}/") == "hi\n"
    fmt = "{{.HostConfig.Memory}} {{json .HostConfig.CapDrop}} {{.HostConfig.RestartPolicy.Name}}"
    # the container keeps the capability as dockerd does, with its CAP_ prefix
    assert kk("inspect", "-f", fmt, "demo-web").stdout.strip() == \
        f'{64 * 2**20} ["CAP_NET_RAW"] always'
    kk("kube", "down", str(played))
    kk("volume", "rm", "demo-data")


def test_yaml_that_is_not_kubernetes_exits_125_with_one_line_and_makes_nothing(
        kk: KubeCLI) -> None:
    bad = kk.yaml("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - {name: c, image: busybox, ports: [{containerPort: eighty}]}
        """)
    r = kk("kube", "play", str(bad), check=False)
    assert r.returncode == 125
    assert r.stderr.strip().splitlines() == [
        f"Error: {bad}: document 1 (Pod p): spec.containers[0].ports[0].containerPort:"
        " expected integer, got string 'eighty'"]
    assert kk.pods() == [] and kk.containers() == []

    missing = kk.yaml("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers: [{name: c, image: nosuch-image, imagePullPolicy: Never}]
        """)
    r = kk("kube", "play", str(missing), check=False)
    assert (r.returncode, r.stderr.strip()) == (125, "Error: No such image: nosuch-image")
    assert kk.pods() == [] and kk.containers() == []


def test_a_play_that_fails_halfway_removes_what_it_made(kk: KubeCLI) -> None:
    # the second pod's container is refused by create (Docker's minimum memory limit),
    # after the claim's volume, the first pod and its files were made
    path = kk.yaml("""
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {name: half-data}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: cfg}
        data: {a: b}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: first}
        spec:
          containers:
          - name: c
            image: busybox
            command: [sleep, "600"]
            volumeMounts: [{name: cfg, mountPath: /cfg}, {name: d, mountPath: /d}]
          volumes:
          - {name: cfg, configMap: {name: cfg}}
          - {name: d, persistentVolumeClaim: {claimName: half-data}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: second}
        spec:
          containers:
          - {name: c, image: busybox, resources: {limits: {memory: 1Ki}}}
        """)
    r = kk("kube", "play", str(path), check=False)
    assert r.returncode == 125, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "memory" in r.stderr.lower()
    assert kk.pods() == [] and kk.containers() == []
    assert kk("volume", "ls", "-q").stdout.split() == []
    assert not (kk.root / "kube" / "first").exists()


def test_playing_the_same_pod_twice_conflicts_unless_replace(kk: KubeCLI) -> None:
    path = kk.yaml("""
        apiVersion: v1
        kind: Pod
        metadata: {name: twice}
        spec:
          terminationGracePeriodSeconds: 1
          containers: [{name: c, image: busybox, command: [sleep, "600"]}]
        """)
    first = kk("kube", "play", str(path)).stdout.splitlines()[1]
    r = kk("kube", "play", str(path), check=False)
    assert r.returncode == 125
    assert r.stderr.strip() == ("Error: pod 'twice' already exists: remove it, or play"
                                " with --replace")
    second = kk("kube", "play", "--replace", str(path)).stdout.splitlines()[1]
    assert second != first and kk.pods() == ["twice"]
    assert kk("inspect", "-f", "{{.State.Status}}", "twice-c").stdout.strip() == "running"
    kk("kube", "play", "--down", str(path))
    assert kk.pods() == []


def test_two_plays_of_one_pod_at_once_leave_the_winners_files_and_volumes(kk: KubeCLI
                                                                         ) -> None:
    """Two `kube play` of a pod with a ConfigMap volume and an emptyDir at the same
    moment: one plays it, the other says the pod exists, and the pod that runs keeps
    its ConfigMap file and its emptyDir. Before, the losing play removed the pod's
    files and emptyDir on its way in and out, and both failed ("bind source path does
    not exist", "volume is in use")."""
    import os
    import subprocess

    from tests.conftest import ketch_command

    path = kk.yaml("""
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: cfg}
        data: {greeting: hello}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: both}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: c
            image: busybox
            command: [sleep, "600"]
            volumeMounts: [{name: conf, mountPath: /conf}, {name: scratch, mountPath: /s}]
          volumes:
          - {name: conf, configMap: {name: cfg}}
          - {name: scratch, emptyDir: {}}
        """)
    env = dict(os.environ, KETCH_ROOT=str(kk.root), KETCH_RUN_ROOT=str(kk.root / "run"))
    for _ in range(2):
        plays = [subprocess.Popen([*ketch_command(), "kube", "play", str(path)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        results = sorted((p.wait(timeout=120), p.stderr.read().strip()) for p in plays)
        for p in plays:
            p.stdout.close()  # type: ignore[union-attr]
            p.stderr.close()  # type: ignore[union-attr]
        assert results == [(0, ""), (125, "Error: pod 'both' already exists: remove it,"
                                          " or play with --replace")]
        assert kk.exec("both-c", "cat /conf/greeting; touch /s/x && echo ok") == "hellook\n"
        assert kk("volume", "ls", "-q").stdout.split() == ["both-scratch"]
        kk("kube", "down", str(path))
        assert kk.pods() == [] and kk("volume", "ls", "-q").stdout.split() == []
        assert not (kk.root / "kube" / "both").exists()


def test_start_false_creates_without_starting_and_stdin_is_read(kk: KubeCLI) -> None:
    text = """
apiVersion: v1
kind: Pod
metadata: {name: idle}
spec:
  containers: [{name: c, image: busybox, command: [sleep, "600"]}]
"""
    kk("kube", "play", "--start=false", "-", input=text)
    assert kk("inspect", "-f", "{{.State.Status}}", "idle-c").stdout.strip() == "created"
    kk("kube", "down", "-", input=text)
    assert kk.containers() == []


def test_a_failing_liveness_probe_turns_unhealthy_and_restarts_the_container(
        kk: KubeCLI) -> None:
    import time

    from tests.helpers.host import wait_for

    since = str(int(time.time()))
    path = kk.yaml("""
        apiVersion: v1
        kind: Pod
        metadata: {name: live}
        spec:
          restartPolicy: Always
          terminationGracePeriodSeconds: 1
          containers:
          - name: app
            image: busybox
            command: [sh, -c, "touch /tmp/healthy; exec sleep 600"]
            livenessProbe:
              exec: {command: [cat, /tmp/healthy]}
              periodSeconds: 1
              failureThreshold: 2
        """)
    kk("kube", "play", str(path))

    def status() -> str:  # (polled: read in this process, see KetchCLI.inspected)
        doc = kk.cli.inspected("live-app")
        return f"{doc['State']['Health']['Status']} {doc['RestartCount']}"

    wait_for(lambda: status() == "healthy 0", timeout=20, interval=CLI_POLL,
             what="the probe to pass")
    assert kk("inspect", "-f", "{{.State.Health.Status}} {{.RestartCount}}",
              "live-app").stdout == "healthy 0\n"
    assert "(healthy)" in kk("ps", "--filter", "name=live-app", "--format",
                             "{{.Status}}").stdout
    kk.exec("live-app", "rm /tmp/healthy")
    wait_for(lambda: status() == "healthy 1", timeout=30, interval=CLI_POLL,
             what="the container to be restarted and healthy again")
    events = kk("events", "--since", since, "--until", str(int(time.time()) + 1),
                "--filter", "container=live-app", "--format", "{{.Action}}").stdout
    actions = events.splitlines()
    assert "health_status: unhealthy" in actions
    assert actions.index("health_status: unhealthy") < actions.index("restart")
    kk("kube", "down", str(path))


def test_host_paths_are_checked_by_type_and_generate_names_what_it_cannot_find(
        kk: KubeCLI) -> None:
    host = kk.folder / "shared"
    path = kk.yaml(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: hp}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: c
            image: busybox
            command: [sleep, "600"]
            volumeMounts: [{{name: made, mountPath: /made}}, {{name: must, mountPath: /must}}]
          volumes:
          - {{name: made, hostPath: {{path: {host}/made, type: DirectoryOrCreate}}}}
          - {{name: must, hostPath: {{path: {host}/absent, type: Directory}}}}
        """)
    r = kk("kube", "play", str(path), check=False)
    assert r.returncode == 125
    assert r.stderr.strip() == f"Error: pod hp: hostPath {host}/absent does not exist (type" \
        " Directory)"
    assert kk.pods() == [] and kk.containers() == []
    (host / "absent").mkdir()
    kk("kube", "play", str(path))
    kk.exec("hp-c", "echo from-pod > /made/f")
    assert (host / "made" / "f").read_text() == "from-pod\n"
    kk("kube", "down", str(path))

    r = kk("kube", "generate", "nosuch", check=False)
    assert (r.returncode, r.stderr.strip()) == (
        125, "Error: nosuch does not refer to a pod or a container")


def test_a_job_runs_once_and_retries_a_failure_up_to_its_backoff_limit(kk: KubeCLI) -> None:
    from tests.helpers.host import wait_for

    path = kk.yaml("""
        apiVersion: batch/v1
        kind: Job
        metadata: {name: migrate}
        spec:
          backoffLimit: 2
          template:
            spec:
              restartPolicy: OnFailure
              containers:
              - {name: ok, image: busybox, command: [sh, -c, "echo done"]}
              - {name: flaky, image: busybox, command: [sh, -c, "echo try; exit 3"]}
        """)
    kk("kube", "play", str(path))
    fmt = "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}"

    def state(name: str) -> str:
        return kk("inspect", "-f", fmt, name).stdout.strip()

    wait_for(lambda: state("migrate-pod-ok") == "exited 0 0", timeout=20, interval=CLI_POLL,
             what="the job's container to finish")
    wait_for(lambda: state("migrate-pod-flaky") == "exited 3 2", timeout=30, interval=CLI_POLL,
             what="the failing container to be retried backoffLimit times")
    assert kk("logs", "migrate-pod-flaky").stdout == "try\n" * 3
    kk("kube", "down", str(path))


def test_down_removes_every_replica_of_a_deployment_scaled_since_it_was_played(
        kk: KubeCLI) -> None:
    text = """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: workers}}
        spec:
          replicas: {n}
          template:
            spec:
              terminationGracePeriodSeconds: 1
              containers: [{{name: w, image: busybox, command: [sleep, "600"],
                            volumeMounts: [{{name: scratch, mountPath: /s}}]}}]
              volumes: [{{name: scratch, emptyDir: {{}}}}]
        """
    kk("kube", "play", str(kk.yaml(text.format(n=2))))
    assert sorted(kk.pods()) == ["workers-pod-0", "workers-pod-1"]
    assert kk.exec("workers-pod-1-w", "hostname") == "workers-pod-1\n"
    down = kk("kube", "down", str(kk.yaml(text.format(n=1)))).stdout
    assert kk.pods() == [] and kk.containers() == []
    assert "workers-pod-0-scratch" in down and "workers-pod-1-scratch" in down
    assert kk("volume", "ls", "-q").stdout.split() == []


def test_configmaps_from_their_own_file_with_configmap_and_down_without_it(
        kk: KubeCLI) -> None:
    cm = kk.yaml("""
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: settings}
        data: {MODE: production}
        """, "settings.yaml")
    pod = kk.yaml("""
        apiVersion: v1
        kind: Pod
        metadata: {name: cfgd}
        spec:
          containers:
          - name: c
            image: busybox
            command: [sleep, "600"]
            envFrom: [{configMapRef: {name: settings}}]
        """)
    r = kk("kube", "play", "--start=false", str(pod), check=False)
    assert r.returncode == 125 and "no ConfigMap named 'settings' in the file" in r.stderr
    r = kk("kube", "play", "--start=false", "--configmap", str(pod), str(pod), check=False)
    assert (r.returncode, r.stderr.strip()) == (
        125, f"Error: {pod}: document 1 (Pod cfgd): kind: --configmap files hold"
             " ConfigMaps, not Pod")
    assert kk.pods() == []
    kk("kube", "play", "--start=false", "--configmap", str(cm), str(pod))
    env = kk("inspect", "-f", "{{json .Config.Env}}", "cfgd-c").stdout
    assert "MODE=production" in json.loads(env)
    kk("kube", "down", str(pod))
    assert kk.pods() == [] and kk.containers() == []


def test_network_puts_the_pods_on_a_user_network_and_generate_writes_a_file(
        kk: KubeCLI) -> None:
    path = kk.yaml("""
        apiVersion: v1
        kind: Pod
        metadata: {name: onnet}
        spec:
          terminationGracePeriodSeconds: 1
          containers: [{name: c, image: busybox, command: [sleep, "600"]}]
        """)
    kk("network", "create", "kubenet")
    try:
        kk("kube", "play", "--network", "kubenet", str(path))
        fmt = "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}"
        infra = kk("pod", "inspect", "-f", "{{.InfraContainerID}}", "onnet").stdout.strip()
        assert kk("inspect", "-f", fmt, infra).stdout.strip() == "kubenet"
        out = kk.folder / "onnet.yaml"
        assert kk("kube", "generate", "--filename", str(out), "onnet").stdout == ""
        assert "name: onnet" in out.read_text()
        nowhere = kk.folder / "no" / "dir.yaml"
        bad = kk("kube", "generate", "--filename", str(nowhere), "onnet", check=False)
        assert (bad.returncode, bad.stderr) == (125, f'Error: cannot write to "{nowhere}":'
                                                " no such file or directory\n")
        kk("kube", "down", str(path))
    finally:
        kk("network", "rm", "kubenet", check=False)
