#!/usr/bin/env python3
"""Pod benchmark, run by hand (not by CI), as root:

    python3 bench/bench_pods.py [--runs N] [--json]

Measures, for ketch and beside it for Podman when `podman` is installed (ratio
ketch/podman in the same run; below 1.0 ketch is faster):

  pod-2      `pod create -p PORT:80` + two `run -d --pod` (busybox httpd and sleep),
             wall clock of the three commands together; each command's median is
             printed below the table (the first member's run starts the infra)
  pod-rm     `pod rm -f` of such a pod (both members and the infra running)

and, after both, the runc floor: `runc create` + the start of the pod's three
containers with the configs ketch generated for its last pod, one after the other, with
no engine (see benchlib.runc_floor): what any engine that starts them through runc one
by one pays at least. ketch creates a pod's first member beside its infra (their
namespaces are pinned first), so its 1st run -d can take less than two of them.

Goal (issue 14): pod-2 at most 0.5x Podman's time. Each timing is the median of N
runs, min in brackets. Both engines get the same offline busybox root filesystem
(Debian's busybox-static): ketch imports it, Podman `podman load`s it as a docker
archive ketch saves. ketch works in a private state root.

Podman's set-up, as the project's notes describe it: /etc/containers/containers.conf
with

    [containers]
    default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
    [engine]
    runtime = "runc"

(the host's hard RLIMIT_NOFILE is below Podman's default 1048576, and crun is not what
ketch uses). Podman's infra container runs catatonit from its own local pause image
(`localhost/podman-pause`, built on first use from the host's catatonit: Debian's
podman 4.3 does not pull in the `catatonit` package, which must be installed too; without
it the warm-up fails with "finding pause binary"), so its first `pod create` is warmed up
and not measured, as ketch's first (which makes its `localhost/ketch-pause` image) is.
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
from itertools import pairwise
from pathlib import Path

from benchlib import drop_host_network, ketch_command, pod_configs, runc_floor

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

IMAGE = "ketch-bench-busybox"
GOAL = "0.5x podman"


class Engine:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.argv, *args], env=self.env, capture_output=True,
                              text=True)
        if check and proc.returncode != 0:
            raise SystemExit(f"bench: {self.name} {' '.join(args)} failed: "
                             f"{proc.stderr.strip()}")
        return proc


def ketch_engine(tmp: Path) -> Engine:
    """ketch as users run it: the `-I -S` launcher (src/ketch/launcher.py), rendered for
    this checkout's src/ (or $KETCH_BIN)."""
    env = dict(os.environ, KETCH_ROOT=str(tmp / "root"), KETCH_RUN_ROOT=str(tmp / "run"))
    return Engine("ketch", ketch_command(tmp), env)


def podman_engine(tmp: Path) -> Engine | None:
    """Podman with a storage root, run root and tmpdir of its own in `tmp`: the host's
    other Podman users (and their `system reset`) never meet the bench's pods."""
    podman = shutil.which("podman")
    if not podman:
        return None
    probe = subprocess.run([podman, "version", "--format", "{{.Client.Version}}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return None
    argv = [podman, "--root", str(tmp / "podman" / "root"), "--runroot",
            str(tmp / "podman" / "run"), "--tmpdir", str(tmp / "podman" / "tmp")]
    return Engine(f"podman {probe.stdout.strip()}", argv, dict(os.environ))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PARTS = ("pod create", "1st run -d", "2nd run -d")


def one_pod(e: Engine, name: str) -> tuple[float, ...]:
    """Seconds of each of PARTS."""
    port = free_port()
    t = [time.perf_counter()]
    e.run("pod", "create", "--name", name, "-p", f"127.0.0.1:{port}:80")
    t.append(time.perf_counter())
    e.run("run", "-d", "--pod", name, IMAGE, "httpd", "-f", "-p", "80", "-h", "/www")
    t.append(time.perf_counter())
    e.run("run", "-d", "--pod", name, IMAGE, "sleep", "600")
    t.append(time.perf_counter())
    return tuple(b - a for a, b in pairwise(t))


def bench(engines: list[Engine], runs: int) -> tuple[dict[str, dict[str, tuple[float, float]]],
                                                     dict[str, dict[str, float]], list[dict]]:  # type: ignore[type-arg]
    """The engines take turns, run by run, so a change in the host's load falls on both.
    Returns the rows, the median of each of PARTS per engine, and the OCI configs of
    ketch's last pod (for the runc floor)."""
    for e in engines:
        one_pod(e, "ketch-bench-warm")  # the infra image is made (or built) here
        e.run("pod", "rm", "-f", "ketch-bench-warm")
    created: dict[str, list[float]] = {e.name: [] for e in engines}
    removed: dict[str, list[float]] = {e.name: [] for e in engines}
    parts: dict[str, list[tuple[float, ...]]] = {e.name: [] for e in engines}
    for i in range(runs):
        for e in engines:
            name = f"ketch-bench-pod{i}"
            split = one_pod(e, name)
            parts[e.name].append(split)
            created[e.name].append(sum(split))
            if e.name == "ketch" and i == runs - 1:
                configs = pod_configs(Path(e.env["KETCH_ROOT"]),
                                      Path(e.env["KETCH_ROOT"]).parent / "floor-files")
            t = time.perf_counter()
            e.run("pod", "rm", "-f", "-t", "0", name)
            removed[e.name].append(time.perf_counter() - t)
    rows = {e.name: {"pod-2": (statistics.median(created[e.name]), min(created[e.name])),
                     "pod-rm": (statistics.median(removed[e.name]), min(removed[e.name]))}
            for e in engines}
    medians = {e.name: {name: statistics.median(p[n] for p in parts[e.name])
                        for n, name in enumerate(PARTS)} for e in engines}
    return rows, medians, configs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (real runc, bridges and iptables)")
    from ketch.images.busybox import write_rootfs_tar

    with tempfile.TemporaryDirectory(prefix="ketch-bench-pods-") as d:
        tmp = Path(d)
        rootfs = write_rootfs_tar(tmp / "busybox.tar")
        k = ketch_engine(tmp)
        k.run("import", "--change", 'CMD ["sh"]', str(rootfs), IMAGE)
        p = podman_engine(tmp)
        engines = [k]
        if p is not None:
            archive = tmp / "busybox-docker.tar"
            k.run("save", "-o", str(archive), IMAGE)
            p.run("load", "-i", str(archive))
            engines.append(p)
        try:
            results, parts, configs = bench(engines, args.runs)
        finally:
            if p is not None:
                p.run("pod", "rm", "-f", "-a", "-t", "0", check=False)
                p.run("rmi", "-a", "-f", check=False)
                for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
                    where = line.split()[1]
                    if where.startswith(str(tmp / "podman")):
                        subprocess.run(["umount", "-l", where], capture_output=True)
            for pod in k.run("pod", "ps", "-q", check=False).stdout.split():
                k.run("pod", "rm", "-f", pod, check=False)
            drop_host_network(tmp / "root", tmp / "run")
        floor = runc_floor(configs, rootfs, tmp, args.runs)
    if args.json:
        out = {e: {c: {"median": m, "min": n} for c, (m, n) in r.items()}
               for e, r in results.items()}
        out["runc floor"] = {"median": floor[0], "min": floor[1]}
        print(json.dumps(out, indent=2))
        return 0
    pod = next((n for n in results if n != "ketch"), None)
    print(f"{'benchmark':<10}{'ketch median (min)':>22}{'podman median (min)':>24}"
          f"{'ketch/podman':>14}   goal")
    for case, (m, n) in results["ketch"].items():
        ks = f"{m * 1000:8.1f} ms ({n * 1000:.1f})"
        if pod is None:
            print(f"{case:<10}{ks:>22}{'-':>24}{'-':>14}")
            continue
        pm, pn = results[pod][case]
        ps = f"{pm * 1000:8.1f} ms ({pn * 1000:.1f})"
        print(f"{case:<10}{ks:>22}{ps:>24}{m / pm:>14.2f}   "
              f"{GOAL if case == 'pod-2' else '-'}")
    for name, split in parts.items():
        print(f"pod-2 parts, {name} (medians): "
              + ", ".join(f"{part} {split[part] * 1000:.1f} ms" for part in PARTS))
    print(f"runc floor: create + start of the pod's {len(configs)} containers with ketch's "
          f"configs, no engine: {floor[0] * 1000:.1f} ms ({floor[1] * 1000:.1f}; each, "
          f"the infra first: {', '.join(f'{x * 1000:.1f}' for x in floor[2])} ms)"
          + (f", {floor[0] / results[pod]['pod-2'][0]:.2f}x podman's pod-2" if pod else ""))
    if pod is None:
        print("podman: not installed; ketch's numbers only")
    else:
        print(f"({pod})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
