"""The test suite's own lint: assertions that cannot fail as written.

Two shapes are refused everywhere under tests/:
- an `assert` whose condition is an `or` at the top level (`assert a == 1 or b > 0`
  passes on either branch, so it usually proves nothing: say which one must hold), or a
  condition that is always true (a non-empty tuple, a true constant);
- a test function that checks nothing: no `assert`, no `pytest.raises`/`fail`/`warns`,
  no `raise AssertionError`, and no call to a helper of the suite that does one of these
  (found by name across tests/, so `wait_for(...)` and `assert_clean(...)` count; a
  method only when its name starts with assert/check/expect/verify/wait).

A case that is genuinely right goes in ALLOWED with the reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

# "path/relative/to/tests.py:name-or-line" -> why it is correct as written
ALLOWED: dict[str, str] = {}

_PYTEST_CHECKS = {"raises", "fail", "warns", "xfail"}


def _is_check(node: ast.AST) -> bool:
    """A statement or expression that fails the test by itself when something is wrong."""
    if isinstance(node, ast.Assert):
        return True
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "pytest" and node.attr in _PYTEST_CHECKS):
        return True
    if isinstance(node, ast.Raise) and node.exc is not None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        return isinstance(exc, ast.Name) and exc.id == "AssertionError"
    return False


# A method call counts by the method's name only when the name says it checks: `teardown`
# or `run` on the object under test must not pass for the suite's own Harness.teardown.
_CHECKING_METHOD = re.compile(r"(assert|check|expect|verify|wait)")


def _called_names(fn: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                names.add(f.id)
            elif isinstance(f, ast.Attribute) and _CHECKING_METHOD.match(f.attr):
                names.add(f.attr)
    return names


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _tests(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append(node)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            found += [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return [f for f in found if f.name.startswith("test")]


def checking_helpers(trees: list[ast.Module]) -> set[str]:
    """Names of the suite's functions that check something, directly or through another."""
    calls: dict[str, set[str]] = {}
    checking: set[str] = set()
    for tree in trees:
        for fn in _functions(tree):
            if fn.name.startswith("test"):
                continue
            calls.setdefault(fn.name, set()).update(_called_names(fn))
            if any(_is_check(n) for n in ast.walk(fn)):
                checking.add(fn.name)
    changed = True
    while changed:
        changed = False
        for name, called in calls.items():
            if name not in checking and called & checking:
                checking.add(name)
                changed = True
    return checking


def weak_asserts(tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        t = node.test
        if isinstance(t, ast.BoolOp) and isinstance(t.op, ast.Or):
            found.append((node.lineno, "an `or` at the top level of an assert"))
        elif (isinstance(t, ast.Tuple) and t.elts) or (isinstance(t, ast.Constant) and t.value):
            found.append((node.lineno, "an assert that is always true"))
    return found


def unchecked_tests(tree: ast.Module, helpers: set[str]) -> list[tuple[str, int]]:
    found = []
    for fn in _tests(tree):
        if any(_is_check(n) for n in ast.walk(fn)) or _called_names(fn) & helpers:
            continue
        found.append((fn.name, fn.lineno))
    return found


def lint(sources: dict[str, str]) -> list[str]:
    trees = {name: ast.parse(text, name) for name, text in sources.items()}
    helpers = checking_helpers(list(trees.values()))
    problems = []
    for name, tree in sorted(trees.items()):
        for line, what in weak_asserts(tree):
            if f"{name}:{line}" not in ALLOWED:
                problems.append(f"{name}:{line}: {what}")
        for test, line in unchecked_tests(tree, helpers):
            if f"{name}:{test}" not in ALLOWED:
                problems.append(f"{name}:{line}: {test} asserts nothing")
    return problems


def test_no_test_has_an_assert_that_cannot_fail_or_checks_nothing() -> None:
    sources = {str(p.relative_to(TESTS)): p.read_text() for p in sorted(TESTS.rglob("*.py"))}
    assert len(sources) > 50
    assert lint(sources) == []


def test_allow_list_entries_name_real_places_and_give_a_reason() -> None:
    for key, reason in ALLOWED.items():
        path, _, where = key.rpartition(":")
        assert (TESTS / path).is_file(), key
        assert where and len(reason.split()) >= 3, key


def test_the_lint_finds_each_shape() -> None:
    bad = {
        "test_example.py": (
            "import pytest\n"
            "from helpers import settle\n"
            "def test_either(x):\n"
            "    assert x == 2140160 or x > 1_000_000\n"
            "def test_precedence(p):\n"
            "    assert p.returncode == 1 and 'x' in p.stderr or 'y' in p.stderr\n"
            "def test_tuple(x):\n"
            "    assert (x == 1, 'message')\n"
            "def test_runs_but_checks_nothing(svc):\n"
            "    svc.teardown('a')\n"
            "    svc.teardown('a')\n"
            "def test_through_a_helper(svc):\n"
            "    settle(svc)\n"
            "def test_same_name_as_a_checking_method(svc):\n"
            "    svc.teardown('a')\n"
            "def test_raises():\n"
            "    with pytest.raises(ValueError):\n"
            "        int('x')\n"
            "class TestGroup:\n"
            "    def test_method_checks_nothing(self):\n"
            "        print('hi')\n"
            "class Harness:\n"
            "    def teardown(self):\n"
            "        assert not self.left\n"),
        "helpers.py": (
            "def wait(cond):\n"
            "    if not cond():\n"
            "        raise AssertionError('timed out')\n"
            "def settle(svc):\n"
            "    wait(lambda: svc.done)\n"),
    }
    assert lint(bad) == [
        "test_example.py:4: an `or` at the top level of an assert",
        "test_example.py:6: an `or` at the top level of an assert",
        "test_example.py:8: an assert that is always true",
        "test_example.py:9: test_runs_but_checks_nothing asserts nothing",
        "test_example.py:14: test_same_name_as_a_checking_method asserts nothing",
        "test_example.py:20: test_method_checks_nothing asserts nothing",
    ]
