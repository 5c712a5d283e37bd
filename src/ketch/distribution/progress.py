"""The events a pull or push yields, one per message of Docker's JSON message stream.

A front door renders them: the CLI prints `str(event)` (the docker CLI's plain lines),
the Engine API service sends `event.message()` as one JSON object of the stream.
"""

from __future__ import annotations

from ketch.values import value


@value(frozen=True)
class Progress:
    """`status` about the object `id` (a short layer digest or a tag), or about the whole
    operation when `id` is empty. `current` of `total` bytes is the progress of a
    transfer (Docker's progressDetail); both are 0 for a plain status."""

    status: str
    id: str = ""
    current: int = 0
    total: int = 0

    @property
    def has_progress(self) -> bool:
        """A progress-bar update (`Downloading`, `Pushing`, ...), which the docker CLI
        draws on a terminal and leaves out of plain output."""
        return bool(self.current or self.total)

    def __str__(self) -> str:
        return f"{self.id}: {self.status}" if self.id else self.status

    def message(self) -> dict[str, object]:
        msg: dict[str, object] = {"status": self.status}
        if self.has_progress:
            msg["progressDetail"] = {"current": self.current, "total": self.total}
        if self.id:
            msg["id"] = self.id
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
