"""Plain tables as docker/cli prints them (its tabwriter settings: minimum width 10,
padding 3, the last column not padded), for rows of equal length.

The listing commands' default tables need nothing more; Go templates and ragged rows go
through `ketch.fmt.tabwriter.tabwrite_text`, which this module does not import.
"""

from __future__ import annotations


def display_width(text: str) -> int:
    """Terminal columns a string takes (docker's tabwriter counts wide runes as 2)."""
    if text.isascii() and text.isprintable():
        return len(text)
    import unicodedata

    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Cc", "Cf", "Mn", "Me"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def tabulate(rows: list[list[str]], minwidth: int = 10, padding: int = 3) -> str:
    """Every column but the last padded to max(widest cell + padding, minwidth)."""
    if not rows:
        return ""
    cells = "\0".join("\0".join(r) for r in rows)
    if "\t" in cells or "\n" in cells or "\v" in cells or "\f" in cells:
        # cells that split into more cells or lines: Go's tabwriter rules in full
        from ketch.fmt.tabwriter import tabwrite

        return tabwrite(rows, minwidth, padding)
    ncols = len(rows[0])
    widths = [[display_width(c) for c in r] for r in rows]
    col = [max(minwidth, max(w[i] for w in widths) + padding) for i in range(ncols - 1)]
    lines = []
    for r, w in zip(rows, widths, strict=True):
        lines.append("".join(r[i] + " " * (col[i] - w[i]) for i in range(ncols - 1))
                     + r[-1])
    return "\n".join(lines) + "\n"


def labels_column(labels: dict[str, str] | None) -> str:
    """docker's LABELS column (and `{{.Labels}}`): `k=v` pairs, comma-separated."""
    return ",".join(f"{k}={v}" for k, v in (labels or {}).items())
