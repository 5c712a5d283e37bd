"""Paths inside a root directory, resolved as if that directory were "/".

A container's root filesystem (or a layer being unpacked) is untrusted: any component
of a path in it may be a symlink to "/", to "../../..", or be swapped for one while we
work (CVE-2018-15664, the `docker cp` race). The rules here, the same as
github.com/cyphar/filepath-securejoin and the kernel's openat2(RESOLVE_IN_ROOT):

* ".." never climbs above the root;
* a symlink is expanded as if the root were "/" (absolute targets restart at the root);
* at most MAX_SYMLINKS expansions per lookup, so link loops end in an error.

Two flavours: `resolve_in_root`/`safe_join` return a host path (simple, but racy if the
tree changes afterwards), and `InRoot` walks with directory file descriptors and
O_NOFOLLOW, so a component swapped for a symlink mid-walk is expanded in-root or
refused, never followed to the host. Extraction uses `InRoot`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ketch.errors import UnsafeArchive

# The kernel's own limit for one path lookup (MAXSYMLINKS); a deeper chain is a loop
# for all practical purposes.
MAX_SYMLINKS = 40

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def clean_member_name(name: str) -> str:
    """Turn an archive member name into a clean relative path ("" for the root).

    Leading "/" and "./" are dropped (GNU tar and moby do the same, so absolute names
    are contained, not refused); ".." is resolved lexically, and a name that climbs
    above the root is refused, as moby's "breakout" check does.
    """
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafeArchive(f"archive entry {name!r} points outside the destination")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve_in_root(root: Path | str, path: str | Path, *, follow_final: bool = True) -> Path:
    """The host path that `path` names inside `root`, symlinks resolved as if root were "/".

    Missing components are kept as they are, so the result may not exist yet (it is
    where a new file would go). With follow_final=False a final symlink is not expanded
    (`docker cp` copies a link itself unless it ends in "/." or -L is given).
    This checks the tree as it is now; for a tree that may change concurrently, use
    `InRoot`, which works on file descriptors.
    """
    root_path = Path(root)
    pending = list(reversed(_split(str(path))))
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        if not pending and not follow_final:
            resolved.append(part)
            break
        candidate = root_path.joinpath(*resolved, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise UnsafeArchive(f"too many levels of symbolic links in {str(path)!r}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved.clear()
            pending.extend(reversed(_split(target)))
            continue
        resolved.append(part)
    return root_path.joinpath(*resolved)


def safe_join(root: Path | str, rel: str | Path) -> Path:
    """securejoin.SecureJoin: `rel` under `root`, every symlink resolved inside `root`."""
    return resolve_in_root(root, rel, follow_final=True)


class InRoot:
    """File-descriptor walks under one open root directory that never leave it.

    Every component is opened with O_NOFOLLOW relative to its parent's descriptor; a
    symlink is read with readlinkat and its target walked again from the root (absolute)
    or from the current directory (relative). Nothing outside the root is ever opened.
    """

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd

    def open_dir(
        self, rel: str, *, create: bool = False, mode: int = 0o755
    ) -> tuple[int, str] | None:
        """Open the directory `rel` (every symlink in it expanded in-root).

        Returns a new descriptor (the caller closes it) and the resolved path relative to
        the root, or None when a component is missing and `create` is false. With
        `create`, missing directories are made with `mode`. A component that exists but
        is not a directory raises NotADirectoryError.
        """
        stack: list[int] = []  # descriptors of the directories below the root
        names: list[str] = []
        pending = list(reversed(_split(rel)))
        links = 0
        try:
            while pending:
                part = pending.pop()
                if part == "..":
                    if stack:
                        os.close(stack.pop())
                        names.pop()
                    continue
                cur = stack[-1] if stack else self.root_fd
                try:
                    fd = os.open(part, _DIR_FLAGS, dir_fd=cur)
                except FileNotFoundError:
                    if not create:
                        return None
                    try:
                        os.mkdir(part, mode, dir_fd=cur)
                    except FileExistsError:
                        pass  # someone else made it; the open below checks what it is
                    pending.append(part)
                    continue
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(part, dir_fd=cur, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise NotADirectoryError(
                            errno.ENOTDIR, "not a directory", "/".join([*names, part])
                        ) from None
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise UnsafeArchive(
                            f"too many levels of symbolic links in {rel!r}"
                        ) from None
                    target = os.readlink(part, dir_fd=cur)
                    if target.startswith("/"):
                        while stack:
                            os.close(stack.pop())
                        names.clear()
                    pending.extend(reversed(_split(target)))
                    continue
                stack.append(fd)
                names.append(part)
            result = stack.pop() if stack else os.dup(self.root_fd)
            return result, "/".join(names)
        finally:
            for fd in stack:
                os.close(fd)

    def open(
        self, rel: str, flags: int = os.O_RDONLY, mode: int = 0o644, *, follow_final: bool = True
    ) -> int:
        """Open `rel` in-root with `flags`; the final symlink is expanded in-root or not at all.

        With follow_final=False a final symlink makes the open fail with ELOOP (O_NOFOLLOW),
        unless flags include O_PATH, which opens the link itself. Parent directories must
        exist (O_CREAT creates only the last component), as with open(2).
        """
        links = 0
        while True:
            parent, _, name = rel.rpartition("/")
            if name in ("", ".", ".."):
                # The path names a directory by its last component: let the directory
                # walk resolve it, since ".." must not be opened relative to the root.
                if flags & (os.O_WRONLY | os.O_RDWR):
                    raise IsADirectoryError(errno.EISDIR, "is a directory", rel)
                got = self.open_dir(rel)
                if got is None:
                    raise FileNotFoundError(errno.ENOENT, "no such file or directory", rel)
                return got[0]
            got = self.open_dir(parent)
            if got is None:
                raise FileNotFoundError(errno.ENOENT, "no such file or directory", rel)
            pfd, resolved_parent = got
            try:
                try:
                    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=pfd)
                except OSError as e:
                    if e.errno != errno.ELOOP or not follow_final:
                        raise
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise UnsafeArchive(f"too many levels of symbolic links in {rel!r}") from None
                    target = os.readlink(name, dir_fd=pfd)
                    base = "" if target.startswith("/") else resolved_parent
                    rel = f"{base}/{target}"
            finally:
                os.close(pfd)


def open_in_root(
    root: Path | str, rel: str, flags: int = os.O_RDONLY, mode: int = 0o644, *,
    follow_final: bool = True,
) -> int:
    """Open `rel` under `root` without ever leaving it (see `InRoot.open`); returns an fd."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return InRoot(root_fd).open(rel, flags, mode, follow_final=follow_final)
    finally:
        os.close(root_fd)

