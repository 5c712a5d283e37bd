"""What every command module shares: the command registry, Docker-style argument parsing
and help, output helpers, and the mapping of errors to exit codes."""

from __future__ import annotations

import os
import sys

from ketch.cli.flags import REMAINDER, Namespace, Parser, UsageError, count_error, exits
from ketch.errors import KetchError

__all__ = ["REMAINDER", "Namespace", "Parser", "UsageError"]

TYPE_CHECKING = False  # `typing` and `dataclasses` cost milliseconds at every start
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ketch.engine import Engine

    Handler = Callable[[Namespace], int | None]


class Command:
    """A command of a group: its flags (`setup`), handler and Docker's conventions."""

    __slots__ = ("name", "usage", "help", "setup", "handler", "aliases", "error_exit",
                 "short_help")

    def __init__(self, name: str, usage: str, help: str,
                 setup: Callable[[Parser], None], handler: Handler,
                 aliases: list[str] | None = None, error_exit: int | None = None,
                 short_help: bool = True) -> None:
        self.name = name
        self.usage = usage
        self.help = help
        self.setup = setup
        self.handler = handler
        self.aliases = aliases or []
        # exit code for errors from the command itself (Docker: 125 for `run`/`create`)
        self.error_exit = error_exit
        # `run`/`create` use -h for --hostname, as Docker does
        self.short_help = short_help


class Registry:
    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self.alias_of: dict[str, str] = {}

    def command(self, name: str, usage: str, help: str, *, aliases: tuple[str, ...] = (),
                error_exit: int | None = None, short_help: bool = True
                ) -> Callable[[Callable[[Parser], None]], Any]:
        """Decorate a `setup(parser)` function; it returns the handler via `.handler`."""

        def deco(setup: Callable[[Parser], None]) -> Any:
            def bind(handler: Handler) -> Handler:
                self.commands[name] = Command(name, usage, help, setup, handler,
                                              list(aliases), error_exit, short_help)
                for a in aliases:
                    self.alias_of[a] = name
                return handler

            setup.handler = bind  # type: ignore[attr-defined]  # the registry's decorator attribute on a plain function
            return setup

        return deco

    def get(self, name: str) -> Command | None:
        return self.commands.get(self.alias_of.get(name, name))


def add_filter(p: Parser) -> None:
    p.add_argument("-f", "--filter", action="append", default=[], metavar="filter",
                   help="Provide filter values (e.g. \"dangling=true\")")


def parse_filters(values: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        if "=" not in v:
            raise KetchError(f"bad format of filter (expected name=value): {v}")
        k, val = v.split("=", 1)
        out.setdefault(k.strip().lower(), []).append(val)
    return out


def positional(p: Parser, metavar: str) -> None:
    """Positional arguments collected as `args` and counted by the handler with
    `check_args` (docker's count messages, as the parser gives for declared ones)."""
    p.add_argument("args", nargs="*", metavar=metavar)
    p.set_defaults(prog=p.prog)


def check_args(ns: Namespace, low: int, high: int | None = None) -> list[str]:
    """docker/cli's RequiresMinArgs/MaxArgs/RangeArgs/ExactArgs; `high` None: no limit."""
    n = len(ns.args)
    if n < low or (high is not None and n > high):
        raise count_error(ns.prog, low, high, n)
    return list(ns.args)


def confirm(question: str) -> bool:
    sys.stdout.write(question + " [y/N] ")
    sys.stdout.flush()
    if not sys.stdin or not sys.stdin.isatty():
        answer = sys.stdin.readline() if sys.stdin else ""
    else:
        answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


_engine: Engine | None = None


def engine(*, recover: bool = True) -> Engine:
    """The command's Engine; made on first use, which first finishes or undoes what a
    killed ketch process left (one query when there is nothing to do)."""
    global _engine
    if _engine is None:
        from ketch.engine import Engine

        _engine = Engine()
        if recover:
            _engine.recover()
    return _engine


def close_engine(*, exiting: bool = False) -> None:
    """Close the command's Engine, if it made one (`exiting`: see `Engine.close`)."""
    if _engine is not None:
        _engine.close(exiting=exiting)


def out(text: str = "") -> None:
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))


def print_json(data: Any) -> None:
    from ketch.fmt.jsonindent import dumps

    sys.stdout.write(dumps(data, indent=4) + "\n")


def json_lines(items: list[Any]) -> str:
    """docker's `--format json`: one compact JSON document per line."""
    import json

    return "".join(json.dumps(it, ensure_ascii=False, separators=(",", ":")) + "\n"
                   for it in items)


# The maps of an inspect document that are Go maps of string values in docker's typed
# objects (labels and driver options): a key they lack prints <no value> (GoMap); and
# those whose values are Go's struct{} (GoSet), printed `map[80/tcp:{}]`.
_GO_MAPS = frozenset({"Labels", "Options", "DriverOpts"})
_GO_SETS = frozenset({"ExposedPorts", "Volumes"})


def _typed_maps(item: Any) -> Any:
    """`item` (a copy) with its _GO_MAPS made GoMaps, a null one a NilGoMap; a container
    document also gets the typed nils of docker's Go types (_container_fields)."""
    if isinstance(item, dict):
        from ketch.fmt.gotemplate import GoMap, GoSet, NilGoMap

        def typed(k: str, v: Any) -> Any:
            if k in _GO_MAPS and (v is None or type(v) is dict):
                return NilGoMap() if v is None else GoMap(v)
            if k in _GO_SETS and (v is None or type(v) is dict):
                return NilGoMap() if v is None else GoSet(v)
            return _typed_maps(v)

        out = {k: typed(k, v) for k, v in item.items()}
        if type(out.get("State")) is dict and type(out.get("Config")) is dict:
            _container_fields(out)
        return type(item)(out) if type(item) is not dict else out
    if isinstance(item, list):
        return [_typed_maps(v) for v in item]
    return item


def _container_fields(doc: dict[str, Any]) -> None:
    """The fields of a container document that dockerd leaves out or sends as null and
    the docker CLI's typed object still has: a nil pointer prints `<nil>` (State.Health
    of a container without a health check), a nil slice `[]` (ExecIDs), an omitted
    string is empty. Selecting through a nil pointer fails, and the raw document's error
    is then the one shown (_execute)."""
    from ketch.fmt.gotemplate import NilGoPointer, NilGoSlice

    state, config = doc["State"], doc["Config"]
    if state.get("Health") is None:
        state["Health"] = NilGoPointer("*container.Health")
    for key, go_type in (("Healthcheck", "*container.HealthConfig"),
                         ("StopTimeout", "*int")):
        if config.get(key) is None:
            config[key] = NilGoPointer(go_type)
    config.setdefault("StopSignal", "")
    for key in ("Cmd", "Entrypoint", "OnBuild", "Shell"):
        if config.get(key) is None:
            config[key] = NilGoSlice()
    if doc.get("ExecIDs") is None:
        doc["ExecIDs"] = NilGoSlice()


def _inspect_template(fmt: str) -> Any:
    """docker's inspect template: run on the decoded JSON with missingkey=error; a
    template that does not parse exits 64, as the docker CLI's inspect."""
    from ketch.fmt.gotemplate import Template

    try:
        return Template(fmt, missingkey_error=True)
    except KetchError as e:
        raise exits(e, 64) from None


def format_each(fmt: str, items: list[Any], *, go_type: str = "") -> int:
    """`--format` for inspect-like commands: 'json' or a Go template per item, as the
    docker CLI's inspect runs it: an item the template fails on is an error line (the
    template's own words, no "Error:"), the others are still printed, and a single
    empty line stands for no output at all. `go_type`: the items are docker's typed
    object of that name only (no raw JSON to fall back on: `volume inspect`). Returns 1
    when an item failed, else 0."""
    if fmt == "json":
        sys.stdout.write(json_lines(items))
        return 0
    t = _inspect_template(fmt)
    rc, printed = 0, False
    for it in items:
        try:
            sys.stdout.write(_execute(t, it, go_type) + "\n")
            printed = True
        except KetchError as e:
            sys.stderr.write(f"{e.message}\n")
            rc = 1
    if not printed:
        sys.stdout.write("\n")
    return rc


def format_one(fmt: str, data: dict[str, Any], *, name: str, go_type: str) -> int:
    """`--format` of `version` and `info`: docker's typed object only, whose unknown
    field is "can't evaluate field X in type GO_TYPE", in a template called `name`; an
    error is an empty line out and the error's line (no "Error:"), returning 1."""
    from ketch.fmt.gotemplate import Context, Template

    try:
        t = Template(fmt, missingkey_error=True, name=name, exec_prefix="")
    except KetchError as e:
        raise exits(e, 64) from None
    try:
        sys.stdout.write(t.execute(Context(_typed_maps(data), go_type, frozenset(data)))
                         + "\n")
    except KetchError as e:
        sys.stdout.write("\n")
        sys.stderr.write(f"{e.message}\n")
        return 1
    return 0


def _execute(template: Any, item: Any, go_type: str = "") -> str:
    """The docker CLI's inspect: the template runs on the typed object first and, when
    that fails, on the raw decoded JSON, whose error is the one reported."""
    if go_type:
        from ketch.fmt.gotemplate import Context

        return template.execute(Context(_typed_maps(item), go_type, frozenset(item)))
    try:
        return template.execute(_typed_maps(item))
    except KetchError:
        return template.execute(item)


def inspect_each(names: list[str], lookup: Callable[[str], Any], fmt: str | None, *,
                 go_type: str = "") -> int:
    """The `inspect` commands: look each name up, print the results as a JSON list or
    through `--format` (format_each; `go_type` as there), and an error line for each
    name that was not found."""
    results, rc = [], 0
    if fmt and fmt != "json":
        _inspect_template(fmt)  # a parse error stops everything, before any lookup
    for name in names:
        try:
            results.append(lookup(name))
        except KetchError as e:
            sys.stderr.write(f"Error: {e.message}\n")
            rc = 1
    if fmt:
        return format_each(fmt, results, go_type=go_type) or rc
    print_json(results)
    return rc


def _module(name: str) -> Any:
    # __import__ rather than importlib: importlib's package costs an import of its own
    __import__(name)
    return sys.modules[name]


def group_help(group: str, module: str, help: str) -> str:
    reg: Registry = _module(module).registry
    lines = ["", f"Usage:  ketch {group} COMMAND", "", help, "", "Commands:"]
    for name in sorted(reg.commands):
        lines.append(f"  {name:<11} {reg.commands[name].help}")
    lines += ["", f"Run 'ketch {group} COMMAND --help' for more information on a command.", ""]
    return "\n".join(lines)


def run_command(module: str, group: str, sub: str, prog: str, args: list[str], *,
                debug: bool) -> int:
    reg: Registry = _module(module).registry
    cmd = reg.get(sub)
    if cmd is None:
        sys.stderr.write(f"ketch: '{group} {sub}' is not a ketch command (see 'ketch {group}"
                         " --help')\n")
        return 1
    usage = prog + (" " + cmd.usage if cmd.usage else "")
    p = Parser(prog=prog, description=cmd.help, usage_line=usage,
               short_help=cmd.short_help)
    cmd.setup(p)
    try:
        try:
            ns = p.parse_args(args)
        except UsageError as e:
            # `--help` works whatever else is wrong with the command line, as in docker
            if "--help" in args or (cmd.short_help and "-h" in args):
                sys.stdout.write(p.format_help())
                return 0
            sys.stderr.write(f"{prog}: {e} (see '{prog} --help')\n")
            return 125
        if ns.help:
            sys.stdout.write(p.format_help())
            return 0
        rc = cmd.handler(ns)
        sys.stdout.flush()
        return rc or 0
    except KetchError as e:
        if debug:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"{e.message}\n" if e.bare else f"Error: {e.message}\n")
        if e.exit_code_is_specific:
            return e.exit_code
        return cmd.error_exit or e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except Exception as e:  # the one place an unexpected error is turned into a message
        if debug:
            raise
        sys.stderr.write(f"Error: internal error: {type(e).__name__}: {e}"
                         " (run with --debug for a traceback)\n")
        return cmd.error_exit or 1


def _quiet_stdout() -> None:
    # Silence the interpreter's own flush error on a closed pipe.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
