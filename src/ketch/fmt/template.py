"""Go text/template, as far as `docker ... --format` needs it, plus docker's table output.

Users bring format strings written for docker (`{{.Names}}`, `{{json .Config}}`,
`{{range $k, $v := .Labels}}...{{end}}`, `table {{.ID}}\\t{{.Image}}`), so this module
implements Go's template language with Go's semantics: the same actions, builtins,
whitespace trimming, variable scoping, printing of values (`map[a:1 b:2]`, `[x y]`,
`<no value>`) and the same error messages, plus the functions docker/cli adds (json,
join, split, upper, lower, title, pad, truncate) and docker/cli's tabwriter alignment.

Data is plain Python: dicts are Go maps (field access is a key lookup, and a missing key
prints `<no value>`, or is an error under `missingkey_error`, Go's `missingkey=error`),
lists and tuples are slices, and other objects (dataclasses) are structs whose public
attributes and methods are fields. A `Context` is a dict that behaves as one of
docker/cli's typed formatter contexts: a field it does not have is an error.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import inspect
import math
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from ketch.errors import InvalidArgument
from ketch.fmt.table import display_width

__all__ = [
    "CONTAINER_HEADERS",
    "Context",
    "IMAGE_HEADERS",
    "MISSING",
    "Template",
    "go_string",
    "render_table",
    "tabwrite",
    "tabwrite_text",
]

# docker/cli wraps every template error, parse or execution, in this prefix.
_ERROR_PREFIX = "template parsing error: "


class _Missing:
    """The value of a missing map key: Go's invalid reflect.Value, printed `<no value>`."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING = _Missing()


class Context(dict[str, Any]):
    """A row of a listing, as docker/cli's formatter context for it (a Go struct):
    `{{.Nope}}` is "can't evaluate field Nope in type <go_type>", a field docker has that
    the row leaves out prints empty, and `{{.Label "k"}}` reads the row's labels."""

    def __init__(self, row: Mapping[str, Any], go_type: str, known: frozenset[str],
                 labels: Mapping[str, str] | None = None) -> None:
        super().__init__(row)
        self.go_type = go_type
        self.known = known
        self.labels = labels

    def Label(self, name: str) -> str:  # noqa: N802 - the name templates call it by
        return (self.labels or {}).get(name, "")


class _TemplateError(Exception):
    """Raised inside the engine; Template turns it into InvalidArgument."""


class _FuncError(Exception):
    """A builtin rejected its arguments; reported as Go does, 'error calling NAME: ...'."""


# --- printing values the way Go's fmt does ---------------------------------------------


def go_string(value: Any) -> str:
    """Print a value as Go's template engine prints a pipeline result."""
    if value is MISSING or value is None:
        # A nil interface reaching the output is "no value" in Go templates.
        return "<no value>"
    return _sprint_value(value)


def _sprint_value(value: Any) -> str:
    """fmt's %v for one operand (nested values use this too)."""
    if value is MISSING or value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float_g(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return "[" + " ".join(str(b) for b in value) + "]"
    if isinstance(value, Mapping):
        items = " ".join(
            f"{_sprint_value(k)}:{_sprint_value(value[k])}" for k in _sorted_keys(value)
        )
        return f"map[{items}]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_sprint_value(v) for v in value) + "]"
    if type(value).__str__ is not object.__str__:
        # Go prints a value through its String() method; __str__ is Python's equivalent.
        return str(value)
    names = _struct_fields(value)
    if names is not None:
        return "{" + " ".join(_sprint_value(getattr(value, n)) for n in names) + "}"
    return str(value)


def _struct_fields(value: Any) -> list[str] | None:
    """The field names of a record (a dataclass or a ketch.values value), as Go's
    struct fields; None for anything else."""
    if isinstance(value, type):
        return None
    if dataclasses.is_dataclass(value):
        return [f.name for f in dataclasses.fields(value)]
    names = getattr(type(value), "__value_fields__", None)
    return list(names) if names is not None else None


def _sorted_keys(mapping: Mapping[Any, Any]) -> list[Any]:
    """Go prints and ranges over maps in key order."""
    keys = list(mapping.keys())
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=_sprint_value)


def _float_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip digits of abs(f) and the decimal point position.

    The value is 0.DIGITS * 10**dp. Python's repr and Go's shortest formatting choose
    the same digits, so this is the common base of Go's %v and JSON float output.
    """
    mantissa, _, exponent = repr(abs(f)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    dp = len(whole) + (int(exponent) if exponent else 0)
    dp -= len(whole + frac) - len((whole + frac).lstrip("0"))
    digits = digits.rstrip("0")
    return (digits or "0"), dp


def _fmt_e(digits: str, dp: int) -> str:
    exp = dp - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    return f"{mantissa}e{sign}{abs(exp):02d}"


def _fmt_f(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * -dp + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def _go_float_g(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), which is what %v prints for a float64."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0:
        return sign + "0"
    digits, dp = _float_digits(f)
    # Shortest formatting switches to an exponent outside 1e-4 <= |f| < 1e6 (Go uses
    # precision 6 for that decision), which is why 1234567.0 prints as 1.234567e+06.
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return sign + _fmt_e(digits, dp)
    return sign + _fmt_f(digits, dp)


# --- JSON, as Go's encoding/json writes it with HTML escaping off --------------------


def _json_encode(value: Any) -> str:
    if value is None or value is MISSING:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, bytes | bytearray):
        return '"' + base64.b64encode(bytes(value)).decode("ascii") + '"'
    if isinstance(value, Mapping):
        # Insertion order, not Go's sorted map order: ketch's dicts mostly stand for
        # Go structs (inspect output), whose JSON keeps declaration order.
        members = ",".join(f"{_json_string(str(k))}:{_json_encode(v)}" for k, v in value.items())
        return "{" + members + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json_encode(v) for v in value) + "]"
    names = _struct_fields(value)
    if names is not None:
        members = ",".join(f"{_json_string(n)}:{_json_encode(getattr(value, n))}"
                           for n in names)
        return "{" + members + "}"
    raise _FuncError(f"json: unsupported type: {_go_type_name(value)}")


def _json_float(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        raise _FuncError(f"json: unsupported value: {_go_float_g(f)}")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign = "-" if f < 0 else ""
    digits, dp = _float_digits(f)
    if abs(f) < 1e-6 or abs(f) >= 1e21:
        text = _fmt_e(digits, dp)
        # encoding/json writes e-7, not e-07
        text = re.sub(r"e-0(\d)$", r"e-\1", text)
        return sign + text
    return sign + _fmt_f(digits, dp)


def _json_string(s: str) -> str:
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code in (0x2028, 0x2029):
            # Go escapes the line separators too, so output stays valid JavaScript.
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _go_type_name(value: Any) -> str:
    """The Go type a Python value stands for, for messages like %!d(string=x)."""
    if value is None or value is MISSING:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes | bytearray):
        return "[]uint8"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    return type(value).__name__


# --- builtins -------------------------------------------------------------------------


def _truth(value: Any) -> bool:
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
        out.append(_sprint_value(arg))
    return "".join(out)


def _sprintln(*args: Any) -> str:
    return " ".join(_sprint_value(a) for a in args) + "\n"


def _builtin_len(item: Any) -> int:
    if isinstance(item, str):
        return len(item.encode("utf-8"))  # Go's len counts bytes
    if isinstance(item, bytes | bytearray | list | tuple | Mapping):
        return len(item)
    raise _FuncError(f"len of type {_go_type_name(item)}")


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
                raise _FuncError(f"cannot index slice/array with type {_go_type_name(index)}")
            data = item.encode("utf-8") if isinstance(item, str) else item
            if not 0 <= index < len(data):
                raise _FuncError(f"index out of range: {index}")
            item = data[index]
        elif item is MISSING:
            raise _FuncError("index of untyped nil")
        else:
            raise _FuncError(f"can't index item of type {_go_type_name(item)}")
    return item


def _builtin_slice(item: Any, *indices: Any) -> Any:
    if not isinstance(item, str | list | tuple):
        raise _FuncError(f"can't slice item of type {_go_type_name(item)}")
    if len(indices) > 3:
        raise _FuncError(f"too many slice indexes: {len(indices)}")
    if isinstance(item, str) and len(indices) == 3:
        raise _FuncError("cannot 3-index slice a string")
    bounds = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int):
            raise _FuncError(f"cannot index slice/array with type {_go_type_name(index)}")
        if not 0 <= index <= len(item):
            raise _FuncError(f"index out of range: {index}")
        bounds.append(index)
    if len(bounds) >= 2 and bounds[0] > bounds[1]:
        raise _FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
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
        raise _FuncError("missing argument for comparison")
    kind1, v1 = _comparable(arg1)
    for other in others:
        kind2, v2 = _comparable(other)
        if kind1 != kind2 and "nil" not in (kind1, kind2):
            raise _FuncError("incompatible types for comparison")
        if kind1 == kind2 and v1 == v2:
            return True
    return False


def _builtin_ne(arg1: Any, arg2: Any) -> bool:
    return not _builtin_eq(arg1, arg2)


def _ordered(arg1: Any, arg2: Any) -> tuple[Any, Any]:
    kind1, v1 = _comparable(arg1)
    kind2, v2 = _comparable(arg2)
    if kind1 not in ("number", "string") or kind2 not in ("number", "string"):
        raise _FuncError("invalid type for comparison")
    if kind1 != kind2:
        raise _FuncError("incompatible types for comparison")
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
    return not _truth(arg)


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
    return urllib.parse.quote_plus(_sprint(*args), safe="")


def _builtin_call(fn: Any, *args: Any) -> Any:
    if not callable(fn):
        raise _FuncError(f"non-function of type {_go_type_name(fn)}")
    return fn(*args)


def _go_quote(s: str) -> str:
    """strconv.Quote."""
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
             "\v": "\\v", "\\": "\\\\", '"': '\\"'}  # fmt: skip
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in named:
            out.append(named[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_PRINTF_VERB_RE = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d*))?([a-zA-Z%])")


def _builtin_printf(format_: str, *args: Any) -> str:
    """fmt.Sprintf for the common verbs (%v %s %d %q %x %f %e %g %t %c and widths)."""
    out: list[str] = []
    arg_index = 0
    pos = 0
    for m in _PRINTF_VERB_RE.finditer(format_):
        out.append(format_[pos : m.start()])
        pos = m.end()
        flags, width, precision, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if arg_index >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[arg_index]
        arg_index += 1
        out.append(_format_verb(verb, flags, width, precision, arg))
    out.append(format_[pos:])
    if arg_index < len(args):
        extra = ", ".join(f"{_go_type_name(a)}={_sprint_value(a)}" for a in args[arg_index:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format_verb(verb: str, flags: str, width: str | None, precision: str | None, arg: Any) -> str:
    is_int = isinstance(arg, int) and not isinstance(arg, bool)
    is_num = is_int or isinstance(arg, float)
    prec = None if precision is None else int(precision or "0")
    if verb in "vs" and (verb == "v" or isinstance(arg, str | list | tuple | Mapping)):
        text = _sprint_value(arg)
        if prec is not None:
            text = text[:prec]
    elif verb == "q" and isinstance(arg, str):
        text = _go_quote(arg)
    elif verb == "t" and isinstance(arg, bool):
        text = "true" if arg else "false"
    elif verb in "dboxXc" and is_int:
        if verb == "c":
            text = chr(arg)
        else:
            spec = {"d": "d", "b": "b", "o": "o", "x": "x", "X": "X"}[verb]
            text = format(arg, ("+" if "+" in flags else "") + spec)
    elif verb in "xX" and isinstance(arg, str):
        text = arg.encode("utf-8").hex()
        text = text.upper() if verb == "X" else text
    elif verb in "eEfFgG" and is_num and not isinstance(arg, bool):
        value = float(arg)
        if verb in "gG" and prec is None:
            text = _go_float_g(value)
            text = text.upper() if verb == "G" else text
        else:
            text = format(
                value, ("+" if "+" in flags else "") + f".{6 if prec is None else prec}{verb}"
            )
    else:
        return f"%!{verb}({_go_type_name(arg)}={_sprint_value(arg)})"
    if width is not None and len(text) < int(width):
        pad = int(width) - len(text)
        if "-" in flags:
            text = text + " " * pad
        elif "0" in flags and is_num:
            sign = text[0] if text[:1] in ("+", "-") else ""
            text = sign + "0" * pad + text[len(sign) :]
        else:
            text = " " * pad + text
    return text


# docker/cli's additions (cli/templates): the names users know from docker docs.


def _func_json(value: Any) -> str:
    return _json_encode(value)


def _func_split(s: str, sep: str) -> list[str]:
    if sep == "":
        return list(s)  # Go splits into characters; Python refuses an empty separator
    return s.split(sep)


def _func_join(items: Sequence[Any], sep: str) -> str:
    return sep.join(i if isinstance(i, str) else _sprint_value(i) for i in items)


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


_BUILTINS: dict[str, Callable[..., Any]] = {
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
    "printf": _builtin_printf,
    "println": _sprintln,
    "slice": _builtin_slice,
    "urlquery": _builtin_urlquery,
}
# `and` and `or` evaluate their arguments lazily, so the executor handles them itself.
_LAZY_BUILTINS = frozenset({"and", "or"})

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


# --- lexer ------------------------------------------------------------------------------

_KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)
_SPACE = " \t\r\n"
_NUMBER_RE = re.compile(
    r"[+-]?(?:"
    r"0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?"
    r"|0[bB][01_]+|0[oO][0-7_]+"
    r"|(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9_]+)?"
    r")"
)
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VARIABLE_RE = re.compile(r"\$[A-Za-z0-9_]*")


@dataclasses.dataclass
class _Token:
    kind: str  # field var dot string number char bool nil ident keyword ( ) | := = ,
    value: Any
    pos: int
    space_before: bool
    text: str


@dataclasses.dataclass
class _TextItem:
    text: str
    pos: int


@dataclasses.dataclass
class _ActionItem:
    tokens: list[_Token]
    pos: int


class _Lexer:
    def __init__(self, source: str) -> None:
        self.src = source
        self.items: list[_TextItem | _ActionItem] = []

    def error(self, pos: int, message: str) -> NoReturn:
        raise _TemplateError(f"template: :{_line_of(self.src, pos)}: {message}")

    def run(self) -> list[_TextItem | _ActionItem]:
        src = self.src
        pos = 0
        trim_next = False
        while True:
            start = src.find("{{", pos)
            text = src[pos:] if start == -1 else src[pos:start]
            left_trim = (
                start != -1
                and src[start + 2 : start + 3] == "-"
                and (src[start + 3 : start + 4] in tuple(_SPACE))
            )
            if trim_next:
                text = text.lstrip(_SPACE)
            if left_trim:
                text = text.rstrip(_SPACE)
            if text:
                self.items.append(_TextItem(text, pos))
            if start == -1:
                return self.items
            inner = start + (4 if left_trim else 2)
            if src.startswith("/*", inner):
                pos, trim_next = self._comment(inner)
            else:
                pos, trim_next = self._action(start, inner)

    def _comment(self, pos: int) -> tuple[int, bool]:
        end = self.src.find("*/", pos + 2)
        if end == -1:
            self.error(pos, "unclosed comment")
        after = end + 2
        if self.src.startswith("}}", after):
            return after + 2, False
        if self.src.startswith(" -}}", after) or (
            self.src[after : after + 1] in tuple(_SPACE) and self.src.startswith("-}}", after + 1)
        ):
            return after + 4, True
        self.error(pos, "comment ends before closing delimiter")

    def _at_right_delim(self, pos: int) -> tuple[bool, bool, int]:
        src = self.src
        if src.startswith("}}", pos):
            return True, False, pos + 2
        if src[pos : pos + 1] in tuple(_SPACE) and src.startswith("-}}", pos + 1):
            return True, True, pos + 4
        return False, False, pos

    def _action(self, start: int, pos: int) -> tuple[int, bool]:
        src = self.src
        tokens: list[_Token] = []
        space = False
        paren_depth = 0
        while True:
            if pos >= len(src):
                self.error(start, "unclosed action")
            at_end, trim, after = self._at_right_delim(pos)
            if at_end:
                if paren_depth:
                    self.error(pos, "unclosed left paren")
                self.items.append(_ActionItem(tokens, start))
                return after, trim
            ch = src[pos]
            if ch in _SPACE:
                space = True
                pos += 1
                continue
            tok_start = pos

            def add(
                kind: str, value: Any, end: int, tok_start: int = tok_start, space: bool = space
            ) -> None:
                tokens.append(_Token(kind, value, tok_start, space, src[tok_start:end]))

            if ch == "|":
                add("|", "|", pos + 1)
                pos += 1
            elif ch == "(":
                paren_depth += 1
                add("(", "(", pos + 1)
                pos += 1
            elif ch == ")":
                paren_depth -= 1
                if paren_depth < 0:
                    self.error(pos, "unexpected right paren")
                add(")", ")", pos + 1)
                pos += 1
            elif ch == ",":
                add(",", ",", pos + 1)
                pos += 1
            elif src.startswith(":=", pos):
                add(":=", ":=", pos + 2)
                pos += 2
            elif ch == "=":
                add("=", "=", pos + 1)
                pos += 1
            elif ch == '"':
                value, pos = self._quoted(pos, '"')
                add("string", value, pos)
            elif ch == "`":
                end = src.find("`", pos + 1)
                if end == -1:
                    self.error(pos, "unterminated raw quoted string")
                add("string", src[pos + 1 : end], end + 1)
                pos = end + 1
            elif ch == "'":
                value, pos = self._quoted(pos, "'")
                if len(value) != 1:
                    self.error(tok_start, f"malformed character constant: {src[tok_start:pos]}")
                add("char", ord(value), pos)
            elif ch == "$":
                m = _VARIABLE_RE.match(src, pos)
                assert m is not None
                add("var", m.group(0), m.end())
                pos = m.end()
            elif ch == "." and not src[pos + 1 : pos + 2].isdigit():
                m = _IDENT_RE.match(src, pos + 1)
                if m is None:
                    add("dot", ".", pos + 1)
                    pos += 1
                else:
                    add("field", m.group(0), m.end())
                    pos = m.end()
            elif ch.isdigit() or ch == "." or (ch in "+-" and src[pos + 1 : pos + 2].isdigit()):
                m = _NUMBER_RE.match(src, pos)
                if m is None or (m.end() < len(src) and (src[m.end()].isalnum())):
                    end = m.end() + 1 if m is not None else pos + 1
                    self.error(pos, f'bad number syntax: "{src[pos:end]}"')
                add("number", m.group(0), m.end())
                pos = m.end()
            elif ch.isalpha() or ch == "_":
                m = _IDENT_RE.match(src, pos)
                assert m is not None
                word = m.group(0)
                if word in ("true", "false"):
                    add("bool", word == "true", m.end())
                elif word == "nil":
                    add("nil", None, m.end())
                elif word in _KEYWORDS:
                    add("keyword", word, m.end())
                else:
                    add("ident", word, m.end())
                pos = m.end()
            else:
                self.error(pos, f"unrecognized character in action: U+{ord(ch):04X} {ch!r}")
            space = False

    def _quoted(self, pos: int, quote: str) -> tuple[str, int]:
        """Decode a Go "..." string or '.' character literal starting at pos."""
        src = self.src
        out: list[str] = []
        i = pos + 1
        simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                  "v": "\v", "\\": "\\", quote: quote}  # fmt: skip
        while True:
            if i >= len(src) or src[i] == "\n":
                what = "string" if quote == '"' else "character constant"
                self.error(pos, f"unterminated quoted {what}")
            ch = src[i]
            if ch == quote:
                return "".join(out), i + 1
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            esc = src[i + 1 : i + 2]
            if esc in simple:
                out.append(simple[esc])
                i += 2
            elif esc in ("x", "u", "U"):
                n = {"x": 2, "u": 4, "U": 8}[esc]
                digits = src[i + 2 : i + 2 + n]
                if len(digits) != n or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    self.error(pos, "invalid syntax in quoted string")
                out.append(chr(int(digits, 16)))
                i += 2 + n
            elif esc in "01234567" and esc:
                digits = src[i + 1 : i + 4]
                if len(digits) != 3 or not all(c in "01234567" for c in digits):
                    self.error(pos, "invalid syntax in quoted string")
                out.append(chr(int(digits, 8)))
                i += 4
            else:
                self.error(pos, "invalid syntax in quoted string")


def _line_of(source: str, pos: int) -> int:
    return 1 + source.count("\n", 0, pos)


# --- parse tree --------------------------------------------------------------------------


@dataclasses.dataclass
class _Node:
    pos: int
    text: str  # the source it came from, shown in execution errors as <...>


@dataclasses.dataclass
class _FieldNode(_Node):
    idents: list[str]


@dataclasses.dataclass
class _VariableNode(_Node):
    name: str
    idents: list[str]


@dataclasses.dataclass
class _ChainNode(_Node):
    node: _Node
    idents: list[str]


@dataclasses.dataclass
class _IdentifierNode(_Node):
    name: str


@dataclasses.dataclass
class _ConstNode(_Node):
    value: Any


@dataclasses.dataclass
class _DotNode(_Node):
    pass


@dataclasses.dataclass
class _NilNode(_Node):
    pass


@dataclasses.dataclass
class _CommandNode(_Node):
    args: list[_Node]


@dataclasses.dataclass
class _PipeNode(_Node):
    decl: list[str]
    is_assign: bool
    cmds: list[_CommandNode]


@dataclasses.dataclass
class _TextNode(_Node):
    pass


@dataclasses.dataclass
class _ActionNode(_Node):
    pipe: _PipeNode


@dataclasses.dataclass
class _BranchNode(_Node):
    kind: str  # if, with, range
    pipe: _PipeNode
    body: list[_Node]
    else_body: list[_Node] | None


@dataclasses.dataclass
class _TemplateNode(_Node):
    name: str
    pipe: _PipeNode | None


@dataclasses.dataclass
class _LoopControlNode(_Node):
    kind: str  # break, continue


class _Parser:
    def __init__(self, source: str, funcs: Mapping[str, Callable[..., Any]]) -> None:
        self.src = source
        self.funcs = funcs
        self.items = _Lexer(source).run()
        self.index = 0
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.defines: dict[str, list[_Node]] = {}

    def error(self, pos: int, message: str) -> NoReturn:
        raise _TemplateError(f"template: :{_line_of(self.src, pos)}: {message}")

    def parse(self) -> list[_Node]:
        body, stop = self._list()
        if stop is not None:
            self.error(stop.pos, f"unexpected {{{{{stop.tokens[0].value}}}}}")
        return body

    def _list(self) -> tuple[list[_Node], _ActionItem | None]:
        """Parse nodes until EOF or an {{end}}/{{else}} action, which is returned."""
        nodes: list[_Node] = []
        while self.index < len(self.items):
            item = self.items[self.index]
            self.index += 1
            if isinstance(item, _TextItem):
                nodes.append(_TextNode(item.pos, item.text))
                continue
            tokens = item.tokens
            if not tokens:
                self.error(item.pos, "missing value for command")
            first = tokens[0]
            if first.kind == "keyword":
                word = first.value
                if word in ("end", "else"):
                    return nodes, item
                if word in ("if", "with", "range"):
                    nodes.append(self._branch(word, item, tokens[1:]))
                elif word == "define":
                    self._define(item, tokens[1:])
                elif word in ("template", "block"):
                    nodes.append(self._template(word, item, tokens[1:]))
                elif word in ("break", "continue"):
                    if self.range_depth == 0:
                        self.error(item.pos, f"{{{{{word}}}}} outside {{{{range}}}}")
                    if len(tokens) > 1:
                        self.error(item.pos, f"unexpected {tokens[1].text} in {{{{{word}}}}}")
                    nodes.append(_LoopControlNode(first.pos, word, word))
                continue
            pipe = self._pipeline(tokens, item.pos, "command", allow_decl=True)
            nodes.append(_ActionNode(item.pos, self.src[item.pos : item.pos + 2], pipe))
        return nodes, None

    def _branch(self, kind: str, item: _ActionItem, tokens: list[_Token]) -> _BranchNode:
        saved_vars = len(self.vars)
        pipe = self._pipeline(tokens, item.pos, kind, allow_decl=True, allow_two=kind == "range")
        if kind == "range":
            self.range_depth += 1
        body, stop = self._list()
        if kind == "range":
            self.range_depth -= 1
        if stop is None:
            self.error(len(self.src), "unexpected EOF")
        else_body: list[_Node] | None = None
        if stop.tokens[0].value == "else":
            rest = stop.tokens[1:]
            if rest and rest[0].kind == "keyword" and rest[0].value in ("if", "with"):
                # "{{else if x}}" is shorthand for "{{else}}{{if x}}...{{end}}", sharing
                # the outer {{end}}; the nested branch consumes it.
                if rest[0].value != kind or kind == "range":
                    self.error(stop.pos, f"unexpected {rest[0].text} in else")
                nested = self._branch(rest[0].value, stop, rest[1:])
                else_body = [nested]
            else:
                if rest:
                    self.error(stop.pos, f"unexpected {rest[0].text} in else")
                else_body, stop = self._list()
                if stop is None:
                    self.error(len(self.src), "unexpected EOF")
                if stop.tokens[0].value != "end":
                    self.error(stop.pos, "expected end; found {{else}}")
                if len(stop.tokens) > 1:
                    self.error(stop.pos, f"unexpected {stop.tokens[1].text} in end")
        elif len(stop.tokens) > 1:
            self.error(stop.pos, f"unexpected {stop.tokens[1].text} in end")
        del self.vars[saved_vars:]
        return _BranchNode(item.pos, kind, kind, pipe, body, else_body)

    def _define(self, item: _ActionItem, tokens: list[_Token]) -> None:
        if len(tokens) != 1 or tokens[0].kind != "string":
            self.error(item.pos, "define clause needs a template name string")
        saved_vars, saved_depth = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        body, stop = self._list()
        self.vars, self.range_depth = saved_vars, saved_depth
        if stop is None or stop.tokens[0].value != "end":
            self.error(item.pos, "unexpected EOF in define clause")
        self.defines[tokens[0].value] = body

    def _template(self, word: str, item: _ActionItem, tokens: list[_Token]) -> _Node:
        if not tokens or tokens[0].kind != "string":
            self.error(item.pos, f"unexpected name in {word} clause")
        name = tokens[0].value
        pipe = (
            self._pipeline(tokens[1:], item.pos, word, allow_decl=False)
            if len(tokens) > 1
            else None
        )
        if word == "block":
            self._define(item, tokens[:1])
        return _TemplateNode(item.pos, word, name, pipe)

    # pipelines and commands

    def _pipeline(
        self,
        tokens: list[_Token],
        pos: int,
        context: str,
        *,
        allow_decl: bool,
        allow_two: bool = False,
    ) -> _PipeNode:
        decl: list[str] = []
        is_assign = False
        i = 0
        if allow_decl and tokens and tokens[0].kind == "var":
            if len(tokens) > 1 and tokens[1].kind in (":=", "="):
                decl = [tokens[0].value]
                is_assign = tokens[1].kind == "="
                i = 2
            elif (
                allow_two
                and len(tokens) > 3
                and tokens[1].kind == ","
                and tokens[2].kind == "var"
                and tokens[3].kind in (":=", "=")
            ):
                decl = [tokens[0].value, tokens[2].value]
                is_assign = tokens[3].kind == "="
                i = 4
            elif len(tokens) > 1 and tokens[1].kind == ",":
                self.error(pos, f"too many declarations in {context}")
        if is_assign:
            for name in decl:
                if name not in self.vars:
                    self.error(pos, f'undefined variable "{name}"')
        cmds = self._commands(tokens[i:], pos, context)
        if not is_assign:
            # The new names become visible after the pipeline that defines them.
            self.vars.extend(decl)
        start = tokens[0].pos if tokens else pos
        end = tokens[-1].pos + len(tokens[-1].text) if tokens else pos
        return _PipeNode(start, self.src[start:end], decl, is_assign, cmds)

    def _commands(self, tokens: list[_Token], pos: int, context: str) -> list[_CommandNode]:
        if not tokens:
            self.error(pos, f"missing value for {context}")
        cmds: list[_CommandNode] = []
        current: list[_Token] = []
        depth = 0
        for tok in tokens:
            if tok.kind == "(":
                depth += 1
            elif tok.kind == ")":
                depth -= 1
            if tok.kind == "|" and depth == 0:
                if not current:
                    self.error(tok.pos, "missing command")
                cmds.append(self._command(current))
                current = []
            else:
                current.append(tok)
        if not current:
            self.error(pos, "missing command")
        cmds.append(self._command(current))
        return cmds

    def _command(self, tokens: list[_Token]) -> _CommandNode:
        args: list[_Node] = []
        i = 0
        while i < len(tokens):
            node, i = self._operand(tokens, i)
            args.append(node)
        start = tokens[0].pos
        end = tokens[-1].pos + len(tokens[-1].text)
        return _CommandNode(start, self.src[start:end], args)

    def _operand(self, tokens: list[_Token], i: int) -> tuple[_Node, int]:
        tok = tokens[i]
        node: _Node
        if tok.kind == "(":
            depth = 0
            j = i
            while True:
                if tokens[j].kind == "(":
                    depth += 1
                elif tokens[j].kind == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            inner = tokens[i + 1 : j]
            end = tokens[j].pos + 1
            node = self._pipeline(inner, tok.pos, "parenthesized pipeline", allow_decl=False)
            node.pos, node.text = tok.pos, self.src[tok.pos : end]
            i = j + 1
        elif tok.kind == "field":
            idents = [tok.value]
            i += 1
            while i < len(tokens) and tokens[i].kind == "field" and not tokens[i].space_before:
                idents.append(tokens[i].value)
                i += 1
            end = tokens[i - 1].pos + len(tokens[i - 1].text)
            return _FieldNode(tok.pos, self.src[tok.pos : end], idents), i
        elif tok.kind == "var":
            if tok.value not in self.vars:
                self.error(tok.pos, f'undefined variable "{tok.value}"')
            idents = []
            i += 1
            while i < len(tokens) and tokens[i].kind == "field" and not tokens[i].space_before:
                idents.append(tokens[i].value)
                i += 1
            end = tokens[i - 1].pos + len(tokens[i - 1].text)
            return _VariableNode(tok.pos, self.src[tok.pos : end], tok.value, idents), i
        elif tok.kind == "ident":
            if (
                tok.value not in self.funcs
                and tok.value not in _BUILTINS
                and (tok.value not in _LAZY_BUILTINS)
            ):
                self.error(tok.pos, f'function "{tok.value}" not defined')
            node = _IdentifierNode(tok.pos, tok.text, tok.value)
            i += 1
        elif tok.kind == "dot":
            node = _DotNode(tok.pos, ".")
            i += 1
        elif tok.kind == "nil":
            node = _NilNode(tok.pos, "nil")
            i += 1
        elif tok.kind in ("string", "bool", "char"):
            node = _ConstNode(tok.pos, tok.text, tok.value)
            i += 1
        elif tok.kind == "number":
            node = _ConstNode(tok.pos, tok.text, self._number(tok))
            i += 1
        else:
            self.error(tok.pos, f'unexpected "{tok.text}" in operand')
        # A field right after a term, with no space, selects from the term's value:
        # (index .X 0).Name, $.Config
        chain: list[str] = []
        while i < len(tokens) and tokens[i].kind == "field" and not tokens[i].space_before:
            chain.append(tokens[i].value)
            i += 1
        if chain:
            if isinstance(node, _ConstNode | _NilNode | _DotNode):
                self.error(tok.pos, f'unexpected . after term "{node.text}"')
            end = tokens[i - 1].pos + len(tokens[i - 1].text)
            node = _ChainNode(node.pos, self.src[node.pos : end], node, chain)
        return node, i

    def _number(self, tok: _Token) -> int | float:
        text = tok.text.replace("_", "")
        body = text.lstrip("+-")
        negative = text.startswith("-")
        try:
            if body[:2].lower() == "0x" and not any(c in body for c in ".pP"):
                value: int | float = int(body, 16)
            elif body[:2].lower() == "0x":
                value = float.fromhex(body)
            elif body[:2].lower() == "0b":
                value = int(body[2:], 2)
            elif body[:2].lower() == "0o":
                value = int(body[2:], 8)
            elif any(c in body for c in ".eE"):
                value = float(body)
            elif len(body) > 1 and body.startswith("0"):
                value = int(body, 8)  # Go reads a leading zero as octal
            else:
                value = int(body)
        except ValueError:
            self.error(tok.pos, f'bad number syntax: "{tok.text}"')
        return -value if negative else value


# --- execution ----------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


@functools.lru_cache(maxsize=512)
def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _check_arity(name: str, fn: Callable[..., Any], nargs: int) -> str | None:
    """Go checks a call's argument count against the function; say so as Go does."""
    try:
        sig = _signature(fn)
    except TypeError:  # unhashable callables cannot be cached; skip the check
        return None
    if sig is None:
        return None
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    required = [p for p in params if p.kind != p.VAR_POSITIONAL and p.default is p.empty]
    variadic = any(p.kind == p.VAR_POSITIONAL for p in params)
    fixed = [p for p in params if p.kind != p.VAR_POSITIONAL]
    if variadic:
        if nargs < len(required):
            return f"wrong number of args for {name}: want at least {len(required)} got {nargs}"
        return None
    if not len(required) <= nargs <= len(fixed):
        return f"wrong number of args for {name}: want {len(fixed)} got {nargs}"
    return None


class _State:
    def __init__(self, template: Template) -> None:
        self.tmpl = template
        self.vars: list[list[Any]] = []
        self.node: _Node | None = None
        self.out: list[str] = []
        self.depth = 0
        self.strict = template.missingkey_error

    def error(self, message: str) -> NoReturn:
        if self.node is None:
            raise _TemplateError(f"template: : {message}")
        src = self.tmpl.source
        pos = self.node.pos
        line = _line_of(src, pos)
        newline = src.rfind("\n", 0, pos)
        col = pos if newline == -1 else pos - newline - 1
        context = self.node.text
        if len(context) > 20:
            context = context[:20] + "..."
        raise _TemplateError(f'template: :{line}:{col}: executing "" at <{context}>: {message}')

    # variables

    def push(self, name: str, value: Any) -> None:
        self.vars.append([name, value])

    def set_var(self, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        self.error(f"undefined variable: {name}")

    def var(self, name: str) -> Any:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        self.error(f"undefined variable: {name}")

    # walking the tree

    def walk(self, dot: Any, nodes: list[_Node]) -> None:
        for node in nodes:
            self.node = node
            if isinstance(node, _TextNode):
                self.out.append(node.text)
            elif isinstance(node, _ActionNode):
                value = self.eval_pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.out.append(go_string(value))
            elif isinstance(node, _BranchNode):
                if node.kind == "range":
                    self.walk_range(dot, node)
                else:
                    self.walk_if_or_with(dot, node)
            elif isinstance(node, _TemplateNode):
                self.walk_template(dot, node)
            elif isinstance(node, _LoopControlNode):
                raise _Break() if node.kind == "break" else _Continue()

    def walk_if_or_with(self, dot: Any, node: _BranchNode) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if _truth(value):
                self.walk(value if node.kind == "with" else dot, node.body)
            elif node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: Any, node: _BranchNode) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            self.node = node
            iterated = False
            for key, elem in self._range_items(value):
                iterated = True
                inner = len(self.vars)
                decl = node.pipe.decl
                if decl:
                    names = [(decl[-1], elem)] + ([(decl[0], key)] if len(decl) == 2 else [])
                    for name, v in names:
                        if node.pipe.is_assign:
                            self.set_var(name, v)
                        else:
                            self._set_top(name, v)
                try:
                    self.walk(elem, node.body)
                except _Continue:
                    pass
                except _Break:
                    break
                finally:
                    del self.vars[inner:]
            if not iterated and node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def _set_top(self, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        self.push(name, value)

    def _range_items(self, value: Any) -> Iterator[tuple[Any, Any]]:
        if value is MISSING or value is None:
            return  # Go treats a nil map or slice as empty, not as an error
        if isinstance(value, Mapping):
            for key in _sorted_keys(value):
                yield key, value[key]
        elif isinstance(value, list | tuple):
            yield from enumerate(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            for i in range(value):
                yield i, i
        else:
            self.error(f"range can't iterate over {_sprint_value(value)}")

    def walk_template(self, dot: Any, node: _TemplateNode) -> None:
        body = self.tmpl.defines.get(node.name)
        if body is None:
            self.error(f'template: no such template "{node.name}"')
        new_dot = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else None
        self.depth += 1
        if self.depth > 1000:
            self.error("exceeded maximum template depth (1000)")
        saved_vars = self.vars
        self.vars = [["$", new_dot]]
        try:
            self.walk(new_dot, body)
        finally:
            self.vars = saved_vars
            self.depth -= 1

    # pipelines

    def eval_pipeline(self, dot: Any, pipe: _PipeNode) -> Any:
        value: Any = MISSING
        has_final = False
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value, has_final)
            has_final = True
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.push(name, value)
        return value

    def eval_command(self, dot: Any, cmd: _CommandNode, final: Any, has_final: bool) -> Any:
        first = cmd.args[0]
        self.node = first
        if isinstance(first, _FieldNode):
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final, has_final)
        if isinstance(first, _ChainNode):
            return self.eval_chain(dot, first, cmd.args, final, has_final)
        if isinstance(first, _IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final, has_final)
        if isinstance(first, _PipeNode):
            self._not_a_function(cmd.args, has_final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, _VariableNode):
            return self.eval_variable(dot, first, cmd.args, final, has_final)
        self._not_a_function(cmd.args, has_final)
        if isinstance(first, _ConstNode):
            return first.value
        if isinstance(first, _DotNode):
            return dot
        if isinstance(first, _NilNode):
            self.error("nil is not a command")
        self.error(f"can't evaluate command {first.text!r}")

    def _not_a_function(self, args: list[_Node], has_final: bool) -> None:
        if len(args) > 1 or has_final:
            self.error(f"can't give argument to non-function {args[0].text}")

    def eval_variable(
        self, dot: Any, node: _VariableNode, args: list[_Node], final: Any, has_final: bool
    ) -> Any:
        self.node = node
        value = self.var(node.name)
        if not node.idents:
            self._not_a_function(args, has_final)
            return value
        return self.eval_field_chain(dot, value, node, node.idents, args, final, has_final)

    def eval_chain(
        self, dot: Any, node: _ChainNode, args: list[_Node], final: Any, has_final: bool
    ) -> Any:
        if len(args) > 1 and isinstance(node.node, _ConstNode | _NilNode):
            self.error("can't give argument to non-function")
        receiver = self.eval_arg(dot, node.node)
        return self.eval_field_chain(dot, receiver, node, node.idents, args, final, has_final)

    def eval_field_chain(
        self,
        dot: Any,
        receiver: Any,
        node: _Node,
        idents: list[str],
        args: list[_Node],
        final: Any,
        has_final: bool,
    ) -> Any:
        for ident in idents[:-1]:
            receiver = self.eval_field(dot, ident, node, [], MISSING, False, receiver)
        return self.eval_field(dot, idents[-1], node, args, final, has_final, receiver)

    def eval_field(
        self,
        dot: Any,
        name: str,
        node: _Node,
        args: list[_Node],
        final: Any,
        has_final: bool,
        receiver: Any,
    ) -> Any:
        self.node = node
        has_args = len(args) > 1 or has_final
        if receiver is MISSING or receiver is None:
            # Selecting from nothing yields nothing, as for Go's nil interface, unless
            # missing keys are errors.
            if self.strict and receiver is MISSING:
                self.error(f'nil data; no entry for key "{name}"')
            if self.strict:
                self.error(f"nil pointer evaluating interface {{}}.{name}")
            return MISSING
        if isinstance(receiver, Context):
            method = self._extension_method(receiver, name)
            if method is not None and (name != "Label" or receiver.labels is not None):
                return self.call(dot, name, method, node, args, final, has_final)
            if name in receiver or name in receiver.known:
                if has_args:
                    self.error(f"{name} has arguments but cannot be invoked as function")
                return receiver.get(name, "")
            self.error(f"can't evaluate field {name} in type {receiver.go_type}")
        if isinstance(receiver, Mapping):
            # Go looks for a method before the map key, and a map entry takes no arguments.
            method = self._extension_method(receiver, name)
            if method is not None:
                return self.call(dot, name, method, node, args, final, has_final)
            if has_args:
                self.error(f"{name} is not a method but has arguments")
            value = receiver.get(name, MISSING)
            if value is MISSING and self.strict:
                self.error(f'map has no entry for key "{name}"')
            return value
        if name.startswith("_") or isinstance(
            receiver, str | int | float | bool | list | tuple | bytes
        ):
            self.error(f"can't evaluate field {name} in type {_go_type_name(receiver)}")
        try:
            attr = getattr(receiver, name)
        except AttributeError:
            self.error(f"can't evaluate field {name} in type {_go_type_name(receiver)}")
        if inspect.ismethod(attr) or inspect.isbuiltin(attr):
            return self.call(dot, name, attr, node, args, final, has_final)
        if has_args:
            self.error(f"{name} has arguments but cannot be invoked as function")
        return attr

    @staticmethod
    def _extension_method(receiver: Mapping[str, Any], name: str) -> Any:
        """A public method a dict subclass adds, like docker's header context Label()."""
        if type(receiver) in (dict,) or hasattr(dict, name) or name.startswith("_"):
            return None
        attr = getattr(receiver, name, None)
        return attr if inspect.ismethod(attr) else None

    def eval_function(
        self,
        dot: Any,
        node: _IdentifierNode,
        cmd: _Node,
        args: list[_Node],
        final: Any,
        has_final: bool,
    ) -> Any:
        self.node = node
        name = node.name
        if name in _LAZY_BUILTINS and name not in self.tmpl.funcs:
            operands = args[1:]
            if not operands and not has_final:
                self.error(f"wrong number of args for {name}: want at least 1 got 0")
            value: Any = MISSING
            for operand in operands:
                value = self.eval_arg(dot, operand)
                if _truth(value) != (name == "and"):
                    return value
            if has_final:
                value = final
            return value
        fn = self.tmpl.funcs.get(name) or _BUILTINS.get(name)
        assert fn is not None  # the parser rejected unknown names
        return self.call(dot, name, fn, cmd, args, final, has_final)

    def call(
        self,
        dot: Any,
        name: str,
        fn: Callable[..., Any],
        cmd: _Node,
        args: list[_Node],
        final: Any,
        has_final: bool,
    ) -> Any:
        """Call fn with the evaluated args (and the piped value last), as evalCall does."""
        # Go checks the count before evaluating anything and blames the function name;
        # a failing call is blamed on the whole command.
        problem = _check_arity(name, fn, len(args) - 1 + int(has_final))
        if problem is not None:
            self.error(problem)
        argv = [self.eval_arg(dot, a) for a in args[1:]]
        if has_final:
            argv.append(None if final is MISSING else final)
        self.node = cmd
        try:
            return fn(*argv)
        except _FuncError as e:
            self.error(f"error calling {name}: {e}")
        except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as e:
            # A function given wrong types fails here rather than in a Go type check.
            self.error(f"error calling {name}: {e}")

    def eval_arg(self, dot: Any, node: _Node) -> Any:
        self.node = node
        if isinstance(node, _DotNode):
            return dot
        if isinstance(node, _NilNode):
            return None
        if isinstance(node, _ConstNode):
            return node.value
        if isinstance(node, _FieldNode):
            value = self.eval_field_chain(dot, dot, node, node.idents, [node], MISSING, False)
        elif isinstance(node, _VariableNode):
            value = self.eval_variable(dot, node, [node], MISSING, False)
        elif isinstance(node, _ChainNode):
            value = self.eval_chain(dot, node, [node], MISSING, False)
        elif isinstance(node, _PipeNode):
            value = self.eval_pipeline(dot, node)
        elif isinstance(node, _IdentifierNode):
            value = self.eval_function(dot, node, node, [node], MISSING, False)
        else:
            self.error(f"can't handle {node.text} as argument")
        # A missing value passed to a function arrives as nil, as in Go.
        return None if value is MISSING else value


class Template:
    """A compiled Go template. Parse errors raise InvalidArgument at construction."""

    def __init__(self, text: str, funcs: Mapping[str, Callable[..., Any]] | None = None,
                 *, missingkey_error: bool = False) -> None:
        self.source = text
        self.missingkey_error = missingkey_error
        self.funcs: dict[str, Callable[..., Any]] = dict(DOCKER_FUNCS)
        if funcs:
            self.funcs.update(funcs)
        try:
            parser = _Parser(text, self.funcs)
            self.root = parser.parse()
        except _TemplateError as e:
            raise InvalidArgument(_ERROR_PREFIX + str(e)) from None
        self.defines = parser.defines

    def execute(self, data: Any) -> str:
        """Run the template with `data` as dot (and $); raises InvalidArgument on errors."""
        state = _State(self)
        state.push("$", data)
        try:
            state.walk(data, self.root)
        except _TemplateError as e:
            raise InvalidArgument(_ERROR_PREFIX + str(e)) from None
        except RecursionError:
            raise InvalidArgument(
                _ERROR_PREFIX + "template: : exceeded maximum template depth"
            ) from None
        return "".join(state.out)


# --- docker's table output ------------------------------------------------------------------

# docker/cli's column headers, keyed by the field names its --format templates use.
CONTAINER_HEADERS: dict[str, str] = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "LocalVolumes": "LOCAL VOLUMES",
    "Networks": "NETWORKS",
    "Platform": "PLATFORM",
}

IMAGE_HEADERS: dict[str, str] = {
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "ID": "IMAGE ID",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "Containers": "CONTAINERS",
    "VirtualSize": "SIZE",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
}


class _HeaderContext(dict[str, str]):
    """The data a table header is rendered from: field name -> column title. A field
    with no title heads an empty column (the rows, if any, have refused it already)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key, "")

    def Label(self, name: str) -> str:  # noqa: N802 - the name templates call it by
        """`{{.Label "com.example.vendor"}}` heads its column "vendor", as docker does."""
        last = name.split(".")[-1]
        return last.replace("-", " ").replace("_", " ")


def render_table(fmt: str, rows: list[Any], headers: Mapping[str, str], *,
                 go_type: str = "*formatter.Context", fields: Mapping[str, str] | None = None,
                 labels: Sequence[Mapping[str, str]] | None = None) -> str:
    """Render rows with a docker `--format` value, the way docker/cli's formatter does.

    "table ..." adds a header row (the same template run over `headers`) and aligns the
    columns with docker's tabwriter settings; a bare "table" uses every header in order.
    "json" means `{{json .}}`. Literal `\\t` and `\\n` in the format become tab and newline.
    Every row ends with a newline.

    Dict rows are docker's typed contexts (`go_type`, e.g. "*formatter.ContainerContext"):
    the fields are the row's keys, the headers' and `fields` (more field -> title); any
    other is an error, as in docker. `labels` (one mapping per row) gives the rows docker's `Label` method.
    """
    text = fmt
    is_table = text.startswith("table")
    if is_table:
        text = text[len("table") :]
    elif text == "json":
        text = "{{json .}}"
    text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    if is_table and not text:
        text = "\t".join("{{." + name + "}}" for name in headers)
    body = Template(text)
    titles = {**(fields or {}), **headers}
    known = frozenset(titles)
    rows = [Context(r, go_type, known, labels[i] if labels is not None else None)
            if type(r) is dict else r for i, r in enumerate(rows)]
    rendered = "".join(body.execute(row) + "\n" for row in rows)
    if not is_table:
        return rendered
    header = Template(text, funcs=HEADER_FUNCS).execute(_HeaderContext(titles))
    return tabwrite_text(header + "\n" + rendered)


def tabwrite(rows: list[list[str]], minwidth: int = 10, padding: int = 3) -> str:
    """Align cells in columns as docker's tables do; the last cell of a row is not padded."""
    return tabwrite_text("".join("\t".join(row) + "\n" for row in rows), minwidth, padding)


@dataclasses.dataclass
class _Cell:
    text: str
    width: int
    htab: bool


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
