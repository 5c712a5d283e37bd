"""Per-layer progress lines redrawn in place on a terminal (the docker CLI's look).

Each event with an id owns one line, in the order ids first appear; a later event for
that id moves the cursor up to its line, clears it, writes the new text and moves back
down (ANSI CUU/CUD and EL). An event without an id is written below and starts a new
block of lines, as Docker's jsonmessage display does.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

BAR_WIDTH = 50


def human(n: float) -> str:
    """Docker's HumanSize: decimal units, three significant digits."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    raise AssertionError("unreachable")


def bar(current: int, total: int) -> str:
    """`[=====>      ] 12.3MB/45.6MB`, or only the bytes when the total is unknown (<= 0)."""
    if total <= 0:
        return human(current)
    filled = min(BAR_WIDTH, current * BAR_WIDTH // total)
    arrow = ">" if filled < BAR_WIDTH else ""
    body = "=" * filled + arrow
    if filled >= BAR_WIDTH:
        body = "=" * (BAR_WIDTH - 1) + ">"
    return f"[{body.ljust(BAR_WIDTH)}] {human(min(current, total)):>7}/{human(total)}"


class Renderer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lines: dict[str, int] = {}
        try:
            import os

            self.width = os.get_terminal_size(out.fileno()).columns
        except (OSError, ValueError, AttributeError):
            self.width = 0

    def _fit(self, text: str) -> str:
        # A line that wraps would make the cursor arithmetic move to the wrong line.
        return text[: self.width - 1] if self.width > 1 else text

    def text(self, event: object) -> str:
        ident = getattr(event, "id", "")
        status = getattr(event, "status", None)
        if status is None:
            return str(event)
        if getattr(event, "bar", False):
            status = f"{status} {bar(event.current, event.total)}"  # type: ignore[attr-defined]  # events with `bar` carry current and total
        return f"{ident}: {status}" if ident else status

    def show(self, event: object) -> None:
        ident = getattr(event, "id", "")
        line = self._fit(self.text(event))
        if not ident or getattr(event, "status", None) is None:
            self.lines.clear()
            self.out.write(line + "\n")
        elif ident not in self.lines:
            self.lines[ident] = len(self.lines)
            self.out.write(line + "\n")
        else:
            up = len(self.lines) - self.lines[ident]
            self.out.write(f"\x1b[{up}A\r\x1b[2K{line}\x1b[{up}B\r")
        self.out.flush()
