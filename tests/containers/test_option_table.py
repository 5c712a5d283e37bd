"""The tables of options (ketch.optiontables: one per CLI group, next to the service that
gives the options their effect), the flags the CLI declares and the tests stay in step.
The commands are found from the CLI's own registries, so a new command, or a new flag
of any command, fails here until its table says how it takes effect (or why it is
refused) and some test of that command uses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ketch.cli.base import _module
from ketch.cli.flags import Parser
from ketch.cli.main import GROUPS, HIDDEN_GROUPS, SHORTCUTS
from ketch.optiontables import TABLE_MODULES, table

TESTS = Path(__file__).resolve().parent.parent

# Helpers of the test suites that stand for a command (their arguments are its flags).
HELPERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("container", "create"): ("run_d(",),
    ("container", "run"): ("run_d(",),
    ("builder", "build"): (".build(",),
    ("distribution", "serve"): ("ketch_registry(",),
}
# run and create take their flags from one function (cli/container_opts.py): a test of
# either uses the flag of both
SAME_FLAGS = {("container", "create"): ("container", "run"),
              ("container", "run"): ("container", "create")}


def _commands() -> list[tuple[str, str]]:
    out = []
    for group, (module, _) in {**GROUPS, **HIDDEN_GROUPS}.items():
        for name in _module(module).registry.commands:
            out.append((group, name))
    return sorted(out)


COMMANDS = _commands()


def _ids(cmd: tuple[str, str]) -> str:
    return " ".join(cmd)


def declared(group: str, command: str) -> dict[str, list[str]]:
    """First long name → every spelling, of each flag the command declares."""
    module = {**GROUPS, **HIDDEN_GROUPS}[group][0]
    cmd = _module(module).registry.commands[command]
    p = Parser(command, short_help=cmd.short_help)
    cmd.setup(p)
    out = {}
    for action in p._actions:
        names = action.option_strings
        if names and "--help" not in names:
            out[next(n for n in names if n.startswith("--"))] = names
    return out


def words(group: str, command: str) -> list[str]:
    """How a test spells a use of the command: `"group", "name"` (and its aliases), the
    top-level shortcuts that stand for it (`"ps"`), and the suites' helpers."""
    module = {**GROUPS, **HIDDEN_GROUPS}[group][0]
    cmd = _module(module).registry.commands[command]
    out = [f'"{group}", "{n}"' for n in (command, *cmd.aliases)]
    out += [f'"{word}"' for word, (g, sub, _) in SHORTCUTS.items()
            if g == group and (sub == command or sub in cmd.aliases)]
    out += [f'"{a}"' for a in cmd.aliases if a in SHORTCUTS or a == "ps"]
    return out + list(HELPERS.get((group, command), ()))


def chunks(text: str) -> list[str]:
    """A test file cut into its top-level statements, a function with its decorators (the
    parametrize lists that feed it) as one."""
    out: list[list[str]] = [[]]
    decorated = False
    for line in text.splitlines():
        top = line[:1] not in ("", " ", "\t", ")", "]", "}", "#")
        if top and not decorated:
            out.append([])
        if top:
            decorated = line.startswith("@")
        out[-1].append(line)
    return ["\n".join(c) for c in out]


_CHUNKS: list[str] = []


def sources() -> list[str]:
    """Every top-level statement of every test file (and fixture file) but this one."""
    if not _CHUNKS:
        for p in sorted([*TESTS.rglob("test_*.py"), *TESTS.rglob("conftest.py")]):
            if p.name != Path(__file__).name:
                _CHUNKS.extend(chunks(p.read_text()))
    return _CHUNKS


def test_every_cli_group_has_a_table_module():
    assert sorted(TABLE_MODULES) == sorted({**GROUPS, **HIDDEN_GROUPS})


@pytest.mark.parametrize("cmd", COMMANDS, ids=_ids)
def test_every_declared_flag_is_in_the_table_and_nothing_else_is(cmd):
    entries = table(*cmd)
    assert entries is not None, f"no table of options for 'ketch {' '.join(cmd)}'"
    assert sorted(declared(*cmd)) == sorted(entries)
    assert all(text.strip() for text in entries.values())


@pytest.mark.parametrize("cmd", COMMANDS, ids=_ids)
def test_every_flag_is_used_by_some_test_of_its_command(cmd):
    # a flag counts when a test (a function with its parametrize lists) that uses this
    # command writes it: a flag of another command elsewhere in the file does not count
    ws = words(*cmd) + (words(*SAME_FLAGS[cmd]) if cmd in SAME_FLAGS else [])
    near = "\n".join(c for c in sources() if any(w in c for w in ws))
    untested = [flag for flag, names in declared(*cmd).items()
                if not any(re.search(rf'["\']{re.escape(n)}(=|["\'])', near) for n in names)]
    assert untested == []
