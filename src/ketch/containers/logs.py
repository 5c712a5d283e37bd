"""`logs`: a container's log read back, as Docker's logs endpoint streams it (tail, since,
until, timestamps, details), following while the container runs. `logs --tail` is a
read of a file's end: reading loads neither the lifecycle nor the monitor."""

from __future__ import annotations

import os

from ketch.errors import KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ketch.containers.service import ContainerService
    from ketch.runtime.logs import LogChunk


def read(svc: ContainerService, name_or_id: str, *, follow: bool = False,
         tail: int | None = None, since: float | None = None, until: float | None = None,
         timestamps: bool = False, details: bool = False,
         cancelled: Callable[[], bool] | None = None) -> Iterator[tuple[str, bytes]]:
    """(stream, data) of the container's log. `details`: each line gets the log's
    extra attributes and a space before its text, as Docker's (ketch's log records
    carry no attributes, so the space alone). `cancelled`: polled while following;
    once true, the stream ends as if the container had exited (its reader left).

    The container is looked up and its log opened when this is called, not at the
    first chunk: what the log held is read even if the container is removed in between
    (runtime.logs.read_log)."""
    from ketch.containers.logconfig import log_file, reads_back
    from ketch.runtime.logs import read_log

    rec = svc.get(name_or_id)
    if not reads_back(rec.host_config):
        raise KetchError("configured logging driver does not support reading")
    # the log's path, as lifecycle.paths() names it, without loading the lifecycle
    # and the monitor: `logs --tail` is a read of a file's end
    log_path = log_file(rec.host_config,
                        os.path.join(svc.engine.root_dir, "containers", rec.id, "ctr.log"))

    def running() -> bool:
        if cancelled is not None and cancelled():
            return False
        cur = svc.records.get(rec.id)
        return cur is not None and svc._refresh(cur).running

    chunks = read_log(log_path, follow=follow, tail=tail, since=since, until=until,
                      timestamps=timestamps, is_done=lambda: not running())
    return _pairs(chunks, details, timestamps)


def _pairs(chunks: Iterator[LogChunk], details: bool, timestamps: bool
           ) -> Iterator[tuple[str, bytes]]:
    at_line_start = {"stdout": True, "stderr": True}
    for chunk in chunks:
        data = chunk.data
        if details:
            data = _with_details(data, at_line_start, chunk.stream, timestamps)
        yield chunk.stream, data


def _with_details(data: bytes, at_line_start: dict[str, bool], stream: str,
                  timestamps: bool) -> bytes:
    """A space (the empty attribute list's separator) at the start of each line's text:
    after the timestamp with `-t`, so "TS  text" as Docker prints it."""
    lines = data.split(b"\n")
    out: list[bytes] = []
    for i, line in enumerate(lines):
        starts = at_line_start[stream] if i == 0 else True
        if i == len(lines) - 1 and not line:
            out.append(line)  # after the last newline: nothing yet
            continue
        if starts:
            if timestamps:
                ts, sep, rest = line.partition(b" ")
                line = ts + sep + b" " + rest
            else:
                line = b" " + line
        out.append(line)
    at_line_start[stream] = data.endswith(b"\n")
    return b"\n".join(out)


def reopen(svc: ContainerService, name_or_id: str) -> None:
    """Have conmon open the container's log path anew: after the file there was renamed
    (the kubelet's rotation), new output goes to a new file at the path and the old
    file keeps what it had. Only a running container has a conmon to ask."""
    from ketch.errors import Conflict

    rec = svc.get(name_or_id)
    if rec.state not in ("running", "paused") or not svc.lifecycle.monitor(rec).reopen_log(
            svc.lifecycle.paths(rec)):
        raise Conflict(f"Container {rec.id} is not running")
