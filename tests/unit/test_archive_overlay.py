"""Layer diffs against the real kernel: overlayfs upper dir -> layer tar -> back again.

A lower dir is unpacked from a tar, a real overlay is mounted over it, a container-like
set of changes is made through the merged dir, and the merged view is recorded. After
unmounting, the upper dir becomes a layer blob, and two independent consumers must
reproduce the merged view from the lower tar plus that blob:

* flattening (whiteouts="apply") onto a fresh copy of the lower tree, and
* unpacking it as an overlay lower dir (whiteouts="overlay") and letting the kernel
  stack it on the original lower dir.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import require, require_root

from ketch.archive import extract, layer_blob_from_upper, write_layer_from_upper

MTIME = 1_600_000_000


def _entry(tf: tarfile.TarFile, name: str, data: bytes | None = None, *, kind: bytes | None = None,
           mode: int = 0o644, linkname: str = "", uid: int = 0) -> None:
    ti = tarfile.TarInfo(name)
    ti.mode, ti.mtime, ti.uid, ti.gid = mode, MTIME, uid, uid
    if kind is not None:
        ti.type = kind
    ti.linkname = linkname
    ti.size = len(data) if data is not None else 0
    tf.addfile(ti, io.BytesIO(data) if data is not None else None)


def lower_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("bin", "etc", "etc/app", "etc/app/conf.d", "var", "var/cache",
                  "var/cache/apt", "var/lib", "home", "home/user", "opt", "opt/tool"):
            _entry(tf, d, kind=tarfile.DIRTYPE, mode=0o755)
        _entry(tf, "bin/busybox", b"\x7fELF" + b"b" * 5000, mode=0o755)
        _entry(tf, "bin/sh", kind=tarfile.SYMTYPE, linkname="/bin/busybox", mode=0o777)
        _entry(tf, "etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        _entry(tf, "etc/hostname", b"lower\n")
        _entry(tf, "etc/app/main.conf", b"a=1\n")
        _entry(tf, "etc/app/conf.d/10-x.conf", b"x=1\n")
        _entry(tf, "var/cache/apt/pkgcache.bin", b"c" * 20000)
        _entry(tf, "var/cache/apt/srcpkgcache.bin", b"s" * 20000)
        _entry(tf, "var/lib/state", b"state\n")
        _entry(tf, "home/user/.profile", b"PS1=$\n", uid=1000)
        _entry(tf, "opt/tool/run", b"#!/bin/sh\n", mode=0o755)
        _entry(tf, "opt/tool/data", b"d" * 3000)
    return buf.getvalue()


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """The visible tree: type, permissions, owner, mtime, content, link target, xattrs."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = (kind, os.readlink(p))
                continue
            xattrs = {k: os.getxattr(p, k) for k in sorted(os.listxattr(p))
                      if not k.startswith("trusted.overlay.")}
            base = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime), xattrs)
            if stat.S_ISREG(st.st_mode):
                out[rel] = (*base, hashlib.sha256(p.read_bytes()).hexdigest(), st.st_nlink)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = base
            else:
                out[rel] = (*base, st.st_rdev)
    return out


def mount_overlay(lowers: list[Path], merged: Path, upper: Path | None = None,
                  work: Path | None = None) -> None:
    opts = "lowerdir=" + ":".join(str(p) for p in lowers)
    if upper is not None and work is not None:
        # redirect_dir/metacopy off: both leave the upper dir without the data a layer
        # tar needs (see notes/build-cache-and-layers.md section 4).
        opts += f",upperdir={upper},workdir={work},redirect_dir=off,metacopy=off"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)],
                   check=True, capture_output=True, text=True)


def umount(path: Path) -> None:
    if os.path.ismount(path):
        proc = subprocess.run(["umount", str(path)], capture_output=True)
        if proc.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)


@dataclass
class Overlay:
    root: Path
    lower: Path
    upper: Path
    work: Path
    merged: Path
    lower_tar: bytes

    def umount(self) -> None:
        umount(self.merged)


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[Overlay]:
    require_root()
    require(shutil.which("mount") is not None, "mount(8)")
    ov = Overlay(tmp_path, tmp_path / "lower", tmp_path / "upper", tmp_path / "work",
                 tmp_path / "merged", lower_tar())
    for d in (ov.upper, ov.work, ov.merged):
        d.mkdir()
    extract(io.BytesIO(ov.lower_tar), ov.lower, whiteouts="overlay")
    try:
        mount_overlay([ov.lower], ov.merged, ov.upper, ov.work)
    except subprocess.CalledProcessError as e:
        require(False, f"overlayfs mount: {e.stderr.strip()}")
    try:
        yield ov
    finally:
        ov.umount()


def make_container_changes(m: Path) -> None:
    """What a RUN step typically does, through the merged view."""
    (m / "etc" / "hostname").write_text("changed\n")  # modify (copy-up)
    os.unlink(m / "etc" / "passwd")  # delete a lower file -> whiteout
    shutil.rmtree(m / "opt" / "tool")  # delete a lower dir -> whiteout
    shutil.rmtree(m / "var" / "cache" / "apt")  # rm -rf then recreate -> opaque dir
    (m / "var" / "cache" / "apt").mkdir()
    (m / "var" / "cache" / "apt" / "fresh.bin").write_bytes(b"new cache")
    (m / "srv" / "www").mkdir(parents=True)  # brand-new tree
    (m / "srv" / "www" / "index.html").write_text("<h1>hi</h1>\n")
    os.link(m / "srv" / "www" / "index.html", m / "srv" / "www" / "default.html")
    (m / "srv" / "link").symlink_to("www/index.html")
    os.chmod(m / "bin" / "busybox", 0o4755)  # metadata-only change (full copy-up)
    os.chown(m / "home" / "user" / ".profile", 1000, 100)
    os.setxattr(m / "etc" / "app" / "main.conf", "user.tag", b"blue")
    os.rename(m / "var" / "lib" / "state", m / "var" / "lib" / "state.old")  # rename a file
    (m / "etc" / "app" / "conf.d" / "10-x.conf").unlink()  # empty a lower dir
    os.mkfifo(m / "run-fifo")
    os.utime(m / "srv" / "www" / "index.html", (MTIME + 99, MTIME + 99))


def blob_of(ov: Overlay) -> tuple[bytes, str]:
    buf = io.BytesIO()
    digests = layer_blob_from_upper(ov.upper, buf, lower_dirs=[ov.lower])
    return buf.getvalue(), digests.diff_id


def test_flattening_lower_plus_layer_reproduces_the_merged_view(overlay: Overlay) -> None:
    make_container_changes(overlay.merged)
    want = snapshot(overlay.merged)
    overlay.umount()
    blob, _ = blob_of(overlay)

    flat = overlay.root / "flat"
    extract(io.BytesIO(overlay.lower_tar), flat, whiteouts="apply")
    extract(io.BytesIO(blob), flat, whiteouts="apply")
    assert snapshot(flat) == want
    # and the interesting cases really were in play
    assert "var/cache/apt/pkgcache.bin" not in want and "opt/tool" not in want
    assert want["srv/www/index.html"][-1] == 2


def test_layer_unpacked_as_a_lower_dir_stacks_back_to_the_merged_view(overlay: Overlay) -> None:
    make_container_changes(overlay.merged)
    want = snapshot(overlay.merged)
    overlay.umount()
    blob, _ = blob_of(overlay)

    layer = overlay.root / "layer"
    stats = extract(io.BytesIO(blob), layer, whiteouts="overlay")
    assert stats.whiteouts >= 3 and stats.opaque_dirs == 1
    view = overlay.root / "view"
    view.mkdir()
    mount_overlay([layer, overlay.lower], view)  # read-only stack, no upper
    try:
        assert snapshot(view) == want
    finally:
        umount(view)


def test_layer_tar_uses_whiteout_files_and_a_single_opaque_marker(overlay: Overlay) -> None:
    make_container_changes(overlay.merged)
    overlay.umount()
    blob, _ = blob_of(overlay)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tf:
        names = tf.getnames()
    assert "etc/.wh.passwd" in names and "opt/.wh.tool" in names
    assert "var/lib/.wh.state" in names and "etc/app/conf.d/.wh.10-x.conf" in names
    assert [n for n in names if n.endswith(".wh..wh..opq")] == ["var/cache/apt/.wh..wh..opq"]
    assert names.index("var/cache/apt") + 1 == names.index("var/cache/apt/.wh..wh..opq")


def test_same_upper_gives_the_same_diff_id_and_blob_digest_twice(overlay: Overlay) -> None:
    make_container_changes(overlay.merged)
    overlay.umount()
    first = io.BytesIO()
    a = layer_blob_from_upper(overlay.upper, first, lower_dirs=[overlay.lower])
    second = io.BytesIO()
    b = layer_blob_from_upper(overlay.upper, second, lower_dirs=[overlay.lower])
    assert a == b
    assert first.getvalue() == second.getvalue()
    plain = io.BytesIO()
    write_layer_from_upper(overlay.upper, plain, lower_dirs=[overlay.lower])
    assert a.diff_id == "sha256:" + hashlib.sha256(plain.getvalue()).hexdigest()


def test_untouched_overlay_gives_an_empty_layer(overlay: Overlay) -> None:
    overlay.umount()
    buf = io.BytesIO()
    write_layer_from_upper(overlay.upper, buf)
    assert buf.getvalue() == bytes(1024)
