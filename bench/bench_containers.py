#!/usr/bin/env python3
"""Container benchmark, run by hand (not by CI), as root:

    python3 bench/bench_containers.py [--runs N] [--only NAME,...] [--json]

Measures, for ketch and beside it for docker when a Docker engine answers `docker info`
(ratio ketch/docker in the same run; below 1.0 ketch is faster):

  run-rm     `run --rm busybox true`, wall clock per run
  cycle      `run -d` + `stop` + `rm` of a container that exits on SIGTERM
  create     `create busybox true`
  create-rm  `create` + `rm` of the container (never started)
  rm         `rm` of a container that ran and exited (the rm alone is timed)
  ps-100     `ps -a` with 100 containers in the store
  ps-up      `ps` with 10 containers running (each one's exit is checked)
  inspect-up `inspect` of a running container
  logs-1m    `logs` of a container that printed 1,000,000 lines (to /dev/null)
  logs-tail  `logs --tail 10` of such a container
  rss        memory the engine keeps per running container: the monitor's RSS and PSS
             (conmon for ketch, containerd-shim for docker), over 10 containers

Goals (issue 3): run-rm at most 0.6x Docker's (Docker 20.10 here: 0.28 s, so 0.17 s),
ps-100 within 1.5x Docker's 0.025 s, logs-1m at most 0.5x Docker's 5.0 s, at most 2 MiB
RSS per running container. Each timing is the median of N runs, min in brackets. Both
engines get the same offline busybox root filesystem (Debian's busybox-static); ketch
works in a private state root, docker's containers and image are removed afterwards.
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
from collections.abc import Callable
from pathlib import Path

from benchlib import drop_host_network, ketch_command

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

IMAGE = "ketch-bench-busybox"
GOALS = {"run-rm": "0.6x docker (0.17 s)", "cycle": "-", "create": "1.0x docker",
         "create-rm": "1.0x docker", "rm": "1.0x docker", "ps-100": "1.5x docker (0.038 s)",
         "ps-up": "1.0x docker", "inspect-up": "1.0x docker",
         "logs-1m": "0.5x docker (2.5 s)", "logs-tail": "1.0x docker",
         "rss": "2 MiB per container"}
TERM_EXITS = "trap 'exit 0' TERM; sleep 1000 & wait"


class Engine:
    """One CLI (ketch or docker) with the environment it runs in."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env

    def run(self, *args: str, out: int | None = subprocess.PIPE, check: bool = True,
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.argv, *args], env=self.env, stdout=out,
                              stderr=subprocess.PIPE, text=True)
        if check and proc.returncode != 0:
            raise SystemExit(f"bench: {self.name} {' '.join(args)} failed: "
                             f"{proc.stderr.strip()}")
        return proc

    def timed(self, *args: str) -> float:
        t = time.perf_counter()
        self.run(*args, out=subprocess.DEVNULL)
        return time.perf_counter() - t

    def remove_all(self, label: str) -> None:
        ids = self.run("ps", "-aq", "--filter", f"label={label}").stdout.split()
        for i in range(0, len(ids), 50):
            self.run("rm", "-f", *ids[i:i + 50], check=False)


def ketch_engine(root: Path) -> Engine:
    argv = ketch_command(root)
    env = dict(os.environ, KETCH_ROOT=str(root / "root"), KETCH_RUN_ROOT=str(root / "run"))
    return Engine("ketch", argv, env)


def docker_engine() -> Engine | None:
    docker = shutil.which("docker")
    if not docker:
        return None
    probe = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip():
        return None
    return Engine(f"docker {probe.stdout.strip()}", [docker], dict(os.environ))


def median(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), min(samples)


# -- the cases --------------------------------------------------------------------------
def bench_run_rm(e: Engine, runs: int) -> tuple[float, float]:
    e.timed("run", "--rm", IMAGE, "true")  # warm caches
    return median([e.timed("run", "--rm", IMAGE, "true") for _ in range(runs)])


def bench_cycle(e: Engine, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(max(3, runs // 2)):
        t = time.perf_counter()
        cid = e.run("run", "-d", "-l", "ketch-bench=1", IMAGE, "sh", "-c",
                    TERM_EXITS).stdout.strip()
        e.run("stop", cid, out=subprocess.DEVNULL)
        e.run("rm", cid, out=subprocess.DEVNULL)
        samples.append(time.perf_counter() - t)
    return median(samples)


def bench_create(e: Engine, runs: int) -> tuple[float, float]:
    try:
        e.timed("create", "-l", "ketch-bench=1", IMAGE, "true")
        return median([e.timed("create", "-l", "ketch-bench=1", IMAGE, "true")
                       for _ in range(runs)])
    finally:
        e.remove_all("ketch-bench=1")


def bench_create_rm(e: Engine, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        cid = e.run("create", "-l", "ketch-bench=1", IMAGE, "true").stdout.strip()
        e.run("rm", cid, out=subprocess.DEVNULL)
        samples.append(time.perf_counter() - t)
    return median(samples)


def bench_rm(e: Engine, runs: int) -> tuple[float, float]:
    ids = [e.run("run", "-d", "-l", "ketch-bench=1", IMAGE, "true").stdout.strip()
           for _ in range(runs + 1)]
    try:
        e.run("wait", *ids, out=subprocess.DEVNULL)
        e.timed("rm", ids.pop())
        return median([e.timed("rm", cid) for cid in ids])
    finally:
        e.remove_all("ketch-bench=1")


def bench_ps_100(e: Engine, runs: int) -> tuple[float, float]:
    for _ in range(100):
        e.run("create", "-l", "ketch-bench=1", IMAGE, "true", out=subprocess.DEVNULL)
    try:
        e.timed("ps", "-a")
        return median([e.timed("ps", "-a") for _ in range(runs)])
    finally:
        e.remove_all("ketch-bench=1")


def bench_ps_up(e: Engine, runs: int) -> tuple[float, float]:
    for _ in range(10):
        e.run("run", "-d", "-l", "ketch-bench=1", IMAGE, "sleep", "1000",
              out=subprocess.DEVNULL)
    try:
        e.timed("ps")
        return median([e.timed("ps") for _ in range(runs)])
    finally:
        e.remove_all("ketch-bench=1")


def bench_inspect_up(e: Engine, runs: int) -> tuple[float, float]:
    cid = e.run("run", "-d", "-l", "ketch-bench=1", IMAGE, "sleep", "1000").stdout.strip()
    try:
        e.timed("inspect", cid)
        return median([e.timed("inspect", cid) for _ in range(runs)])
    finally:
        e.remove_all("ketch-bench=1")


def bench_logs_1m(e: Engine, runs: int) -> tuple[float, float]:
    name = f"ketch-bench-logs-{os.getpid()}"
    e.run("run", "--name", name, "-l", "ketch-bench=1", IMAGE, "seq", "1", "1000000",
          out=subprocess.DEVNULL)
    try:
        lines = e.run("logs", "--tail", "1", name).stdout.strip()
        if lines != "1000000":
            raise SystemExit(f"bench: {e.name} logs ended with {lines!r}")
        return median([e.timed("logs", name) for _ in range(max(3, runs // 3))])
    finally:
        e.remove_all("ketch-bench=1")


def bench_logs_tail(e: Engine, runs: int) -> tuple[float, float]:
    name = f"ketch-bench-tail-{os.getpid()}"
    e.run("run", "--name", name, "-l", "ketch-bench=1", IMAGE, "seq", "1", "1000000",
          out=subprocess.DEVNULL)
    try:
        lines = e.run("logs", "--tail", "10", name).stdout.split()
        if lines != [str(n) for n in range(999991, 1000001)]:
            raise SystemExit(f"bench: {e.name} logs --tail 10 printed {lines!r}")
        return median([e.timed("logs", "--tail", "10", name) for _ in range(runs)])
    finally:
        e.remove_all("ketch-bench=1")


def _memory_kib(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def _monitors(marker: bytes, names: tuple[bytes, ...]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        argv0 = os.path.basename(cmd.split(b"\0", 1)[0])
        if argv0 in names and marker in cmd:
            pids.append(int(entry.name))
    return pids


def bench_rss(e: Engine, _runs: int, n: int = 10) -> tuple[float, float]:
    ids = [e.run("run", "-d", "-l", "ketch-bench=1", IMAGE, "sleep", "1000").stdout.strip()
           for _ in range(n)]
    try:
        time.sleep(0.5)
        if e.name == "ketch":
            pids = _monitors(e.env["KETCH_ROOT"].encode(), (b"conmon",))
        else:
            # one shim per container, named by the container's full ID on its command line
            pids = [p for i in ids
                    for p in _monitors(i.encode(), (b"containerd-shim-runc-v2",
                                                    b"containerd-shim"))]
        if not pids:
            raise SystemExit(f"bench: no monitor processes found for {e.name}")
        mem = [_memory_kib(p) for p in pids]
        rss = sum(r for r, _ in mem) / n / 1024
        pss = sum(p for _, p in mem) / n / 1024
        return rss, pss
    finally:
        e.remove_all("ketch-bench=1")


CASES: dict[str, Callable[[Engine, int], tuple[float, float]]] = {
    "run-rm": bench_run_rm, "cycle": bench_cycle, "create": bench_create,
    "create-rm": bench_create_rm, "rm": bench_rm, "ps-100": bench_ps_100,
    "ps-up": bench_ps_up, "inspect-up": bench_inspect_up, "logs-1m": bench_logs_1m,
    "logs-tail": bench_logs_tail, "rss": bench_rss,
}


def prepare(e: Engine, rootfs: Path) -> None:
    e.run("import", "--change", 'CMD ["sh"]', str(rootfs), IMAGE, out=subprocess.DEVNULL)


def fmt(case: str, value: tuple[float, float]) -> str:
    if case == "rss":
        return f"{value[0]:.2f} MiB RSS ({value[1]:.2f} PSS)"
    return f"{value[0]:.3f} s [{value[1]:.3f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--only", default="", help="comma-separated cases: " + ",".join(CASES))
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (containers need it)", file=sys.stderr)
        return 1
    cases = [c for c in (args.only.split(",") if args.only else CASES) if c]
    for c in cases:
        if c not in CASES:
            print(f"bench: unknown case {c!r}", file=sys.stderr)
            return 1
    from ketch.images.busybox import write_rootfs_tar as write_busybox_rootfs_tar

    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="ketch-bench-") as tmp:
        tmpdir = Path(tmp)
        rootfs = write_busybox_rootfs_tar(tmpdir / "busybox.tar")
        engines = [ketch_engine(tmpdir)]
        docker = docker_engine()
        if docker is not None:
            engines.append(docker)
        for e in engines:
            prepare(e, rootfs)
        # the floor under any ketch command: the interpreter as the launcher starts it
        starts = []
        for _ in range(11):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)
            starts.append(time.perf_counter() - t)
        floor = statistics.median(starts)
        try:
            for case in cases:
                row: dict[str, object] = {"goal": GOALS[case]}
                for e in engines:
                    row[e.name.split()[0]] = CASES[case](e, args.runs)
                results[case] = row
                if not args.json:
                    k = row["ketch"]
                    line = f"{case:<8} ketch {fmt(case, k)}"  # type: ignore[arg-type]
                    if "docker" in row:
                        d = row["docker"]
                        ratio = k[0] / d[0]  # type: ignore[index]
                        line += f"   docker {fmt(case, d)}   ratio {ratio:.2f}"  # type: ignore[arg-type]
                    else:
                        line += "   (no Docker engine reachable: ketch alone)"
                    print(f"{line}   goal {GOALS[case]}", flush=True)
        finally:
            for e in engines:
                e.remove_all("ketch-bench=1")
            if docker is not None:
                docker.run("rmi", IMAGE, check=False)
            ketch = engines[0]
            ketch.remove_all("ketch-bench=1")
            drop_host_network(tmpdir / "root", tmpdir / "run")
    if args.json:
        print(json.dumps({"python_startup_s": floor, "results": results}, indent=2))
    else:
        print(f"(python -I -S start-up on this machine, the floor: {floor:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
