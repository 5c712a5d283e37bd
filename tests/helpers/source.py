"""ketch's own source as syntax trees, for the lint tests (idioms, layering): each file is
parsed once per test process and the trees are shared, read-only, by every test."""

from __future__ import annotations

import ast
import functools
from pathlib import Path


@functools.cache
def parsed(path: Path) -> ast.Module:
    """The syntax tree of `path` (parsed on first use; callers must not change it)."""
    return ast.parse(path.read_text(), str(path))
