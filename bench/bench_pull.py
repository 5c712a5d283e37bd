#!/usr/bin/env python3
"""Pull benchmark, run by hand as root (not by CI):

    python3 bench/bench_pull.py [--runs N] [--base TAR] [--no-tmpfs] [--settle S]
                                [--private-ext4 GB]

An image of a ~180 MB Debian bookworm base (gzip, as registries serve it) plus a small
app layer is pushed to Debian's `docker-registry` on a loopback port; then, for ketch and
beside it for docker (when `docker info` answers):

* **missing**: pull of the image with every layer missing (ketch: into an empty state
  root; docker: after `docker rmi`);
* **present**: pull of the same image again (every layer present, "Image is up to date").

ketch runs on the state root's filesystem (a directory under /var/tmp) and on a tmpfs;
docker on its own data root (normally the same filesystem as /var/tmp) and, for the tmpfs
rows, a second dockerd started here with its data root on the same tmpfs (its own
--exec-root, --pidfile and socket, no bridge and no iptables rules, so it leaves the
system's dockerd alone; stopped at the end). `--private-ext4 GB` adds rows on an ext4
without a journal made for the run (a sparse image file, loop-mounted), with a dockerd of
its own there too: no other work deletes files on it. Timings are wall clock, median of N runs (min
in brackets), ketch and docker alternating in one run so both meet the same filesystem
state (on ext4 without a journal, creating files right after many were deleted is slow:
see ketch's issue 12).

The base rootfs tarball comes from `--base`, else from KETCH_BENCH_DEBIAN, else it is made
once with mmdebstrap into /var/tmp/ketch-bench/ (needs the Debian mirror).
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
import time
from pathlib import Path

from benchlib import app_tar, ketch_command, print_ms_table

CACHE = Path("/var/tmp/ketch-bench")
REPO = "bench/app"


def debian_base(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get("KETCH_BENCH_DEBIAN"):
        return Path(os.environ["KETCH_BENCH_DEBIAN"])
    tar = CACHE / "debian-base.tar"
    if tar.exists():
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = CACHE / "partial-debian-base.tar"
    print("making the Debian base with mmdebstrap ...", file=sys.stderr)
    subprocess.run(["mmdebstrap", "--quiet", "--format=tar", "--variant=minbase",
                    "--include=ca-certificates,curl,procps,less,perl",
                    "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/*"
                    " \"$1\"/var/cache/apt/*.bin", "bookworm", str(partial)], check=True)
    os.replace(partial, tar)
    return tar


def gzipped(tar: Path) -> Path:
    """`gzip -n -6` of the tarball (what `docker push` sends), cached beside it."""
    out = tar.with_name(tar.name + ".gz")
    if not out.exists() or out.stat().st_mtime < tar.stat().st_mtime:
        tmp = out.with_name(out.name + ".partial")
        with open(tar, "rb") as src, open(tmp, "wb") as dst:
            subprocess.run(["gzip", "-n", "-6", "-c"], stdin=src, stdout=dst, check=True)
        os.replace(tmp, out)
    return out


def app_layer() -> tuple[bytes, bytes]:
    """A small app layer: its tar and its gzip."""
    import gzip

    raw = app_tar()
    return raw, gzip.compress(raw, mtime=0)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def sha256_stream_gunzip(path: Path) -> str:
    import gzip

    h = hashlib.sha256()
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# -- the registry ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_registry(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise SystemExit("Debian's docker-registry is not installed")
    root = work / "registry"
    root.mkdir()
    port = free_port()
    cfg = work / "registry.yml"
    cfg.write_text("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                   f"    rootdirectory: {root}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([binary, "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    for _ in range(150):
        try:
            c = http.client.HTTPConnection(host, timeout=2)
            c.request("GET", "/v2/")
            c.getresponse().read()
            c.close()
            return proc, host
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("docker-registry did not come up")


def push_blob(host: str, data_path: Path | None, data: bytes | None, digest: str) -> None:
    c = http.client.HTTPConnection(host, timeout=120)
    c.request("POST", f"/v2/{REPO}/blobs/uploads/")
    r = c.getresponse()
    r.read()
    loc = r.getheader("Location") or ""
    sep = "&" if "?" in loc else "?"
    body: object = data if data is not None else open(data_path, "rb")  # noqa: SIM115
    size = len(data) if data is not None else data_path.stat().st_size  # type: ignore[union-attr]
    c.request("PUT", f"{loc}{sep}digest={digest}", body=body,
              headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
    r = c.getresponse()
    r.read()
    if r.status != 201:
        raise SystemExit(f"blob push failed: HTTP {r.status}")
    c.close()


def publish(host: str, base_tar: Path) -> tuple[str, str]:
    base_gz = gzipped(base_tar)
    app_raw, app_gz = app_layer()
    base_digest, base_diff = sha256_file(base_gz), sha256_stream_gunzip(base_gz)
    app_digest = "sha256:" + hashlib.sha256(app_gz).hexdigest()
    app_diff = "sha256:" + hashlib.sha256(app_raw).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [base_diff, app_diff]},
    }).encode()
    cfg_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    push_blob(host, base_gz, None, base_digest)
    push_blob(host, None, app_gz, app_digest)
    push_blob(host, None, config, cfg_digest)
    gz = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": cfg_digest, "size": len(config)},
        "layers": [{"mediaType": gz, "digest": base_digest, "size": base_gz.stat().st_size},
                   {"mediaType": gz, "digest": app_digest, "size": len(app_gz)}],
    }).encode()
    c = http.client.HTTPConnection(host, timeout=30)
    c.request("PUT", f"/v2/{REPO}/manifests/1", body=manifest, headers={
        "Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    r = c.getresponse()
    r.read()
    if r.status != 201:
        raise SystemExit(f"manifest push failed: HTTP {r.status}")
    return f"{host}/{REPO}:1", cfg_digest


# -- timing ------------------------------------------------------------------------------------
def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode().strip()}")
    return elapsed


def stats(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), min(samples)


def docker_reachable(env: dict[str, str] | None = None) -> bool:
    if not shutil.which("docker"):
        return False
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=20, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def start_private_dockerd(work: Path, data: Path, tag: str
                          ) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """A dockerd of its own with its data root in `data` (a tmpfs, a private ext4); the
    environment that points the docker CLI at it. Its exec root, pid file and socket are
    under `work` (named by `tag`), it makes no bridge and no iptables rules and reads no
    daemon.json, so the system's dockerd (running or not) is not disturbed."""
    binary = shutil.which("dockerd")
    if binary is None:
        raise SystemExit("dockerd is not installed")
    config = work / f"dockerd-{tag}.json"
    config.write_text("{}\n")
    sock = work / f"dockerd-{tag}.sock"
    log = open(work / f"dockerd-{tag}.log", "wb")  # noqa: SIM115  # the daemon's, until it stops
    proc = subprocess.Popen(
        [binary, "--config-file", str(config), "--data-root", str(data / "docker"),
         "--exec-root", str(work / f"dockerd-exec-{tag}"),
         "--pidfile", str(work / f"dockerd-{tag}.pid"),
         "-H", f"unix://{sock}", "--bridge", "none", "--iptables=false",
         "--ip-masq=false", "--storage-driver", "overlay2"],
        stdout=log, stderr=log)
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}")
    for _ in range(120):
        if proc.poll() is not None:
            raise SystemExit(f"the {tag} dockerd exited: see {work}/dockerd-{tag}.log")
        if docker_reachable(env):
            return proc, env
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the {tag} dockerd did not come up")


def stop_dockerd(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()  # by its own pid: never the system's dockerd
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per timing (default 5)")
    ap.add_argument("--base", help="the Debian rootfs tarball to use as the base layer")
    ap.add_argument("--no-tmpfs", action="store_true", help="skip the tmpfs rows")
    ap.add_argument("--private-ext4", type=int, default=0, metavar="GB",
                    help="add rows on a loop-mounted ext4 without a journal of GB (sparse)"
                    " gigabytes made for the run, docker on it too")
    ap.add_argument("--settle", type=float, default=0, metavar="S",
                    help="wait S seconds before each timed all-missing pull, so that"
                    " inodes freed by the previous removal are reusable again (ext4)")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (ketch unpacks layers with their owners)")

    base = debian_base(opts.base)
    # Under /var/tmp: the filesystem ketch's and docker's state roots live on here.
    work = Path(tempfile.mkdtemp(prefix="bench-pull-", dir="/var/tmp"))
    ketch = ketch_command(work)
    have_docker = docker_reachable()
    registry, host = start_registry(work)
    tmpfs: Path | None = None
    private: Path | None = None
    dockerds: list[subprocess.Popen[bytes]] = []
    image_id = ""
    rows: list[tuple[str, tuple[float, float], tuple[float, float] | None]] = []
    try:
        print(f"publishing {base} ({base.stat().st_size / 1e6:.0f} MB) on {host} ...",
              file=sys.stderr)
        image, image_id = publish(host, base)
        places: list[tuple[str, Path, dict[str, str] | None]] = [
            ("state root fs", work, dict(os.environ) if have_docker else None)]
        if not opts.no_tmpfs:
            tmpfs = work / "tmpfs"
            tmpfs.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3g", "tmpfs", str(tmpfs)],
                           check=True)
            docker_env: dict[str, str] | None = None
            if have_docker or shutil.which("dockerd"):
                print("starting a dockerd with its data root on the tmpfs ...",
                      file=sys.stderr)
                proc, docker_env = start_private_dockerd(work, tmpfs, "tmpfs")
                dockerds.append(proc)
            places.append(("tmpfs", tmpfs, docker_env))
        if opts.private_ext4:
            image_file = work / "ext4.img"
            with open(image_file, "wb") as f:
                f.truncate(opts.private_ext4 << 30)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", str(image_file)],
                           check=True)
            private = work / "ext4"
            private.mkdir()
            # noinit_itable: no background zeroing of inode tables during the timings.
            subprocess.run(["mount", "-o", "loop,noinit_itable", str(image_file),
                            str(private)], check=True)
            docker_env = None
            if have_docker or shutil.which("dockerd"):
                print("starting a dockerd with its data root on the private ext4 ...",
                      file=sys.stderr)
                proc, docker_env = start_private_dockerd(work, private, "ext4")
                dockerds.append(proc)
            # Roots one level down, as /var/lib/ketch is: a directory made in the mount's
            # root would be spread by ext4's allocator however ketch makes it.
            (private / "ketch").mkdir()
            places.append(("private ext4", private / "ketch", docker_env))
        counter = iter(range(10000))

        def env_for(root: Path) -> dict[str, str]:
            return dict(os.environ, KETCH_ROOT=str(root), KETCH_RUN_ROOT=str(root / "run"))

        def docker_rmi(env: dict[str, str]) -> None:
            # By ID: every name of the image goes, so its layers really are removed.
            subprocess.run(["docker", "rmi", "-f", image_id], capture_output=True, env=env)

        for label, where, denv in places:
            km: list[float] = []
            dm: list[float] = []
            for _ in range(opts.runs):
                root = where / f"root-{next(counter)}"
                time.sleep(opts.settle)
                km.append(timed([*ketch, "pull", "-q", image], env_for(root)))
                subprocess.run([*ketch, "rmi", image], env=env_for(root), capture_output=True)
                shutil.rmtree(root, ignore_errors=True)
                if denv is not None:
                    docker_rmi(denv)
                    time.sleep(opts.settle)
                    dm.append(timed(["docker", "pull", "-q", image], denv))
            rows.append((f"pull, all missing ({label})", stats(km),
                         stats(dm) if dm else None))
            root = where / "root-present"
            timed([*ketch, "pull", "-q", image], env_for(root))
            kp = [timed([*ketch, "pull", "-q", image], env_for(root))
                  for _ in range(opts.runs * 2)]
            dp: list[float] = []
            if denv is not None:
                timed(["docker", "pull", "-q", image], denv)
                dp = [timed(["docker", "pull", "-q", image], denv)
                      for _ in range(opts.runs * 2)]
                docker_rmi(denv)
            rows.append((f"pull, all present ({label})", stats(kp),
                         stats(dp) if dp else None))
            shutil.rmtree(root, ignore_errors=True)
    finally:
        registry.terminate()
        registry.wait()
        if have_docker and image_id:
            subprocess.run(["docker", "rmi", "-f", image_id], capture_output=True)
        for proc in dockerds:
            stop_dockerd(proc)
        for mount in (tmpfs, private):
            if mount is not None:
                subprocess.run(["umount", "-R", str(mount)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print_ms_table(rows, have_docker or bool(dockerds), 34)
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
