#!/usr/bin/env python3
"""Image-management benchmark, run by hand (not by CI):

    python3 bench/bench_images.py [--runs N] [--keep DIR]

Prints, for ketch and beside it for docker when a Docker engine answers `docker info`:

* the interpreter's own start-up (`python -c pass`), the floor under every ketch number;
* start-up: `ketch --version` (docker: `docker --version`);
* `ketch images` with 200 images in the store, and `image inspect` of one of them;
* `ketch load -i` of a ~180 MB docker-archive (three 60 MB layers, incompressible).

Each timing is the median of N runs (min in brackets), wall clock, in a private state
root (KETCH_ROOT) so a user's images are never touched. When docker is reachable the
ratio ketch/docker of the medians is printed (below 1.0: ketch is faster). Docker's
images and the test images are removed afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import ketch_command, print_ms_table

N_IMAGES = 200
BIG_LAYERS = 3
BIG_LAYER_BYTES = 60 * 1000 * 1000


# -- archives -------------------------------------------------------------------------------
def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data))


def docker_archive(dest: Path, images: list[tuple[list[bytes], list[str], str]]) -> Path:
    """A classic `docker save` archive: [(layer tars, tags, created), ...]."""
    manifest = []
    written: set[str] = set()
    with tarfile.open(dest, "w") as tf:
        for layers, tags, created in images:
            cfg = json.dumps({
                "architecture": "amd64", "os": "linux", "created": created,
                "config": {"Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + _sha(x) for x in layers]},
                "history": [{"created": created, "created_by": "bench"} for _ in layers],
            }).encode()
            _add(tf, _sha(cfg) + ".json", cfg)
            names = []
            for layer in layers:
                name = _sha(layer) + "/layer.tar"
                if name not in written:
                    _add(tf, name, layer)
                    written.add(name)
                names.append(name)
            manifest.append({"Config": _sha(cfg) + ".json", "RepoTags": tags, "Layers": names})
        _add(tf, "manifest.json", json.dumps(manifest).encode())
    return dest


def many_images_archive(dest: Path) -> Path:
    base = _tar({"etc/base": b"base\n"})
    images = []
    for i in range(N_IMAGES):
        top = _tar({f"app/file{i}": f"image {i}\n".encode()})
        created = f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z"
        images.append(([base, top], [f"bench/img{i}:v{i % 7}"], created))
    return docker_archive(dest, images)


def big_archive(dest: Path) -> Path:
    rnd = random.Random(180)
    layers = [_tar({f"data/blob{i}.bin": rnd.randbytes(BIG_LAYER_BYTES)})
              for i in range(BIG_LAYERS)]
    return docker_archive(dest, [(layers, ["bench/big:1"], "2024-01-01T00:00:00Z")])


# -- timing ---------------------------------------------------------------------------------
def timed(cmd: list[str], env: dict[str, str], *, stdin: Path | None = None) -> float:
    start = time.perf_counter()
    with open(stdin or os.devnull, "rb") as f:
        proc = subprocess.run(cmd, stdin=f, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode().strip()}")
    return elapsed


def series(runs: int, once: Callable[[], float]) -> tuple[float, float]:
    samples = [once() for _ in range(runs)]
    return statistics.median(samples), min(samples)


def paired(runs: int, ours: Callable[[], float], theirs: Callable[[], float] | None
           ) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """`series` of both, taking turns run by run: a slow phase of the machine (this VM
    has seconds-long ones) then falls on both engines, not on one engine's series."""
    if theirs is None:
        return series(runs, ours), None
    a: list[float] = []
    b: list[float] = []
    for _ in range(runs):
        a.append(ours())
        b.append(theirs())
    return (statistics.median(a), min(a)), (statistics.median(b), min(b))


def docker_reachable() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="runs per timing (default 10)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    opts = ap.parse_args()

    work = Path(opts.keep or tempfile.mkdtemp(prefix="ketch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ketch = ketch_command(work)
    have_docker = docker_reachable()
    results: list[tuple[str, tuple[float, float], tuple[float, float] | None]] = []
    try:
        print(f"building archives in {work} ...", file=sys.stderr)
        many = many_images_archive(work / "many.tar")
        big = big_archive(work / "big.tar")
        size_mb = big.stat().st_size / 1e6

        def env_for(root: Path) -> dict[str, str]:
            return dict(os.environ, KETCH_ROOT=str(root), KETCH_RUN_ROOT=str(root / "run"))

        # 0. what the interpreter alone costs here (site-packages' .pth files included):
        # ketch's own start-up is the difference.
        env = env_for(work / "root-startup")
        results.append(("python -c pass (baseline)",
                        series(opts.runs, lambda: timed([sys.executable, "-c", "pass"], env)),
                        None))

        # 1. start-up
        k, d = paired(opts.runs, lambda: timed([*ketch, "--version"], env),
                      (lambda: timed(["docker", "--version"], dict(os.environ)))
                      if have_docker else None)
        results.append(("start-up (--version)", k, d))

        # 2. images with 200 images
        env = env_for(work / "root-many")
        timed([*ketch, "load", "-q", "-i", str(many)], env)
        timed([*ketch, "images"], env)  # warm the page cache and bytecode
        if have_docker:
            timed(["docker", "load", "-q", "-i", str(many)], dict(os.environ))
            timed(["docker", "images"], dict(os.environ))
        k, d = paired(opts.runs, lambda: timed([*ketch, "images"], env),
                      (lambda: timed(["docker", "images"], dict(os.environ)))
                      if have_docker else None)
        results.append((f"images ({N_IMAGES} images)", k, d))

        # 2b. image inspect of one of them (start-up, one lookup, the JSON)
        one = "bench/img0:v0"
        k, d = paired(opts.runs, lambda: timed([*ketch, "image", "inspect", one], env),
                      (lambda: timed(["docker", "image", "inspect", one], dict(os.environ)))
                      if have_docker else None)
        results.append(("image inspect", k, d))

        # 3. load of the big archive, each run into an empty store
        big_runs = max(3, opts.runs // 3)
        counter = iter(range(1000))

        def ketch_load() -> float:
            root = work / f"root-big-{next(counter)}"
            try:
                return timed([*ketch, "load", "-q", "-i", str(big)], env_for(root))
            finally:
                shutil.rmtree(root, ignore_errors=True)

        k = series(big_runs, ketch_load)
        d = None
        if have_docker:
            def docker_load() -> float:
                t = timed(["docker", "load", "-q", "-i", str(big)], dict(os.environ))
                subprocess.run(["docker", "rmi", "-f", "bench/big:1"], capture_output=True)
                return t

            d = series(big_runs, docker_load)
        results.append((f"load ({size_mb:.0f} MB archive)", k, d))
    finally:
        if have_docker:
            ids = subprocess.run(["docker", "images", "-q", "--filter", "reference=bench/*"],
                                 capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["docker", "rmi", "-f", *sorted(set(ids))], capture_output=True)
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)

    print_ms_table(results, have_docker, 28)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
