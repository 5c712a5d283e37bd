"""Offline test images: the busybox rootfs comes from ketch's own maker
(`ketch.images.busybox`, also what scripts/demo.sh and users without a registry use)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from ketch.images.busybox import GROUP, PASSWD, applets, find_busybox, write_rootfs_tar

__all__ = ["GROUP", "PASSWD", "busybox_applets", "extract_rootfs", "require_busybox",
           "debian_rootfs_tar", "write_busybox_rootfs_tar"]

require_busybox = find_busybox
busybox_applets = applets


def write_busybox_rootfs_tar(dest: Path) -> Path:
    """Write a rootfs tarball (uncompressed) holding busybox and its applet symlinks."""
    return write_rootfs_tar(dest)


def extract_rootfs(tar_path: Path, dest: Path) -> Path:
    """Unpack a trusted test rootfs tarball (for runtime tests that need a plain dir)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tf:
        # Extraction filters came in 3.11.4; Debian 12's python3 is 3.11.2, where
        # extractall is what the "fully_trusted" filter selects anyway.
        if hasattr(tarfile, "fully_trusted_filter"):
            tf.extractall(dest, filter="fully_trusted")
        else:
            tf.extractall(dest)
    return dest


# -- Debian rootfs tarballs made with mmdebstrap, cached between test sessions -----------
CACHE = Path(os.environ.get("KETCH_TEST_CACHE", "/var/tmp/ketch-test-cache"))


# The Debian roots the tests use, by name: the packages each holds (comma-separated),
# unpacked from the mirror's .debs without installing them (mmdebstrap's extract
# variant: no dpkg database, no maintainer scripts), with the users the tests need. A
# minbase root, which installs every package with dpkg, took 30 s of a fresh machine
# (35 CPU-seconds) for node and 18 s (22) for postgres; unpacked, 8.3 s and 9.0 s. What
# the maintainer scripts would have made, the hook below makes: /etc/passwd and
# /etc/group from base-passwd's masters, and postgresql-common's postgres user.
_BASE = "dash,coreutils,base-files,base-passwd"
DEBIAN_ROOTS = {"postgres": f"postgresql,{_BASE}", "node": f"nodejs,npm,{_BASE}"}
_USERS = ('cp "$1"/usr/share/base-passwd/passwd.master "$1"/etc/passwd'
          ' && cp "$1"/usr/share/base-passwd/group.master "$1"/etc/group')
_POSTGRES_USER = (' && echo "postgres:x:100:102:PostgreSQL administrator:/var/lib/postgresql'
                  ':/bin/sh" >> "$1"/etc/passwd && echo "postgres:x:102:" >> "$1"/etc/group'
                  ' && mkdir -p "$1"/var/lib/postgresql && chown 100:102'
                  ' "$1"/var/lib/postgresql')
_HOOKS = {"postgres": _USERS + _POSTGRES_USER, "node": _USERS}


def debian_rootfs_tar(name: str) -> Path:
    """`CACHE/<name>-bookworm-extract.tar`: a bookworm root with the packages
    DEBIAN_ROOTS gives for `name`, from the Debian mirror, made once. One maker at a
    time (xdist workers, scripts/test.sh's early start, another test run): the others
    wait on its lock and take its tarball."""
    from tests.conftest import IN_CI, require, require_root

    require_root()
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap is not installed")
    tar = tar_of(name)
    if tar.exists() and tar.stat().st_size > 0:
        return tar
    error = make(name)
    if error:
        if IN_CI:
            pytest.fail(error)
        pytest.skip(error)
    return tar


def tar_of(name: str) -> Path:
    """Where the root `name` of DEBIAN_ROOTS is kept."""
    return CACHE / f"{name}-bookworm-extract.tar"


def make(name: str) -> str | None:
    """Make the root `name` unless another maker has (waiting on its lock): an error, or
    None."""
    tar = tar_of(name)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}-bookworm-extract.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in CACHE.glob(f"partial-{name}-*.tar"):  # of a maker killed on the way
            stale.unlink(missing_ok=True)
        if tar.exists() and tar.stat().st_size > 0:
            return None
        partial = tar.with_name(f"partial-{name}-{os.getpid()}.tar")
        proc = subprocess.run(
            ["mmdebstrap", "--quiet", "--format=tar", "--variant=extract",
             f"--include={DEBIAN_ROOTS[name]}", f"--extract-hook={_HOOKS[name]}",
             "bookworm", str(partial)], capture_output=True, text=True, timeout=1500)
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            return f"mmdebstrap failed: {proc.stderr.strip()[-500:]}"
        os.replace(partial, tar)
    return None
