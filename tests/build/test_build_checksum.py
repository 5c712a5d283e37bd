"""The COPY/ADD checksum: what it covers (not mtimes) and the stat-keyed digest cache
that lets an unchanged rebuild skip reading file contents."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ketch.build import checksum
from ketch.build.checksum import ChecksumCache, sources_digest
from ketch.build.context import BuildContext
from ketch.store.db import Database


def _digest(root: Path, db: Database | None, patterns: list[str]) -> str:
    ctx = BuildContext(root)
    cache = ChecksumCache(db, ctx.root, persistent=db is not None)
    d = sources_digest(ctx, ctx.resolve(patterns, "COPY"), cache)
    cache.flush()
    return d


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.js").write_text("a\n")
    (root / "src" / "b.js").write_text("b\n")
    (root / "package.json").write_text("{}\n")
    old = time.time() - 3600  # older than the racy-write window, so digests are kept
    for p in root.rglob("*"):
        os.utime(p, (old, old))
    time.sleep(1.1)  # utime set the ctimes to now: let them leave the racy window
    return root


def test_digest_ignores_mtime_but_not_content_mode_or_names(tree: Path) -> None:
    base = _digest(tree, None, ["."])
    assert base.startswith("dir:")
    assert _digest(tree, None, ["package.json"]).startswith("file:")
    assert _digest(tree, None, ["package.json", "src"]).startswith("multi:")
    os.utime(tree / "src" / "a.js", (1, 1))
    assert _digest(tree, None, ["."]) == base
    (tree / "src" / "a.js").write_text("A\n")
    changed = _digest(tree, None, ["."])
    assert changed != base
    (tree / "src" / "a.js").write_text("a\n")
    assert _digest(tree, None, ["."]) == base
    os.chmod(tree / "src" / "a.js", 0o600)
    assert _digest(tree, None, ["."]) != base
    os.chmod(tree / "src" / "a.js", 0o644)
    os.rename(tree / "src" / "b.js", tree / "src" / "c.js")
    assert _digest(tree, None, ["."]) != base


def test_unchanged_files_are_not_read_again(tree: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(tmp_path / "ketch.db")
    reads: list[str] = []
    real = checksum.hash_file

    def counting(path: Path | str) -> str:
        reads.append(os.path.basename(str(path)))
        return real(path)

    monkeypatch.setattr(checksum, "hash_file", counting)
    first = _digest(tree, db, ["."])
    assert sorted(reads) == ["a.js", "b.js", "package.json"]
    reads.clear()
    assert _digest(tree, db, ["."]) == first  # a new process would see the same rows
    assert reads == []
    (tree / "src" / "b.js").write_text("bb\n")  # just written: re-read, not remembered
    assert _digest(tree, db, ["."]) != first
    assert reads == ["b.js"]
    reads.clear()
    _digest(tree, db, ["."])
    assert reads == ["b.js"]  # still inside the racy window: read again, never trusted
    db.close()


def test_ignored_files_are_outside_the_digest(tree: Path) -> None:
    (tree / ".dockerignore").write_text("src/b.js\n")
    base = _digest(tree, None, ["."])
    (tree / "src" / "b.js").write_text("changed\n")
    assert _digest(tree, None, ["."]) == base
