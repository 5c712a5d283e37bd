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


# The Debian roots the tests use, by name: the packages each holds (comma-separated).
DEBIAN_ROOTS = {"postgres": "postgresql", "node": "nodejs,npm"}


def debian_rootfs_tar(name: str) -> Path:
    """`CACHE/<name>-bookworm-rootfs.tar`: a bookworm minbase rootfs with the packages
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
    return CACHE / f"{name}-bookworm-rootfs.tar"


def make(name: str) -> str | None:
    """Make the root `name` unless another maker has (waiting on its lock): an error, or
    None."""
    tar = tar_of(name)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}-bookworm-rootfs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in CACHE.glob(f"partial-{name}-*.tar"):  # of a maker killed on the way
            stale.unlink(missing_ok=True)
        if tar.exists() and tar.stat().st_size > 0:
            return None
        partial = tar.with_name(f"partial-{name}-{os.getpid()}.tar")
        proc = subprocess.run(
            ["mmdebstrap", "--quiet", "--format=tar", "--variant=minbase",
             f"--include={DEBIAN_ROOTS[name]}",
             "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*.bin",
             "bookworm", str(partial)], capture_output=True, text=True, timeout=1500)
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            return f"mmdebstrap failed: {proc.stderr.strip()[-500:]}"
        os.replace(partial, tar)
    return None
