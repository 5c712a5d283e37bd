"""The kernel's RESOLVE_IN_ROOT lookup that `-u` resolution prefers (the Python walk
is tested beside it in test_runtime_users.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.conftest import require

from ketch.runtime import users


def test_the_kernel_resolves_in_root_on_this_host(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    fd = users._openat2_in_root(tmp_path, "/etc/passwd", os.O_RDONLY)
    require(fd is not None, "openat2 with RESOLVE_IN_ROOT (Linux 5.6 or later)")
    assert fd is not None
    try:
        assert os.read(fd, 100).startswith(b"root:x:0:0")
    finally:
        os.close(fd)
    # `..` stays at the root: /../../etc/passwd is the rootfs's own file
    fd = users._openat2_in_root(tmp_path, "/../../etc/passwd", os.O_RDONLY)
    assert fd is not None
    os.close(fd)
    with pytest.raises(FileNotFoundError):
        users._openat2_in_root(tmp_path, "/etc/shadow", os.O_RDONLY)
