"""Events: the record of state changes that `ketch events` and `GET /events` show.

Daemonless, so there is no process to hand events to: every ketch process that changes
state (the CLI, the API service, a container's exit command) appends the event to a
journal on disk, and readers follow that journal. This module writes (cheap, on every
command's path); `reader` reads, filters and follows (only `events` needs it).

The journal is `<root>/events/events.log`, one JSON object per line.

Writers open the file with O_APPEND and write each event as one `write()`, so events of
concurrent processes never interleave, and take no lock. When the file would pass
`max_bytes()` a writer renames it to `events.log.1` (replacing the one before) under a
lock held only for the rename, so the journal stays at most about twice that size.
Readers take no lock: they notice a rotation by the inode behind the name changing.

Emitting costs one open, fstat, write and close (tens of microseconds) and imports
nothing beyond `os` and `time`: the line is encoded here, not by the `json` package,
which `run` and `create` do not load otherwise. An event that cannot be written (a full
disk) is dropped: the state change it reports has already happened.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

FILE = "events.log"
OLD_FILE = "events.log.1"
DEFAULT_MAX_BYTES = 1 << 20
# The legacy top-level fields (status, id, from) dockerd still sends for these types.
_LEGACY = ("container", "image")


def directory(root: str) -> str:
    return os.path.join(root, "events")


def max_bytes() -> int:
    """The size at which the journal file is rotated (`KETCH_EVENTS_MAX_BYTES`)."""
    try:
        return max(4096, int(os.environ.get("KETCH_EVENTS_MAX_BYTES") or DEFAULT_MAX_BYTES))
    except ValueError:
        return DEFAULT_MAX_BYTES


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _q(text: str) -> str:
    """`text` as a JSON string (UTF-8 left as it is, as Go's encoder does)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    out = []
    for c in text:
        esc = _ESCAPES.get(c)
        if esc is not None:
            out.append(esc)
        elif c < " " or c == "\x7f" or c in "\u2028\u2029":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def encode(type_: str, action: str, actor_id: str, attributes: Mapping[str, object],
           time_ns: int) -> bytes:
    """One event as dockerd's JSON message (moby api/types/events.Message), one line."""
    attrs = ",".join(f"{_q(str(k))}:{_q(str(v))}" for k, v in sorted(attributes.items()))
    legacy = ""
    if type_ in _LEGACY:
        legacy = f'"status":{_q(action)},"id":{_q(actor_id)},'
        if type_ == "container" and "image" in attributes:
            legacy += f'"from":{_q(str(attributes["image"]))},'
    seconds = time_ns // 1_000_000_000
    line = (f'{{{legacy}"Type":{_q(type_)},"Action":{_q(action)},"Actor":{{"ID":'
            f'{_q(actor_id)},"Attributes":{{{attrs}}}}},"scope":"local","time":{seconds},'
            f'"timeNano":{time_ns}}}\n')
    return line.encode("utf-8", "surrogateescape")


def emit(root: str, type_: str, action: str, actor_id: str,
         attributes: Mapping[str, object] | None = None) -> None:
    """Append one event to the journal of the state root `root`."""
    try:
        line = encode(type_, action, actor_id, attributes or {}, time.time_ns())
        append(directory(root), line)
    except OSError:
        pass


def append(folder: str, line: bytes) -> None:
    path = os.path.join(folder, FILE)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(path, flags, 0o600)
    try:
        if os.fstat(fd).st_size + len(line) > max_bytes():
            fd = _rotate(folder, path, fd, flags)
        os.write(fd, line)
    finally:
        os.close(fd)


def _rotate(folder: str, path: str, fd: int, flags: int) -> int:
    """Move the full file aside (unless another writer just did) and return an fd of
    the new one. Writers that opened the old file before the rename finish their one
    line into it; readers still find it as events.log.1."""
    import fcntl

    lock = os.open(os.path.join(folder, "rotate.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                   0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            os.replace(path, os.path.join(folder, OLD_FILE))
        new = os.open(path, flags, 0o600)
        os.close(fd)
        return new
    finally:
        os.close(lock)
