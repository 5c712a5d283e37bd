"""A container's root filesystem: overlayfs over the image's unpacked layers.

`mount_spec` says what to mount (containerd's snapshotter idea: compute, then mount);
`mount`/`unmount` do the privileged part with mount(2) directly, avoiding a process
launch per container.
"""

from __future__ import annotations

import ctypes
import errno
import os
from _thread import allocate_lock

from ketch.errors import KetchError
from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from _typeshed import StrPath

_libc: ctypes.CDLL | None = None
MNT_DETACH = 2
# The working directory is the process's: a mount with relative lower dirs changes it for
# a moment, and threads that mount at once (the Engine API service's workers, kube
# play's starts) must not see each other's.
_CWD = allocate_lock()


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        # CDLL(None): the libc this interpreter already links (ctypes.util.find_library
        # would run `ldconfig -p`, a process launch per container start)
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


@value
class OverlayMount:
    lower: Sequence[StrPath]  # topmost first
    upper: StrPath
    work: StrPath
    target: StrPath
    # No syncs of the upper dir, ever: for containers that are deleted when they exit
    # (`--rm`), where durability buys nothing and unmounting then skips a filesystem sync.
    volatile: bool = False

    def options(self, relative_to: str | None = None) -> str:
        lowers = [os.path.relpath(p, relative_to) if relative_to else os.fspath(p)
                  for p in self.lower]
        # Redirects and metacopy entries cannot be expressed in a layer tar: keep them off
        # so every upper dir can become a layer (Docker's overlay2 does the same).
        return (f"lowerdir={':'.join(lowers)},upperdir={self.upper},workdir={self.work},"
                "redirect_dir=off,metacopy=off" + (",volatile" if self.volatile else ""))


def is_mounted(path: StrPath) -> bool:
    from ketch.mountinfo import is_mount_point

    return is_mount_point(path)


def mount_overlay(m: OverlayMount) -> None:
    for d in (m.upper, m.work, m.target):
        os.makedirs(d, exist_ok=True)
    if is_mounted(m.target):
        return
    # A volatile mount leaves this marker behind and overlayfs refuses the work dir until
    # it is gone (the mount before was never synced: fine for a container we delete).
    incompat = os.path.join(m.work, "work", "incompat")
    if os.path.exists(incompat):
        import shutil

        shutil.rmtree(incompat, ignore_errors=True)
    # Relative lowerdirs from the layer store keep the option string under a page even
    # for images with many layers (mount(2) takes at most 4096 bytes of options).
    base = os.path.commonpath([os.fspath(p) for p in m.lower]) if m.lower else None
    opts = m.options(base if base and len(m.lower) > 1 else None)
    relative = bool(base and len(m.lower) > 1)
    with _CWD:
        cwd = os.getcwd() if relative else None
        try:
            if cwd is not None:
                os.chdir(base)  # type: ignore[arg-type]  # base is set whenever cwd is
            rc = libc().mount(b"overlay", os.fsencode(m.target), b"overlay", 0,
                              opts.encode())
            e = ctypes.get_errno() if rc != 0 else 0
        finally:
            if cwd is not None:
                os.chdir(cwd)
    if rc != 0:
        raise KetchError(f"mounting the container's root filesystem failed:"
                         f" {os.strerror(e)}")


def bind_mount(source: StrPath, target: StrPath, readonly: bool = False) -> None:
    MS_BIND, MS_REMOUNT, MS_RDONLY = 4096, 32, 1
    if libc().mount(os.fsencode(source), os.fsencode(target), None, MS_BIND, None) != 0:
        e = ctypes.get_errno()
        raise KetchError(f"bind mount of {source} failed: {os.strerror(e)}")
    if readonly:
        libc().mount(None, os.fsencode(target), None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)


def unmount(target: StrPath) -> None:
    """Detach the mount; missing or already-unmounted targets are fine.

    MNT_DETACH returns at once instead of waiting for overlayfs's sync on unmount (about
    0.1 s here); the container's processes are gone by then, so nothing holds it.
    """
    for _ in range(3):
        if libc().umount2(os.fsencode(target), MNT_DETACH) == 0:
            continue
        e = ctypes.get_errno()
        if e in (errno.EINVAL, errno.ENOENT):
            return
        if e == errno.EBUSY:
            libc().umount2(os.fsencode(target), MNT_DETACH)
            return
        raise KetchError(f"unmounting {target} failed: {os.strerror(e)}")
