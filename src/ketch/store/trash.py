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
import fcntl
import os
import stat
import time

TRASH = "trash"
# A removal is often followed at once by a command that unpacks (`rmi` then `pull`):
# the emptier gives it this long to take the writers' lock before deleting anything.
START_DELAY = 2.0
# Entries deleted between two looks at the writers' lock.
_BATCH = 256

_count = 0


def trash_dir(root: str) -> str:
    return os.path.join(root, TRASH)


def discard(root: str, path: str) -> bool:
    """Move `path` (a tree inside `root`) into the trash; False when it was not there.
    The caller starts the emptier (`empty_in_background`) when its work is done."""
    global _count
    from ketch.store.intents import owner_tag

    folder = trash_dir(root)
    _count += 1
    target = os.path.join(folder, f"{os.path.basename(path)}-{owner_tag()}-{_count}")
    try:
        os.rename(path, target)
    except FileNotFoundError:
        if not os.path.lexists(path):
            return False
        os.mkdir(folder, 0o700)  # the trash itself was missing
        os.rename(path, target)
    return True


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


def delete_tree(path: str) -> None:
    """Delete the tree at `path` now, in this process, with the emptier's walk (a
    symlink is removed, never followed); what cannot be deleted (a mount point, an
    immutable file) is left, as `shutil.rmtree(path, ignore_errors=True)` leaves it.
    For small trees a command removes itself (a container's directory): shutil's
    import (fnmatch and re) was a sixth of `rm` of an exited container."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        _delete_tree(parent, name, _NO_GATE)
    except FileNotFoundError:
        pass
    except OSError:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


class _NoGate:
    """The gate of a deletion that does not wait for writers."""

    def tick(self) -> None:
        pass

    def wait(self) -> None:
        pass


_NO_GATE = _NoGate()


def _delete_tree(parent: str, name: str, gate: _WriterGate | _NoGate) -> None:
    """Delete `parent/name` and all below it, descriptor-relative (a symlink in the
    tree is removed, never followed), looking at the gate every few entries."""
    top = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        gate.wait()
        _delete_entry(top, name, gate)
    finally:
        os.close(top)


def _delete_entry(dir_fd: int, name: str, gate: _WriterGate | _NoGate) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dir_fd)
        except FileNotFoundError:
            return
        try:
            # A tree from a layer may hold read-only directories: make it ours to empty.
            if st.st_mode & 0o700 != 0o700:
                os.chmod(fd, 0o700)
            for entry in os.scandir(fd):
                if entry.is_dir(follow_symlinks=False):
                    _delete_entry(fd, entry.name, gate)
                else:
                    try:
                        os.unlink(entry.name, dir_fd=fd)
                    except FileNotFoundError:
                        pass
                    gate.tick()
        finally:
            os.close(fd)
        try:
            os.rmdir(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
    else:
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
    gate.tick()
