#!/usr/bin/env python3
"""`kube play` benchmark, run by hand (not by CI), as root:

    python3 bench/bench_kube.py [--runs N] [--json]

Times, for ketch and beside it for Podman when `podman` is installed (ratio
ketch/podman of the medians; below 1.0 ketch is faster):

  kube-play   `kube play` of a two-container pod (busybox httpd publishing a host port,
              and a sleeper), until the command returns with both containers running
  kube-down   `kube down` of that YAML (the containers exit on SIGTERM)

Goal (issue 14): kube-play at most 0.5x Podman's. Both engines get the same offline
busybox root filesystem (Debian's busybox-static) under the same image name, each in a
private state root (Podman's `--root`/`--runroot`), removed afterwards. Podman is used as
configured in /etc/containers/containers.conf; on hosts whose hard RLIMIT_NOFILE is
below Podman's default it needs `default_ulimits = ["nofile=20000:20000",
"nproc=32768:32768"]` there, and `runtime = "runc"` compares like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

IMAGE = "localhost/ketch-bench-busybox:latest"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
POD = """apiVersion: v1
kind: Pod
metadata:
  name: bench
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: {image}
    command: [sh, -c, "trap 'exit 0' TERM; httpd -f -p 80 & wait"]
    ports: [{{containerPort: 80, hostPort: {port}}}]
  - name: sleeper
    image: {image}
    command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]
"""


class Tool:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.argv, *args], env=self.env, capture_output=True,
                              text=True)
        if check and proc.returncode != 0:
            raise SystemExit(f"{self.name} {' '.join(args)} failed ({proc.returncode}):"
                             f" {proc.stderr.strip()}")
        return proc

    def timed(self, *args: str) -> float:
        t = time.perf_counter()
        self.run(*args)
        return time.perf_counter() - t


def ketch_tool(tmp: Path) -> Tool:
    from tests.conftest import isolated_network_config, ketch_command

    root = tmp / "ketch"
    root.mkdir()
    isolated_network_config(root)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src")],
                   check=False, capture_output=True)
    env = dict(os.environ, KETCH_ROOT=str(root), KETCH_RUN_ROOT=str(root / "run"))
    return Tool("ketch", ketch_command(), env)


def podman_tool(tmp: Path) -> Tool | None:
    podman = shutil.which("podman")
    if not podman:
        return None
    version = subprocess.run([podman, "--version"], capture_output=True, text=True)
    root = tmp / "podman"
    name = version.stdout.strip().replace("podman version ", "podman ") or "podman"
    return Tool(name,
                [podman, "--root", str(root / "storage"), "--runroot", str(root / "run")],
                dict(os.environ))


def bench(tools: list[Tool], yaml_path: Path, runs: int) -> dict[str, dict[str, list[float]]]:
    """The engines take turns, run by run, so a busy moment of the host falls on both."""
    out = {t.name: {"kube-play": [], "kube-down": []} for t in tools}
    for tool in tools:
        tool.run("kube", "play", str(yaml_path))  # warm-up: first network set-up, caches
        tool.run("kube", "down", str(yaml_path))
    for _ in range(runs):
        for tool in tools:
            out[tool.name]["kube-play"].append(tool.timed("kube", "play", str(yaml_path)))
            out[tool.name]["kube-down"].append(tool.timed("kube", "down", str(yaml_path)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the samples as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (containers need it)", file=sys.stderr)
        return 2
    from tests.helpers.ports import free_port

    from ketch.images.busybox import write_rootfs_tar

    tmp = Path(tempfile.mkdtemp(prefix="ketch-bench-kube-"))
    tools = [ketch_tool(tmp)]
    podman = podman_tool(tmp)
    if podman is not None:
        tools.append(podman)
    results: dict[str, dict[str, list[float]]] = {}
    try:
        rootfs = write_rootfs_tar(tmp / "busybox.tar")
        yaml_path = tmp / "pod.yaml"
        yaml_path.write_text(POD.format(image=IMAGE, port=free_port()))
        for tool in tools:
            tool.run("import", "--change", f"ENV PATH={PATH}", str(rootfs), IMAGE)
        try:
            results = bench(tools, yaml_path, args.runs)
        finally:
            for tool in tools:
                tool.run("kube", "down", str(yaml_path), check=False)
            if podman is not None:
                podman.run("rmi", "-af", check=False)
                podman.run("system", "reset", "-f", check=False)
    finally:
        from tests.conftest import teardown_root

        teardown_root(tmp / "ketch", tmp / "ketch" / "run")
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    names = list(results)
    print(f"{'benchmark':<12}" + "".join(f"{n + ' median (min)':>28}" for n in names)
          + (f"{'ketch/podman':>14}" if len(names) > 1 else ""))
    for key in ("kube-play", "kube-down"):
        cells, medians = [], []
        for n in names:
            s = results[n][key]
            med = statistics.median(s)
            medians.append(med)
            cells.append(f"{med * 1000:10.1f} ms ({min(s) * 1000:.1f})")
        line = f"{key:<12}" + "".join(f"{c:>28}" for c in cells)
        if len(medians) > 1:
            line += f"{medians[0] / medians[1]:>14.2f}"
        print(line)
    if podman is None:
        print("podman: not installed; ketch's numbers only")
    print("goal: kube-play at most 0.5x podman's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
