"""`-u user[:group]` and `--group-add` resolved against a container's own files.

The rootfs is untrusted: its /etc/passwd may be a symlink to anywhere. Files are
opened with ketch.archive's in-root walk (symlinks resolved as if the rootfs were `/`,
every component opened with O_NOFOLLOW from its parent's fd), and only regular files of
a sane size are read. Semantics and messages follow Docker (moby/sys/user).
"""

from __future__ import annotations

import errno
import os
import stat

from ketch.errors import InvalidArgument, UnsafeArchive
from ketch.runtime.spec import User
from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from _typeshed import StrPath

MAX_ID = 2**31 - 1
# An /etc/passwd bigger than this is not a passwd file we want to hold in memory.
MAX_DB_SIZE = 16 * 1024 * 1024


@value(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@value(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


# openat2(2) (Linux 5.6): the same syscall number on every architecture ketch runs on.
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437}.get(os.uname().machine)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_openat2_missing = False


def _openat2_in_root(root: StrPath, path: str, flags: int) -> int | None:
    """openat2 with RESOLVE_IN_ROOT: the kernel resolves `path` (symlinks and `..`
    included) as if `root` were "/". None when the kernel cannot do it (too old, a
    seccomp filter, or EAGAIN after a concurrent rename): then walk in Python."""
    global _openat2_missing
    if _SYS_OPENAT2 is None or _openat2_missing:
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    how = (ctypes.c_uint64 * 3)(flags | os.O_CLOEXEC, 0,
                                _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    dirfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd),
                          ctypes.c_char_p(os.fsencode(path)), ctypes.byref(how),
                          ctypes.c_size_t(ctypes.sizeof(how)))
        err = ctypes.get_errno() if fd < 0 else 0
    finally:
        os.close(dirfd)
    if fd >= 0:
        return int(fd)
    if err in (errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL):
        _openat2_missing = True
        return None
    if err == errno.EAGAIN:
        return None
    raise OSError(err, os.strerror(err), path)


def read_file_in_root(root: StrPath, path: str) -> str | None:
    """Text of `path` inside `root`, or None when it does not exist or is not a regular
    file. Symlinks are expanded as if `root` were "/", so nothing outside `root` is ever
    opened, even if the tree changes meanwhile: by the kernel (openat2 RESOLVE_IN_ROOT)
    where it can, else by ketch.archive's in-root walk, which opens every component
    relative to its parent's descriptor (and whose import costs `run` ~7 ms)."""
    flags = os.O_RDONLY | os.O_NONBLOCK
    try:
        fd = _openat2_in_root(root, path, flags)
        if fd is None:
            from ketch.archive.paths import open_in_root

            fd = open_in_root(os.fspath(root), path, flags)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, UnsafeArchive):
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EACCES):
            return None
        raise
    try:
        st = os.fstat(fd)
        # A device or fifo named /etc/passwd would block or never end.
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_DB_SIZE:
            return None
        data = os.read(fd, MAX_DB_SIZE + 1)
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def _parse_id(text: str) -> int | None:
    if not text or not text.isdigit():
        return None
    return int(text)


def parse_passwd(text: str) -> list[PasswdEntry]:
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 4:
            continue
        uid, gid = _parse_id(parts[2]), _parse_id(parts[3])
        if uid is None or gid is None:
            continue
        home = parts[5] if len(parts) > 5 else ""
        entries.append(PasswdEntry(parts[0], uid, gid, home))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 3:
            continue
        gid = _parse_id(parts[2])
        if gid is None:
            continue
        members = tuple(m for m in (parts[3].split(",") if len(parts) > 3 else []) if m)
        entries.append(GroupEntry(parts[0], gid, members))
    return entries


def _check_range(value: int) -> int:
    if value < 0 or value > MAX_ID:
        raise InvalidArgument(f"uids and gids must be in range 0-{MAX_ID}")
    return value


def resolve_user(root: StrPath, user_spec: str | None) -> User:
    """Resolve Docker's `-u` value (`name`, `uid`, `name:group`, `uid:gid`, ...).

    An empty spec means root. HOME comes from the passwd entry, else "/".
    """
    spec = (user_spec or "").strip()
    user_arg, _, group_arg = spec.partition(":")
    if not user_arg:
        user_arg = "0"
    passwd_text = read_file_in_root(root, "/etc/passwd")
    passwd = parse_passwd(passwd_text) if passwd_text is not None else []

    uid_arg = _parse_id(user_arg)
    match = next((p for p in passwd if p.name == user_arg
                  or (uid_arg is not None and p.uid == uid_arg)), None)
    if match is not None:
        uid, gid, home, name = match.uid, match.gid, match.home or "/", match.name
    elif uid_arg is not None:
        uid, gid, home, name = _check_range(uid_arg), 0, "/", ""
    else:
        raise InvalidArgument(
            f"unable to find user {user_arg}: no matching entries in passwd file")

    additional: list[int] = []
    if group_arg or name:
        group_text = read_file_in_root(root, "/etc/group")
        groups = parse_group(group_text) if group_text is not None else []
        if group_arg:
            gid_arg = _parse_id(group_arg)
            found = next((g for g in groups if g.name == group_arg
                          or (gid_arg is not None and g.gid == gid_arg)), None)
            if found is not None:
                gid = found.gid
            elif gid_arg is not None:
                gid = _check_range(gid_arg)
            else:
                raise InvalidArgument(
                    f"unable to find group {group_arg}: no matching entries in group file")
        else:
            # Supplementary groups only in the implicit form, as Docker.
            additional = [g.gid for g in groups if name in g.members]
    return User(uid=uid, gid=gid, additional_gids=additional, home=home)


def resolve_groups(root: StrPath, names: list[str]) -> list[int]:
    """`--group-add` values (names or numbers) → GIDs."""
    if not names:
        return []
    group_text = read_file_in_root(root, "/etc/group")
    groups = parse_group(group_text) if group_text is not None else []
    out: list[int] = []
    for name in names:
        gid = _parse_id(name)
        found = next((g for g in groups if g.name == name), None)
        if found is not None:
            out.append(found.gid)
        elif gid is not None:
            out.append(_check_range(gid))
        else:
            raise InvalidArgument(
                f"Unable to find group {name}: no matching entries in group file")
    return out
