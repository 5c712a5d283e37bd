"""One idiom of each kind (ARCHITECTURE.md, "Start-up policy"): this test fails on the
others.

- Type-only imports sit under `if TYPE_CHECKING:`, with `TYPE_CHECKING = False` as a
  module constant (so `typing` is not imported at run time); a name from `typing` at
  module level must be used at run time (a Protocol base, a TypeVar, a cast).
- Records are `ketch.values.value` classes: `dataclasses` is not imported.
- The garbage collector's settings have one owner per front door: `ketch.cli.gcpolicy`
  for the short-lived CLI, `ketch.api.server` for the long-running service (its idle
  release). Services never touch it.
- A `# type: ignore` names its error codes and says why, on the same line.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest
from tests.helpers.source import parsed

# The lint tests that read src/ share one worker, where each file is parsed once
# (tests.helpers.source); spread over the workers, each parsed the whole tree.
pytestmark = pytest.mark.xdist_group("source-trees")

SRC = Path(__file__).resolve().parents[2] / "src" / "ketch"

# gofmt prints a record handed to a template by a library user; if that record is a
# dataclass, dataclasses is already loaded and its fields are read with it.
DATACLASSES_ALLOWED = {"fmt/gofmt.py"}
GC_OWNERS = {"cli/gcpolicy.py", "api/server.py"}


def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(p.relative_to(SRC)), parsed(p))
            for p in sorted(SRC.rglob("*.py"))]


def _annotation_node_ids(tree: ast.Module) -> set[int]:
    ids: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = n.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None and arg.annotation is not None:
                    ids.update(id(x) for x in ast.walk(arg.annotation))
            if n.returns is not None:
                ids.update(id(x) for x in ast.walk(n.returns))
        elif isinstance(n, ast.AnnAssign):
            ids.update(id(x) for x in ast.walk(n.annotation))
    return ids


def _runtime_names(tree: ast.Module) -> set[str]:
    skip = _annotation_node_ids(tree)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in skip}


def test_type_only_imports_sit_under_the_type_checking_constant():
    found = []
    for rel, tree in _modules():
        used = _runtime_names(tree)
        for n in ast.walk(tree):
            if isinstance(n, ast.Import) and any(a.name == "typing" for a in n.names):
                found.append(f"{rel}:{n.lineno}: `import typing`")
            if isinstance(n, ast.ImportFrom) and n.module == "typing":
                if any(a.name == "TYPE_CHECKING" for a in n.names):
                    found.append(f"{rel}:{n.lineno}: TYPE_CHECKING from typing"
                                 " (use the constant `TYPE_CHECKING = False`)")
        for n in tree.body:  # module level: outside `if TYPE_CHECKING:`
            if isinstance(n, ast.ImportFrom) and n.module == "typing":
                idle = [a.asname or a.name for a in n.names
                        if (a.asname or a.name) not in used and a.name != "TYPE_CHECKING"]
                if idle:
                    found.append(f"{rel}:{n.lineno}: {', '.join(idle)} used only in"
                                 " annotations: import under `if TYPE_CHECKING:`")
    assert not found, "\n".join(found)


def test_records_are_values_not_dataclasses():
    found = []
    for rel, tree in _modules():
        if rel in DATACLASSES_ALLOWED:
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.Import) and any(a.name == "dataclasses" for a in n.names):
                found.append(f"{rel}:{n.lineno}")
            if isinstance(n, ast.ImportFrom) and n.module == "dataclasses":
                found.append(f"{rel}:{n.lineno}")
    assert not found, "dataclasses imported (declare records with ketch.values.value):\n" \
        + "\n".join(found)


def test_only_the_gc_policy_module_touches_the_collector():
    found = []
    for rel, tree in _modules():
        if rel in GC_OWNERS:
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.Import) and any(a.name == "gc" for a in n.names):
                found.append(f"{rel}:{n.lineno}")
            if isinstance(n, ast.ImportFrom) and n.module == "gc":
                found.append(f"{rel}:{n.lineno}")
    assert not found, f"gc used outside {sorted(GC_OWNERS)}:\n" + "\n".join(found)


# Modules that do several jobs and are to be split along their seams (the
# maintainability issue): none left.
NOT_YET_SPLIT: set[str] = set()
LONG = 600


def test_a_module_over_600_lines_says_at_its_top_why_it_is_one():
    found = []
    for p in sorted(SRC.rglob("*.py")):
        rel = str(p.relative_to(SRC))
        text = p.read_text()
        if text.count("\n") <= LONG or rel in NOT_YET_SPLIT:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if "\nSize: " not in "\n" + doc:
            found.append(f"{rel}: {text.count(chr(10))} lines")
    assert not found, ("modules over 600 lines with no `Size:` paragraph in their"
                       " docstring saying why they are one:\n" + "\n".join(found))


_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[a-z, -]+\])?(?P<rest>.*)$")


def test_every_type_ignore_names_its_codes_and_says_why():
    bare = []
    for path in sorted(SRC.rglob("*.py")):
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        for tok in tokens:
            if tok.type != tokenize.COMMENT:
                continue
            m = _IGNORE.search(tok.string)
            if m and (not m["codes"] or not re.match(r"\s+#\s*\S", m["rest"])):
                bare.append(f"{path.relative_to(SRC)}:{tok.start[0]}: {tok.string}")
    assert bare == [], "a type: ignore without its codes or a reason:\n" + "\n".join(bare)
