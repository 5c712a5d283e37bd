"""A busybox root filesystem made offline from the host's busybox-static, as a tarball.

A user without Docker Hub (and the test suite, and scripts/demo.sh) gets a working base
image from it:

    python3 -m ketch.images.busybox busybox.tar
    ketch import --change 'CMD ["sh"]' busybox.tar busybox

The tarball holds /bin/busybox, a symlink for each applet the binary lists, the usual
top-level directories, minimal /etc/passwd and /etc/group (root, daemon, www-data,
nobody) and /www/index.html for `httpd -h /www`. Every entry has a fixed mtime, so the
same busybox binary always gives the same bytes (and the same image ID).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

BUSYBOX = "/bin/busybox"
MTIME = 1700000000

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "www-data:x:33:33:www-data:/var/www:/bin/false\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nnogroup:x:65534:\n"
INDEX_HTML = b"hello from busybox httpd\n"
DIRS = ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "tmp", "var", "var/www",
        "proc", "sys", "dev", "home", "www")


class BusyboxMissing(RuntimeError):
    """The host has no statically linked busybox to copy."""


def find_busybox() -> str:
    """The host's busybox binary; it must be static (Debian's busybox-static)."""
    path = shutil.which("busybox") or (BUSYBOX if os.path.exists(BUSYBOX) else None)
    if not path:
        raise BusyboxMissing("busybox-static is not installed: apt-get install -y busybox-static")
    return path


def applets(busybox: str) -> list[str]:
    """The applet paths the binary installs itself as (`busybox --list-full`)."""
    out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _entry(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = link
    ti.mtime = MTIME
    return ti


def write_rootfs_tar(dest: Path, busybox: str | None = None) -> Path:
    """Write the rootfs tarball (uncompressed) to `dest` (its directory must exist),
    atomically; returns `dest`."""
    busybox = busybox or find_busybox()
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            for d in DIRS:
                tf.addfile(_entry(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
            with open(busybox, "rb") as f:
                data = f.read()
            tf.addfile(_entry("bin/busybox", tarfile.REGTYPE, 0o755, len(data)),
                       io.BytesIO(data))
            seen = {"bin/busybox"}
            for applet in applets(busybox):
                name = applet.lstrip("/")
                if name in seen or "/" not in name:
                    continue
                seen.add(name)
                tf.addfile(_entry(name, tarfile.SYMTYPE, 0o777, link="/bin/busybox"))
            for name, body in (("etc/passwd", PASSWD.encode()), ("etc/group", GROUP.encode()),
                               ("www/index.html", INDEX_HTML)):
                tf.addfile(_entry(name, tarfile.REGTYPE, 0o644, len(body)), io.BytesIO(body))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python3 -m ketch.images.busybox OUT.tar   (then: ketch import "
              "--change 'CMD [\"sh\"]' OUT.tar busybox)", file=sys.stderr)
        return 2
    try:
        write_rootfs_tar(Path(argv[0]))
    except BusyboxMissing as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"Error: cannot write {argv[0]}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(argv[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
