"""Removed trees go to `<root>/trash` at once and are deleted later, in the background.

Why not delete them on the spot: deleting a ~10,000-entry tree takes system time that
the command removing it (`rmi`, an unpack that failed) need not wait for, and an unpack
running beside the deletion competes with it for the cores. A rename is one system call;
the emptier deletes later and pauses while a writer (pull, load, build, import: holders
of `gc.lock`, shared) is unpacking. That pause does not keep a later tree off the freed
inodes: ext4 without a journal (this project's machines) avoids an inode freed less than
60 s ago, 360 s while its inode-table block is dirty, and every new inode dirties its
block, so a tree unpacked where another was deleted minutes before scans past the freed
inodes for every file (issue 12). New trees are kept out of those block groups by where
they are made instead (`ketch.store.topdir`).

The emptier is a detached child (double fork, own session, standard streams on
/dev/null): the command that removed something returns at once. One emptier per root
(`trash.lock`); a killed one leaves its entries in place, and the next command that
removes something, or opens the image service, starts another. Entries never leave the
state root: the rename stays on its filesystem, and only names inside `trash/` are
deleted.
"""

from __future__ import annotations

# Imported here, not in the emptier: a child forked while another thread holds the
# import lock must not import. (This module loads only when something is removed.)
import errno
import fcntl
import os
import stat
import time

from ketch.mountinfo import mount_points_under

TRASH = "trash"
# A removal is often followed at once by a command that unpacks (`rmi` then `pull`):
# the emptier gives it this long to take the writers' lock before deleting anything.
START_DELAY = 2.0
# Entries deleted between two looks at the writers' lock.
_BATCH = 256

_count = 0

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def trash_dir(root: str) -> str:
    return os.path.join(root, TRASH)


def discard(root: str, path: str) -> bool:
    """Move `path` (a tree inside `root`) into the trash; False when it was not there.
    The caller starts the emptier (`empty_in_background`) when its work is done."""
    return take(root, path) is not None


def take(root: str, path: str) -> str | None:
    """Move `path` into the trash and return where it is now; None when it was not
    there. Of two processes taking the same path, one gets it (a rename)."""
    global _count
    from ketch.store.intents import owner_tag

    folder = trash_dir(root)
    _count += 1
    target = os.path.join(folder, f"{os.path.basename(path)}-{owner_tag()}-{_count}")
    try:
        os.rename(path, target)
    except FileNotFoundError:
        if not os.path.lexists(path):
            return None
        os.mkdir(folder, 0o700)  # the trash itself was missing
        os.rename(path, target)
    return target


def pending(root: str) -> bool:
    try:
        return bool(os.listdir(trash_dir(root)))
    except FileNotFoundError:
        return False


def empty_in_background(root: str) -> None:
    """Start a detached emptier for `root`'s trash (unless it is empty)."""
    if not pending(root):
        return
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # the first child exits at once; its child is init's
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, 65536)
        empty(root, delay=START_DELAY)
    finally:
        os._exit(0)


def empty(root: str, *, delay: float = 0.0) -> bool:
    """Delete everything in the trash, pausing while a writer holds `gc.lock`. False
    when another emptier is at work (it will take these entries too)."""
    folder = trash_dir(root)
    lock = os.open(os.path.join(root, "trash.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                   0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if delay:
            time.sleep(delay)
        gate = _WriterGate(root)
        try:
            failed: set[str] = set()
            while True:
                try:
                    names = set(os.listdir(folder))
                except FileNotFoundError:
                    return True
                if names <= failed:
                    return not names  # what is left cannot be deleted (EPERM, EBUSY)
                for name in names - failed:
                    try:
                        _delete_tree(folder, name, gate)
                    except OSError:
                        failed.add(name)
        finally:
            gate.close()
    finally:
        os.close(lock)


class _WriterGate:
    """Waits while some process unpacks into this root (holds gc.lock shared)."""

    def __init__(self, root: str) -> None:
        self.fd = os.open(os.path.join(root, "gc.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                          0o600)
        self.budget = _BATCH

    def tick(self) -> None:
        self.budget -= 1
        if self.budget > 0:
            return
        self.budget = _BATCH
        self.wait()

    def wait(self) -> None:
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                time.sleep(0.25)
                continue
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            return

    def close(self) -> None:
        os.close(self.fd)


def delete_tree(path: str, *, ignore_errors: bool = True) -> None:
    """Delete the tree at `path` now, in this process, with the emptier's walk (a
    symlink is removed, never followed; a mount inside is not entered); what cannot be
    deleted (a mount point, an immutable file) is left, as `shutil.rmtree(path,
    ignore_errors=True)` leaves it, or, without `ignore_errors`, the first such error
    is raised once the rest is deleted. For the trees a command removes itself (a
    container's directory, a volume): shutil's import (fnmatch and re) was a sixth of
    `rm` of an exited container, and its recursive walk failed on a directory a
    container had nested 1,000 deep (RecursionError), leaving it behind."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        _delete_tree(parent, name, _NO_GATE)
    except OSError:
        if not ignore_errors:
            raise


class _NoGate:
    """The gate of a deletion that does not wait for writers."""

    def tick(self) -> None:
        pass

    def wait(self) -> None:
        pass


_NO_GATE = _NoGate()
# Directories a walk keeps open at once; a subtree deeper than this is moved up into
# the top directory of the walk (a rename inside the tree) and emptied from there, so
# any depth is deleted with a bounded stack and a bounded number of descriptors.
_MAX_OPEN = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _delete_tree(parent: str, name: str, gate: _WriterGate | _NoGate,
                 errors: list[OSError] | None = None) -> None:
    """Delete `parent/name` and all below it, descriptor-relative (a symlink in the
    tree is removed, never followed; a directory on another filesystem, a mount, is
    not entered), looking at the gate every few entries. An entry that cannot be
    deleted is skipped; with `errors` the walk goes on and collects them, without it
    the first one is raised once the walk is done."""
    found: list[OSError] = [] if errors is None else errors
    pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        gate.wait()
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            _unlink(pfd, name, found)
            gate.tick()
        else:
            top = _open_dir(pfd, name, None, found)
            if top is not None:
                path = os.path.join(os.path.realpath(parent), name)
                try:
                    while _empty(top, path, gate, found):
                        pass
                finally:
                    os.close(top)
                _rmdir(pfd, name, found)
    finally:
        os.close(pfd)
    if errors is None and found:
        raise found[0]


def _empty(top: int, path: str, gate: _WriterGate | _NoGate, errors: list[OSError]) -> bool:
    """One depth-first pass deleting what the open directory `top` (at `path`) holds,
    iteratively; True when it moved deep subtrees up into `top`, which another pass
    then empties. A mount point inside is left as it is, with what it shows (a bind
    mount of the same filesystem has the same device number: the mount table says)."""
    dev = os.fstat(top).st_dev
    mounts = mount_points_under(path)
    # (descriptor, its entries, its name in the directory above, its path when the
    # tree holds mount points)
    stack: list[tuple[int, Any, str, str]] = [(top, os.scandir(top), "", path)]
    hoisted = False
    try:
        while stack:
            fd, entries, dname, dpath = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                if stack:  # a directory below top, now empty
                    os.close(fd)
                    _rmdir(stack[-1][0], dname, errors)
                    gate.tick()
                continue
            if not entry.is_dir(follow_symlinks=False):
                _unlink(fd, entry.name, errors)
                gate.tick()
                continue
            cpath = f"{dpath}/{entry.name}" if mounts else ""
            if cpath in mounts:
                errors.append(OSError(errno.EBUSY, "a mount inside the tree is left", cpath))
                continue
            if len(stack) >= _MAX_OPEN and not mounts:
                hoisted = _hoist(fd, entry.name, top, errors) or hoisted
                continue
            child = _open_dir(fd, entry.name, dev, errors)
            if child is not None:
                stack.append((child, os.scandir(child), entry.name, cpath))
    finally:
        for i, (fd, entries, _name, _path) in enumerate(stack):
            entries.close()
            if i:
                os.close(fd)
    return hoisted


def _open_dir(dir_fd: int, name: str, dev: int | None, errors: list[OSError]) -> int | None:
    """Open a directory of the tree to empty it; None when it is gone, or is a mount
    (another device than the walk's top), which is left as it is."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        errors.append(e)
        return None
    try:
        st = os.fstat(fd)
        if dev is not None and st.st_dev != dev:
            os.close(fd)
            errors.append(OSError(errno.EBUSY, "a mount inside the tree is left", name))
            return None
        # A tree from a layer may hold read-only directories: make it ours to empty.
        if st.st_mode & 0o700 != 0o700:
            os.chmod(fd, 0o700)
    except OSError as e:
        os.close(fd)
        errors.append(e)
        return None
    return fd


def _hoist(dir_fd: int, name: str, top: int, errors: list[OSError]) -> bool:
    """Move a subtree too deep for this pass up into the walk's top directory."""
    for n in range(1000):
        try:
            os.rename(name, f".deep-{os.getpid()}-{time.monotonic_ns()}-{n}",
                      src_dir_fd=dir_fd, dst_dir_fd=top)
            return True
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno == errno.ENOTEMPTY:  # the name is taken by a directory
                continue
            errors.append(e)
            return False
    return False


def _unlink(dir_fd: int, name: str, errors: list[OSError]) -> None:
    _remove(os.unlink, dir_fd, name, errors)


def _rmdir(dir_fd: int, name: str, errors: list[OSError]) -> None:
    _remove(os.rmdir, dir_fd, name, errors)


def _remove(remove: Callable[..., None], dir_fd: int, name: str,
            errors: list[OSError]) -> None:
    """`remove(name, dir_fd=dir_fd)`; gone already is fine, another error is collected."""
    try:
        remove(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as e:
        errors.append(e)
