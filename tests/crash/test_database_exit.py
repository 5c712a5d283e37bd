"""How a ketch command leaves ketch.db: every change folded into the database file (the
WAL empty), and the WAL kept for the next command instead of deleted and made again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from ketch.store.db import sqlite3

FIRST, SECOND = "docker.io/library/first:1", "docker.io/library/second:1"


def _rootfs_tar(tmp: Path) -> Path:
    tree = tmp / "tree"
    tree.mkdir()
    (tree / "hello").write_text("hi\n")
    tar = tmp / "rootfs.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(tree / "hello", "hello")
    return tar


def _tags_in_main_file(root: Path, tmp: Path) -> list[str]:
    # a copy of ketch.db alone, without its WAL: what a backup of the file would hold
    copy = tmp / "copy.db"
    shutil.copyfile(root / "ketch.db", copy)
    conn = sqlite3.connect(str(copy))
    try:
        return [r[0] for r in conn.execute("SELECT name FROM tags ORDER BY name")]
    finally:
        conn.close()


def test_a_command_folds_its_changes_into_the_database_and_keeps_the_wal(
        ketch, ketch_root: Path, tmp_path: Path) -> None:
    ketch("import", str(_rootfs_tar(tmp_path)), "first:1")
    wal = ketch_root / "ketch.db-wal"
    assert wal.stat().st_size == 0
    assert _tags_in_main_file(ketch_root, tmp_path) == [FIRST]
    inode = wal.stat().st_ino

    ketch("tag", "first:1", "second:1")
    ketch("images", "-q")
    assert wal.stat().st_ino == inode  # the same file: not deleted and created again
    assert wal.stat().st_size == 0
    assert _tags_in_main_file(ketch_root, tmp_path) == [FIRST, SECOND]


HOLDER = """
import sys, time
from ketch.store.db import sqlite3
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN")
conn.execute("SELECT count(*) FROM tags").fetchone()  # frames written after this read
# began cannot be checkpointed while it lasts
print("holding", flush=True)
time.sleep(60)
"""


def test_a_command_beside_a_reader_of_the_wal_exits_at_once_and_loses_nothing(
        ketch, ketch_root: Path, tmp_path: Path) -> None:
    ketch("import", str(_rootfs_tar(tmp_path)), "first:1")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ketch_root / "ketch.db")],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n"
        started = time.monotonic()
        ketch("tag", "first:1", "second:1")  # its checkpoint cannot finish: no wait
        assert time.monotonic() - started < 10  # the busy timeout is 30 s
    finally:
        holder.kill()
        holder.wait()
    listed = ketch("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert sorted(listed) == ["first:1", "second:1"]
    assert (ketch_root / "ketch.db-wal").stat().st_size == 0
    assert _tags_in_main_file(ketch_root, tmp_path) == [FIRST, SECOND]
