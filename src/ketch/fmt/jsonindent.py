"""`json.dumps(value, indent=4, ensure_ascii=False)` without importing the `json` package.

The inspect commands print their results this way. Importing `json` compiles regular
expressions (and loads `re` and `enum` for them) although the indented output is made
by pure Python code anyway; the C string escaper underneath (`_json.encode_basestring`)
is all it needs. Values this writer does not handle itself (non-string keys, NaN and
infinities, other types) go to `json.dumps`, so the output is always json's.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    from _json import encode_basestring as _quote
except ImportError:  # pragma: no cover - CPython always has _json
    _quote = None  # type: ignore[assignment]  # an interpreter without _json: json's pure-Python quoting is used

_INF = float("inf")


class _Other(Exception):
    """A value outside what this writer handles: json.dumps takes over."""


def dumps(value: Any, indent: int = 4) -> str:
    """The text `json.dumps(value, indent=indent, ensure_ascii=False)` returns."""
    if _quote is not None:
        parts: list[str] = []
        try:
            _write(value, parts, "\n", " " * indent)
        except (_Other, RecursionError):
            pass
        else:
            return "".join(parts)
    import json

    return json.dumps(value, indent=indent, ensure_ascii=False)


def _write(o: Any, parts: list[str], nl: str, step: str) -> None:
    if isinstance(o, str):
        parts.append(_quote(o))
    elif o is None:
        parts.append("null")
    elif o is True:
        parts.append("true")
    elif o is False:
        parts.append("false")
    elif isinstance(o, int):
        parts.append(int.__repr__(o))
    elif isinstance(o, float):
        if o != o or o in (_INF, -_INF):
            raise _Other
        parts.append(float.__repr__(o))
    elif isinstance(o, dict):
        if not o:
            parts.append("{}")
            return
        inner = nl + step
        sep = "{" + inner
        for k, v in o.items():
            if not isinstance(k, str):
                raise _Other
            parts.append(sep)
            parts.append(_quote(k))
            parts.append(": ")
            _write(v, parts, inner, step)
            sep = "," + inner
        parts.append(nl + "}")
    elif isinstance(o, (list, tuple)):
        if not o:
            parts.append("[]")
            return
        inner = nl + step
        sep = "[" + inner
        for v in o:
            parts.append(sep)
            _write(v, parts, inner, step)
            sep = "," + inner
        parts.append(nl + "]")
    else:
        raise _Other
