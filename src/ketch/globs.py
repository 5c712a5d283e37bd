"""Go's path.Match (and filepath.Match with "/" as the separator): one implementation
for .dockerignore patterns and `images --filter reference=...`.

`*` and `?` never match "/", `[...]` is a class (`^` negates, `a-z` ranges, `\\`
escapes), and a pattern Go would reject with ErrBadPattern raises ValueError.
"""

from __future__ import annotations

import re


def check_glob(pattern: str) -> None:
    """Reject what Go's filepath.Match reports as ErrBadPattern."""
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError("trailing escape")
            i += 2
        elif ch == "[":
            i = _class_end(pattern, i)
        else:
            i += 1


def _class_end(pattern: str, i: int) -> int:
    """Index after the `[...]` class starting at i; ValueError if it is malformed."""
    n = len(pattern)
    i += 1
    if i < n and pattern[i] == "^":
        i += 1
    ranges = 0
    while True:
        if i < n and pattern[i] == "]" and ranges > 0:
            return i + 1
        _, i = _class_char(pattern, i)
        if i < n and pattern[i] == "-":
            _, i = _class_char(pattern, i + 1)
        ranges += 1


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise ValueError("bad character class")
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            raise ValueError("bad character class")
    ch = pattern[i]
    i += 1
    if i >= n:
        # The class was never closed.
        raise ValueError("bad character class")
    return ch, i


def class_regex(pattern: str, i: int) -> tuple[str, int]:
    """Translate the (already validated) class at i into a Python regex class."""
    i += 1
    negate = False
    if pattern[i] == "^":
        negate = True
        i += 1
    items: list[str] = []
    ranges = 0
    while not (pattern[i] == "]" and ranges > 0):
        lo, i = _class_char(pattern, i)
        hi = lo
        if pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
        # Go accepts an inverted range and it never matches; Python would refuse it.
        if lo <= hi:
            items.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
        ranges += 1
    body = "".join(items)
    if not body:
        return ("." if negate else "(?!)"), i + 1
    return ("[^" if negate else "[") + body + "]", i + 1


def segment_regex(segment: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    n = len(segment)
    while i < n:
        ch = segment[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i < n:
            out.append(re.escape(segment[i]))
            i += 1
        elif ch == "[":
            cls, i = class_regex(segment, i - 1)
            out.append(cls)
        else:
            out.append(re.escape(ch))
    out.append(r"\Z")
    return re.compile("".join(out))


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A regex matching exactly the strings Go's path.Match(pattern, s) matches."""
    check_glob(pattern)
    return segment_regex(pattern)
