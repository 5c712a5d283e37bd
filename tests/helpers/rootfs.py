"""Offline test images: the busybox rootfs comes from ketch's own maker
(`ketch.images.busybox`, also what scripts/demo.sh and users without a registry use)."""

from __future__ import annotations

import tarfile
from pathlib import Path

from ketch.images.busybox import GROUP, PASSWD, applets, find_busybox, write_rootfs_tar

__all__ = ["GROUP", "PASSWD", "busybox_applets", "extract_rootfs", "require_busybox",
           "write_busybox_rootfs_tar"]

require_busybox = find_busybox
busybox_applets = applets


def write_busybox_rootfs_tar(dest: Path) -> Path:
    """Write a rootfs tarball (uncompressed) holding busybox and its applet symlinks."""
    return write_rootfs_tar(dest)


def extract_rootfs(tar_path: Path, dest: Path) -> Path:
    """Unpack a trusted test rootfs tarball (for runtime tests that need a plain dir)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tf:
        tf.extractall(dest, filter="fully_trusted")
    return dest
