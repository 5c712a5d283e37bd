"""The events a pull or push yields, one per message of Docker's JSON message stream.

A front door renders them: the CLI prints `str(event)` (the docker CLI's plain lines),
the Engine API service sends `event.message()` as one JSON object of the stream.
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


@value(frozen=True)
class PullResult:
    """The last event of a pull: the image and the reference it was pulled as."""

    image_id: str
    digest: str
    downloaded: bool
    reference: str

    def __str__(self) -> str:
        return self.reference


@value(frozen=True)
class PushResult:
    """The last event of a push: the tag pushed, its manifest digest and size."""

    tag: str
    digest: str
    size: int

    def __str__(self) -> str:
        return f"{self.tag}: digest: {self.digest} size: {self.size}"

    def message(self) -> dict[str, object]:
        return {"status": str(self), "aux": {"Tag": self.tag, "Digest": self.digest,
                                             "Size": self.size}}
