"""The results that end a pull or a push (the steps before them are `ketch.progress`
events)."""

from __future__ import annotations

from ketch.progress import Progress
from ketch.values import value

__all__ = ["Progress", "PullResult", "PushResult"]


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
