#!/usr/bin/env python3
"""CRI benchmark, run by hand (not by CI), as root:

    python3 bench/bench_cri.py [--runs N] [--json]

Drives ketch's CRI server (`ketch system cri`, this checkout's src/) and Debian's
containerd with its CRI plugin, each on a private socket, state root and CNI network
(Debian's bridge + host-local + portmap, a bridge and subnet of its own), with the
generated CRI v1 stubs as a kubelet does, and measures for a two-container busybox pod:

  pod-up      RunPodSandbox + CreateContainer x2 + StartContainer x2, until
              ContainerStatus reports both containers running; its parts (medians)
              are printed below the table: the sandbox, the two creates, the two
              starts, the wait for "running"
  pod-down    StopPodSandbox + RemovePodSandbox of that pod
  runc floor  after both: `runc create` + the start of the pod's three containers
              with the configs ketch generated for its last pod and no engine
              (benchlib.runc_floor): what any runtime that starts them through runc
              pays at least; and the CNI floor: the ADD of one sandbox's network by the
              conflist's plugins, with no engine (both runtimes run them)
  memory      RSS and PSS (/proc/PID/smaps_rollup) of the processes a runtime keeps
              per pod while it runs: ketch's conmon monitors (infra and both members)
              and any health timers; containerd's containerd-shim-runc-v2 (one per
              pod); and the server's own RSS/PSS after the runs

Goal (issue 15): pod-up and pod-down at most 0.5x containerd's time, and less memory per
pod than containerd's shim. The runtimes take turns run by run, so a change in the
host's load falls on both; each timing is the median of N runs, min in brackets. Both
pull the same images once beforehand from a loopback `ketch registry serve`: busybox
(Debian's busybox-static) and ketch's pause image, which is containerd's sandbox image
too. Everything made is removed at the end: sandboxes, containerd's mounts, the CNI
bridge and the portmap plugin's chains, ketch's bridge and chains.
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

from benchlib import pod_configs, runc_floor

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

GOAL = "0.5x containerd"


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


def _pids(marker: str, names: tuple[bytes, ...] = (), anywhere: bytes = b"") -> list[int]:
    """Live processes whose argv[0] base name is one of `names` (or whose command line
    contains `anywhere`) and whose command line mentions `marker`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if not cmd or marker.encode() not in cmd:
            continue
        argv0 = os.path.basename(cmd.split(b"\0", 1)[0])
        if argv0 in names or (anywhere and anywhere in cmd):
            out.append(int(entry.name))
    return out


def per_pod_processes(served, marker: str) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    if served.name == "ketch":
        return {"conmon": _pids(marker, (b"conmon",)),
                "health timer": _pids(marker, anywhere=b"healthtimer")}
    return {"shim": _pids(marker, (b"containerd-shim-runc-v2", b"containerd-shim"))}


def sandbox_config(cri, name: str, logs: Path):  # type: ignore[no-untyped-def]
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="bench", uid=f"uid-{name}",
                                        attempt=0),
        hostname=name, log_directory=str(logs))


SECCOMP = {"runtime-default": "RuntimeDefault", "unconfined": "Unconfined"}
PROFILE = "RuntimeDefault"  # (--seccomp)


def container_config(cri, name: str, image: str):  # type: ignore[no-untyped-def]
    # the seccomp profile spelled out: RuntimeDefault is ketch's default when the kubelet
    # sends none, containerd's default then is unconfined; both do the same work here
    seccomp = cri.SecurityProfile(profile_type=getattr(cri.SecurityProfile, PROFILE))
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name, attempt=0), image=cri.ImageSpec(image=image),
        command=["sleep", "3600"], log_path=f"{name}/0.log",
        linux=cri.LinuxContainerConfig(
            security_context=cri.LinuxContainerSecurityContext(seccomp=seccomp)))


PARTS = ("sandbox", "2 creates", "2 starts", "wait")


def pod_up(served, image: str, name: str, logs: Path  # type: ignore[no-untyped-def]
           ) -> tuple[float, str, tuple[float, ...]]:
    """(seconds, sandbox ID, seconds of each of PARTS)"""
    cri, rt = served.cri, served.runtime
    logs = logs / served.name / name
    for c in ("first", "second"):  # the kubelet makes these before CreateContainer
        (logs / c).mkdir(parents=True, exist_ok=True)
    config = sandbox_config(cri, name, logs)
    t = time.perf_counter()
    sid = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    marks = [time.perf_counter()]
    ids = [rt.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, config=container_config(cri, c, image),
        sandbox_config=config)).container_id for c in ("first", "second")]
    marks.append(time.perf_counter())
    for cid in ids:
        rt.StartContainer(cri.StartContainerRequest(container_id=cid))
    marks.append(time.perf_counter())
    deadline = time.monotonic() + 60
    while True:
        states = [rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid)).status.state
                  for cid in ids]
        if all(s == cri.CONTAINER_RUNNING for s in states):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {served.name}: containers not running: {states}")
        time.sleep(0.005)
    end = time.perf_counter()
    edges = [t, *marks, end]
    return end - t, sid, tuple(b - a for a, b in pairwise(edges))


def pod_down(served, sid: str) -> float:  # type: ignore[no-untyped-def]
    cri, rt = served.cri, served.runtime
    t = time.perf_counter()
    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid))
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid))
    return time.perf_counter() - t


def push_images(tmp: Path, host: str, busybox_tar: Path) -> dict[str, str]:
    """busybox and ketch's pause image pushed to the loopback registry (as the tests'
    `cri_images` fixture does)."""
    from tests.conftest import ketch_command

    from ketch.pods.infra import PAUSE_IMAGE

    pusher = tmp / "pusher"
    base = [*ketch_command(), "--root", str(pusher), "--run-root", str(pusher / "run")]
    names = {"registry": host, "busybox": f"{host}/cri/busybox:1",
             "pause": f"{host}/cri/pause:1"}

    def k(*args: str) -> None:
        subprocess.run([*base, *args], check=True, capture_output=True, timeout=120)

    k("import", "--change", 'CMD ["sh"]', str(busybox_tar), names["busybox"])
    k("pod", "create", "--name", "maker")  # makes the pause image
    k("pod", "rm", "-f", "maker")
    k("tag", PAUSE_IMAGE, names["pause"])
    for n in ("busybox", "pause"):
        k("push", names[n])
    return names


def start_registry(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    from tests.conftest import ketch_command

    proc = subprocess.Popen([*ketch_command(), "registry", "serve", "--addr", "127.0.0.1:0",
                             "--root", str(tmp / "registry"), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"bench: ketch registry serve printed {line!r}")
    return proc, line.removeprefix("listening on ")


def cni_floor(conf_dir: Path, runs: int) -> tuple[float, float]:
    """Median and min seconds of the CNI ADD of one sandbox's network with no engine: the
    conflist's plugins (and loopback, which runtimes add first) run one after the
    other, each given the previous one's result, as a runtime runs them, each into a
    new network namespace (deleted again, with DEL, untimed)."""
    conflist = json.loads(next(conf_dir.glob("*.conflist")).read_text())

    def call(command: str, plugin: dict, netns: str, prev: object = None,  # type: ignore[type-arg]
             ifname: str = "eth0") -> object:
        conf = dict(plugin, cniVersion=conflist["cniVersion"], name=conflist["name"])
        if prev is not None:
            conf["prevResult"] = prev
        env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=netns,
                   CNI_NETNS=f"/run/netns/{netns}", CNI_IFNAME=ifname, CNI_PATH="/usr/lib/cni")
        proc = subprocess.run([f"/usr/lib/cni/{plugin['type']}"], input=json.dumps(conf),
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"bench: CNI {plugin['type']} {command}: {proc.stdout}{proc.stderr}")
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    took = []
    for run in range(runs):
        netns = f"ketch-bench-cni-{run}"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        try:
            t = time.perf_counter()
            call("ADD", {"type": "loopback"}, netns, ifname="lo")
            prev = None
            for plugin in conflist["plugins"]:
                prev = call("ADD", plugin, netns, prev) or prev
            took.append(time.perf_counter() - t)
            for plugin in reversed(conflist["plugins"]):
                call("DEL", plugin, netns, prev)
        finally:
            subprocess.run(["ip", "netns", "del", netns], check=True)
    return statistics.median(took), min(took)


def bench(servers: list, markers: dict[str, str], image: str, runs: int,  # type: ignore[type-arg]
          logs: Path, root: Path) -> tuple[dict[str, dict[str, object]], list[dict]]:  # type: ignore[type-arg]
    """The rows per server, and the OCI configs of ketch's last pod (root: ketch's)."""
    up: dict[str, list[float]] = {s.name: [] for s in servers}
    down: dict[str, list[float]] = {s.name: [] for s in servers}
    mem: dict[str, list[tuple[int, int, int]]] = {s.name: [] for s in servers}
    parts: dict[str, list[tuple[float, ...]]] = {s.name: [] for s in servers}
    for s in servers:  # a first pod each, not timed: caches, the CNI plugins' first use
        _, sid, _ = pod_up(s, image, "warm", logs)
        pod_down(s, sid)
    for i in range(runs):
        for s in servers:
            took, sid, split = pod_up(s, image, f"pod{i}", logs)
            up[s.name].append(took)
            parts[s.name].append(split)
            time.sleep(0.3)  # let the monitors settle after start before reading them
            procs = per_pod_processes(s, markers[s.name])
            pids = [p for group in procs.values() for p in group]
            if not pids:
                raise SystemExit(f"bench: {s.name}: no per-pod processes found")
            kib = [_memory_kib(p) for p in pids]
            mem[s.name].append((sum(r for r, _ in kib), sum(p for _, p in kib), len(pids)))
            if s.name == "ketch" and i == runs - 1:
                configs = pod_configs(root, root.parent / "floor-files")
            down[s.name].append(pod_down(s, sid))
    out: dict[str, dict[str, object]] = {}
    for s in servers:
        srss, spss = _memory_kib(s.proc.pid)
        rss = [m[0] for m in mem[s.name]]
        pss = [m[1] for m in mem[s.name]]
        out[s.name] = {
            "pod-up": (statistics.median(up[s.name]), min(up[s.name])),
            "pod-down": (statistics.median(down[s.name]), min(down[s.name])),
            "per-pod RSS KiB": statistics.median(rss),
            "per-pod PSS KiB": statistics.median(pss),
            "per-pod processes": mem[s.name][-1][2],
            "pod-up parts": {name: statistics.median(p[n] for p in parts[s.name])
                             for n, name in enumerate(PARTS)},
            "server RSS KiB": srss, "server PSS KiB": spss,
        }
    return out, configs


def _check_left(tmp: Path, root: Path, ctrd, knet) -> None:  # type: ignore[no-untyped-def]
    """Say what the run left behind: bridges, mounts, monitors, shims."""
    import tomllib

    bridges = [tomllib.loads((root / "network.toml").read_text())["network"]["bridge_name"]]
    bridges += [n.bridge for n in (ctrd, knet) if n is not None]
    left = [f"bridge {b}" for b in bridges
            if subprocess.run(["ip", "link", "show", b], capture_output=True).returncode == 0]
    left += [f"mount {line.split()[1]}" for line in
             Path("/proc/self/mounts").read_text().splitlines() if str(tmp) in line]
    left += [f"process {p}" for p in _pids(str(tmp), (b"conmon", b"containerd-shim-runc-v2"))]
    for what in left:
        print(f"bench: left behind: {what}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seccomp", choices=SECCOMP, default="runtime-default",
                    help="the members' profile (the kubelet's seccompDefault: runtime-default)")
    args = ap.parse_args()
    global PROFILE
    PROFILE = SECCOMP[args.seccomp]
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (real runc, bridges and iptables)")
    try:
        import grpc  # noqa: F401
        from cri_api.v1 import api_pb2  # noqa: F401
    except ImportError:
        raise SystemExit("bench: needs grpcio and container-runtime-interface-api") from None
    from tests.conftest import isolated_network_config, teardown_root
    from tests.cri.conftest import CniNetwork, Containerd, Cri

    from ketch.images.busybox import write_rootfs_tar

    have_containerd = bool(shutil.which("containerd")) and Path("/usr/lib/cni/bridge").exists()
    with tempfile.TemporaryDirectory(prefix="ketch-bench-cri-") as d:
        tmp = Path(d)
        logs = tmp / "logs"
        logs.mkdir()
        registry, host = start_registry(tmp)
        root = tmp / "ketch-root"
        root.mkdir()
        isolated_network_config(root)
        servers: list = []  # type: ignore[type-arg]
        ctrd = None
        knet = None
        try:
            busybox = write_rootfs_tar(tmp / "busybox.tar")
            names = push_images(tmp, host, busybox)
            # sandboxes on a CNI network of their own, as containerd's below (the host's
            # /etc/cni/net.d may hold another runtime's network)
            knet = CniNetwork(tmp / "knet")
            servers.append(Cri(root, tmp / "cri.sock", tmp / "cri.log", knet.conf_dir))
            markers = {"ketch": str(root)}
            if have_containerd:
                ctrd = Containerd(tmp / "ctrd", host, names["pause"])
                servers.append(ctrd)
                markers["containerd"] = str(ctrd.top)
            for s in servers:
                cri = s.cri
                s.images.PullImage(cri.PullImageRequest(
                    image=cri.ImageSpec(image=names["busybox"])))
            results, configs = bench(servers, markers, names["busybox"], args.runs, logs,
                                     root)
            cni = cni_floor(knet.conf_dir, args.runs)
        except BaseException:
            for log in (tmp / "cri.log", *((ctrd.log,) if ctrd else ())):
                if log.exists():
                    print(f"--- {log.name} (last lines)\n"
                          + "\n".join(log.read_text().splitlines()[-15:]), file=sys.stderr)
            raise
        finally:
            for s in servers:
                try:
                    s.remove_everything()
                except Exception as exc:  # noqa: BLE001 - clean up the rest regardless
                    print(f"bench: {s.name}: cleanup: {exc}", file=sys.stderr)
                s.stop()
            if ctrd is not None:
                ctrd.teardown()
            if knet is not None:
                knet.cleanup()
            teardown_root(root, root / "run")
            teardown_root(tmp / "pusher", tmp / "pusher" / "run")
            from ketch.containers.rootfs import unmount

            for run_root in (root / "run", tmp / "pusher" / "run"):
                unmount(run_root / "netns")
            registry.terminate()
            registry.wait(timeout=20)
            _check_left(tmp, root, ctrd, knet)
        floor = runc_floor(configs, busybox, tmp, args.runs)
    if args.json:
        print(json.dumps({**results, "runc floor": {"median": floor[0], "min": floor[1]},
                          "CNI floor": {"median": cni[0], "min": cni[1]}}, indent=2))
        return 0
    k = results["ketch"]
    c = results.get("containerd")
    print(f"{'benchmark':<18}{'ketch median (min)':>22}{'containerd median (min)':>26}"
          f"{'ratio':>8}   goal")
    for case in ("pod-up", "pod-down"):
        km, kn = k[case]  # type: ignore[misc]
        ks = f"{km * 1000:8.1f} ms ({kn * 1000:.1f})"
        if c is None:
            print(f"{case:<18}{ks:>22}{'-':>26}{'-':>8}")
            continue
        cm, cn = c[case]  # type: ignore[misc]
        cs = f"{cm * 1000:8.1f} ms ({cn * 1000:.1f})"
        print(f"{case:<18}{ks:>22}{cs:>26}{km / cm:>8.2f}   {GOAL}")
    for label, key, goal in (("per-pod RSS", "per-pod RSS KiB", "< containerd's shim"),
                             ("per-pod PSS", "per-pod PSS KiB", "-"),
                             ("server RSS", "server RSS KiB", "-"),
                             ("server PSS", "server PSS KiB", "-")):
        kv = k[key] / 1024  # type: ignore[operator]
        ks = f"{kv:8.2f} MiB"
        if c is None:
            print(f"{label:<18}{ks:>22}{'-':>26}{'-':>8}")
            continue
        cv = c[key] / 1024  # type: ignore[operator]
        print(f"{label:<18}{ks:>22}{f'{cv:8.2f} MiB':>26}{kv / cv:>8.2f}   {goal}")
    print(f"per-pod processes: ketch {k['per-pod processes']} (conmon per container and "
          f"the infra), containerd {c['per-pod processes'] if c else '-'} (shim)")
    for r in (k, c):
        if r is not None:
            split: dict[str, float] = r["pod-up parts"]  # type: ignore[assignment]
            print(f"pod-up parts, {'ketch' if r is k else 'containerd'} (medians): "
                  + ", ".join(f"{name} {split[name] * 1000:.1f} ms" for name in PARTS))
    print(f"runc floor: create + start of the pod's {len(configs)} containers with ketch's "
          f"configs, no engine: {floor[0] * 1000:.1f} ms ({floor[1] * 1000:.1f}; each, "
          f"the infra first: {', '.join(f'{x * 1000:.1f}' for x in floor[2])} ms)"
          + (f", {floor[0] / c['pod-up'][0]:.2f}x containerd's pod-up" if c else ""))  # type: ignore[index]
    print(f"CNI floor: ADD of one sandbox's network (loopback and the conflist's "
          f"plugins), no engine: {cni[0] * 1000:.1f} ms ({cni[1] * 1000:.1f})"
          + (f"; with the runc floor {(floor[0] + cni[0]) / c['pod-up'][0]:.2f}x "  # type: ignore[index]
             "containerd's pod-up" if c else ""))
    if c is None:
        print("containerd: not installed (or no /usr/lib/cni/bridge); ketch's numbers only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
