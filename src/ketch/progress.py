"""`Progress`: one step of a long operation (pull, push, load), as Docker's JSON message
stream carries it. The services that report progress (distribution, images) yield these;
a front door renders them: the CLI prints `str(event)` (the docker CLI's plain lines) or
draws bars on a terminal, the Engine API service sends `event.message()` as one JSON
object of the stream. A module of its own so that any service can report progress
without importing another.
"""

from __future__ import annotations

from time import time as _now

from ketch.values import field, value


@value(frozen=True)
class Progress:
    """`status` about the object `id` (a short layer digest or a tag), or about the whole
    operation when `id` is empty.

    `current`/`total` (bytes; -1 when absent) make it a progress-bar update, Docker's
    `progressDetail`: the docker CLI draws those on a terminal and leaves them out of its
    plain output (`bar`). `time` is when the event happened (seconds since the epoch).
    """

    status: str
    id: str = ""
    current: int = -1
    total: int = -1
    time: float = field(default_factory=_now)

    @property
    def bar(self) -> bool:
        """A progress-bar update (Downloading/Extracting with bytes), not a status line."""
        return self.current >= 0

    def __str__(self) -> str:
        return f"{self.id}: {self.status}" if self.id else self.status

    def message(self) -> dict[str, object]:
        msg: dict[str, object] = ({"status": self.status, "id": self.id} if self.id
                                  else {"status": self.status})
        if self.bar:
            detail: dict[str, int] = {"current": self.current}
            if self.total >= 0:
                detail["total"] = self.total
            msg["progressDetail"] = detail
        return msg
