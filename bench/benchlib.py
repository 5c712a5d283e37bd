"""What several benchmarks share: the small app layer pushed and pulled on top of the
Debian base, the ketch-beside-Docker table of millisecond rows, the `ketch` command as
users run it, and the removal of what a bench root's containers set up on the host."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def ketch_command(tmp: Path) -> list[str]:
    """`ketch` as users run it: $KETCH_BIN when set, else the `-I -S` launcher that
    scripts/install-deps.sh installs (src/ketch/launcher.py), written into `tmp` for
    this checkout's src/ and the interpreter running the bench. Never `python -m ketch`:
    `site` processing (every .pth file of site-packages) would add 5-10 ms to each
    command, which users of the launcher do not pay."""
    script = os.environ.get("KETCH_BIN")
    if not script:
        script = str(tmp / "ketch")
        env = dict(os.environ, PYTHONPATH=str(SRC))
        subprocess.run([sys.executable, "-m", "ketch.launcher", script], check=True,
                       cwd=tmp, env=env, capture_output=True)
    return [script]


def app_tar() -> bytes:
    """A small app layer (two directories, 40 small files), the same bytes every time."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("app", "app/lib"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1700000000
            tf.addfile(ti)
        for i in range(40):
            data = (f"# module {i}\n" + "x = 1\n" * 200).encode()
            ti = tarfile.TarInfo(f"app/lib/mod{i}.py")
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def print_ms_table(rows: list[tuple[str, tuple[float, float], tuple[float, float] | None]],
                   have_docker: bool, width: int) -> None:
    """Rows of (name, ketch (median, min), docker (median, min) or None), in seconds,
    printed in milliseconds with ketch/docker ratios of the medians."""
    print(f"{'benchmark':<{width}}{'ketch median (min)':>22}{'docker median (min)':>24}"
          f"{'ketch/docker':>14}")
    for name, k, d in rows:
        ks = f"{k[0] * 1000:8.1f} ms ({k[1] * 1000:.1f})"
        if d is None:
            print(f"{name:<{width}}{ks:>22}{'-':>24}{'-':>14}")
        else:
            ds = f"{d[0] * 1000:8.1f} ms ({d[1] * 1000:.1f})"
            print(f"{name:<{width}}{ks:>22}{ds:>24}{k[0] / d[0]:>14.2f}")
    if not have_docker:
        print("docker: no Docker engine reachable (`docker info` failed); ketch's numbers only")


def drop_host_network(root: Path, run_root: Path) -> None:
    """Remove a bench state root's host objects, after its containers: its bridge,
    firewall chains and DNS processes, and the mount of its netns directory."""
    from ketch.containers.rootfs import unmount
    from ketch.engine import Engine

    with Engine(root, run_root) as engine:
        engine.networks.uninstall()
    unmount(run_root / "netns")


def pod_configs(root: Path, keep: Path) -> list[dict]:  # type: ignore[type-arg]
    """The OCI configs ketch wrote for the containers of `root`'s one live pod, the infra
    (the one that runs the pause loop) first; the files and
    directories they bind-mount are copied into `keep` (they go with the pod)."""
    import json
    import shutil

    configs = [json.loads(p.read_text()) for p in sorted(root.glob("containers/*/config.json"))]
    for n, config in enumerate(configs):
        for i, m in enumerate(config["mounts"]):
            src = Path(m.get("source", ""))
            binds = m.get("type") == "bind" or {"bind", "rbind"} & set(m.get("options", []))
            if binds and src.is_absolute():
                copy_to = keep / f"c{n}-m{i}"
                keep.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    copy_to.mkdir()
                else:
                    shutil.copyfile(src, copy_to)
                m["source"] = str(copy_to)

    from ketch.pods.infra import PAUSE_CMD

    return sorted(configs, key=lambda config: config["process"]["args"] != PAUSE_CMD)


def runc_floor(configs: list[dict], rootfs_tar: Path, tmp: Path,  # type: ignore[type-arg]
               runs: int) -> tuple[float, float, list[float]]:
    """Median and min seconds of `runc create` + the start of the pod's containers, one
    after the other, with the configs ketch generated for them (`pod_configs`) and no
    engine at all: what runc alone takes for the pod, a floor for any engine that starts
    the same containers through it. The start is made as ketch makes it, through runc's
    exec FIFO with no `runc start` process (`OCIRuntime.start`, which an engine running
    `runc start` pays ~5 ms more per container for). Stricter than the engines' own runs: the
    root is a plain directory (no overlay mount), the standard streams /dev/null (no
    monitor), the network namespace an empty one, the IPC and UTS namespaces they share
    pinned once beforehand (as ketch pins a pod's before its containers are created).
    Third: each container's median, in order (the infra first)."""
    import copy
    import json
    import statistics
    import time

    work = tmp / "runc-floor"
    rootfs = work / "rootfs"
    rootfs.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(rootfs_tar), "-C", str(rootfs)], check=True)
    netns = "ketch-bench-floor"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    pins = {kind: work / kind for kind in ("ipc", "uts")}
    for pin in pins.values():
        pin.touch()
    subprocess.run(["unshare", f"--ipc={pins['ipc']}", f"--uts={pins['uts']}", "true"],
                   check=True)
    from ketch.runtime.oci import OCIRuntime

    state = work / "runc"
    null = subprocess.DEVNULL
    runtime = OCIRuntime("runc", state)

    def runc(*args: str) -> None:
        subprocess.run(["runc", "--root", str(state), *args], check=True, stdin=null,
                       stdout=null, stderr=null)

    def bundle(config: dict, n: int, run: int) -> Path:  # type: ignore[type-arg]
        config = copy.deepcopy(config)
        where = work / f"c{n}"
        where.mkdir(exist_ok=True)
        config["root"]["path"] = str(rootfs)
        config["process"]["terminal"] = False
        if n:
            config["process"]["args"] = ["sleep", "600"]
        for ns in config["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/run/netns/{netns}"
            elif ns["type"] in pins and ns.get("path"):
                ns["path"] = str(pins[ns["type"]])
        config["linux"]["cgroupsPath"] = f"/ketch/bench-floor-{run}-{n}"
        (where / "config.json").write_text(json.dumps(config))
        return where

    took = []
    each: list[list[float]] = [[] for _ in configs]
    try:
        for run in range(runs):
            names = []
            t = time.perf_counter()
            for n, config in enumerate(configs):
                started = time.perf_counter()
                name = f"ketch-bench-floor-{run}-{n}"
                pid_file = work / f"{name}.pid"
                runc("create", "--bundle", str(bundle(config, n, run)),
                     "--pid-file", str(pid_file), name)
                names.append(name)
                runtime.start(name)
                each[n].append(time.perf_counter() - started)
            took.append(time.perf_counter() - t)
            for name in reversed(names):
                runc("delete", "-f", name)
    finally:
        for line in subprocess.run(["runc", "--root", str(state), "list", "-q"],
                                   capture_output=True, text=True).stdout.split():
            subprocess.run(["runc", "--root", str(state), "delete", "-f", line],
                           capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        for pin in pins.values():
            subprocess.run(["umount", str(pin)], capture_output=True)
    return statistics.median(took), min(took), [statistics.median(e) for e in each]
