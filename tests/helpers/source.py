"""ketch's own source as syntax trees, for the lint tests (idioms, layering): each file is
parsed once per test process and the trees are shared, read-only, by every test."""

from __future__ import annotations

import ast
import functools
import gc
from pathlib import Path


@functools.cache
def parsed(path: Path) -> ast.Module:
    """The syntax tree of `path` (parsed on first use; callers must not change it)."""
    tree = ast.parse(path.read_text(), str(path))
    # The trees of the whole source are some 300,000 objects that live as long as the
    # test process and never form garbage: out of the collector's sight, they cost no
    # full collection (neither the automatic ones nor pytest's at the session's end).
    gc.freeze()
    return tree
