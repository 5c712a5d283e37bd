"""The package layering of src/ketch, computed from the source.

Arrows point down: front doors (cli/, api/) -> Engine -> services -> stores and formats.
Three rules, each a test:
- no cycle between packages (a package is a top-level directory or module of ketch);
- a front door imports only the Engine and the shared leaf modules (FRONT_DOOR_MAY_USE);
- no service imports the Engine: it is the composition root, services get what they
  need when it builds them.

Every import counts, at any depth (function-level imports included); imports under
`if TYPE_CHECKING:` do not, as they never run.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest
from tests.helpers.source import parsed

# The lint tests that read src/ share one worker, where each file is parsed once
# (tests.helpers.source); spread over the workers, each parsed the whole tree.
pytestmark = pytest.mark.xdist_group("source-trees")

SRC = Path(__file__).resolve().parents[2] / "src" / "ketch"
FRONT_DOORS = frozenset({"cli", "api", "cri"})
# The registry server is a product of its own that `ketch registry serve` starts.
FRONT_DOOR_MAY_USE = frozenset({"engine", "fmt", "errors", "values", "reference", "oci",
                                "ids", "fdio", "tomlfile", "sockpath", "launcher",
                                "registry"})
# `ketch system service` does not import the other front door: it execs the service's
# own program (`python -m ketch.api`), so no front door imports another.
FRONT_DOOR_STARTS: frozenset[tuple[str, str]] = frozenset()
# Who may import the Engine: the front doors and the package root (`ketch.Engine`).
ENGINE_USERS = FRONT_DOORS | {"__init__"}


def _package(rel: Path) -> str:
    return rel.parts[0].removesuffix(".py")


def _is_type_checking(test: ast.expr) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "TYPE_CHECKING"
               or isinstance(n, ast.Attribute) and n.attr == "TYPE_CHECKING"
               for n in ast.walk(test))


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)  # the `else:` branch does run
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _targets(node: ast.Import | ast.ImportFrom, rel: Path) -> list[str]:
    """Dotted names below `ketch` that an import statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = list(("ketch", *rel.parts[:-1]))[: len(rel.parts) - node.level + 1]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    return [module] + [f"{module}.{a.name}" for a in node.names]


def _known(name: str) -> bool:
    return (SRC / name).is_dir() or (SRC / f"{name}.py").is_file()


def import_graph() -> dict[tuple[str, str], set[str]]:
    """(from package, to package) -> the files that make the arrow."""
    arrows: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        me = _package(rel)
        for node in _runtime_imports(parsed(path)):
            for name in _targets(node, rel):
                parts = name.split(".")
                if len(parts) < 2 or parts[0] != "ketch":
                    continue
                other = parts[1]
                if other != me and _known(other):
                    arrows[(me, other)].add(str(rel))
    return arrows


def cycles(arrows: dict[tuple[str, str], set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (iterative Tarjan)."""
    succ: dict[str, list[str]] = defaultdict(list)
    for a, b in arrows:
        succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(succ):
        if start in index:
            continue
        work = [(start, iter(sorted(succ[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(succ[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def _describe(arrows: dict[tuple[str, str], set[str]], pairs: list[tuple[str, str]]) -> str:
    return "\n".join(f"{a} -> {b} ({', '.join(sorted(arrows[(a, b)]))})" for a, b in pairs)


def test_the_graph_sees_function_level_imports_and_skips_type_checking_ones() -> None:
    arrows = import_graph()
    # the Engine loads every service inside its methods, never at module level
    assert ("engine", "containers") in arrows
    assert ("engine", "images") in arrows
    # ketch.images.service names the layer store only for type checking
    assert "images/service.py" not in arrows.get(("images", "layers"), set())


def test_no_import_cycle_between_packages() -> None:
    arrows = import_graph()
    found = cycles(arrows)
    detail = [_describe(arrows, sorted((a, b) for (a, b) in arrows if a in c and b in c))
              for c in found]
    assert not found, "import cycles between packages:\n" + "\n\n".join(detail)


def test_front_doors_reach_services_only_through_the_engine() -> None:
    arrows = import_graph()
    bypass = sorted((a, b) for (a, b) in arrows
                    if a in FRONT_DOORS and b not in FRONT_DOOR_MAY_USE
                    and (a, b) not in FRONT_DOOR_STARTS)
    assert not bypass, "front doors importing services directly:\n" + _describe(arrows,
                                                                                bypass)


def test_no_service_imports_the_engine() -> None:
    arrows = import_graph()
    users = sorted((a, b) for (a, b) in arrows if b == "engine" and a not in ENGINE_USERS)
    assert not users, "the Engine is the composition root, not a service locator:\n" + \
        _describe(arrows, users)
