#!/usr/bin/env python3
"""Engine API benchmark, run by hand (not by CI), as root:

    python3 bench/bench_api.py [--runs N] [--only NAME,...] [--json]

The same docker CLI (whatever `docker` is on PATH; 28 here) is timed against ketch's
service (`ketch system service unix://...`, DOCKER_HOST pointing at it) and against
dockerd, in the same run; the ratio is ketch/dockerd (below 1.0 ketch is faster). The
docker CLI's own start-up is in both numbers.

  run-rm     `docker run --rm busybox true`
  ps-100     `docker ps -a` with 100 created containers
  build      `docker build` of an unchanged context (DOCKER_BUILDKIT=0), fully cached
  logs-1m    `docker logs` of a container that printed 1,000,000 lines (to /dev/null)
  rss        the service's RSS: idle after start, idle after the workload above, and
             after `--time` ran out (0: the process is gone); dockerd's for scale

Goals (issue 11): run-rm and logs-1m at most 0.6x dockerd's time, ps-100 and build at
most 1.0x; idle RSS at most 30 MiB and 0 once the service has exited on `--time`.

dockerd is not started here: start it by hand for the bench (`dockerd >/tmp/dockerd.log
2>&1 &`); without one answering `docker info` ketch's numbers are printed alone. Both
engines get the same offline busybox root filesystem (`ketch import` / `docker import`).
The service runs from this checkout's src/ (`python3 -m ketch system service`, which
re-executes itself as `python -I -S`), in a private state root removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import drop_host_network

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

IMAGE = "ketch-bench-api-busybox"
LABEL = "ketch-bench-api=1"
GOALS = {"run-rm": 0.6, "ps-100": 1.0, "build": 1.0, "logs-1m": 0.6}
RSS_GOAL_MIB = 30.0


class Client:
    """The docker CLI pointed at one engine."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env

    def run(self, *args: str, out: int | None = subprocess.PIPE, check: bool = True,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", *args], env=self.env, stdout=out, cwd=cwd,
                              stderr=subprocess.PIPE, text=True)
        if check and proc.returncode != 0:
            raise SystemExit(f"bench: docker {' '.join(args)} against {self.name} failed:"
                             f" {proc.stderr.strip()}")
        return proc

    def timed(self, *args: str, cwd: Path | None = None) -> float:
        t = time.perf_counter()
        self.run(*args, out=subprocess.DEVNULL, cwd=cwd)
        return time.perf_counter() - t

    def remove_all(self) -> None:
        ids = self.run("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
        for i in range(0, len(ids), 50):
            self.run("rm", "-f", *ids[i:i + 50], check=False)


def median(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), min(samples)


def _kib(path: str, key: str) -> float:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mib(pid: int) -> float:
    """VmRSS of `pid` in MiB; 0 when the process is gone."""
    return _kib(f"/proc/{pid}/status", "VmRSS:")


def pss_mib(pid: int) -> float:
    """Proportional set size: the shared libraries' pages split among their users."""
    return _kib(f"/proc/{pid}/smaps_rollup", "Pss:")


# -- the service ----------------------------------------------------------------------------
def start_service(tmp: Path, sock: Path, idle: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ketch", "--root", str(tmp / "root"), "--run-root",
         str(tmp / "run"), "system", "service", f"unix://{sock}", "--time", str(idle)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: the service exited with {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                if s.recv(64).split(b" ")[1:2] == [b"200"]:
                    return proc
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("bench: the service did not answer /_ping within 30 s")


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the cases ------------------------------------------------------------------------------
def bench_run_rm(c: Client, runs: int, _tmp: Path) -> tuple[float, float]:
    c.timed("run", "--rm", IMAGE, "true")  # warm caches
    return median([c.timed("run", "--rm", IMAGE, "true") for _ in range(runs)])


def bench_ps_100(c: Client, runs: int, _tmp: Path) -> tuple[float, float]:
    for _ in range(100):
        c.run("create", "-l", LABEL, IMAGE, "true", out=subprocess.DEVNULL)
    try:
        c.timed("ps", "-a")
        return median([c.timed("ps", "-a") for _ in range(runs)])
    finally:
        c.remove_all()


def bench_build(c: Client, runs: int, tmp: Path) -> tuple[float, float]:
    ctx = tmp / "context"
    if not ctx.exists():
        (ctx / "app").mkdir(parents=True)
        for i in range(20):
            (ctx / "app" / f"f{i}.txt").write_text(f"file {i}\n" * 100)
        (ctx / "Dockerfile").write_text(
            f"FROM {IMAGE}\nWORKDIR /app\nRUN echo built > /built\nCOPY app/ /app/\n"
            'ENV MODE=bench\nCMD ["sh"]\n')
    tag = f"ketch-bench-api-build:{os.getpid()}"
    c.run("build", "-q", "-t", tag, ".", cwd=ctx)  # the cold build fills the cache
    try:
        return median([c.timed("build", "-q", "-t", tag, ".", cwd=ctx)
                       for _ in range(runs)])
    finally:
        c.run("rmi", "-f", tag, check=False)
        c.run("image", "prune", "-f", check=False)


def bench_logs_1m(c: Client, runs: int, _tmp: Path) -> tuple[float, float]:
    name = f"ketch-bench-api-logs-{os.getpid()}"
    c.run("run", "--name", name, "-l", LABEL, IMAGE, "seq", "1", "1000000",
          out=subprocess.DEVNULL)
    try:
        last = c.run("logs", "--tail", "1", name).stdout.strip()
        if last != "1000000":
            raise SystemExit(f"bench: logs through {c.name} ended with {last!r}")
        return median([c.timed("logs", name) for _ in range(max(3, runs // 3))])
    finally:
        c.remove_all()


CASES: dict[str, Callable[[Client, int, Path], tuple[float, float]]] = {
    "run-rm": bench_run_rm, "ps-100": bench_ps_100, "build": bench_build,
    "logs-1m": bench_logs_1m,
}


def docker_client() -> Client | None:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    env["DOCKER_BUILDKIT"] = "0"
    probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], env=env,
                           capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip():
        return None
    return Client(f"dockerd {probe.stdout.strip()}", env)


def dockerd_rss() -> float:
    out = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    return rss_mib(int(out[0])) if out else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--only", default="", help="comma-separated cases: "
                    + ",".join([*CASES, "rss"]))
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (containers need it)", file=sys.stderr)
        return 1
    if shutil.which("docker") is None:
        print("bench: the docker CLI is needed (it is the client for both engines)",
              file=sys.stderr)
        return 1
    cases = [c for c in (args.only.split(",") if args.only else [*CASES, "rss"]) if c]
    for case in cases:
        if case not in CASES and case != "rss":
            print(f"bench: unknown case {case!r}", file=sys.stderr)
            return 1
    from ketch.images.busybox import write_rootfs_tar

    results: dict[str, dict[str, object]] = {}

    def report(case: str, row: dict[str, object], line: str) -> None:
        results[case] = row
        if not args.json:
            print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="ketch-bench-api-") as tmp:
        tmpdir = Path(tmp)
        rootfs = write_rootfs_tar(tmpdir / "busybox.tar")
        subprocess.run([sys.executable, "-m", "ketch", "--root", str(tmpdir / "root"),
                        "--run-root", str(tmpdir / "run"), "import", str(rootfs), IMAGE],
                       env=dict(os.environ, PYTHONPATH=str(REPO / "src")), check=True,
                       stdout=subprocess.DEVNULL)
        sock = tmpdir / "ketch.sock"
        service = start_service(tmpdir, sock, 0)
        env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_BUILDKIT="0")
        ketch = Client("ketch", env)
        docker = docker_client()
        clients = [ketch] + ([docker] if docker else [])
        try:
            time.sleep(1)
            rss_start, pss_start = rss_mib(service.pid), pss_mib(service.pid)
            if docker is not None:
                docker.run("import", str(rootfs), IMAGE, out=subprocess.DEVNULL)
            for case in cases:
                if case == "rss":
                    continue
                row: dict[str, object] = {"goal": GOALS[case]}
                for c in clients:
                    row[c.name.split()[0]] = CASES[case](c, args.runs, tmpdir)
                k = row["ketch"]
                line = f"{case:<8} ketch {k[0]:.3f} s [{k[1]:.3f}]"  # type: ignore[index]
                if docker is not None:
                    d = row["dockerd"]
                    ratio = k[0] / d[0]  # type: ignore[index]
                    row["ratio"] = ratio
                    line += (f"   dockerd {d[0]:.3f} s [{d[1]:.3f}]"  # type: ignore[index]
                             f"   ratio {ratio:.2f}")
                else:
                    line += "   (no dockerd reachable: ketch alone)"
                report(case, row, f"{line}   goal {GOALS[case]}x dockerd")
            if "rss" in cases:
                time.sleep(5)  # the service returns a burst's memory after 2 idle seconds
                rss_after, pss_after = rss_mib(service.pid), pss_mib(service.pid)
                stop_service(service)
                # a second service that leaves on --time 2 once idle
                timed_service = start_service(tmpdir, sock, 2)
                deadline = time.monotonic() + 30
                while timed_service.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.2)
                rss_gone = rss_mib(timed_service.pid)
                stop_service(timed_service)
                row = {"start_mib": rss_start, "after_workload_mib": rss_after,
                       "start_pss_mib": pss_start, "after_workload_pss_mib": pss_after,
                       "after_time_mib": rss_gone, "exited": timed_service.returncode,
                       "dockerd_mib": dockerd_rss() if docker else None,
                       "goal_mib": RSS_GOAL_MIB}
                line = (f"rss      ketch idle {rss_start:.1f} MiB after start (PSS"
                        f" {pss_start:.1f}), {rss_after:.1f} MiB after the workload (PSS"
                        f" {pss_after:.1f}), {rss_gone:.1f} MiB "
                        f"after --time 2 (exit {timed_service.returncode})")
                if docker is not None:
                    line += f"   dockerd {row['dockerd_mib']:.1f} MiB"
                report("rss", row, f"{line}   goal {RSS_GOAL_MIB:.0f} MiB")
        finally:
            for c in clients:
                c.remove_all()
            if docker is not None:
                docker.run("rmi", IMAGE, check=False)
            stop_service(service)
            drop_host_network(tmpdir / "root", tmpdir / "run")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
