"""Extraction skips the chown/chmod calls that would change nothing in a fresh
destination: the owners and modes that arrive are still exactly the archive's, whatever
the umask, and a destination that is not fresh still gets every call."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from tests.conftest import require_root

ENTRIES = [
    # name, type, mode, uid, gid
    ("d700", tarfile.DIRTYPE, 0o700, 0, 0),
    ("sticky", tarfile.DIRTYPE, 0o1777, 0, 0),
    ("d775", tarfile.DIRTYPE, 0o775, 1000, 1000),
    ("d775/plain", tarfile.REGTYPE, 0o644, 0, 0),
    ("d775/user", tarfile.REGTYPE, 0o640, 1000, 1000),
    ("setuid", tarfile.REGTYPE, 0o4755, 0, 0),
    ("setgid-user", tarfile.REGTYPE, 0o2755, 1000, 50),
    ("readonly", tarfile.REGTYPE, 0o444, 0, 0),
    ("group-writable", tarfile.REGTYPE, 0o664, 0, 0),
    ("link", tarfile.SYMTYPE, 0o777, 5, 5),
]


def _archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, mode, uid, gid in ENTRIES:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, uid, gid
            info.mtime = 1700000000
            data = b""
            if kind == tarfile.REGTYPE:
                data = name.encode() + b"\n"
                info.size = len(data)
            if kind == tarfile.SYMTYPE:
                info.linkname = "d775/plain"
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _check(dest: Path) -> None:
    for name, kind, mode, uid, gid in ENTRIES:
        st = os.lstat(dest / name)
        assert (st.st_uid, st.st_gid) == (uid, gid), name
        if kind != tarfile.SYMTYPE:
            assert stat.S_IMODE(st.st_mode) == mode, (name, oct(st.st_mode))
        assert st.st_mtime == 1700000000, name
    assert (dest / "readonly").read_bytes() == b"readonly\n"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=["022", "077", "002"])
def test_extract_into_a_fresh_dir_keeps_exact_owners_and_modes_under_any_umask(
        tmp_path: Path, umask: int) -> None:
    require_root()
    tar = tmp_path / "layer.tar"
    tar.write_bytes(_archive())
    dest = tmp_path / "dest"
    # A child process: the umask is per process, and pytest's own must not change.
    code = ("import os, sys; os.umask(int(sys.argv[1], 8));"
            "from ketch.archive import extract; extract(sys.argv[2], sys.argv[3])")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    subprocess.run([sys.executable, "-c", code, oct(umask)[2:], str(tar), str(dest)],
                   check=True, env=env)
    _check(dest)


def test_extract_over_an_existing_setgid_dir_still_sets_each_owner(tmp_path: Path) -> None:
    require_root()
    from ketch.archive import extract

    dest = tmp_path / "dest"
    dest.mkdir()
    os.chown(dest, 0, 77)
    os.chmod(dest, 0o2775)  # new entries would inherit group 77 and the setgid bit
    extract(io.BytesIO(_archive()), dest)
    _check(dest)


def test_small_files_written_by_threads_keep_archive_order_for_links_and_repeats(
        tmp_path: Path) -> None:
    """Small files are created off the reading thread; a hardlink to one, a later entry
    of the same name, a directory replacing one and a path through a symlinked directory
    still see the archive's order, and directory mtimes are those of the archive."""
    from ketch.archive import extract

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
                link: str = "", mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, 1600000000
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            info.linkname = link
            tf.addfile(info, io.BytesIO(data))

        add("d", tarfile.DIRTYPE, mode=0o755)
        for i in range(300):
            add(f"d/f{i}", data=f"first {i}\n".encode())
        add("d/hard", tarfile.LNKTYPE, link="d/f299")  # just queued
        add("d/f8", data=b"second 8\n")  # the later entry wins
        add("d/f9", tarfile.DIRTYPE, mode=0o700)  # a directory replaces a file
        add("alias", tarfile.SYMTYPE, link="d")
        add("alias/f10", data=b"through the symlink\n")
    dest = tmp_path / "dest"
    extract(io.BytesIO(buf.getvalue()), dest)
    assert (dest / "d" / "f0").read_bytes() == b"first 0\n"
    assert (dest / "d" / "f299").read_bytes() == b"first 299\n"
    assert os.stat(dest / "d" / "hard").st_ino == os.stat(dest / "d" / "f299").st_ino
    assert (dest / "d" / "f8").read_bytes() == b"second 8\n"
    assert (dest / "d" / "f9").is_dir()
    assert (dest / "d" / "f10").read_bytes() == b"through the symlink\n"
    assert os.stat(dest / "d").st_mtime == 1600000000
    assert len(os.listdir(dest / "d")) == 301
