"""Go's text/tabwriter with docker/cli's settings."""

from __future__ import annotations

from ketch.fmt.table import display_width


def tabwrite(rows: list[list[str]], minwidth: int = 10, padding: int = 3) -> str:
    """Align cells in columns as docker's tables do; the last cell of a row is not padded."""
    return tabwrite_text("".join("\t".join(row) + "\n" for row in rows), minwidth, padding)


class _Cell:
    __slots__ = ("text", "width", "htab")

    def __init__(self, text: str, width: int, htab: bool) -> None:
        self.text = text
        self.width = width
        self.htab = htab


def tabwrite_text(text: str, minwidth: int = 10, padding: int = 3, padchar: str = " ") -> str:
    """Go's text/tabwriter (elastic tabstops) with docker/cli's settings by default.

    Tab-terminated cells in consecutive lines form a column, padded to its widest cell
    plus `padding` and at least `minwidth`. Text after the last tab of a line is not part
    of a column, and a line without tabs ends the column block above it.
    """
    out: list[str] = []
    lines: list[list[_Cell]] = [[]]
    cell: list[str] = []

    def terminate(htab: bool) -> int:
        value = "".join(cell)
        cell.clear()
        lines[-1].append(_Cell(value, display_width(value), htab))
        return len(lines[-1])

    def flush() -> None:
        _format_block(out, lines, 0, len(lines), [], minwidth, padding, padchar)
        lines.clear()
        lines.append([])

    for ch in text:
        if ch in "\t\v\n\f":
            ncells = terminate(ch == "\t")
            if ch in "\n\f":
                lines.append([])
                # A one-cell line cannot affect alignment of what follows (its only cell
                # is not in a column), so everything so far can be written out.
                if ch == "\f" or ncells == 1:
                    flush()
        else:
            cell.append(ch)
    if cell:
        terminate(False)
    flush()
    return "".join(out)


def _format_block(
    out: list[str],
    lines: list[list[_Cell]],
    line0: int,
    line1: int,
    widths: list[int],
    minwidth: int,
    padding: int,
    padchar: str,
) -> None:
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        # Lines above this block are complete with the columns known so far.
        _write_lines(out, lines, line0, this, widths, padchar)
        line0 = this
        width = minwidth
        while this < line1 and column < len(lines[this]) - 1:
            width = max(width, lines[this][column].width + padding)
            this += 1
        widths.append(width)
        _format_block(out, lines, line0, this, widths, minwidth, padding, padchar)
        widths.pop()
        line0 = this
    _write_lines(out, lines, line0, line1, widths, padchar)


def _write_lines(
    out: list[str],
    lines: list[list[_Cell]],
    line0: int,
    line1: int,
    widths: list[int],
    padchar: str,
) -> None:
    for i in range(line0, line1):
        for j, c in enumerate(lines[i]):
            out.append(c.text)
            if j < len(widths):
                out.append(padchar * (widths[j] - c.width))
        if i + 1 < len(lines):
            out.append("\n")

