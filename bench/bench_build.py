"""Build benchmark: ketch build beside Docker's classic builder, in the same run.

Three cases on a Dockerfile shaped like the notes' sample app (FROM, WORKDIR, COPY
package.json, RUN "install", COPY ., EXPOSE, CMD) whose RUN needs no network:

  cold       `build --no-cache`                 every step runs
  unchanged  `build` again, nothing changed      every step from the cache
  one-file   `build` after editing server.js     COPY . and later steps run

Goals (issue 5, Docker 20.10 classic builder on the reference machine): cold 1.70 s,
unchanged 0.066 s, one-file 0.32 s. The interpreter's own start-up on this machine is
printed too: it is a floor no Python program goes below.

Docker runs with DOCKER_BUILDKIT=0 when `docker info` reaches an engine; otherwise its
column says so. Run as root:  python3 bench/bench_build.py [--runs N] [--json]
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

from benchlib import ketch_command

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DOCKERFILE = """\
FROM {base}
WORKDIR /app
COPY package.json /app
RUN mkdir -p node_modules && cp package.json node_modules/.installed && date > installed
COPY . /app
EXPOSE 80
CMD ["node", "server.js"]
"""

GOALS = {"cold": 1.70, "unchanged": 0.066, "one-file": 0.32}


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {proc.stderr.strip()}")
    return elapsed


def write_context(ctx: Path, base: str) -> None:
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    (ctx / "package.json").write_text('{"name": "bench", "dependencies": {}}\n')
    (ctx / "server.js").write_text("console.log('v0')\n")
    (ctx / ".dockerignore").write_text("node_modules\n")
    public = ctx / "public"
    public.mkdir(exist_ok=True)
    for i in range(20):  # a few static files, as a small app has
        (public / f"page{i}.html").write_text(f"<p>page {i}</p>\n" * 20)


def measure(build: list[str], ctx: Path, env: dict[str, str], runs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    at = build.index("build") + 1  # after the verb, whatever the command's prefix is
    cold = [timed(build[:at] + ["--no-cache"] + build[at:], ctx, env)
            for _ in range(max(1, runs // 3))]
    out["cold"] = statistics.median(cold)
    timed(build, ctx, env)  # make sure the cache is warm
    out["unchanged"] = statistics.median(timed(build, ctx, env) for _ in range(runs))
    changes = []
    for i in range(max(1, runs // 2)):
        (ctx / "server.js").write_text(f"console.log('v{i + 1}')\n")
        changes.append(timed(build, ctx, env))
    out["one-file"] = statistics.median(changes)
    return out


def docker_reachable() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="repetitions of the cached cases")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (builds mount overlays and run containers)")
    from ketch.images.busybox import write_rootfs_tar as write_busybox_rootfs_tar

    work = Path(tempfile.mkdtemp(prefix="ketch-bench-build-"))
    results: dict[str, dict[str, float] | str] = {}
    ketch = [sys.executable, "-m", "ketch"]
    try:
        env = dict(os.environ, KETCH_ROOT=str(work / "root"), KETCH_RUN_ROOT=str(work / "run"))
        rootfs = write_busybox_rootfs_tar(work / "busybox.tar")
        ketch = ketch_command(work)
        subprocess.run(ketch + ["import", "--change", 'CMD ["sh"]', str(rootfs),
                                "bench-base"], env=env, check=True, capture_output=True)
        # ketch's launcher starts Python with -I -S (no site, no .pth files): so does this.
        floor = statistics.median(timed([sys.executable, "-I", "-S", "-c", "pass"], work, env)
                                  for _ in range(args.runs))
        results["python-startup"] = {"floor": floor}
        ctx = work / "ketch-ctx"
        write_context(ctx, "bench-base")
        results["ketch"] = measure(ketch + ["build", "-t", "bench-app", "."], ctx, env,
                                   args.runs)
        if docker_reachable():
            tag = "ketch-bench-base:latest"
            subprocess.run(["docker", "import", "--change", 'CMD ["sh"]', str(rootfs), tag],
                           check=True, capture_output=True)
            dctx = work / "docker-ctx"
            write_context(dctx, tag)
            denv = dict(os.environ, DOCKER_BUILDKIT="0")
            try:
                results["docker"] = measure(["docker", "build", "-t", "ketch-bench-app", "."],
                                            dctx, denv, args.runs)
            finally:
                subprocess.run(["docker", "rmi", "-f", "ketch-bench-app", tag],
                               capture_output=True)
        else:
            results["docker"] = "no Docker engine reachable (docker info failed)"
    finally:
        bench_env = dict(os.environ, KETCH_ROOT=str(work / "root"),
                         KETCH_RUN_ROOT=str(work / "run"))
        subprocess.run(ketch + ["image", "prune", "-a", "-f"], capture_output=True,
                       env=bench_env)
        # RUN steps set up networking: drop the bench root's bridge, rules and netns mount.
        subprocess.run([sys.executable, "-c", "from ketch.engine import Engine;"
                        " Engine().networks.uninstall()"], capture_output=True, env=bench_env)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    k = results["ketch"]
    d = results["docker"]
    assert isinstance(k, dict)
    print("python -I -S start-up on this machine (floor):"
          f" {results['python-startup']['floor']:.3f} s")  # type: ignore[index]
    print(f"{'case':<10} {'ketch':>8} {'docker':>8} {'ratio':>7} {'goal':>7}")
    for case in ("cold", "unchanged", "one-file"):
        dk = f"{d[case]:.3f}" if isinstance(d, dict) else "-"
        ratio = f"{k[case] / d[case]:.2f}x" if isinstance(d, dict) else "-"
        print(f"{case:<10} {k[case]:>8.3f} {dk:>8} {ratio:>7} {GOALS[case]:>7.3f}")
    if not isinstance(d, dict):
        print(f"docker: {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
