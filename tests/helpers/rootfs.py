"""Offline test images: a busybox root filesystem made from Debian's busybox-static."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = "/bin/busybox"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "www-data:x:33:33:www-data:/var/www:/bin/false\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nnogroup:x:65534:\n"


def require_busybox() -> str:
    path = shutil.which("busybox") or (BUSYBOX if os.path.exists(BUSYBOX) else None)
    if not path:
        raise RuntimeError("busybox-static is not installed: apt-get install -y busybox-static")
    return path


def busybox_applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def write_busybox_rootfs_tar(dest: Path) -> Path:
    """Write a rootfs tarball (uncompressed) holding busybox and its applet symlinks."""
    busybox = require_busybox()
    dest.parent.mkdir(parents=True, exist_ok=True)

    def add_dir(tf: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.DIRTYPE
        ti.mode = mode
        ti.mtime = 1700000000
        tf.addfile(ti)

    def add_file(tf: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mode = mode
        ti.mtime = 1700000000
        tf.addfile(ti, io.BytesIO(data))

    tmp = dest.with_suffix(".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "tmp",
                  "var", "var/www", "proc", "sys", "dev", "home", "www"):
            add_dir(tf, d, 0o1777 if d == "tmp" else 0o755)
        with open(busybox, "rb") as f:
            add_file(tf, "bin/busybox", f.read(), 0o755)
        seen = {"bin/busybox"}
        for applet in busybox_applets(busybox):
            name = applet.lstrip("/")
            if name in seen or "/" not in name:
                continue
            seen.add(name)
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.SYMTYPE
            ti.linkname = "/bin/busybox"
            ti.mode = 0o777
            ti.mtime = 1700000000
            tf.addfile(ti)
        add_file(tf, "etc/passwd", PASSWD.encode())
        add_file(tf, "etc/group", GROUP.encode())
        add_file(tf, "www/index.html", b"hello from busybox httpd\n")
    os.replace(tmp, dest)
    return dest


def extract_rootfs(tar_path: Path, dest: Path) -> Path:
    """Unpack a trusted test rootfs tarball (for runtime tests that need a plain dir)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tf:
        tf.extractall(dest, filter="fully_trusted")
    return dest
