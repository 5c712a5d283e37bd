"""Reading the events journal: replay from a time, follow like `tail -f`, filter as
dockerd does (moby daemon/events/filter.go).

A reader holds no lock and never blocks a writer. It keeps the file it reads open, so a
rotation (the writer renaming events.log to events.log.1) costs it nothing: at the end
of its file it sees the name point at a new inode, reads what is left of the old one,
and goes on with the new one from its start.
"""

from __future__ import annotations

import os
import time

from ketch.errors import InvalidArgument
from ketch.events import FILE, OLD_FILE, directory
from ketch.fastjson import loads

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

# "pod": Podman's pod events and filter (ketch.pods), beside dockerd's
FILTER_KEYS = frozenset({"config", "container", "daemon", "event", "image", "label",
                         "network", "node", "plugin", "pod", "scope", "secret", "service",
                         "type", "volume"})
TYPES = frozenset({"builder", "config", "container", "daemon", "image", "network", "node",
                   "plugin", "pod", "secret", "service", "volume"})
# dockerd matches these event filters as prefixes ("exec_start" matches
# "exec_start: sh -c ..."); others exactly
_PREFIX_EVENTS = frozenset({"health_status", "exec_create", "exec_start"})
POLL_SECONDS = 0.1


class Filter:
    """dockerd's event filter: each key given must match (values of one key: any)."""

    def __init__(self, filters: dict[str, list[str]] | None = None) -> None:
        self.f = {k: list(v) for k, v in (filters or {}).items() if v}
        for key in self.f:
            if key not in FILTER_KEYS:
                raise InvalidArgument(f"invalid filter '{key}'")
        for t in self.f.get("type", []):
            if t not in TYPES:
                raise InvalidArgument(f"unknown event type: {t}")
        for s in self.f.get("scope", []):
            if s not in ("local", "swarm"):
                raise InvalidArgument(f"invalid filter 'scope={s}'")

    def _exact(self, key: str, *values: str) -> bool:
        wanted = self.f.get(key)
        return wanted is None or any(v in wanted for v in values if v)

    def _fuzzy(self, key: str, *values: str) -> bool:
        wanted = self.f.get(key)
        return wanted is None or any(v and v.startswith(w) for w in wanted for v in values)

    def _named(self, key: str, ev: dict[str, Any]) -> bool:
        actor = ev.get("Actor") or {}
        return self._fuzzy(key, actor.get("ID") or "",
                           (actor.get("Attributes") or {}).get("name") or "")

    def _event(self, action: str) -> bool:
        wanted = self.f.get("event")
        if wanted is None:
            return True
        if any(w in _PREFIX_EVENTS for w in wanted):
            return any(action.startswith(w) for w in wanted)
        return action in wanted

    def _image(self, ev: dict[str, Any]) -> bool:
        if "image" not in self.f:
            return True
        actor = ev.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        name = attrs.get("name" if ev.get("Type") == "image" else "image") or ""
        ident = actor.get("ID") or ""
        return self._exact("image", ident, name, _strip_tag(ident), _strip_tag(name))

    def _labels(self, attrs: dict[str, str]) -> bool:
        for want in self.f.get("label", []):
            key, eq, val = want.partition("=")
            if key not in attrs or (eq and attrs[key] != val):
                return False
        return True

    def include(self, ev: dict[str, Any]) -> bool:
        attrs = (ev.get("Actor") or {}).get("Attributes") or {}
        return (self._event(ev.get("Action") or "")
                and self._exact("type", ev.get("Type") or "")
                and self._exact("scope", ev.get("scope") or "")
                and self._named("container", ev) and self._named("network", ev)
                and self._named("volume", ev) and self._named("pod", ev)
                and self._image(ev)
                and "daemon" not in self.f and "plugin" not in self.f
                and "node" not in self.f and "service" not in self.f
                and "secret" not in self.f and "config" not in self.f
                and self._labels(attrs))


def _strip_tag(name: str) -> str:
    """`busybox:latest` → `busybox` (a port in the registry part is no tag)."""
    if "@" in name:
        return name.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def parse_time(text: str | None, now: float) -> int | None:
    """A --since/--until value (RFC 3339, Unix seconds[.fraction], a duration like 10m)
    as nanoseconds since the epoch; None when not given."""
    if text is None or text == "":
        return None
    from ketch.fmt.units import parse_timestamp

    return int(round(parse_timestamp(text, now) * 1_000_000_000))


class _File:
    """One journal file being read: its fd, where we are, and a line not yet complete."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.ino = os.fstat(fd).st_ino
        self.partial = b""

    def lines(self) -> list[bytes]:
        chunks = []
        while True:
            data = os.read(self.fd, 1 << 16)
            if not data:
                break
            chunks.append(data)
        if not chunks:
            return []
        data = self.partial + b"".join(chunks)
        *complete, self.partial = data.split(b"\n")
        return complete

    def close(self) -> None:
        os.close(self.fd)


def _open(path: str) -> _File | None:
    try:
        return _File(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    except FileNotFoundError:
        return None


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        ev = loads(line.decode("utf-8", "surrogateescape"))
    except ValueError:
        return None  # a line torn by a crash mid-write: skipped
    return ev if isinstance(ev, dict) else None


def _time_of(line: bytes) -> int | None:
    """The timeNano of a journal line, read from its end, where `encode` writes it (a
    string value holding the same text has its quotes escaped); None when the line does
    not end that way. Lines out of --since/--until are skipped without decoding them:
    the journal holds up to 2 MB."""
    at = line.rfind(b'"timeNano":')
    if at < 0:
        return None
    digits = line[at + 11:].rstrip(b"}\r\n ")
    return int(digits) if digits.isdigit() else None


def read(root: str, *, since: int | None = None, until: int | None = None,
         filters: Filter | None = None, follow: bool = True,
         stopped: Callable[[], bool] | None = None,
         poll: float = POLL_SECONDS) -> Iterator[dict[str, Any]]:
    """The events of the state root `root` as dicts of dockerd's JSON shape.

    `since`/`until` are nanoseconds since the epoch. Without either, only events that
    happen from now on; with one of them, the journal's events from `since` (from as far
    back as the journal still reaches without it: dockerd's buffered past events) and,
    when following, the new ones. Following ends when the clock passes `until`, or when
    `stopped()` says so (checked every `poll` seconds)."""
    folder = directory(root)
    path = os.path.join(folder, FILE)
    flt = filters or Filter()
    cur = _open(path)
    files: list[_File] = []
    if since is not None or until is not None:
        old = _open(os.path.join(folder, OLD_FILE))
        if old is not None and cur is not None and old.ino == cur.ino:
            old.close()  # rotated between the two opens: `cur` holds it all
            old = None
        if old is not None:
            files.append(old)
    elif cur is not None:
        os.lseek(cur.fd, 0, os.SEEK_END)
    if cur is not None:
        files.append(cur)
    try:
        while True:
            for f in files:
                for line in f.lines():
                    if since is not None or until is not None:
                        t = _time_of(line)
                        if t is not None and ((since is not None and t < since)
                                              or (until is not None and t > until)):
                            continue
                    ev = _decode(line)
                    if ev is None:
                        continue
                    t = ev.get("timeNano") or 0
                    if since is not None and t < since:
                        continue
                    if until is not None and t > until:
                        continue
                    if flt.include(ev):
                        yield ev
            for f in files[:-1]:
                f.close()
            files = files[-1:]
            if not follow or (until is not None and time.time_ns() > until):
                return
            if stopped is not None and stopped():
                return
            # at the end of what we hold: has the name moved on to a new file?
            try:
                ino = os.stat(path).st_ino
            except FileNotFoundError:
                ino = None
            if ino is not None and (not files or files[-1].ino != ino):
                if files:
                    # two rotations since we looked: the file between ours and the new
                    # one is events.log.1 now, read before the new one
                    between = _open(os.path.join(folder, OLD_FILE))
                    if between is not None and between.ino not in (files[-1].ino, ino):
                        files.append(between)
                    elif between is not None:
                        between.close()
                new = _open(path)
                if new is not None:
                    files.append(new)  # the ones before are read to their end first
                    continue
            time.sleep(poll)
    finally:
        for f in files:
            f.close()
