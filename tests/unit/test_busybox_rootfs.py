"""`python3 -m ketch.images.busybox OUT.tar`: the offline busybox base image's rootfs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from tests.conftest import require

import ketch


def maker(*args: str) -> subprocess.CompletedProcess[str]:
    src = os.path.dirname(os.path.dirname(ketch.__file__))
    env = dict(os.environ, PYTHONPATH=src)
    return subprocess.run([sys.executable, "-m", "ketch.images.busybox", *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(autouse=True)
def _busybox() -> None:
    require(os.path.exists("/bin/busybox"), "busybox-static is not installed")


def test_writes_a_rootfs_with_busybox_its_applets_and_etc_files(tmp_path: Path) -> None:
    out = tmp_path / "bb.tar"
    proc = maker(str(out))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"{out}\n", "")
    with tarfile.open(out) as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert members["bin/busybox"].isreg() and members["bin/busybox"].mode == 0o755
        assert members["bin/busybox"].size == Path("/bin/busybox").stat().st_size
        assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/bin/busybox"
        assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
        passwd = tf.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
        assert passwd.splitlines()[0] == "root:x:0:0:root:/root:/bin/sh"
        assert tf.extractfile("www/index.html").read() == b"hello from busybox httpd\n"  # type: ignore[union-attr]
    assert {m.mtime for m in members.values()} == {1700000000}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bb.tar"]  # no partial file left


def test_the_same_busybox_gives_the_same_bytes(tmp_path: Path) -> None:
    digests = set()
    for name in ("a.tar", "b.tar"):
        assert maker(str(tmp_path / name)).returncode == 0
        digests.add(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert len(digests) == 1


def test_usage_errors_write_nothing(tmp_path: Path) -> None:
    for args in ([], ["a.tar", "b.tar"], ["--help"]):
        proc = maker(*args)
        assert proc.returncode == 2
        assert proc.stderr.startswith("usage: python3 -m ketch.images.busybox OUT.tar")
        assert len(proc.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_destination_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = maker(str(tmp_path / "file" / "bb.tar"))
    assert proc.returncode == 1
    assert proc.stderr == f"Error: cannot write {tmp_path / 'file' / 'bb.tar'}: Not a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
