"""Network benchmark (run by hand as root, not by CI).

Measures, for ketch and — when a Docker engine answers — for docker in the same run:
  1. a 200 MB download through a published port on 127.0.0.1 (GiB/s),
  2. many small requests per second through a published port (wrk, 2 threads, 32
     connections, 5 s) against busybox httpd,
  3. the cost of networking in `run --rm busybox true` (bridge minus --network none).
Traffic goes only to 127.0.0.1 and to the containers this script starts.

    python3 bench/bench_network.py            # ketch with a scratch state root
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchlib import ketch_command

from ketch.images.busybox import write_rootfs_tar as write_busybox_rootfs_tar

SIZE_MB = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


class Tool:
    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env

    def __call__(self, *args: str, check: bool = True) -> str:
        p = subprocess.run([*self.argv, *args], capture_output=True, text=True,
                           env=self.env)
        if check and p.returncode != 0:
            raise SystemExit(f"{self.name} {' '.join(args)} failed: {p.stderr.strip()}")
        return p.stdout


def wait_http(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=2).read(1)  # noqa: S310
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} never answered")


def download(tool: Tool, image: str) -> float:
    port = free_port()
    tool("run", "-d", "--name", "bench-dl", "-p", f"127.0.0.1:{port}:80", image, "sh", "-c",
         f"dd if=/dev/zero of=/www/big bs=1M count={SIZE_MB} 2>/dev/null;"
         " exec httpd -f -p 80 -h /www")
    try:
        wait_http(f"http://127.0.0.1:{port}/index.html")
        for _ in range(100):  # until the file is complete
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/big") as r:  # noqa: S310
                if int(r.headers.get("Content-Length", 0)) == SIZE_MB << 20:
                    break
            time.sleep(0.1)
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            n = 0
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/big") as r:  # noqa: S310
                while chunk := r.read(1 << 20):
                    n += len(chunk)
            dt = time.perf_counter() - t0
            best = max(best, n / dt / (1 << 30))
        return best
    finally:
        tool("rm", "-f", "bench-dl", check=False)


def small_requests(tool: Tool, image: str) -> float:
    if not shutil.which("wrk"):
        return float("nan")
    port = free_port()
    tool("run", "-d", "--name", "bench-rps", "-p", f"127.0.0.1:{port}:80", image, "httpd",
         "-f", "-p", "80", "-h", "/www")
    try:
        wait_http(f"http://127.0.0.1:{port}/index.html")
        out = subprocess.run(["wrk", "-t2", "-c32", "-d5s",
                              f"http://127.0.0.1:{port}/index.html"],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                return float(line.split()[1])
        return float("nan")
    finally:
        tool("rm", "-f", "bench-rps", check=False)


def network_cost(tool: Tool, image: str, n: int = 10) -> float:
    def median(*flags: str) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            tool("run", "--rm", *flags, image, "true")
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    median()  # warm up
    return median() - median("--network", "none")


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    work = Path(tempfile.mkdtemp(prefix="ketch-bench-net-"))
    env = dict(os.environ, KETCH_ROOT=str(work / "root"), KETCH_RUN_ROOT=str(work / "run"))
    ketch = Tool("ketch", ketch_command(work), env)
    tar = write_busybox_rootfs_tar(work / "busybox.tar")
    ketch("import", str(tar), "bench-busybox")
    results: dict[str, dict[str, float]] = {"ketch": {}}
    tools = [(ketch, "bench-busybox")]
    if docker_available():
        docker = Tool("docker", ["docker"])
        subprocess.run(["docker", "import", str(tar), "bench-busybox"], check=True,
                       capture_output=True)
        tools.append((docker, "bench-busybox"))
        results["docker"] = {}
    try:
        for tool, image in tools:
            r = results[tool.name]
            r["download GiB/s"] = download(tool, image)
            r["requests/s"] = small_requests(tool, image)
            r["network cost of run (s)"] = network_cost(tool, image)
    finally:
        engine_env = env
        subprocess.run([sys.executable, "-c",
                        "from ketch.engine import Engine; e = Engine();"
                        "[e.containers.remove(r.id, force=True) for r in"
                        " e.containers.records.all()]; e.networks.uninstall()"],
                       env=engine_env)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'metric':<28}{'ketch':>12}{'docker':>12}{'ketch/docker':>14}")
    for metric in results["ketch"]:
        k = results["ketch"][metric]
        d = results.get("docker", {}).get(metric)
        ratio = f"{k / d:.2f}" if d else "-"
        print(f"{metric:<28}{k:>12.3f}{(d if d else float('nan')):>12.3f}{ratio:>14}")
    if "docker" not in results:
        print("docker: no Docker engine answered; ketch's numbers only")


if __name__ == "__main__":
    main()
