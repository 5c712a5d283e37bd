"""The COPY/ADD checksum: what it covers (not mtimes) and the stat-keyed digest cache
that lets an unchanged rebuild skip reading file contents."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ketch.builder import checksum
from ketch.builder.checksum import ChecksumCache, sources_digest
from ketch.builder.context import BuildContext
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

    def counting(path: Path | str, size: int | None = None) -> str:
        reads.append(os.path.basename(str(path)))
        return real(path, size)

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


def test_same_size_rewrite_with_restored_mtime_is_read_again(tree: Path, tmp_path: Path
                                                             ) -> None:
    """Size and mtime alone would call these files unchanged; the remembered digest is
    also keyed by ctime and inode, which no user-level write can put back."""
    db = Database(tmp_path / "ketch.db")
    first = _digest(tree, db, ["."])
    a = tree / "src" / "a.js"
    st = a.stat()
    a.write_text("z\n")  # same size
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (a.stat().st_size, a.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    changed = _digest(tree, db, ["."])
    assert changed != first
    # Replaced by another file (new inode) with the same size and mtime: read again too.
    b = tree / "src" / "b.js"
    st = b.stat()
    tmp = tree / "src" / ".b.tmp"
    tmp.write_text("y\n")
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, b)
    assert _digest(tree, db, ["."]) not in (first, changed)
    db.close()
