"""text/template's builtins and the functions docker/cli adds."""

from __future__ import annotations

from _collections_abc import Mapping  # (why not collections.abc: gotemplate/exec.py)

from ketch.fmt.gofmt import MISSING, FuncError, json_encode, printf, sprint_value, type_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


# --- builtins -------------------------------------------------------------------------


def truth(value: Any) -> bool:
    """Go's notion of "true" for if/with/and/or/not: non-zero, non-empty, non-nil."""
    if value is MISSING or value is None:
        return False
    return bool(value)


def _sprint(*args: Any) -> str:
    """fmt.Sprint: a space between operands when neither side is a string."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i > 0 and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(sprint_value(arg))
    return "".join(out)


def _sprintln(*args: Any) -> str:
    return " ".join(sprint_value(a) for a in args) + "\n"


def _builtin_len(item: Any) -> int:
    if isinstance(item, str):
        return len(item.encode("utf-8"))  # Go's len counts bytes
    if isinstance(item, bytes | bytearray | list | tuple | Mapping):
        return len(item)
    raise FuncError(f"len of type {type_name(item)}")


def _builtin_index(item: Any, *indices: Any) -> Any:
    for index in indices:
        if isinstance(item, Mapping):
            # A missing key gives Go's zero value. For the maps users index (labels,
            # annotations: map[string]string) that is "", which scripts rely on.
            item = item.get(index, "")
        elif item is None:
            item = ""
        elif isinstance(item, list | tuple | str | bytes | bytearray):
            if isinstance(index, bool) or not isinstance(index, int):
                raise FuncError(f"cannot index slice/array with type {type_name(index)}")
            data = item.encode("utf-8") if isinstance(item, str) else item
            if not 0 <= index < len(data):
                raise FuncError(f"index out of range: {index}")
            item = data[index]
        elif item is MISSING:
            raise FuncError("index of untyped nil")
        else:
            raise FuncError(f"can't index item of type {type_name(item)}")
    return item


def _builtin_slice(item: Any, *indices: Any) -> Any:
    if not isinstance(item, str | list | tuple):
        raise FuncError(f"can't slice item of type {type_name(item)}")
    if len(indices) > 3:
        raise FuncError(f"too many slice indexes: {len(indices)}")
    if isinstance(item, str) and len(indices) == 3:
        raise FuncError("cannot 3-index slice a string")
    bounds = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int):
            raise FuncError(f"cannot index slice/array with type {type_name(index)}")
        if not 0 <= index <= len(item):
            raise FuncError(f"index out of range: {index}")
        bounds.append(index)
    if len(bounds) >= 2 and bounds[0] > bounds[1]:
        raise FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    start = bounds[0] if bounds else 0
    end = bounds[1] if len(bounds) > 1 else len(item)
    return item[start:end]


def _comparable(value: Any) -> tuple[str, Any]:
    """Put a value into Go's comparison classes; bools never equal numbers."""
    if value is None or value is MISSING:
        return ("nil", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return ("other", value)


def _builtin_eq(arg1: Any, *others: Any) -> bool:
    if not others:
        raise FuncError("missing argument for comparison")
    kind1, v1 = _comparable(arg1)
    for other in others:
        kind2, v2 = _comparable(other)
        if kind1 != kind2 and "nil" not in (kind1, kind2):
            raise FuncError("incompatible types for comparison")
        if kind1 == kind2 and v1 == v2:
            return True
    return False


def _builtin_ne(arg1: Any, arg2: Any) -> bool:
    return not _builtin_eq(arg1, arg2)


def _ordered(arg1: Any, arg2: Any) -> tuple[Any, Any]:
    kind1, v1 = _comparable(arg1)
    kind2, v2 = _comparable(arg2)
    if kind1 not in ("number", "string") or kind2 not in ("number", "string"):
        raise FuncError("invalid type for comparison")
    if kind1 != kind2:
        raise FuncError("incompatible types for comparison")
    return v1, v2


def _builtin_lt(arg1: Any, arg2: Any) -> bool:
    a, b = _ordered(arg1, arg2)
    return bool(a < b)


def _builtin_le(arg1: Any, arg2: Any) -> bool:
    a, b = _ordered(arg1, arg2)
    return bool(a <= b)


def _builtin_gt(arg1: Any, arg2: Any) -> bool:
    a, b = _ordered(arg1, arg2)
    return bool(a > b)


def _builtin_ge(arg1: Any, arg2: Any) -> bool:
    a, b = _ordered(arg1, arg2)
    return bool(a >= b)


def _builtin_not(arg: Any) -> bool:
    return not truth(arg)


def _builtin_html(*args: Any) -> str:
    text = _sprint(*args)
    table = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}
    return "".join(table.get(ch, ch) for ch in text)


def _builtin_js(*args: Any) -> str:
    text = _sprint(*args)
    named = {
        "\\": "\\\\",
        "'": "\\'",
        '"': '\\"',
        "<": "\\u003C",
        ">": "\\u003E",
        "&": "\\u0026",
        "=": "\\u003D",
    }
    out = []
    for ch in text:
        if ch in named:
            out.append(named[ch])
        elif ord(ch) < 0x20 or (ord(ch) >= 0x80 and not ch.isprintable()):
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _builtin_urlquery(*args: Any) -> str:
    import urllib.parse  # (on use: it loads ipaddress and more)

    return urllib.parse.quote_plus(_sprint(*args), safe="")


def _builtin_call(fn: Any, *args: Any) -> Any:
    if not callable(fn):
        raise FuncError(f"non-function of type {type_name(fn)}")
    return fn(*args)



# docker/cli's additions (cli/templates): the names users know from docker docs.


def _func_json(value: Any) -> str:
    return json_encode(value)


def _func_split(s: str, sep: str) -> list[str]:
    if sep == "":
        return list(s)  # Go splits into characters; Python refuses an empty separator
    return s.split(sep)


def _func_join(items: Sequence[Any], sep: str) -> str:
    return sep.join(i if isinstance(i, str) else sprint_value(i) for i in items)


def _title_separator(ch: str) -> bool:
    """strings.Title's word boundary rule."""
    if ch < "\x80":
        return not (ch.isalnum() or ch == "_")
    if ch.isalpha() or ch.isdigit():
        return False
    return ch.isspace()


def _func_title(s: str) -> str:
    """strings.Title (what docker uses): upper-case word starts, leave the rest alone."""
    out = []
    prev = " "
    for ch in s:
        out.append(ch.upper() if _title_separator(prev) else ch)
        prev = ch
    return "".join(out)


def _func_lower(s: str) -> str:
    return s.lower()


def _func_upper(s: str) -> str:
    return s.upper()


def _func_pad(source: str, prefix: int, suffix: int) -> str:
    if source == "":
        return source
    return " " * prefix + source + " " * suffix


def _func_truncate(source: str, length: int) -> str:
    if len(source) < length:
        return source
    return source[:length]


BUILTINS: dict[str, Callable[..., Any]] = {
    "call": _builtin_call,
    "eq": _builtin_eq,
    "ge": _builtin_ge,
    "gt": _builtin_gt,
    "html": _builtin_html,
    "index": _builtin_index,
    "js": _builtin_js,
    "le": _builtin_le,
    "len": _builtin_len,
    "lt": _builtin_lt,
    "ne": _builtin_ne,
    "not": _builtin_not,
    "print": _sprint,
    "printf": printf,
    "println": _sprintln,
    "slice": _builtin_slice,
    "urlquery": _builtin_urlquery,
}
# `and` and `or` evaluate their arguments lazily, so the executor handles them itself.
LAZY_BUILTINS = frozenset({"and", "or"})

DOCKER_FUNCS: dict[str, Callable[..., Any]] = {
    "json": _func_json,
    "split": _func_split,
    "join": _func_join,
    "title": _func_title,
    "lower": _func_lower,
    "upper": _func_upper,
    "pad": _func_pad,
    "truncate": _func_truncate,
}


def _header_passthrough(value: Any, *_ignored: Any) -> Any:
    return value


# A table header runs the same template over the header names; these keep a header like
# "IMAGE" from being JSON-quoted, split or re-cased. pad stays real, to keep alignment.
HEADER_FUNCS: dict[str, Callable[..., Any]] = {
    name: _header_passthrough for name in ("json", "split", "join", "title", "lower", "upper")
}
HEADER_FUNCS["truncate"] = _header_passthrough

