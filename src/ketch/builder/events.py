"""The events a build yields, one per message of Docker's build stream.

`Engine.build` is an iterator of these, as pulls and pushes are iterators of
`Progress` events. A front door renders them: the CLI writes `text()` (the classic
builder's output), the Engine API service sends `message()` as one JSON object of the
stream (`{"stream": ...}`, `{"aux": {"ID": ...}}`).
"""

from __future__ import annotations

from ketch.errors import BuildError
from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from typing import Any, TypeVar

    R = TypeVar("R")

_EVENT, _RESULT, _FAILED = 0, 1, 2


@value(frozen=True)
class BuildLog:
    """A line of the builder's own output ("Step 1/3 : FROM busybox\\n"), newline included."""

    line: str

    def text(self) -> str:
        return self.line

    def raw(self) -> bytes:
        return self.line.encode("utf-8", "surrogateescape")

    def message(self) -> dict[str, object]:
        return {"stream": self.line}


@value(frozen=True)
class BuildOutput:
    """What a RUN step's container wrote, as the bytes came."""

    data: bytes

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def raw(self) -> bytes:
        return self.data

    def message(self) -> dict[str, object]:
        return {"stream": self.text()}


@value(frozen=True)
class BuildImage:
    """The image the build produced, announced before "Successfully built"."""

    image_id: str

    def text(self) -> str:
        return ""

    def raw(self) -> bytes:
        return b""

    def message(self) -> dict[str, object]:
        return {"aux": {"ID": self.image_id}}


BuildEvent = BuildLog | BuildOutput | BuildImage


class Cancellation:
    """Set once the build's caller is gone (Ctrl-C, a client that hung up). Work that
    waits without emitting (a RUN step whose command prints nothing) registers how to
    stop waiting with `on_cancel`."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._set = False
        self._callbacks: list[Callable[[], object]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lock:
            if self._set:
                return
            self._set = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 (one that fails does not keep the others)
                pass

    def on_cancel(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call `callback` (in the cancelling thread) when the build is cancelled, at
        once if it is already; returns the function that unregisters it."""
        with self._lock:
            if not self._set:
                self._callbacks.append(callback)

                def forget() -> None:
                    with self._lock:
                        if callback in self._callbacks:
                            self._callbacks.remove(callback)
                return forget
        callback()
        return _nothing


def _nothing() -> None:
    pass


class BuildEvents:
    """The iterator `events_of` returns: its events, then the result. `cancel()`, from
    any thread, cancels the work as closing the iterator does, also while another
    thread is waiting in `next()` (the Engine API's worker, when its client hangs up
    during a step that prints nothing)."""

    def __init__(self, events: Generator[Any, None, None], cancellation: Cancellation
                 ) -> None:
        self._events = events
        self._cancellation = cancellation

    def __iter__(self) -> BuildEvents:
        return self

    def __next__(self) -> Any:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def cancel(self) -> None:
        self._cancellation.set()


def events_of(work: Callable[[Callable[[BuildEvent], None], Cancellation], R]
              ) -> BuildEvents:
    """Turn `work(emit, cancellation)`, which reports through `emit` and returns its
    result, into an iterator of its events and then the result: `work` runs in a thread
    of its own while the caller drains the iterator, and its exception comes out of the
    iterator.

    Closing the iterator early (a client gone, Ctrl-C), or its `cancel()`, cancels the
    work: its next `emit` raises BuildError, so the builder's own clean-up (step
    containers, staging) runs, and what it registered with `cancellation.on_cancel` is
    called, so a step that emits nothing for a long time stops waiting too."""
    cancelled = Cancellation()
    return BuildEvents(_drain(work, cancelled), cancelled)


def _drain(work: Callable[[Callable[[BuildEvent], None], Cancellation], R],
           cancelled: Cancellation) -> Generator[Any, None, None]:
    import queue
    import threading

    q: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()

    def emit(event: BuildEvent) -> None:
        if cancelled.is_set():
            raise BuildError("the build was cancelled")
        q.put((_EVENT, event))

    def main() -> None:
        try:
            q.put((_RESULT, work(emit, cancelled)))
        except BaseException as e:  # handed over to the iterator's caller
            q.put((_FAILED, e))

    t = threading.Thread(target=main, name="ketch-build", daemon=True)
    t.start()
    finished = False
    try:
        while True:
            kind, item = q.get()
            if kind == _EVENT:
                yield item
                continue
            finished = True
            if kind == _FAILED:
                raise item
            yield item
            return
    finally:
        if not finished:
            cancelled.set()
            t.join(timeout=5)  # time for its clean-up (a step's container is removed)
        else:
            t.join()
