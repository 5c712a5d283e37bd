#!/usr/bin/env python3
"""Push benchmark, run by hand as root (not by CI):

    python3 bench/bench_push.py [--runs N] [--base TAR]

An image of a ~180 MB Debian bookworm base plus a small app layer, both stored
uncompressed (a docker-archive loaded into ketch and, when `docker info` answers, into
Docker), is pushed to Debian's `docker-registry` on a loopback port:

* **push, registry empty**: every layer compressed and sent (a fresh registry each run;
  ketch with gzip, its default, and with zstd; docker gzips);
* **push again**: the same image to the same registry (every layer already there);
* **gzip of the base layer**: ISA-L on one thread and on every core, in this process
  (the compression alone, no network), beside `gzip -6` for scale.

Timings are wall clock, median of N runs (min in brackets), ketch and docker alternating
in one run. The base rootfs tarball comes from `--base`, else KETCH_BENCH_DEBIAN, else
/var/tmp/ketch-bench/debian-base.tar (bench_pull.py makes it with mmdebstrap).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchlib import app_tar, ketch_command

REPO = "bench/push"


def debian_base(explicit: str | None) -> Path:
    path = Path(explicit or os.environ.get("KETCH_BENCH_DEBIAN")
                or "/var/tmp/ketch-bench/debian-base.tar")
    if not path.exists():
        raise SystemExit(f"{path} is missing: run bench/bench_pull.py once (it makes the"
                         " Debian base with mmdebstrap) or pass --base")
    return path




def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_archive(base: Path, dest: Path, name: str) -> None:
    """A docker-archive of base + app, layers uncompressed (as `docker save` writes)."""
    app = app_tar()
    base_hex, app_hex = sha256_file(base), hashlib.sha256(app).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{base_hex}",
                                                  f"sha256:{app_hex}"]},
        "history": [{"created": "2024-01-01T00:00:00Z"}, {"created": "2024-01-01T00:00:00Z"}],
    }).encode()
    cfg_hex = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{cfg_hex}.json", "RepoTags": [name],
                            "Layers": [f"{base_hex}/layer.tar", f"{app_hex}/layer.tar"]}])
    with tarfile.open(dest, "w") as tf:
        def add(member: str, data: bytes) -> None:
            ti = tarfile.TarInfo(member)
            ti.size, ti.mtime = len(data), 1700000000
            tf.addfile(ti, io.BytesIO(data))
        add(f"{cfg_hex}.json", config)
        tf.add(str(base), f"{base_hex}/layer.tar")
        add(f"{app_hex}/layer.tar", app)
        add("manifest.json", manifest.encode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """Debian's docker-registry with a fresh storage directory on a new loopback port."""

    def __init__(self, work: Path) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise SystemExit("Debian's docker-registry is not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="registry-", dir=work))
        port = free_port()
        cfg = self.dir / "registry.yml"
        cfg.write_text("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                       f"    rootdirectory: {self.dir / 'data'}\n"
                       f"http:\n  addr: 127.0.0.1:{port}\n")
        self.proc = subprocess.Popen([binary, "serve", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.host = f"127.0.0.1:{port}"
        for _ in range(150):
            try:
                c = http.client.HTTPConnection(self.host, timeout=2)
                c.request("GET", "/v2/")
                c.getresponse().read()
                c.close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit("docker-registry did not come up")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode().strip()}")
    return elapsed


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run(cmd, check=True, capture_output=True, env=env)


def docker_reachable() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def compression_rows(base: Path, runs: int) -> list[tuple[str, list[float]]]:
    """ISA-L gzip of the base layer into /dev/null: one thread vs every core."""
    from isal import igzip, igzip_threaded

    class Null:
        def write(self, b: bytes) -> int:
            return len(b)

        def flush(self) -> None:
            pass

    def one(threads: int) -> float:
        start = time.perf_counter()
        gz = (igzip.GzipFile(fileobj=Null(), mode="wb", compresslevel=1) if threads == 1
              else igzip_threaded.open(Null(), "wb", compresslevel=1, threads=threads))
        with open(base, "rb") as f:
            while chunk := f.read(1 << 20):
                gz.write(chunk)
        gz.close()
        return time.perf_counter() - start

    def gzip6() -> float:
        start = time.perf_counter()
        with open(base, "rb") as f:
            subprocess.run(["gzip", "-6", "-c"], stdin=f, stdout=subprocess.DEVNULL,
                           check=True)
        return time.perf_counter() - start

    return [("gzip of base: ISA-L level 1, 1 thread", [one(1) for _ in range(runs)]),
            ("gzip of base: ISA-L level 1, all cores", [one(-1) for _ in range(runs)]),
            ("gzip of base: gzip -6 (for scale)", [gzip6() for _ in range(max(1, runs // 2))])]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per timing (default 5)")
    ap.add_argument("--base", help="the Debian rootfs tarball to use as the base layer")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (ketch keeps layer owners)")
    base = debian_base(opts.base)
    work = Path(tempfile.mkdtemp(prefix="bench-push-", dir="/var/tmp"))
    ketch = ketch_command(work)
    root = work / "ketch-root"
    env = dict(os.environ, KETCH_ROOT=str(root), KETCH_RUN_ROOT=str(root / "run"))
    have_docker = docker_reachable()
    local = "bench/push-src:1"
    rows: list[tuple[str, list[float], list[float] | None]] = []
    try:
        archive = work / "image.tar"
        write_archive(base, archive, local)
        print(f"loading {base.stat().st_size / 1e6:.0f} MB base + app layer ...",
              file=sys.stderr)
        run([*ketch, "load", "-i", str(archive)], env)
        if have_docker:
            run(["docker", "load", "-i", str(archive)])
        cold: dict[str, list[float]] = {"gzip": [], "zstd": [], "docker": []}
        warm_k: list[float] = []
        warm_d: list[float] = []
        for i in range(opts.runs):
            for who in ("gzip", "zstd", "docker"):
                if who == "docker" and not have_docker:
                    continue
                reg = Registry(work)
                target = f"{reg.host}/{REPO}:{i}"
                try:
                    if who == "docker":
                        run(["docker", "tag", local, target])
                        cold[who].append(timed(["docker", "push", target]))
                        if who == "docker" and i == 0:
                            warm_d = [timed(["docker", "push", target])
                                      for _ in range(opts.runs)]
                        subprocess.run(["docker", "rmi", target], capture_output=True)
                    else:
                        run([*ketch, "tag", local, target], env)
                        cold[who].append(timed([*ketch, "push", "--compression-format",
                                                who, target], env))
                        if who == "gzip" and i == 0:
                            warm_k = [timed([*ketch, "push", target], env)
                                      for _ in range(opts.runs)]
                        subprocess.run([*ketch, "rmi", target], env=env,
                                       capture_output=True)
                finally:
                    reg.stop()
        rows.append(("push, registry empty (gzip)", cold["gzip"],
                     cold["docker"] if have_docker else None))
        rows.append(("push, registry empty (zstd)", cold["zstd"], None))
        rows.append(("push again, layers present", warm_k, warm_d if have_docker else None))
        for name, samples in compression_rows(base, opts.runs):
            rows.append((name, samples, None))
    finally:
        if have_docker:
            subprocess.run(["docker", "rmi", local], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'benchmark':<40}{'ketch median (min)':>22}{'docker median (min)':>24}"
          f"{'ketch/docker':>14}")
    for name, k, d in rows:
        km, kmin = statistics.median(k), min(k)
        ks = f"{km:7.2f} s ({kmin:.2f})"
        if not d:
            print(f"{name:<40}{ks:>22}{'-':>24}{'-':>14}")
        else:
            dm, dmin = statistics.median(d), min(d)
            print(f"{name:<40}{ks:>22}{f'{dm:7.2f} s ({dmin:.2f})':>24}{km / dm:>14.2f}")
    if not have_docker:
        print("docker: no Docker engine reachable (`docker info` failed); ketch's numbers only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
