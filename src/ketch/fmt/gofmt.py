"""Go's fmt, strconv and encoding/json output for Python values."""

from __future__ import annotations

import math
from _collections_abc import Mapping  # (why not collections.abc: gotemplate/exec.py)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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


class FuncError(Exception):
    """A builtin rejected its arguments; reported as Go does, 'error calling NAME: ...'."""

# --- printing values the way Go's fmt does ---------------------------------------------


def go_string(value: Any) -> str:
    """Print a value as Go's template engine prints a pipeline result."""
    if value is MISSING or value is None:
        # A nil interface reaching the output is "no value" in Go templates.
        return "<no value>"
    return sprint_value(value)


def sprint_value(value: Any) -> str:
    """fmt's %v for one operand (nested values use this too)."""
    if value is MISSING or value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_g(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return "[" + " ".join(str(b) for b in value) + "]"
    if isinstance(value, Mapping):
        if getattr(value, "go_set", False):  # values are Go's struct{} (gotemplate.GoSet)
            return "map[" + " ".join(f"{sprint_value(k)}:{{}}" for k in sorted_keys(value)) + "]"
        items = " ".join(
            f"{sprint_value(k)}:{sprint_value(value[k])}" for k in sorted_keys(value)
        )
        return f"map[{items}]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(sprint_value(v) for v in value) + "]"
    if type(value).__str__ is not object.__str__:
        # Go prints a value through its String() method; __str__ is Python's equivalent.
        return str(value)
    names = struct_fields(value)
    if names is not None:
        return "{" + " ".join(sprint_value(getattr(value, n)) for n in names) + "}"
    return str(value)


def struct_fields(value: Any) -> list[str] | None:
    """The field names of a record (a dataclass or a ketch.values value), as Go's
    struct fields; None for anything else."""
    if isinstance(value, type):
        return None
    if hasattr(type(value), "__dataclass_fields__"):
        import dataclasses  # loaded already: the value is a dataclass

        return [f.name for f in dataclasses.fields(value)]
    names = getattr(type(value), "__value_fields__", None)
    return list(names) if names is not None else None


def sorted_keys(mapping: Mapping[Any, Any]) -> list[Any]:
    """Go prints and ranges over maps in key order."""
    keys = list(mapping.keys())
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=sprint_value)


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


def float_g(f: float) -> str:
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


def json_encode(value: Any) -> str:
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
        import base64

        return '"' + base64.b64encode(bytes(value)).decode("ascii") + '"'
    if isinstance(value, Mapping):
        if getattr(value, "go_nil", False):  # a nil Go map (gotemplate.NilGoMap)
            return "null"
        # Insertion order, not Go's sorted map order: ketch's dicts mostly stand for
        # Go structs (inspect output), whose JSON keeps declaration order.
        members = ",".join(f"{_json_string(str(k))}:{json_encode(v)}" for k, v in value.items())
        return "{" + members + "}"
    if getattr(value, "go_nil", False):  # a nil Go slice or pointer (gotemplate)
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_encode(v) for v in value) + "]"
    names = struct_fields(value)
    if names is not None:
        members = ",".join(f"{_json_string(n)}:{json_encode(getattr(value, n))}"
                           for n in names)
        return "{" + members + "}"
    raise FuncError(f"json: unsupported type: {type_name(value)}")


def _json_float(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        raise FuncError(f"json: unsupported value: {float_g(f)}")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign = "-" if f < 0 else ""
    digits, dp = _float_digits(f)
    if abs(f) < 1e-6 or abs(f) >= 1e21:
        text = _fmt_e(digits, dp)
        # encoding/json writes e-7, not e-07
        if text[-4:-1] == "e-0":
            text = text[:-2] + text[-1]
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


def type_name(value: Any) -> str:
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


def quote(s: str) -> str:
    """Go's %q of a string (strconv.Quote), as Docker's error messages quote words."""
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


_PRINTF_VERB = r"%([-+# 0]*)(\d+)?(?:\.(\d*))?([a-zA-Z%])"


def printf(format_: str, *args: Any) -> str:
    """fmt.Sprintf for the common verbs (%v %s %d %q %x %f %e %g %t %c and widths)."""
    out: list[str] = []
    arg_index = 0
    pos = 0
    import re  # (on use: `inspect -f` without printf does not load it)

    for m in re.finditer(_PRINTF_VERB, format_):
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
        extra = ", ".join(f"{type_name(a)}={sprint_value(a)}" for a in args[arg_index:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format_verb(verb: str, flags: str, width: str | None, precision: str | None, arg: Any) -> str:
    is_int = isinstance(arg, int) and not isinstance(arg, bool)
    is_num = is_int or isinstance(arg, float)
    prec = None if precision is None else int(precision or "0")
    if verb in "vs" and (verb == "v" or isinstance(arg, str | list | tuple | Mapping)):
        text = sprint_value(arg)
        if prec is not None:
            text = text[:prec]
    elif verb == "T":  # the operand's Go type
        text = type_name(arg)
    elif verb == "q" and isinstance(arg, str):
        text = quote(arg)
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
            text = float_g(value)
            text = text.upper() if verb == "G" else text
        else:
            text = format(
                value, ("+" if "+" in flags else "") + f".{6 if prec is None else prec}{verb}"
            )
    else:
        return f"%!{verb}({type_name(arg)}={sprint_value(arg)})"
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

