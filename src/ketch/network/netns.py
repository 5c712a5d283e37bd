"""Named network namespaces as bind-mounted files, the way `ip netns` keeps them (and,
with `pin`, the IPC and UTS namespaces a pod's containers share).

A namespace lives as long as something references it; a bind mount of
/proc/<tid>/ns/net onto a file under <run root>/netns keeps it after the creating
thread is gone, and runc joins it by that path. The unshare/setns dance runs in a
short-lived helper thread: network namespaces are per thread, so the caller's thread
never changes namespace even if something fails halfway. What the thread brings back
is a netlink socket opened inside the namespace, which keeps working from any thread.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading

from ketch.network.netlink import Netlink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import TypeVar

    from _typeshed import StrPath

    T = TypeVar("T")

CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUTS = 0x04000000
_CLONE_FLAGS = {"ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS}
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc: ctypes.CDLL | None = None
_prepared_dirs: set[str] = set()
_prepare_lock = threading.Lock()


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(_c().mount(source.encode() if source else None, target.encode(), None,
                      ctypes.c_ulong(flags), None), f"mount {target}")


def _in_thread(fn: Callable[[], T]) -> T:
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # handed to the caller's thread below
            error.append(e)

    t = threading.Thread(target=run, name="ketch-netns")
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def prepare_dir(directory: StrPath) -> None:
    """Make the namespace directory a shared mount point, as iproute2 does for
    /run/netns: processes that copied the mount table earlier (a container's mount
    namespace, a PrivateTmp service) then see our unmounts, instead of pinning dead
    namespaces forever."""
    key = os.fspath(directory)
    if key in _prepared_dirs:
        return
    with _prepare_lock:
        if key in _prepared_dirs:
            return
        os.makedirs(key, exist_ok=True)
        if not _is_mount_point(directory):
            _mount(key, key, MS_BIND | MS_REC)
        _mount(None, key, MS_SHARED | MS_REC)
        _prepared_dirs.add(key)


def _is_mount_point(path: StrPath) -> bool:
    from ketch.mountinfo import is_mount_point

    return is_mount_point(path)


def release_dir(directory: StrPath) -> None:
    """Undo prepare_dir (used when a whole run root goes away, e.g. in tests)."""
    key = os.fspath(directory)
    while _is_mount_point(directory):
        if _c().umount2(key.encode(), MNT_DETACH) != 0:
            break
    _prepared_dirs.discard(key)


def create(path: StrPath) -> Netlink:
    """Create a network namespace pinned at `path` with its loopback up; returns a
    netlink socket inside it."""
    path = os.fspath(path)
    prepare_dir(os.path.dirname(path))

    def work() -> Netlink:
        _check(_c().unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        os.close(fd)
        try:
            _mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, MS_BIND)
        except BaseException:
            os.unlink(path)
            raise
        nl = Netlink()
        nl.set_up(1)  # lo is always index 1 in a fresh namespace
        return nl

    return _in_thread(work)


def pin(paths: Mapping[str, StrPath]) -> None:
    """New namespaces of the kinds named ("ipc", "uts"), each pinned at its path, as
    CRI-O's pinns makes a sandbox's: containers join them by path, so none has to wait
    for another's process to exist. `remove` each path to drop them."""
    flags = 0
    for kind, path in paths.items():
        flags |= _CLONE_FLAGS[kind]
        prepare_dir(os.path.dirname(path))

    def work() -> None:
        # (a thread's IPC and UTS namespaces are its own, as its network namespace is)
        _check(_c().unshare(flags), "unshare")
        made: list[StrPath] = []
        try:
            for kind, path in paths.items():
                fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
                os.close(fd)
                made.append(path)
                _mount(f"/proc/self/task/{threading.get_native_id()}/ns/{kind}",
                       os.fspath(path), MS_BIND)
        except BaseException:
            for path in made:
                remove(path)
            raise

    _in_thread(work)


def enter(path: StrPath) -> Netlink:
    """A netlink socket inside the existing namespace at `path`."""

    def work() -> Netlink:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_c().setns(fd, CLONE_NEWNET), f"setns {path}")
        finally:
            os.close(fd)
        return Netlink()

    return _in_thread(work)


def run_in(path: StrPath, fn: Callable[[], T]) -> T:
    """Run `fn` in a helper thread that has joined the namespace at `path`."""

    def work() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_c().setns(fd, CLONE_NEWNET), f"setns {path}")
        finally:
            os.close(fd)
        return fn()

    return _in_thread(work)


def remove(path: StrPath) -> bool:
    """Unmount and delete a namespace file; False when there was nothing to remove.

    The kernel frees the namespace (and the container end of its veths) once the last
    reference is gone; this drops ours."""
    key = os.fsencode(path)
    found = False
    while _c().umount2(key, MNT_DETACH) == 0:
        found = True
    try:
        os.unlink(path)
        found = True
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
    return found
