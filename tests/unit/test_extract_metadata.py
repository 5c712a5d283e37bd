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
