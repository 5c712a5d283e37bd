"""Command-line flags as docker's CLI parses them (cobra/pflag), not as argparse does.

Why not argparse: its grammar differs from docker's where users notice (a bool flag
takes no `=false`, a flag value that starts with `-` is refused, `run IMAGE --help` is
taken as ketch's own `--help`), and importing it costs `re`, `gettext` and `locale` at
every start (a quarter of `ketch ps`'s own time). The declaration API is argparse's
subset that ketch's commands use, so a command reads the same either way.

The grammar, from pflag:
- `--name value`, `--name=value`, `-n value`, `-nvalue`, `-n=value`; a value is taken
  as it is, even when it starts with `-`.
- bool flags (`action="store_true"`) never take the next argument: `--rm`,
  `--rm=false`, `-d=true`, and clusters of shorthands: `-it`, `-itd`, `-dp 80:80`.
- a flag with `nargs="?"` and `const` is pflag's NoOptDefVal: bare, it means `const`;
  a value is given only after `=`.
- `--` ends the flags. Flags and arguments mix freely, except in a command with a
  `REMAINDER` positional (run, exec, top): from its first argument on, everything is
  arguments, so `ketch run IMAGE ls -l` runs `ls -l`.
"""

from __future__ import annotations

from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from ketch.errors import KetchError

    E = TypeVar("E", bound=KetchError)

REMAINDER = "..."


class UsageError(Exception):
    """A flag error: exit 125 with `prog: message (see 'prog --help')`."""


class FlagValueError(ValueError):
    """Raised by a flag's `type` function; its message follows "invalid argument"."""


class Namespace:
    """The parsed flags and arguments, as attributes."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    if TYPE_CHECKING:  # the attributes are the declared flags: any name, any value
        def __getattr__(self, name: str) -> Any: ...

    def __repr__(self) -> str:
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"


class Action:
    """One declared flag or positional argument."""

    __slots__ = ("option_strings", "dest", "action", "nargs", "const", "default", "type",
                 "choices", "metavar", "help")

    def __init__(self, option_strings: list[str], dest: str, action: str | None,
                 nargs: Any, const: Any, default: Any, type: Callable[[str], Any] | None,
                 choices: Any, metavar: str | None, help: str | None) -> None:
        self.option_strings = option_strings
        self.dest = dest
        self.action = action or "store"
        self.nargs = 0 if self.action == "store_true" else nargs
        self.const = const
        self.default = default
        self.type = type
        self.choices = choices
        self.metavar = metavar
        self.help = help

    @property
    def is_bool(self) -> bool:
        return self.action == "store_true"

    @property
    def is_list(self) -> bool:
        return self.action == "append"

    @property
    def optional_value(self) -> bool:
        """pflag's NoOptDefVal: bare means `const`, a value only after `=`."""
        return self.nargs == "?" and bool(self.option_strings)

    def title(self) -> str:
        """`-n, --last` as pflag names a flag in its errors."""
        shorts = [o for o in self.option_strings if not o.startswith("--")]
        longs = [o for o in self.option_strings if o.startswith("--")]
        return ", ".join(shorts[:1] + longs[:1])


_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


def parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool, which docker's bool flags use."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise FlagValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


class Parser:
    """A command's flags and arguments; `parse_args` fills a Namespace."""

    def __init__(self, prog: str = "", description: str = "", usage_line: str = "",
                 short_help: bool = True) -> None:
        self.prog = prog
        self.description = description
        self.usage_line = usage_line
        self._actions: list[Action] = []
        self._by_option: dict[str, Action] = {}
        self._positionals: list[Action] = []
        self._defaults: dict[str, Any] = {}
        self.add_argument(*(["-h", "--help"] if short_help else ["--help"]),
                          action="store_true", help="Print usage")

    def add_argument(self, *names: str, action: str | None = None, nargs: Any = None,
                     const: Any = None, default: Any = None,
                     type: Callable[[str], Any] | None = None, choices: Any = None,
                     metavar: str | None = None, help: str | None = None,
                     dest: str | None = None) -> Action:
        if action not in (None, "store", "store_true", "append"):
            raise ValueError(f"unsupported flag action {action!r}")
        options = [n for n in names if n.startswith("-")]
        if options:
            longs = [o for o in options if o.startswith("--")]
            dest = dest or (longs[0] if longs else options[0]).lstrip("-").replace("-", "_")
            if action == "store_true" and default is None:
                default = False
        else:
            dest = dest or names[0]
            if nargs == "*" and default is None or nargs == REMAINDER:
                default = []
        a = Action(options, dest, action, nargs, const, default, type, choices, metavar,
                   help)
        self._actions.append(a)
        if options:
            for o in options:
                if o in self._by_option:
                    raise ValueError(f"flag {o} declared twice")
                self._by_option[o] = a
        else:
            self._positionals.append(a)
        return a

    def set_defaults(self, **kw: Any) -> None:
        self._defaults.update(kw)

    # -- parsing --------------------------------------------------------------------

    def parse_args(self, args: list[str]) -> Namespace:
        values: dict[str, Any] = {}
        for a in self._actions:
            values[a.dest] = list(a.default) if isinstance(a.default, list) else a.default
        values.update(self._defaults)
        appended: set[str] = set()
        rest: list[str] = []
        stop_at_first_arg = any(p.nargs == REMAINDER for p in self._positionals)
        i, n = 0, len(args)
        while i < n:
            arg = args[i]
            i += 1
            if arg == "--":
                rest.extend(args[i:])
                break
            if arg.startswith("--"):
                name, eq, value = arg.partition("=")
                flag = self._by_option.get(name)
                if flag is None:
                    raise UsageError(f"unknown flag: {name}")
                if eq:
                    self._set(flag, value, values, appended)
                elif flag.is_bool:
                    values[flag.dest] = True
                elif flag.optional_value:
                    values[flag.dest] = flag.const
                elif i < n:
                    self._set(flag, args[i], values, appended)
                    i += 1
                else:
                    raise UsageError(f"flag needs an argument: {name}")
            elif arg.startswith("-") and arg != "-":
                i = self._shorthands(arg, args, i, values, appended)
            else:
                rest.append(arg)
                if stop_at_first_arg:
                    rest.extend(args[i:])
                    break
        if values.get("help"):
            # `--help` works without the command's arguments, as in docker
            return Namespace(**values)
        self._assign(rest, values)
        return Namespace(**values)

    def _shorthands(self, arg: str, args: list[str], i: int, values: dict[str, Any],
                    appended: set[str]) -> int:
        chars = arg[1:]
        while chars:
            c, chars = chars[0], chars[1:]
            a = self._by_option.get("-" + c)
            if a is None:
                raise UsageError(f"unknown shorthand flag: '{c}' in {arg}")
            if chars.startswith("="):
                self._set(a, chars[1:], values, appended)
                return i
            if a.is_bool:
                values[a.dest] = True
            elif a.optional_value:
                values[a.dest] = a.const
            elif chars:
                self._set(a, chars, values, appended)
                return i
            elif i < len(args):
                self._set(a, args[i], values, appended)
                return i + 1
            else:
                raise UsageError(f"flag needs an argument: '{c}' in {arg}")
        return i

    def _set(self, a: Action, raw: str, values: dict[str, Any], appended: set[str]) -> None:
        try:
            if a.is_bool:
                value: Any = parse_bool(raw)
            elif a.type is int:
                value = _parse_int(raw)
            elif a.type is not None:
                value = a.type(raw)
            else:
                value = raw
        except (ValueError, TypeError) as e:
            raise UsageError(f'invalid argument "{raw}" for "{a.title()}" flag: {e}') from None
        if a.choices is not None and value not in a.choices:
            raise UsageError(f'invalid argument "{raw}" for "{a.title()}" flag: must be one'
                             f" of {', '.join(map(str, a.choices))}")
        if a.is_list:
            if a.dest not in appended:
                # the first use replaces the default, as a pflag slice flag does
                values[a.dest] = []
                appended.add(a.dest)
            values[a.dest].append(value)
        else:
            values[a.dest] = value

    def _assign(self, rest: list[str], values: dict[str, Any]) -> None:
        low = sum(1 for p in self._positionals if p.nargs in (None, "+"))
        unbounded = any(p.nargs in ("*", "+", REMAINDER) for p in self._positionals)
        high = None if unbounded else sum(1 for _ in self._positionals)
        if len(rest) < low or (high is not None and len(rest) > high):
            raise count_error(self.prog, low, high, len(rest))
        i = 0
        for k, p in enumerate(self._positionals):
            later_min = sum(1 for q in self._positionals[k + 1:] if q.nargs in (None, "+"))
            spare = len(rest) - i - later_min
            if p.nargs is None:
                values[p.dest] = rest[i]
                i += 1
            elif p.nargs == "?":
                if spare > 0:
                    values[p.dest] = rest[i]
                    i += 1
            else:  # "*", "+", REMAINDER
                values[p.dest] = rest[i:i + spare]
                i += spare

    # -- help -----------------------------------------------------------------------

    def format_help(self) -> str:
        out = [f"\nUsage:  {self.usage_line}\n", f"{self.description}\n"]
        opts = [a for a in self._actions if a.option_strings]
        if opts:
            out.append("Options:")
            rows = []
            for a in opts:
                shorts = [o for o in a.option_strings if not o.startswith("--")]
                longs = [o for o in a.option_strings if o.startswith("--")]
                flag = (shorts[0] + ", " if shorts else "    ") + (longs[0] if longs else "")
                if not a.is_bool and a.metavar != "":
                    flag += " " + (a.metavar or _metavar(a))
                rows.append((flag, a.help or ""))
            width = max(len(r[0]) for r in rows) + 3
            for flag, h in rows:
                out.append(f"  {flag:<{width}}{h}")
        return "\n".join(out) + "\n"


def _metavar(a: Action) -> str:
    if a.type is int:
        return "int"
    if a.is_list:
        return "list"
    return "string"


def _parse_int(raw: str) -> int:
    # Go's strconv.ParseInt(s, 0, 64), as pflag's int flags use: 0x/0o/0b prefixes, a
    # leading 0 for octal, no spaces
    if raw and raw == raw.strip() and "_" not in raw:
        try:
            value = int(raw, 0)
        except ValueError:
            value = None
            if raw.lstrip("+-").startswith("0") and raw.lstrip("+-").isdigit():
                try:
                    value = int(raw, 8)
                except ValueError:
                    pass
        if value is not None:
            if not -(2**63) <= value < 2**63:
                raise FlagValueError(f'strconv.ParseInt: parsing "{raw}": value out of range')
            return value
    raise FlagValueError(f'strconv.ParseInt: parsing "{raw}": invalid syntax')


def exits(e: E, code: int) -> E:
    """`e`, made to end the command with exit `code` whatever the command's own code
    for errors (run's 125): the codes the docker CLI gives a failure of its own, such as
    1 for its argument checks, 125 for a flag value, 64 for a template."""
    e.exit_code, e.exit_code_is_specific = code, True
    return e


def count_error(prog: str, low: int, high: int | None, n: int) -> InvalidArgument:
    """The error for a wrong number of arguments: exit 1 whatever the command (`run`
    and `create` too, whose other errors are 125), as cobra's argument checks in
    docker/cli are; printed as the docker CLI 28 prints it (no "Error:")."""
    return exits(InvalidArgument(count_message(prog, low, high, n), bare=True), 1)


def count_message(prog: str, low: int, high: int | None, n: int) -> str:
    """docker/cli's RequiresMinArgs/MaxArgs/RangeArgs/ExactArgs messages, as the docker
    CLI 28 words them ("docker: 'docker tag' requires 2 arguments"), without the usage
    block it prints after them."""

    def noun(k: int) -> str:
        return f"{k} argument" + ("" if k == 1 else "s")

    head = f"{prog.split()[0]}: '{prog}'"
    if high == low:
        return f"{head} requires {noun(low)}"
    if high is None:
        return f"{head} requires at least {noun(low)}"
    if low == 0:
        return f"{head} requires at most {noun(high)}"
    return f"{head} requires at least {low} and at most {noun(high)}"
