"""ketch's code bundle (ketch/__init__.py reads it, ketch/codebundle.py writes it): the
compiled code of the modules a process imported, in one file beside the `.pyc` files,
used only while each source is unchanged, rewritten by the process that found it
stale, and never written where Python would write no bytecode."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import ketch

PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
import ketch.store.db, ketch.values
for name in ("ketch.store.db", "ketch.values"):
    m = sys.modules[name]
    loader = m.__spec__.loader
    print(name, getattr(loader, "__name__", type(loader).__name__), m.__file__ == m.__spec__.origin,
          getattr(m, "EDITED", "-"))
"""


def _tree(tmp_path: Path) -> Path:
    """A copy of ketch's source without compiled files: a package root of its own."""
    src = tmp_path / "src"
    shutil.copytree(ketch.__path__[0], src / "ketch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return src


def _probe(src: Path, *flags: str) -> list[list[str]]:
    proc = subprocess.run([sys.executable, "-I", "-S", *flags, "-c", PROBE, str(src)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line.split() for line in proc.stdout.splitlines()]


def _bundle(src: Path) -> Path:
    return src / "ketch" / "__pycache__" / f"ketch.{sys.implementation.cache_tag}.bundle"


def test_the_bundle_is_written_at_exit_and_serves_the_next_process(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    first = _probe(src)
    assert [row[1] for row in first] == ["SourceFileLoader", "SourceFileLoader"]
    assert _bundle(src).is_file()
    second = _probe(src)
    assert second == [["ketch.store.db", "BundleLoader", "True", "-"],
                      ["ketch.values", "BundleLoader", "True", "-"]]
    assert not list(_bundle(src).parent.glob("*.tmp"))


def test_an_edited_module_comes_from_its_source_and_then_from_the_new_bundle(
        tmp_path: Path) -> None:
    src = _tree(tmp_path)
    _probe(src)
    values = src / "ketch" / "values.py"
    values.write_text(values.read_text() + "\nEDITED = 'yes'\n")
    edited = _probe(src)
    assert edited[1] == ["ketch.values", "SourceFileLoader", "True", "yes"]
    assert edited[0][1] == "BundleLoader"  # the others stay in the bundle
    assert _probe(src)[1] == ["ketch.values", "BundleLoader", "True", "yes"]


def test_a_damaged_bundle_is_ignored_and_replaced(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    _probe(src)
    _bundle(src).write_bytes(b"KCB1" + os.urandom(64))
    assert [row[1] for row in _probe(src)] == ["SourceFileLoader", "SourceFileLoader"]
    assert [row[1] for row in _probe(src)] == ["BundleLoader", "BundleLoader"]


def test_no_bundle_is_written_where_python_writes_no_bytecode(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    _probe(src, "-B")
    assert not _bundle(src).exists()


def test_a_bundled_module_reports_errors_at_its_source_lines(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    _probe(src)
    code = ("import sys, traceback; sys.path.insert(0, sys.argv[1]);"
            " from ketch.values import contextmanager\n"
            "@contextmanager\ndef g():\n    yield\n    yield\n"
            "try:\n    with g(): pass\nexcept RuntimeError:\n    traceback.print_exc()")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(src)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f'File "{src}/ketch/values.py"' in proc.stderr
    assert 'raise RuntimeError("generator didn\'t stop")' in proc.stderr
