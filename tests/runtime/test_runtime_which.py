"""ketch.runtime.oci.which: shutil.which for bare command names, without shutil."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ketch.runtime.oci import which


@pytest.mark.parametrize("name", ["sh", "runc", "conmon", "no-such-command-ketch"])
def test_which_agrees_with_shutil(name: str) -> None:
    assert which(name) == shutil.which(name)


def test_which_skips_directories_and_files_that_are_not_executable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "tool").mkdir()  # a directory of that name
    (second / "tool").write_text("#!/bin/sh\n")  # not executable
    third = tmp_path / "c"
    third.mkdir()
    (third / "tool").write_text("#!/bin/sh\n")
    os.chmod(third / "tool", 0o755)
    monkeypatch.setenv("PATH", os.pathsep.join(map(str, (first, second, third))))
    assert which("tool") == str(third / "tool") == shutil.which("tool")
