"""`ketch.Engine` is the library API: every public member says what it does."""

from __future__ import annotations

import inspect
from functools import cached_property

from ketch import Engine


def test_every_public_engine_member_has_a_docstring() -> None:
    missing = []
    for name, member in vars(Engine).items():
        if name.startswith("_") or name in ("root", "run_root", "content", "records",
                                             "layers"):
            continue  # the paths and stores are described in the class docstring
        target = member.func if isinstance(member, cached_property) else member
        target = getattr(target, "__func__", target)
        if callable(target) and not inspect.getdoc(target):
            missing.append(name)
    assert Engine.__doc__ and "Engine(root, run_root)" in Engine.__doc__
    assert not missing, f"undocumented Engine members: {missing}"
