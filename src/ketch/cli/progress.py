"""Showing a pull's or push's events, as the docker CLI does.

On a terminal, per-layer lines are redrawn in place with progress bars (the renderer in
`ketch.cli.ttyprogress`, imported only then); otherwise each status becomes a plain line
and progress-bar updates are left out; `quiet` shows only the final result.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import TextIO


def show(events: Iterable[object], *, quiet: bool = False,
         stream: TextIO | None = None) -> object:
    """Drain `events`, displaying them on `stream` (stdout); returns the last event."""
    stream = stream or sys.stdout
    last: object = None
    if quiet:
        for event in events:
            last = event
        return last
    if stream.isatty():
        from ketch.cli.ttyprogress import Renderer

        renderer = Renderer(stream)
        for last in events:
            renderer.show(last)
        return last
    for last in events:
        if getattr(last, "bar", False):
            continue  # the docker CLI draws bars only on a terminal
        stream.write(f"{last}\n")
        stream.flush()
    return last
