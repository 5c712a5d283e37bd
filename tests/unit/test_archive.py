"""ketch.archive: safe extraction, whiteouts, tar writing and digesting streams.

Every archive here is a real tarball built with tarfile, extracted onto the real
filesystem as root. Escape tests put a sentinel directory next to the destination and
prove it is byte-for-byte untouched afterwards.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import struct
import subprocess
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import require_root

from ketch.archive import (
    DigestingReader,
    DigestingWriter,
    InRoot,
    clean_member_name,
    compress_gzip,
    detect_compression,
    extract,
    layer_blob_from_upper,
    open_decompressed,
    open_in_root,
    resolve_in_root,
    safe_join,
    write_layer_from_upper,
    write_tree,
)
from ketch.archive.writer import _ustar_header
from ketch.errors import InvalidArgument, KetchError, UnsafeArchive

MTIME = 1_600_000_000
CAP_NET_BIND_SERVICE = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


@pytest.fixture(autouse=True)
def _root_only() -> None:
    require_root()


# -- building archives ---------------------------------------------------------------------


def reg(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
        mtime: int = MTIME, xattrs: dict[str, bytes] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.uid, ti.gid, ti.mtime = len(data), mode, uid, gid, mtime
    if xattrs:
        ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                          for k, v in xattrs.items()}
    return ti, data


def dir_(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0,
         mtime: int = MTIME) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = tarfile.DIRTYPE, mode, uid, gid, mtime
    return ti, b""


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode, ti.mtime = tarfile.SYMTYPE, target, 0o777, MTIME
    return ti, b""


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode, ti.mtime = tarfile.LNKTYPE, target, 0o644, MTIME
    return ti, b""


def dev(name: str, kind: bytes, major: int = 0, minor: int = 0,
        mode: int = 0o666) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.devmajor, ti.devminor, ti.mode, ti.mtime = kind, major, minor, mode, MTIME
    return ti, b""


def make_tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def unpack(data: bytes, dest: Path, **kw: object) -> None:
    extract(io.BytesIO(data), dest, **kw)  # type: ignore[arg-type]


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        return tf.getmembers()


# -- the sentinel next to the destination --------------------------------------------------


@dataclass
class Box:
    dest: Path
    outside: Path
    secret: Path

    def assert_untouched(self) -> None:
        assert self.secret.read_bytes() == b"original"
        st = self.secret.lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1
        assert sorted(os.listdir(self.outside)) == ["secret"]
        assert sorted(os.listdir(self.dest.parent)) == ["dest", "outside"]


@pytest.fixture
def box(tmp_path: Path) -> Box:
    root = tmp_path / "box"
    outside = root / "outside"
    outside.mkdir(parents=True)
    secret = outside / "secret"
    secret.write_bytes(b"original")
    dest = root / "dest"
    dest.mkdir()
    return Box(dest, outside, secret)


def inside(box: Box, path: Path | str) -> Path:
    """Where an absolute host path lands when the destination is treated as '/'."""
    return box.dest / str(path).lstrip("/")


# -- clean names and in-root resolution ----------------------------------------------------


@pytest.mark.parametrize("name,clean", [
    ("a/b", "a/b"), ("./a//b/", "a/b"), ("/etc/passwd", "etc/passwd"),
    ("a/../b", "b"), ("./", ""), ("a/./b/..", "a"),
])
def test_member_names_are_cleaned_lexically(name: str, clean: str) -> None:
    assert clean_member_name(name) == clean


@pytest.mark.parametrize("name", ["..", "../x", "a/../../x", "/../x", "a/b/../../../x"])
def test_member_names_climbing_out_are_refused(name: str) -> None:
    with pytest.raises(UnsafeArchive):
        clean_member_name(name)


def test_safe_join_resolves_absolute_symlink_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "evil").symlink_to("/etc")
    assert safe_join(tmp_path, "evil/passwd") == tmp_path / "etc" / "passwd"


def test_safe_join_restarts_absolute_symlinks_deep_in_the_tree_at_the_root(
        tmp_path: Path) -> None:
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    (tmp_path / "usr" / "lib" / "evil").symlink_to("/etc")
    assert safe_join(tmp_path, "usr/lib/evil/passwd") == tmp_path / "etc" / "passwd"


def test_safe_join_clamps_dotdot_at_the_root(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "up").symlink_to("../../../../x")
    assert safe_join(tmp_path, "../../x") == tmp_path / "x"
    assert safe_join(tmp_path, "a/up/y") == tmp_path / "x" / "y"


def test_safe_join_follows_symlink_chains_and_keeps_missing_tail(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("/c/d")
    assert safe_join(tmp_path, "a/missing/file") == tmp_path / "c" / "d" / "missing" / "file"


def test_resolve_in_root_can_leave_the_final_symlink_alone(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "link").symlink_to("/etc/shadow")
    assert resolve_in_root(tmp_path, "dir/link", follow_final=False) == tmp_path / "dir" / "link"
    assert resolve_in_root(tmp_path, "dir/link") == tmp_path / "etc" / "shadow"


def test_resolve_in_root_refuses_symlink_loops(tmp_path: Path) -> None:
    (tmp_path / "l1").symlink_to("l2")
    (tmp_path / "l2").symlink_to("l1")
    with pytest.raises(UnsafeArchive):
        resolve_in_root(tmp_path, "l1/x")


def test_open_in_root_reads_the_containers_file_not_the_hosts(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("inside\n")
    (tmp_path / "evil").symlink_to("/etc")
    (tmp_path / "final").symlink_to("/etc/hostname")
    (tmp_path / "etc" / "deep").symlink_to("/etc")
    for rel in ("evil/hostname", "final", "../../etc/hostname", "etc/deep/hostname"):
        fd = open_in_root(tmp_path, rel)
        with os.fdopen(fd) as f:
            assert f.read() == "inside\n"


def test_open_in_root_without_following_refuses_a_final_symlink(tmp_path: Path) -> None:
    (tmp_path / "final").symlink_to("/etc/hostname")
    with pytest.raises(OSError):
        open_in_root(tmp_path, "final", follow_final=False)


def test_in_root_walk_does_not_follow_dotdot_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "up").symlink_to("../..")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        got = InRoot(fd).open_dir("a/up/..", create=False)
        assert got is not None
        try:
            assert os.fstat(got[0]).st_ino == os.stat(root).st_ino
            assert got[1] == ""
        finally:
            os.close(got[0])
    finally:
        os.close(fd)


# -- escapes: nothing is ever written outside the destination ------------------------------


@pytest.mark.parametrize("name", ["../outside/secret", "a/../../outside/secret",
                                  "./../outside/secret"])
def test_entries_climbing_out_with_dotdot_are_refused(box: Box, name: str) -> None:
    with pytest.raises(UnsafeArchive):
        unpack(make_tar(reg(name, b"pwned")), box.dest)
    box.assert_untouched()


def test_absolute_entry_names_are_contained(box: Box) -> None:
    unpack(make_tar(reg(str(box.secret), b"pwned")), box.dest)
    box.assert_untouched()
    assert inside(box, box.secret).read_bytes() == b"pwned"


def test_file_below_symlink_to_root_lands_inside(box: Box) -> None:
    unpack(make_tar(sym("evil", "/"), reg(f"evil/{box.secret}", b"pwned")), box.dest)
    box.assert_untouched()
    assert inside(box, box.secret).read_bytes() == b"pwned"


def test_file_below_relative_symlink_climbing_out_lands_inside(box: Box) -> None:
    # dest/evil -> ../.. would be box's parent for a naive extractor.
    unpack(make_tar(sym("evil", "../.."), reg("evil/outside/secret", b"pwned"),
                    sym("evil2", "../outside"), reg("evil2/secret", b"pwned2")), box.dest)
    box.assert_untouched()
    assert (box.dest / "outside" / "secret").read_bytes() == b"pwned2"


def test_file_below_a_symlink_chain_lands_inside(box: Box) -> None:
    unpack(make_tar(sym("a", "b"), sym("b", "c"), sym("c", str(box.outside)),
                    reg("a/secret", b"pwned")), box.dest)
    box.assert_untouched()
    assert inside(box, box.secret).read_bytes() == b"pwned"


def test_absolute_symlink_deep_in_the_tree_restarts_at_the_destination_root(box: Box) -> None:
    unpack(make_tar(dir_("usr/lib"), sym("usr/lib/evil", str(box.outside)),
                    reg("usr/lib/evil/secret", b"pwned")), box.dest)
    box.assert_untouched()
    assert inside(box, box.secret).read_bytes() == b"pwned"
    assert not (box.dest / "usr" / "lib" / str(box.outside).lstrip("/")).exists()


def test_symlink_loops_are_refused(box: Box) -> None:
    with pytest.raises(UnsafeArchive):
        unpack(make_tar(sym("l1", "l2"), sym("l2", "l1"), reg("l1/x", b"x")), box.dest)
    box.assert_untouched()


def test_directory_and_symlink_entries_below_escaping_symlink_land_inside(box: Box) -> None:
    unpack(make_tar(sym("evil", str(box.outside)), dir_("evil/newdir"),
                    sym("evil/newlink", "/etc/passwd"), dev("evil/fifo", tarfile.FIFOTYPE)),
           box.dest)
    box.assert_untouched()
    assert inside(box, box.outside / "newdir").is_dir()
    assert os.readlink(inside(box, box.outside / "newlink")) == "/etc/passwd"
    assert stat.S_ISFIFO(inside(box, box.outside / "fifo").lstat().st_mode)


def test_preexisting_symlink_in_destination_is_resolved_inside(box: Box) -> None:
    # `docker cp` into a container whose rootfs the container itself controls.
    (box.dest / "link").symlink_to(box.outside)
    unpack(make_tar(reg("link/secret", b"pwned")), box.dest, whiteouts="apply")
    box.assert_untouched()
    assert inside(box, box.secret).read_bytes() == b"pwned"


def test_file_entry_replaces_a_symlink_instead_of_writing_through_it(box: Box) -> None:
    unpack(make_tar(sym("s", str(box.secret)), reg("s", b"pwned")), box.dest)
    box.assert_untouched()
    assert stat.S_ISREG((box.dest / "s").lstat().st_mode)
    assert (box.dest / "s").read_bytes() == b"pwned"


def test_hardlink_to_absolute_host_path_never_links_the_host_file(box: Box) -> None:
    with pytest.raises(InvalidArgument):
        unpack(make_tar(hard("h", str(box.secret))), box.dest)
    box.assert_untouched()


def test_hardlink_with_absolute_target_links_the_file_inside(box: Box) -> None:
    unpack(make_tar(reg(str(box.secret), b"inner"), hard("h", str(box.secret))), box.dest)
    box.assert_untouched()
    assert (box.dest / "h").stat().st_ino == inside(box, box.secret).stat().st_ino


def test_hardlink_climbing_out_with_dotdot_is_refused(box: Box) -> None:
    with pytest.raises(UnsafeArchive):
        unpack(make_tar(hard("h", "../outside/secret")), box.dest)
    box.assert_untouched()


def test_hardlink_through_an_escaping_symlink_does_not_reach_the_host(box: Box) -> None:
    with pytest.raises(InvalidArgument):
        unpack(make_tar(sym("evil", str(box.outside)), hard("h", "evil/secret")), box.dest)
    box.assert_untouched()


def test_hardlink_to_a_symlink_links_the_symlink_itself(box: Box) -> None:
    unpack(make_tar(sym("s", str(box.secret)), hard("h", "s")), box.dest)
    box.assert_untouched()
    assert os.readlink(box.dest / "h") == str(box.secret)
    assert (box.dest / "h").lstat().st_ino == (box.dest / "s").lstat().st_ino
    # Writing a file over the link afterwards must not write through it either.
    unpack(make_tar(reg("h", b"pwned")), box.dest)
    box.assert_untouched()


@pytest.mark.parametrize("mode", ["apply", "overlay"])
def test_whiteouts_below_an_escaping_symlink_stay_inside(box: Box, mode: str) -> None:
    unpack(make_tar(sym("evil", str(box.outside)), reg("evil/.wh.secret"),
                    reg("evil/.wh..wh..opq")), box.dest, whiteouts=mode)
    box.assert_untouched()


def test_preexisting_escaping_symlink_is_not_followed_by_apply_whiteouts(box: Box) -> None:
    (box.dest / "evil").symlink_to(box.outside)
    unpack(make_tar(reg("evil/.wh.secret"), reg("evil/.wh..wh..opq")), box.dest,
           whiteouts="apply")
    box.assert_untouched()


# -- metadata --------------------------------------------------------------------------------


def test_mode_setuid_numeric_owner_and_mtime_are_preserved(tmp_path: Path) -> None:
    unpack(make_tar(dir_("d", mode=0o2750, uid=1234, gid=5678, mtime=MTIME + 5),
                    reg("d/su", b"#!", mode=0o4755, uid=1234, gid=5678, mtime=MTIME + 7)),
           tmp_path)
    st = (tmp_path / "d" / "su").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o4755, 1234, 5678)
    assert st.st_mtime == MTIME + 7
    dst = (tmp_path / "d").stat()
    assert (stat.S_IMODE(dst.st_mode), dst.st_uid, dst.st_gid) == (0o2750, 1234, 5678)


def test_directory_mtime_survives_its_children_being_written(tmp_path: Path) -> None:
    unpack(make_tar(dir_("d", mtime=MTIME), reg("d/a", b"1"), dir_("d/sub", mtime=MTIME + 1),
                    reg("d/sub/b", b"2")), tmp_path)
    assert (tmp_path / "d").stat().st_mtime == MTIME
    assert (tmp_path / "d" / "sub").stat().st_mtime == MTIME + 1


def test_read_only_directory_still_receives_its_files_without_root(tmp_path: Path) -> None:
    # As root, permissions never get in the way; an unprivileged extraction proves that
    # directory modes are applied after the directory's content.
    data = make_tar(dir_("ro", mode=0o555), reg("ro/f", b"content"), dir_("ro/sub", 0o500),
                    reg("ro/sub/g", b"more"))
    work = Path(tempfile.mkdtemp(prefix="ketch-ro-", dir="/tmp"))
    try:
        os.chown(work, 65534, 65534)
        pid = os.fork()
        if pid == 0:  # the child drops root for good, extracts, and reports by exit code
            code = 1
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                extract(io.BytesIO(data), work / "out", same_owner=False)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert (work / "out" / "ro" / "f").read_bytes() == b"content"
        assert (work / "out" / "ro" / "sub" / "g").read_bytes() == b"more"
        assert stat.S_IMODE((work / "out" / "ro").stat().st_mode) == 0o555
        assert stat.S_IMODE((work / "out" / "ro" / "sub").stat().st_mode) == 0o500
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=True)


def test_xattrs_from_pax_records_are_restored_byte_for_byte(tmp_path: Path) -> None:
    unpack(make_tar(reg("f", b"x", xattrs={"user.note": b"hello",
                                           "security.capability": CAP_NET_BIND_SERVICE}),
                    dir_("d"),), tmp_path)
    assert os.getxattr(tmp_path / "f", "user.note") == b"hello"
    assert os.getxattr(tmp_path / "f", "security.capability") == CAP_NET_BIND_SERVICE


def test_overlay_xattrs_carried_in_an_archive_are_dropped(tmp_path: Path) -> None:
    ti, _ = dir_("d")
    ti.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/elsewhere",
                      "SCHILY.xattr.trusted.overlay.opaque": "y"}
    unpack(make_tar((ti, b"")), tmp_path, whiteouts="none")
    assert os.listxattr(tmp_path / "d") == []


def test_device_nodes_and_fifos_are_created(tmp_path: Path) -> None:
    unpack(make_tar(dev("null", tarfile.CHRTYPE, 1, 3, 0o666), dev("loop", tarfile.BLKTYPE, 7, 0,
                    0o660), dev("pipe", tarfile.FIFOTYPE, mode=0o600)), tmp_path)
    st = (tmp_path / "null").lstat()
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert stat.S_IMODE(st.st_mode) == 0o666
    st = (tmp_path / "loop").lstat()
    assert stat.S_ISBLK(st.st_mode) and os.major(st.st_rdev) == 7
    assert stat.S_ISFIFO((tmp_path / "pipe").lstat().st_mode)
    assert stat.S_IMODE((tmp_path / "pipe").lstat().st_mode) == 0o600


def test_symlinks_keep_their_target_verbatim(tmp_path: Path) -> None:
    unpack(make_tar(sym("bin/sh", "/bin/busybox"), sym("rel", "../up")), tmp_path)
    assert os.readlink(tmp_path / "bin" / "sh") == "/bin/busybox"
    assert os.readlink(tmp_path / "rel") == "../up"


def test_hardlinks_share_one_inode(tmp_path: Path) -> None:
    stats = extract(io.BytesIO(make_tar(reg("a", b"same"), hard("b", "a"), hard("c", "./a"))),
                    tmp_path)
    assert stats.hardlinks == 2
    assert (tmp_path / "a").stat().st_nlink == 3


def test_same_owner_false_leaves_files_to_the_extracting_user(tmp_path: Path) -> None:
    unpack(make_tar(reg("f", b"x", uid=4321, gid=4321)), tmp_path, same_owner=False)
    assert (tmp_path / "f").stat().st_uid == os.getuid()


def test_on_entry_can_skip_members(tmp_path: Path) -> None:
    seen: list[str] = []

    def keep(ti: tarfile.TarInfo) -> bool:
        seen.append(ti.name)
        return ti.name != "skip"

    stats = extract(io.BytesIO(make_tar(reg("keep", b"1"), reg("skip", b"2" * 5000),
                                        reg("after", b"3"))), tmp_path, on_entry=keep)
    assert seen == ["keep", "skip", "after"]
    assert sorted(os.listdir(tmp_path)) == ["after", "keep"]
    assert (tmp_path / "after").read_bytes() == b"3"
    assert stats.skipped == 1


def test_long_and_non_ascii_names_round_trip(tmp_path: Path) -> None:
    long = "d/" + "x" * 150 + "/" + "é" * 60
    unpack(make_tar(reg(long, b"deep"), sym("lnk", "t" * 200)), tmp_path)
    assert (tmp_path / long).read_bytes() == b"deep"
    assert os.readlink(tmp_path / "lnk") == "t" * 200


# -- replacing what is already there --------------------------------------------------------


def test_directory_replaces_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"file")
    unpack(make_tar(dir_("x"), reg("x/in", b"1")), tmp_path, whiteouts="apply")
    assert (tmp_path / "x" / "in").read_bytes() == b"1"


def test_file_replaces_an_existing_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "x" / "deep").mkdir(parents=True)
    (tmp_path / "x" / "deep" / "f").write_bytes(b"old")
    unpack(make_tar(reg("x", b"now a file")), tmp_path, whiteouts="apply")
    assert (tmp_path / "x").read_bytes() == b"now a file"


def test_symlink_replaces_an_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_bytes(b"old")
    unpack(make_tar(sym("x", "elsewhere")), tmp_path, whiteouts="apply")
    assert os.readlink(tmp_path / "x") == "elsewhere"


def test_directory_over_directory_merges(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "old").write_bytes(b"kept")
    unpack(make_tar(dir_("x", mode=0o700), reg("x/new", b"added")), tmp_path, whiteouts="apply")
    assert (tmp_path / "x" / "old").read_bytes() == b"kept"
    assert (tmp_path / "x" / "new").read_bytes() == b"added"
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o700


def test_directory_replaces_a_symlink_to_a_directory_without_touching_its_target(box: Box) -> None:
    (box.dest / "d").symlink_to(box.outside)
    unpack(make_tar(dir_("d", mode=0o700), reg("d/secret", b"pwned")), box.dest,
           whiteouts="apply")
    box.assert_untouched()
    assert not (box.dest / "d").is_symlink()
    assert (box.dest / "d" / "secret").read_bytes() == b"pwned"


def test_existing_hardlink_is_not_written_through(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"original")
    os.link(tmp_path / "a", tmp_path / "b")
    unpack(make_tar(reg("b", b"new")), tmp_path, whiteouts="apply")
    assert (tmp_path / "a").read_bytes() == b"original"
    assert (tmp_path / "b").read_bytes() == b"new"


# -- whiteouts -------------------------------------------------------------------------------


def test_overlay_mode_turns_whiteouts_into_char_devices_and_opaque_xattrs(tmp_path: Path) -> None:
    stats = extract(io.BytesIO(make_tar(reg(".wh.gone"), dir_("d"), reg("d/.wh..wh..opq"),
                                        reg("d/new", b"n"), reg("e/.wh.deep"))), tmp_path)
    st = (tmp_path / "gone").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert stat.S_ISCHR((tmp_path / "e" / "deep").lstat().st_mode)
    assert os.getxattr(tmp_path / "d", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(tmp_path / "d")) == ["new"]
    assert not [p for p in tmp_path.rglob(".wh.*")]
    assert (stats.whiteouts, stats.opaque_dirs) == (2, 1)


def test_apply_mode_deletes_whited_out_paths_and_empties_opaque_dirs(tmp_path: Path) -> None:
    unpack(make_tar(reg("gone", b"1"), reg("keep", b"2"), dir_("d"), reg("d/old", b"3"),
                    dir_("d/sub"), reg("d/sub/old", b"4"), dir_("rmdir"), reg("rmdir/f", b"5")),
           tmp_path)
    unpack(make_tar(reg(".wh.gone"), reg(".wh.rmdir"), dir_("d"), reg("d/.wh..wh..opq"),
                    reg("d/new", b"n"), reg(".wh.never-existed")), tmp_path, whiteouts="apply")
    assert sorted(os.listdir(tmp_path)) == ["d", "keep"]
    assert sorted(os.listdir(tmp_path / "d")) == ["new"]
    assert not [p for p in tmp_path.rglob(".wh.*")]


def test_apply_mode_opaque_spares_entries_of_the_same_archive_in_any_order(tmp_path: Path) -> None:
    unpack(make_tar(dir_("d"), reg("d/old", b"1"), dir_("d/sub"), reg("d/sub/old", b"2")),
           tmp_path)
    # "-early" sorts before ".wh..wh..opq", and d/sub/new arrives before the marker too.
    unpack(make_tar(dir_("d"), reg("d/-early", b"e"), reg("d/sub/new", b"s"),
                    reg("d/.wh..wh..opq"), reg("d/z", b"z")), tmp_path, whiteouts="apply")
    assert sorted(os.listdir(tmp_path / "d")) == ["-early", "sub", "z"]
    assert sorted(os.listdir(tmp_path / "d" / "sub")) == ["new"]


@pytest.mark.parametrize("mode", ["apply", "overlay"])
def test_whiteout_does_not_hide_an_entry_from_the_same_archive(tmp_path: Path, mode: str) -> None:
    unpack(make_tar(reg("x", b"mine"), reg(".wh.x")), tmp_path, whiteouts=mode)
    assert (tmp_path / "x").read_bytes() == b"mine"


def test_none_mode_writes_whiteout_files_as_they_are(tmp_path: Path) -> None:
    unpack(make_tar(reg(".wh.foo"), reg("d/.wh..wh..opq")), tmp_path, whiteouts="none")
    assert (tmp_path / ".wh.foo").is_file()
    assert (tmp_path / "d" / ".wh..wh..opq").is_file()


@pytest.mark.parametrize("mode", ["apply", "overlay"])
@pytest.mark.parametrize("name", [".wh.", "d/.wh..", "d/.wh..."])
def test_whiteouts_naming_nothing_or_a_parent_are_refused(tmp_path: Path, mode: str,
                                                          name: str) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_bytes(b"1")
    with pytest.raises(InvalidArgument):
        unpack(make_tar(reg(name)), tmp_path, whiteouts=mode)
    assert (tmp_path / "d" / "keep").read_bytes() == b"1"


def test_aufs_bookkeeping_entries_are_skipped(tmp_path: Path) -> None:
    unpack(make_tar(dir_(".wh..wh.plnk"), reg(".wh..wh.plnk/123.456", b"x"),
                    reg(".wh..wh.aufs")), tmp_path)
    assert os.listdir(tmp_path) == []


def test_unknown_whiteout_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        unpack(make_tar(reg("a")), tmp_path, whiteouts="aufs")


# -- streams, compression, corruption --------------------------------------------------------


def _compressors() -> dict[str, object]:
    def zstd(data: bytes) -> bytes:
        zstandard = pytest.importorskip("zstandard")
        return zstandard.ZstdCompressor().compress(data)

    # the fastest levels: the streams are what is under test, and xz's default preset
    # spent ~3 s of CPU on the 3 MB of random data
    return {"plain": lambda d: d, "gzip": lambda d: gzip.compress(d, 1), "zstd": zstd,
            "bzip2": lambda d: bz2.compress(d, 1), "xz": lambda d: lzma.compress(d, preset=0)}


@pytest.mark.parametrize("kind", ["plain", "gzip", "zstd", "bzip2", "xz"])
def test_extract_streams_from_a_non_seekable_pipe(tmp_path: Path, kind: str) -> None:
    big = os.urandom(3 << 20)
    raw = make_tar(dir_("d"), reg("d/big", big), reg("d/small", b"s"))
    data = _compressors()[kind](raw)  # type: ignore[operator]
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb", buffering=0) as pipe:
        assert not pipe.seekable()
        stats = extract(pipe, tmp_path)
    t.join()
    assert (tmp_path / "d" / "big").read_bytes() == big
    assert (tmp_path / "d" / "small").read_bytes() == b"s"
    assert stats.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert stats.uncompressed_size == len(raw)


def test_diff_id_covers_the_whole_stream_including_trailing_padding(tmp_path: Path) -> None:
    raw = make_tar(reg("a", b"1")) + bytes(4096)
    stats = extract(io.BytesIO(raw), tmp_path)
    assert stats.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_extract_without_a_digest_unpacks_and_counts_the_same(tmp_path: Path) -> None:
    # (cp, load's outer archive, a build context: nothing reads their diff ID)
    raw = make_tar(reg("a", b"1"), reg("d/b", b"22")) + bytes(4096)
    hashed = extract(io.BytesIO(raw), tmp_path / "hashed")
    plain = extract(io.BytesIO(raw), tmp_path / "plain", digest=False)
    assert (plain.diff_id, hashed.diff_id) == ("", "sha256:" + hashlib.sha256(raw).hexdigest())
    assert (plain.entries, plain.uncompressed_size, plain.bytes_written) == (
        hashed.entries, hashed.uncompressed_size, hashed.bytes_written) == (2, len(raw), 3)
    assert (tmp_path / "plain" / "d" / "b").read_bytes() == b"22"


def test_an_empty_stream_is_an_empty_archive(tmp_path: Path) -> None:
    stats = extract(io.BytesIO(b""), tmp_path)
    assert stats.entries == 0 and os.listdir(tmp_path) == []


def test_extract_accepts_a_path(tmp_path: Path) -> None:
    (tmp_path / "in.tar.gz").write_bytes(gzip.compress(make_tar(reg("f", b"1"))))
    extract(tmp_path / "in.tar.gz", tmp_path / "out")
    assert (tmp_path / "out" / "f").read_bytes() == b"1"


def test_archive_truncated_inside_file_data_is_refused(tmp_path: Path) -> None:
    raw = make_tar(reg("big", b"x" * 10000))
    with pytest.raises(InvalidArgument):
        extract(io.BytesIO(raw[:4000]), tmp_path)


def test_corrupt_gzip_is_refused(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(make_tar(reg("f", os.urandom(50000)))))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(KetchError):
        extract(io.BytesIO(bytes(data)), tmp_path)


def test_garbage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        extract(io.BytesIO(b"this is not a tar archive at all" * 40), tmp_path)


@pytest.mark.parametrize("head,kind", [(b"\x1f\x8b\x08", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"),
                                       (b"BZh9", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
                                       (b"etc/\x00", "none")])
def test_compression_is_detected_from_magic_bytes(head: bytes, kind: str) -> None:
    assert detect_compression(head) == kind


@pytest.mark.parametrize("kind", ["plain", "gzip", "zstd", "bzip2", "xz"])
def test_open_decompressed_returns_the_original_bytes(kind: str) -> None:
    raw = os.urandom(100_000) + b"tail"
    data = _compressors()[kind](raw)  # type: ignore[operator]
    inner = io.BytesIO(data)
    stream = open_decompressed(inner)
    out = b""
    while chunk := stream.read(7000):
        out += chunk
    stream.close()
    assert out == raw
    assert not inner.closed


def test_digesting_writer_digests_and_counts_what_passes_through() -> None:
    sink = io.BytesIO()
    w = DigestingWriter(sink)
    w.write(b"hello ")
    w.write(memoryview(b"world"))
    assert sink.getvalue() == b"hello world"
    assert w.digest == "sha256:" + hashlib.sha256(b"hello world").hexdigest()
    assert w.size == 11


def test_digesting_reader_digests_what_was_read() -> None:
    r = DigestingReader(io.BytesIO(b"abc" * 1000))
    r.read(10)
    r.drain()
    assert r.digest == "sha256:" + hashlib.sha256(b"abc" * 1000).hexdigest()
    assert r.size == 3000


def test_compress_gzip_reports_both_digests_in_one_pass(tmp_path: Path) -> None:
    raw = os.urandom(1 << 20) + b"a" * (3 << 20)
    out = io.BytesIO()
    d = compress_gzip(io.BytesIO(raw), out)
    blob = out.getvalue()
    assert d.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert d.size == len(blob)
    assert gzip.decompress(blob) == raw
    assert d.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert d.uncompressed_size == len(raw)
    again = io.BytesIO()
    assert compress_gzip(io.BytesIO(raw), again).digest == d.digest


# -- writing trees ---------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a layer must carry about a tree, by relative path."""
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {
                k: os.getxattr(p, k) for k in sorted(os.listxattr(p))}
            common = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                      xattrs)
            if stat.S_ISREG(st.st_mode):
                first = inodes.setdefault(st.st_ino, rel)
                out[rel] = (*common, int(st.st_mtime), hashlib.sha256(p.read_bytes()).hexdigest(),
                            st.st_nlink, first if first != rel else None)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = (stat.S_IFLNK, os.readlink(p), int(st.st_mtime))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = (*common, int(st.st_mtime))
            else:
                out[rel] = (*common, st.st_rdev, int(st.st_mtime))
    return out


@pytest.fixture
def rich_tree(tmp_path: Path) -> Path:
    t = tmp_path / "tree"
    (t / "etc" / "deep" / "er").mkdir(parents=True)
    (t / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (t / "etc" / "deep" / "er" / "file").write_bytes(os.urandom(70_000))
    (t / "bin").mkdir()
    (t / "bin" / "su").write_bytes(b"\x7fELF")
    os.chmod(t / "bin" / "su", 0o4755)
    os.chown(t / "bin" / "su", 0, 42)
    (t / "bin" / "ping").write_bytes(b"\x7fELF2")
    os.setxattr(t / "bin" / "ping", "security.capability", CAP_NET_BIND_SERVICE)
    os.setxattr(t / "etc" / "passwd", "user.mime", b"text/plain")
    (t / "bin" / "sh").symlink_to("/bin/busybox")
    os.link(t / "bin" / "su", t / "bin" / "su-again")
    os.mkfifo(t / "fifo")
    os.mknod(t / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (t / "ro").mkdir(mode=0o555)
    os.chmod(t / "ro", 0o555)
    (t / "owned").mkdir()
    os.chown(t / "owned", 1000, 1000)
    os.utime(t / "etc" / "passwd", (MTIME, MTIME))
    os.utime(t / "etc", (MTIME + 1, MTIME + 1))
    return t


def test_write_tree_round_trips_through_extract(rich_tree: Path, tmp_path: Path) -> None:
    buf = io.BytesIO()
    write_tree(rich_tree, buf)
    buf.seek(0)
    extract(buf, tmp_path / "copy", whiteouts="none")
    assert snapshot(tmp_path / "copy") == snapshot(rich_tree)


def test_write_tree_output_is_deterministic_sorted_and_numeric(rich_tree: Path) -> None:
    a, b = io.BytesIO(), io.BytesIO()
    write_tree(rich_tree, a)
    write_tree(rich_tree, b)
    assert a.getvalue() == b.getvalue()
    ms = members(a.getvalue())
    names = [m.name for m in ms]
    assert names[:3] == ["bin", "bin/ping", "bin/sh"]
    assert names.index("etc") < names.index("etc/deep") < names.index("etc/deep/er/file") \
        < names.index("etc/passwd") < names.index("fifo")
    assert all(m.uname == "" and m.gname == "" for m in ms)
    assert {m.name: m.type for m in ms}["bin/su-again"] == tarfile.LNKTYPE
    su = next(m for m in ms if m.name == "bin/su-again")
    assert su.linkname == "bin/su"
    assert next(m for m in ms if m.name == "etc/passwd").mtime == MTIME


def test_write_tree_ends_with_two_zero_blocks_and_no_record_padding(rich_tree: Path) -> None:
    buf = io.BytesIO()
    write_tree(rich_tree, buf)
    data = buf.getvalue()
    assert data.endswith(bytes(1024)) and len(data) % 512 == 0
    assert data[-1536:-1024] != bytes(512)


def test_write_tree_prefix_names_the_directory_and_its_contents(rich_tree: Path) -> None:
    buf = io.BytesIO()
    write_tree(rich_tree / "etc", buf, arcname_prefix="conf")
    names = [m.name for m in members(buf.getvalue())]
    assert names == ["conf", "conf/deep", "conf/deep/er", "conf/deep/er/file", "conf/passwd"]


def test_write_tree_of_a_single_file_uses_the_prefix_or_its_name(rich_tree: Path) -> None:
    buf = io.BytesIO()
    write_tree(rich_tree / "etc" / "passwd", buf)
    assert [m.name for m in members(buf.getvalue())] == ["passwd"]
    buf = io.BytesIO()
    write_tree(rich_tree / "etc" / "passwd", buf, arcname_prefix="renamed")
    assert [m.name for m in members(buf.getvalue())] == ["renamed"]


def test_write_tree_exclude_prunes_entries_and_whole_directories(rich_tree: Path) -> None:
    seen: list[tuple[str, bool]] = []

    def exclude(rel: str, is_dir: bool) -> bool:
        seen.append((rel, is_dir))
        return rel in ("etc/deep", "bin/ping")

    buf = io.BytesIO()
    write_tree(rich_tree, buf, exclude=exclude)
    names = {m.name for m in members(buf.getvalue())}
    assert "etc/deep" not in names and "etc/deep/er/file" not in names
    assert "bin/ping" not in names and "etc/passwd" in names
    assert ("etc/deep", True) in seen and ("etc/deep/er", True) not in seen


def test_write_tree_follows_a_top_level_symlink_only_when_asked(rich_tree: Path,
                                                                tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(rich_tree / "etc")
    buf = io.BytesIO()
    write_tree(tmp_path / "link", buf, arcname_prefix="x")
    ms = members(buf.getvalue())
    assert [(m.name, m.type) for m in ms] == [("x", tarfile.SYMTYPE)]
    buf = io.BytesIO()
    write_tree(tmp_path / "link", buf, arcname_prefix="x", follow_top_symlink=True)
    assert "x/passwd" in [m.name for m in members(buf.getvalue())]


def test_write_tree_skips_sockets(tmp_path: Path) -> None:
    import socket

    (tmp_path / "t").mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "t" / "sock"))
    try:
        (tmp_path / "t" / "f").write_bytes(b"1")
        buf = io.BytesIO()
        write_tree(tmp_path / "t", buf)
        assert [m.name for m in members(buf.getvalue())] == ["f"]
    finally:
        s.close()


@pytest.mark.parametrize("name,kind,size,linkname,uid,mtime,major", [
    ("etc/passwd", tarfile.REGTYPE, 123, "", 0, MTIME, 0),
    ("d/", tarfile.DIRTYPE, 0, "", 1000, 0, 0),
    ("bin/sh", tarfile.SYMTYPE, 0, "/bin/busybox", 65534, MTIME, 0),
    ("dev/null", tarfile.CHRTYPE, 0, "", 0, MTIME, 1),
    ("x" * 100, tarfile.REGTYPE, 8**11 - 1, "", 8**7 - 1, 8**11 - 1, 0),
    ("h", tarfile.LNKTYPE, 0, "l" * 100, 0, MTIME, 0),
])
def test_fast_header_encoder_matches_tarfile_byte_for_byte(
        name: str, kind: bytes, size: int, linkname: str, uid: int, mtime: int,
        major: int) -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.linkname, ti.uid, ti.gid, ti.mtime = kind, size, linkname, uid, 7, mtime
    ti.mode, ti.uname, ti.gname, ti.devmajor, ti.devminor = 0o4755, "", "", major, 3
    fast = _ustar_header(name, 0o104755, uid, 7, size, mtime, kind, linkname, major, 3)
    assert fast == ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@pytest.mark.parametrize("name,uid,size", [("x" * 101, 0, 0), ("é", 0, 0), ("a", 8**7, 0),
                                           ("a", 0, 8**11)])
def test_fast_header_encoder_defers_to_pax_when_needed(name: str, uid: int, size: int) -> None:
    assert _ustar_header(name, 0o644, uid, 0, size, MTIME, tarfile.REGTYPE, "", 0, 0) is None


# -- layer diffs from a hand-made upper dir (the real-overlay tests are in
#    test_archive_overlay.py) -----------------------------------------------------------------


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))


@pytest.fixture
def upper(tmp_path: Path) -> Path:
    u = tmp_path / "upper"
    (u / "etc").mkdir(parents=True)
    (u / "etc" / "new.conf").write_text("x=1\n")
    os.setxattr(u / "etc" / "new.conf", "user.keep", b"me")
    os.setxattr(u / "etc", "trusted.overlay.origin", b"\x00fake")
    os.setxattr(u / "etc", "trusted.overlay.impure", b"y")
    whiteout(u / "etc" / "zz-gone")
    whiteout(u / "etc" / "aa-gone")
    (u / "var" / "cache").mkdir(parents=True)
    os.setxattr(u / "var" / "cache", "trusted.overlay.opaque", b"y")
    (u / "var" / "cache" / "fresh").write_bytes(b"f")
    (u / "a").write_bytes(b"linked")
    os.link(u / "a", u / "b")
    return u


def layer_bytes(upper: Path, **kw: object) -> bytes:
    buf = io.BytesIO()
    write_layer_from_upper(upper, buf, **kw)  # type: ignore[arg-type]
    return buf.getvalue()


def test_upper_whiteouts_become_wh_files_listed_before_their_siblings(upper: Path) -> None:
    ms = members(layer_bytes(upper))
    etc = [m.name for m in ms if m.name.startswith("etc/")]
    assert etc == ["etc/.wh.aa-gone", "etc/.wh.zz-gone", "etc/new.conf"]
    wh = next(m for m in ms if m.name == "etc/.wh.zz-gone")
    assert (wh.type, wh.size, wh.mode) == (tarfile.REGTYPE, 0, 0o600)


def test_opaque_upper_dir_is_followed_by_its_opaque_marker(upper: Path) -> None:
    names = [m.name for m in members(layer_bytes(upper))]
    i = names.index("var/cache")
    assert names[i + 1:i + 3] == ["var/cache/.wh..wh..opq", "var/cache/fresh"]


def test_overlay_xattrs_stay_home_and_others_travel_as_pax_records(upper: Path) -> None:
    ms = {m.name: m for m in members(layer_bytes(upper))}
    assert ms["etc/new.conf"].pax_headers.get("SCHILY.xattr.user.keep") == "me"
    for m in ms.values():
        assert not [k for k in m.pax_headers if "overlay" in k]


def test_upper_hardlinks_are_written_as_links_to_the_first_path(upper: Path) -> None:
    ms = {m.name: m for m in members(layer_bytes(upper))}
    assert ms["a"].isreg() and ms["b"].islnk() and ms["b"].linkname == "a"


def test_same_upper_gives_the_same_bytes_twice(upper: Path) -> None:
    assert layer_bytes(upper) == layer_bytes(upper)


def test_opaque_marker_is_left_out_when_no_lower_has_the_directory(upper: Path,
                                                                  tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "var").mkdir(parents=True)
    names = [m.name for m in members(layer_bytes(upper, lower_dirs=[lower]))]
    assert "var/cache/.wh..wh..opq" not in names
    (lower / "var" / "cache").mkdir()
    names = [m.name for m in members(layer_bytes(upper, lower_dirs=[lower]))]
    assert "var/cache/.wh..wh..opq" in names


def test_opaque_marker_is_left_out_when_a_higher_lower_hides_the_directory(
        upper: Path, tmp_path: Path) -> None:
    top, bottom = tmp_path / "top", tmp_path / "bottom"
    (top / "var").mkdir(parents=True)
    whiteout(top / "var" / "cache")
    (bottom / "var" / "cache").mkdir(parents=True)
    names = [m.name for m in members(layer_bytes(upper, lower_dirs=[top, bottom]))]
    assert "var/cache/.wh..wh..opq" not in names


def test_metacopy_upper_files_are_refused(upper: Path) -> None:
    os.setxattr(upper / "etc" / "new.conf", "trusted.overlay.metacopy", b"")
    with pytest.raises(InvalidArgument):
        layer_bytes(upper)


def test_redirected_upper_dirs_are_refused(upper: Path) -> None:
    os.setxattr(upper / "var", "trusted.overlay.redirect", b"/old")
    with pytest.raises(InvalidArgument):
        layer_bytes(upper)


def test_layer_from_upper_extracts_back_to_the_same_overlay_layer(upper: Path,
                                                                  tmp_path: Path) -> None:
    unpack(layer_bytes(upper), tmp_path / "layer")
    got = snapshot(tmp_path / "layer")
    want = snapshot(upper)
    # The unpacked layer carries only the overlay xattr that means something in a lower
    # dir (opaque); origin/impure are the upper mount's own bookkeeping.
    for rel in ("etc",):
        want[rel] = (*want[rel][:4], {}, *want[rel][5:])
    assert got == want


def test_layer_blob_from_upper_streams_tar_and_gzip_digests(upper: Path, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    with open(blob, "wb") as f:
        d = layer_blob_from_upper(upper, f)
    data = blob.read_bytes()
    raw = gzip.decompress(data)
    assert raw == layer_bytes(upper)
    assert d.digest == "sha256:" + hashlib.sha256(data).hexdigest() and d.size == len(data)
    assert d.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert d.uncompressed_size == len(raw)
    with open(tmp_path / "blob2", "wb") as f:
        assert layer_blob_from_upper(upper, f) == d


def test_extract_stats_diff_id_matches_the_blob_pipeline(upper: Path, tmp_path: Path) -> None:
    blob = io.BytesIO()
    d = layer_blob_from_upper(upper, blob)
    blob.seek(0)
    stats = extract(blob, tmp_path / "x")
    assert stats.diff_id == d.diff_id and stats.uncompressed_size == d.uncompressed_size



def _cut_after_last_data(data: bytes, last_size: int, last_offset_data: int) -> bytes:
    return data[: last_offset_data + last_size]


def test_a_tar_ending_right_after_its_last_members_data_is_complete(tmp_path: Path) -> None:
    # what the docker CLI sends for `docker build -f - DIR`: no padding, no end blocks
    data = make_tar(reg("a", b"first\n"), reg("b", b"second, 47 bytes long" * 2 + b"!!!!\n"))
    last = members(data)[-1]
    cut = _cut_after_last_data(data, last.size, last.offset_data)
    assert len(cut) % 512 != 0
    unpack(cut, tmp_path / "out")
    assert (tmp_path / "out" / "a").read_bytes() == b"first\n"
    assert (tmp_path / "out" / "b").read_bytes() == b"second, 47 bytes long" * 2 + b"!!!!\n"


def test_a_tar_whose_last_members_data_is_cut_short_is_refused(tmp_path: Path) -> None:
    data = make_tar(reg("a", b"first\n"), reg("b", b"x" * 100))
    last = members(data)[-1]
    with pytest.raises(KetchError, match="archive ends in the middle of 'b'"):
        unpack(data[: last.offset_data + 60], tmp_path / "out")
