"""Docker's renderings of an event (a dict of dockerd's JSON shape, from
`Engine.events`): the docker CLI's plain line, and the view its Go templates see."""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any



def plain(ev: dict[str, Any]) -> str:
    """The docker CLI's line for an event: `TIME TYPE ACTION ID (k=v, ...)`, the time in
    the local zone with nanoseconds (Go's "2006-01-02T15:04:05.000000000Z07:00")."""
    ns = int(ev.get("timeNano") or int(ev.get("time") or 0) * 1_000_000_000)
    seconds, nanos = divmod(ns, 1_000_000_000)
    t = time.localtime(seconds)
    off = t.tm_gmtoff or 0
    zone = "Z" if off == 0 else (f"{'+' if off > 0 else '-'}{abs(off) // 3600:02d}:"
                                 f"{abs(off) % 3600 // 60:02d}")
    stamp = (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:"
             f"{t.tm_min:02d}:{t.tm_sec:02d}.{nanos:09d}{zone}")
    actor = ev.get("Actor") or {}
    line = f"{stamp} {ev.get('Type')} {ev.get('Action')} {actor.get('ID') or ''}"
    attrs = actor.get("Attributes") or {}
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


# moby's events.Message, by its Go field names: what a template may read
MESSAGE_FIELDS = frozenset({"Status", "ID", "From", "Type", "Action", "Actor", "Scope",
                            "Time", "TimeNano"})


def template_view(ev: dict[str, Any]) -> dict[str, Any]:
    """The fields a Go template sees: moby's events.Message by its Go names (.Type,
    .Action, .Actor.ID, .Status, .ID, .From, .Time, .TimeNano, .Scope); a field it does
    not have is an error, as on the Go struct."""
    from ketch.fmt.gotemplate import Context

    view = {"Status": ev.get("status", ""), "ID": ev.get("id", ""),
            "From": ev.get("from", ""), "Type": ev.get("Type", ""),
            "Action": ev.get("Action", ""),
            "Actor": ev.get("Actor") or {"ID": "", "Attributes": None},
            "Scope": ev.get("scope", ""), "Time": ev.get("time", 0),
            "TimeNano": ev.get("timeNano", 0)}
    return Context(view, "*events.Message", MESSAGE_FIELDS)
