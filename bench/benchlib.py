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
