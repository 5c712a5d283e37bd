"""The notes' Node app on its way to a cluster: a Deployment whose image is built by
`kube play --build` from the folder named after it beside the YAML (as Podman does),
fetched through its hostPort, then `kube down` leaves nothing behind."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.build.conftest import REPO, node_rootfs_tar, node_template  # noqa: F401 (fixtures)
from tests.helpers.host import fetch
from tests.helpers.ports import free_port
from tests.helpers.shared_images import link_images
from tests.kube.conftest import KubeCLI

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: node-hello
  labels: {{app: node-hello}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: node-hello}}}}
  template:
    metadata: {{labels: {{app: node-hello}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: node-hello:latest
        ports: [{{containerPort: 80, hostPort: {port}}}]
"""


def test_node_app_deployment_built_by_play_serves_and_down_leaves_nothing(
        kk: KubeCLI, node_template: Path) -> None:  # noqa: F811
    link_images(node_template, kk.root)
    shutil.copytree(REPO / "examples" / "node-app", kk.folder / "node-hello")
    port = free_port()
    path = kk.yaml(DEPLOYMENT.format(port=port))

    played = kk("kube", "play", "--build", str(path), timeout=900)
    assert "Building node-hello:latest from" in played.stderr
    assert "Successfully tagged node-hello:latest" in played.stderr
    assert kk.pods() == ["node-hello-pod"]
    assert "<h1>Hello from ketch!</h1>" in fetch(f"http://127.0.0.1:{port}/", timeout=60)
    assert kk("exec", "node-hello-pod-web", "node", "-e",
              "console.log(process.cwd())").stdout == "/app\n"

    down = kk("kube", "down", str(path)).stdout.splitlines()
    assert down[0] == "Pods stopped:" and down[2] == "Pods removed:"
    assert kk.pods() == [] and kk.containers() == []
    assert kk("images", "-q", "node-hello").stdout.strip()  # the built image stays
