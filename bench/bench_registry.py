#!/usr/bin/env python3
"""Registry-server benchmark, run by hand (not by CI):

    python3 bench/bench_registry.py [--runs N] [--blob-mb N] [--push-mb N]
                                    [--only ketch|distribution]

Runs the same load against `ketch registry serve` and, beside it, Debian's
`docker-registry` (CNCF distribution), each on a loopback port with a fresh storage
directory under the same temp directory, one after the other:

* blob GET throughput, 1 client and 20 clients (each GET of a --blob-mb MiB blob);
* 20 clients pushing distinct images at once (POST, one PATCH, PUT, manifest PUT; a
  --push-mb MiB layer each): wall time and aggregate rate;
* the latency of a manifest GET (p50, p99) from one more client while those 20 push;
* the server's peak RSS (VmHWM) over the whole run.

The clients are threads of this process using http.client over keep-alive
connections; the server and they share the machine's cores, the same for both servers.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
READ = 1 << 20


# -- servers -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(host: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}")
        try:
            c = http.client.HTTPConnection(host, timeout=2)
            c.request("GET", "/v2/")
            c.getresponse().read()
            c.close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on {host} did not come up")


def start_ketch(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(os.environ, PYTHONPATH=os.environ.get("KETCH_SRC") or str(REPO / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ketch", "registry", "serve", "--addr", "127.0.0.1:0",
         "--root", str(work / "ketch-registry"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        raise SystemExit(f"ketch registry did not start: {line!r}")
    host = line.removeprefix("listening on ")
    _wait(host, proc)
    return proc, host


def start_distribution(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise SystemExit("docker-registry is not installed (apt-get install docker-registry)")
    root = work / "docker-registry"
    root.mkdir()
    port = _free_port()
    cfg = work / "docker-registry.yml"
    cfg.write_text("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                   f"storage:\n  filesystem:\n    rootdirectory: {root}\n"
                   f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([binary, "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    _wait(host, proc)
    return proc, host


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- client ------------------------------------------------------------------------------------
class Client:
    def __init__(self, host: str) -> None:
        self.host = host
        self.conn = http.client.HTTPConnection(host, timeout=120)
        self.buf = bytearray(READ)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None,
                sink: bool = False) -> tuple[int, dict[str, str], bytes | int]:
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if sink:  # count the bytes without keeping them
            view = memoryview(self.buf)
            total = 0
            while n := r.readinto(view):
                total += n
            return r.status, hdrs, total
        return r.status, hdrs, r.read()

    def close(self) -> None:
        self.conn.close()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(c: Client, repo: str, data: bytes) -> str:
    d = _digest(data)
    status, h, _ = c.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert status == 202, status
    loc = h["location"]
    status, h, _ = c.request("PATCH", loc, data,
                             {"Content-Type": "application/octet-stream"})
    assert status == 202, status
    loc = h["location"]
    sep = "&" if "?" in loc else "?"
    status, _, body = c.request("PUT", f"{loc}{sep}digest={d}")
    assert status == 201, (status, body)
    return d


def push_image(c: Client, repo: str, layer: bytes) -> None:
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "repo": repo}).encode()
    d_cfg = push_blob(c, repo, cfg)
    d_layer = push_blob(c, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": d_cfg, "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": d_layer, "size": len(layer)}]}).encode()
    status, _, body = c.request("PUT", f"/v2/{repo}/manifests/latest", manifest,
                                {"Content-Type": OCI_MANIFEST})
    assert status == 201, (status, body)


# -- measurements ------------------------------------------------------------------------------
def _parallel(n: int, fn: Callable[[int], object]) -> float:
    barrier = threading.Barrier(n)

    def run(i: int) -> object:
        barrier.wait()
        return fn(i)

    t = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(run, range(n)))
    return time.perf_counter() - t


def blob_get_rate(host: str, d: str, size: int, clients: int, gets: int) -> float:
    def worker(_: int) -> None:
        c = Client(host)
        try:
            for _ in range(gets):
                status, _, n = c.request("GET", f"/v2/bench/blobs/{d}", sink=True)
                assert status == 200 and n == size, (status, n)
        finally:
            c.close()

    wall = _parallel(clients, worker)
    return clients * gets * size / wall / (1 << 20)


def push_under_load(host: str, clients: int, layer_mb: int,
                    run_id: str) -> tuple[float, float, list[float]]:
    """Wall time and MiB/s of `clients` concurrent pushes, and manifest GET latencies
    measured while they run."""
    layers = [os.urandom(layer_mb << 20) for _ in range(clients)]
    done = threading.Event()
    latencies: list[float] = []

    def prober() -> None:
        c = Client(host)
        try:
            while not done.is_set():
                t = time.perf_counter()
                status, _, _ = c.request("GET", "/v2/bench/manifests/latest",
                                         headers={"Accept": OCI_MANIFEST})
                latencies.append(time.perf_counter() - t)
                assert status == 200, status
                time.sleep(0.005)
        finally:
            c.close()

    def worker(i: int) -> None:
        c = Client(host)
        try:
            push_image(c, f"push-{run_id}-{i}", layers[i])
        finally:
            c.close()

    probe = threading.Thread(target=prober)
    probe.start()
    try:
        wall = _parallel(clients, worker)
    finally:
        done.set()
        probe.join()
    return wall, clients * layer_mb / wall, latencies


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] * 1000


def measure(name: str, start: Callable[[Path], tuple[subprocess.Popen[bytes], str]],
            work: Path, blob_mb: int, push_mb: int) -> dict[str, float]:
    proc, host = start(work)
    try:
        blob = os.urandom(blob_mb << 20)
        c = Client(host)
        d = push_blob(c, "bench", blob)
        push_image(c, "bench", b"small layer")
        c.close()
        out: dict[str, float] = {}
        out["get1"] = blob_get_rate(host, d, len(blob), 1, 20)
        out["get20"] = blob_get_rate(host, d, len(blob), 20, 5)
        wall, rate, lat = push_under_load(host, 20, push_mb, "a")
        out["push_wall"] = wall
        out["push_rate"] = rate
        out["p50"] = statistics.median(lat) * 1000
        out["p99"] = _pct(lat, 99)
        out["probes"] = len(lat)
        out["rss"] = peak_rss_mib(proc.pid)
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in out.items()),
              file=sys.stderr)
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blob-mb", type=int, default=64)
    ap.add_argument("--push-mb", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3,
                    help="rounds, the servers alternating; medians are printed")
    ap.add_argument("--only", choices=("ketch", "distribution"))
    args = ap.parse_args()
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        for r in range(args.runs):
            for name, start in (("ketch", start_ketch), ("distribution", start_distribution)):
                if args.only and args.only != name:
                    continue
                work = Path(tmp) / f"{name}-{r}"
                work.mkdir()
                runs.setdefault(name, []).append(
                    measure(name, start, work, args.blob_mb, args.push_mb))
                shutil.rmtree(work, ignore_errors=True)
    results = {n: {k: statistics.median(x[k] for x in rs) for k in rs[0]}
               for n, rs in runs.items()}
    rows = [
        ("blob GET, 1 client (MiB/s)", "get1", "{:.0f}"),
        ("blob GET, 20 clients (MiB/s)", "get20", "{:.0f}"),
        (f"20-client push, {args.push_mb} MiB each (s)", "push_wall", "{:.2f}"),
        ("20-client push rate (MiB/s)", "push_rate", "{:.0f}"),
        ("manifest GET during push, p50 (ms)", "p50", "{:.1f}"),
        ("manifest GET during push, p99 (ms)", "p99", "{:.1f}"),
        ("  (probes)", "probes", "{:.0f}"),
        ("server peak RSS (MiB)", "rss", "{:.0f}"),
    ]
    names = list(results)
    print(f"medians of {args.runs} rounds (load average at the end:"
          f" {os.getloadavg()[0]:.1f})")
    print(f"{'':42}" + "".join(f"{n:>14}" for n in names))
    for label, key, fmt in rows:
        print(f"{label:42}" + "".join(f"{fmt.format(results[n][key]):>14}" for n in names))


if __name__ == "__main__":
    main()
