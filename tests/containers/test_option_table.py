"""The tables of options (run/create, exec, build, network create, volume create), the
flags the CLI declares and the tests stay in step: no flag without an entry saying how
it takes effect, and none without a test that uses it with that command."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from ketch.builder.options import BUILD_OPTIONS
from ketch.cli.container_opts import add_create_flags
from ketch.cli.flags import Parser
from ketch.containers.options import CREATE_OPTIONS, EXEC_OPTIONS
from ketch.containers.volumes import VOLUME_CREATE_OPTIONS
from ketch.network.options import NETWORK_CREATE_OPTIONS
from ketch.pods.options import POD_CREATE_OPTIONS

TESTS = Path(__file__).resolve().parent.parent


def _registered(module: str, command: str) -> Callable[[Parser], None]:
    return importlib.import_module(f"ketch.cli.{module}").registry.get(command).setup


# command → (how its parser is set up, its table, words found only where it is used)
COMMANDS: dict[str, tuple[Callable[[], Callable[[Parser], None]], dict[str, str],
                          tuple[str, ...]]] = {
    "create": (lambda: add_create_flags, CREATE_OPTIONS, ('"run"', '"create"', "run_d(")),
    "exec": (lambda: _registered("container", "exec"), EXEC_OPTIONS, ('"exec"',)),
    "build": (lambda: _registered("build", "build"), BUILD_OPTIONS, ('"build"', ".build(")),
    "network create": (lambda: _registered("network", "create"), NETWORK_CREATE_OPTIONS,
                       ('"network", "create"',)),
    "volume create": (lambda: _registered("volume", "create"), VOLUME_CREATE_OPTIONS,
                      ('"volume", "create"',)),
    "pod create": (lambda: _registered("pod", "create"), POD_CREATE_OPTIONS,
                   ('"pod", "create"',)),
}


def declared(command: str) -> dict[str, list[str]]:
    """First long name → every spelling, of each flag the command declares."""
    p = Parser(command, short_help=False)
    COMMANDS[command][0]()(p)
    out = {}
    for action in p._actions:
        names = [o for o in action.option_strings if o != "--help"]
        if names:
            out[next(n for n in names if n.startswith("--"))] = names
    return out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_declared_flag_is_in_the_table_and_nothing_else_is(command):
    assert sorted(declared(command)) == sorted(COMMANDS[command][1])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_is_used_by_some_test_of_its_command(command):
    # the test files that use the command at all (a flag of another command does not count)
    texts = [p.read_text() for p in TESTS.rglob("test_*.py") if p.name != Path(__file__).name]
    sources = "\n".join(t for t in texts if any(w in t for w in COMMANDS[command][2]))
    untested = []
    for flag, names in declared(command).items():
        if not any(re.search(rf'["\']{re.escape(n)}(=|["\'])', sources) for n in names):
            untested.append(flag)
    assert untested == []
