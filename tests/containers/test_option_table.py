"""The table of `run`/`create` options (ketch.containers.options.CREATE_OPTIONS), the
flags the CLI declares and the tests stay in step: no flag without an entry saying how
it takes effect, and none without a test that uses it."""

from __future__ import annotations

import re
from pathlib import Path

from ketch.cli.container_opts import add_create_flags
from ketch.cli.flags import Parser
from ketch.containers.options import CREATE_OPTIONS

TESTS = Path(__file__).resolve().parent.parent



def declared() -> dict[str, list[str]]:
    """First long name → every spelling, of each flag `run`/`create` declare."""
    p = Parser("create", short_help=False)
    add_create_flags(p)
    out = {}
    for action in p._actions:
        names = [o for o in action.option_strings if o != "--help"]
        if names:
            out[next(n for n in names if n.startswith("--"))] = names
    return out


def test_every_declared_flag_is_in_the_table_and_nothing_else_is():
    assert sorted(declared()) == sorted(CREATE_OPTIONS)


def test_every_flag_is_used_by_some_test():
    sources = "\n".join(p.read_text() for p in TESTS.rglob("test_*.py")
                        if p.name != Path(__file__).name)
    untested = []
    for flag, names in declared().items():
        if not any(re.search(rf'["\']{re.escape(n)}(=|["\'])', sources) for n in names):
            untested.append(flag)
    assert untested == []

