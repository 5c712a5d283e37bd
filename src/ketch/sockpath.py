"""The unix socket path of the CRI server (`ketch system cri`), with the rules the Engine
API service follows too (api/server.py, which keeps its own copy: a front door of the
documented layering imports only the Engine and the leaf modules it lists).

Three rules: a path is taken over only from a server that is gone
(`claim`: a socket that answers belongs to a running server and is refused in one line);
the new socket shows at its path already listening (it is bound, given its mode and
made to listen under `staging`, then renamed: a client that waits for the path to appear,
as scripts, kubelets and the tests do, could otherwise connect between bind and listen
and be refused); and at exit a server removes the path only while it is still its own
socket (`remove_if_same`: a server started after this one stopped listening may hold
it by then).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from ketch.errors import InvalidArgument

SUN_PATH_MAX = 107  # sun_path's 108 bytes, with the terminating NUL


def claim(path: str) -> None:
    """Make `path`'s directory, and remove a socket that a server left there: refused
    when it is not a socket, or when a server still answers on it."""
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
    except OSError as e:
        raise InvalidArgument(f"cannot listen on {path}: {e.strerror}") from None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidArgument(f"cannot listen on {path}: it exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left behind by a server that did not exit cleanly
    else:
        raise InvalidArgument(f"cannot listen on {path}: another service is using it")
    finally:
        probe.close()


def staging(path: str, server: str) -> str:
    """The temporary name, next to `path`, to bind and listen under before the rename
    (`path` itself when the temporary name would not fit in a socket address). A stale
    one of this process's pid is removed."""
    name = os.path.join(os.path.dirname(path), f".ketch-{server}-{os.getpid()}.sock")
    if len(os.fsencode(name)) > SUN_PATH_MAX:
        return path
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)
    return name


def identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, None when there is none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def remove_if_same(path: str, mine: tuple[int, int] | None) -> None:
    """Remove `path` if it is still the socket `identity` saw."""
    if mine is not None and identity(path) == mine:
        with contextlib.suppress(OSError):
            os.unlink(path)
