"""Writing tars: layer diffs from overlay upper dirs, and plain trees (save, cp, contexts).

The output is a pure function of the tree: entries in sorted order (a directory before
its contents, deletions before their siblings as image-spec layer.md asks), PAX format,
numeric owners with no user/group names (so no NSS lookup ever runs, which is what
CVE-2019-14271 abused), mtimes truncated to seconds and no atime/ctime. The same upper
dir therefore always gives the same diff ID.

The walk opens every directory with O_NOFOLLOW relative to its parent's descriptor, so a
container that swaps a directory for a symlink while we read its files cannot make us
archive host files (the `docker cp` half of CVE-2018-15664).
"""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ketch.archive.compression import (
    COPY_BUFSIZE,
    DEFAULT_GZIP_LEVEL,
    DigestingWriter,
    LayerDigests,
    gzip_writer,
)
from ketch.archive.whiteouts import (
    OVERLAY_OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIX,
    PAX_XATTR_PREFIX,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
)
from ketch.errors import InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any


# exclude(path relative to the tree's top, is_dir) -> True to leave the entry (and, for a
# directory, everything below it) out of the archive.
Exclude = Callable[[str, bool], bool]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: if a regular file is swapped for a FIFO between stat and open, the open
# must not hang; for regular files the flag changes nothing.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_METACOPY_XATTR = OVERLAY_XATTR_PREFIX + "metacopy"
_REDIRECT_XATTR = OVERLAY_XATTR_PREFIX + "redirect"
_ZERO_BLOCK = bytes(tarfile.BLOCKSIZE)


class _Sink(io.RawIOBase):
    """Lets io.BufferedWriter coalesce small header writes in front of any binary output."""

    def __init__(self, out: IO[bytes] | Any) -> None:
        super().__init__()
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        done = 0
        while done < len(view):
            n = self._out.write(view[done:])
            if n == 0:
                raise KetchError("write failed: the output accepted no data")
            done = len(view) if n is None else done + n
        return len(view)


# name, mode, uid, gid, size, mtime, chksum, type, linkname, magic+version, uname, gname,
# devmajor, devminor, prefix, padding: one ustar block.
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_MAX_ID = 8**7  # what fits in 7 octal digits; larger values need PAX records
_MAX_BIG = 8**11


def _ustar_header(
    name: str, mode: int, uid: int, gid: int, size: int, mtime: int, kind: bytes,
    linkname: str, devmajor: int, devminor: int,
) -> bytes | None:
    """The header tarfile's PAX writer produces when no PAX record is needed, or None.

    tarfile's encoder calls a Python helper per field and sums the block twice, which
    was most of the cost of writing small files. Byte-for-byte the same output (a test
    holds it to that); anything needing PAX records goes through tarfile instead.
    """
    try:
        bname = name.encode("ascii")
        blink = linkname.encode("ascii")
    except UnicodeEncodeError:
        return None
    if (
        len(bname) > 100 or len(blink) > 100 or not 0 <= uid < _MAX_ID
        or not 0 <= gid < _MAX_ID or not 0 <= size < _MAX_BIG or not 0 <= mtime < _MAX_BIG
    ):
        return None
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        if not (0 <= devmajor < _MAX_ID and 0 <= devminor < _MAX_ID):
            return None
        major, minor = b"%07o\0" % devmajor, b"%07o\0" % devminor
    else:
        major = minor = b""
    block = _USTAR.pack(
        bname, b"%07o\0" % (mode & 0o7777), b"%07o\0" % uid, b"%07o\0" % gid,
        b"%011o\0" % size, b"%011o\0" % mtime, b"        ", kind, blink,
        tarfile.POSIX_MAGIC, b"", b"", major, minor, b"",
    )
    # The checksum is the byte sum with the checksum field read as spaces, which is
    # exactly what it holds at this point.
    return b"%s%06o\0 %s" % (block[:148], sum(block), block[156:])


def _mtime(st: os.stat_result) -> int:
    return st.st_mtime_ns // 1_000_000_000


class _TarWriter:
    def __init__(
        self, out: IO[bytes] | Any, *, upper: bool = False,
        lower_dirs: Sequence[str | os.PathLike[str]] = ()
    ) -> None:
        self._out = io.BufferedWriter(_Sink(out), buffer_size=COPY_BUFSIZE)
        self._upper = upper
        self._links: dict[tuple[int, int], str] = {}
        self._buf = bytearray(COPY_BUFSIZE)
        # what the files written take as dockerd counts a layer: regular files (each
        # inode once: a second name is a hardlink entry) and symlinks' targets
        self.content_size = 0
        self._lowers: list[int] = []
        try:
            for lower in lower_dirs:
                self._lowers.append(os.open(lower, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except BaseException:
            self._close_lowers()
            raise

    def _close_lowers(self) -> None:
        while self._lowers:
            os.close(self._lowers.pop())

    def close(self) -> None:
        """Write the end-of-archive marker and flush; the output itself stays open."""
        try:
            # Two zero blocks, as Go's archive/tar ends a layer; no padding to a 10 KiB
            # record, which readers do not need.
            self._out.write(_ZERO_BLOCK * 2)
            self._out.flush()
            self._out.detach()
        finally:
            self._close_lowers()

    def abort(self) -> None:
        self._close_lowers()

    # -- headers -------------------------------------------------------------------------
    def _header(
        self, arcname: str, st: os.stat_result, kind: bytes, *, size: int = 0,
        linkname: str = "", xattrs: dict[str, str] | None = None,
    ) -> None:
        mode = stat.S_IMODE(st.st_mode)
        mtime = _mtime(st)
        major = minor = 0
        if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        if kind == tarfile.DIRTYPE:
            arcname += "/"
        if not xattrs:
            block = _ustar_header(arcname, mode, st.st_uid, st.st_gid, size, mtime, kind,
                                  linkname, major, minor)
            if block is not None:
                self._out.write(block)
                return
        ti = tarfile.TarInfo(arcname)
        ti.type = kind
        ti.mode = mode
        ti.uid = st.st_uid
        ti.gid = st.st_gid
        ti.mtime = mtime
        ti.size = size
        ti.linkname = linkname
        ti.uname = ""
        ti.gname = ""
        ti.devmajor = major
        ti.devminor = minor
        if xattrs:
            ti.pax_headers = xattrs
        self._out.write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _empty_file(self, arcname: str, st: os.stat_result) -> None:
        """A `.wh.*` marker: empty regular file, mode 0600, owner and mtime of its source."""
        ti = tarfile.TarInfo(arcname)
        ti.type = tarfile.REGTYPE
        ti.mode = 0o600
        ti.uid = st.st_uid
        ti.gid = st.st_gid
        ti.mtime = _mtime(st)
        ti.uname = ""
        ti.gname = ""
        self._out.write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _xattrs(self, target: int | str, *, follow: bool) -> tuple[dict[str, str], set[str]]:
        """PAX records for the exportable xattrs, and the overlay xattrs that were present."""
        try:
            names = os.listxattr(target, follow_symlinks=follow)
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                return {}, set()
            raise
        if not names:
            return {}, set()
        pax: dict[str, str] = {}
        overlay: set[str] = set()
        for name in sorted(names):
            if name.startswith(OVERLAY_XATTR_PREFIX):
                if name == OVERLAY_OPAQUE_XATTR:
                    value = os.getxattr(target, name, follow_symlinks=follow)
                    if value == b"y":
                        overlay.add(name)
                else:
                    overlay.add(name)
                continue  # overlay's own bookkeeping never leaves the host
            try:
                value = os.getxattr(target, name, follow_symlinks=follow)
            except OSError as e:
                if e.errno == errno.ENODATA:
                    continue  # removed since listxattr
                raise
            pax[PAX_XATTR_PREFIX + name] = value.decode("utf-8", "surrogateescape")
        return pax, overlay

    # -- walking -------------------------------------------------------------------------
    def _list(self, dfd: int) -> list[tuple[str, os.stat_result]]:
        """A directory's entries, in the reverse of the order they are written (for pop())."""
        with os.scandir(dfd) as it:
            entries = [(e.name, e.stat(follow_symlinks=False)) for e in it]
        if self._upper:
            # Whiteouts first, as image-spec layer.md recommends, then everything else;
            # each group by name, so the order never depends on the filesystem.
            entries.sort(key=lambda e: (not _is_whiteout(e[1]), e[0]))
        else:
            entries.sort(key=lambda e: e[0])
        entries.reverse()
        return entries

    def walk(self, top_fd: int, arc_prefix: str, exclude: Exclude | None = None) -> None:
        """Archive everything below the open directory `top_fd` (not the directory itself)."""
        # An explicit stack instead of recursion: a container can nest directories far
        # deeper than Python's recursion limit.
        frames: list[tuple[int, str, str, list[tuple[str, os.stat_result]]]] = [
            (top_fd, arc_prefix, "", self._list(top_fd))
        ]
        try:
            while frames:
                dfd, arcp, relp, entries = frames[-1]
                if not entries:
                    frames.pop()
                    if dfd != top_fd:
                        os.close(dfd)
                    continue
                name, st = entries.pop()
                rel = relp + name
                is_dir = stat.S_ISDIR(st.st_mode)
                if exclude is not None and exclude(rel, is_dir):
                    continue
                if is_dir:
                    cfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
                    try:
                        self._dir_entry(cfd, arcp + name, rel)
                        children = self._list(cfd)
                    except BaseException:
                        os.close(cfd)
                        raise
                    frames.append((cfd, f"{arcp}{name}/", f"{rel}/", children))
                else:
                    self._nondir_entry(dfd, name, st, arcp + name)
        finally:
            for dfd, *_ in frames:
                if dfd != top_fd:
                    os.close(dfd)

    def _dir_entry(self, fd: int, arcname: str, rel: str) -> None:
        st = os.fstat(fd)
        pax, overlay = self._xattrs(fd, follow=True)
        if self._upper and _REDIRECT_XATTR in overlay:
            raise InvalidArgument(
                f"{rel}: renamed lower directory (overlay redirect_dir) cannot be expressed "
                "in a layer tar; mount overlay with redirect_dir=off"
            )
        self._header(arcname, st, tarfile.DIRTYPE, xattrs=pax)
        if self._upper and OVERLAY_OPAQUE_XATTR in overlay and self._opaque_needed(rel):
            self._empty_file(f"{arcname}/{WHITEOUT_OPAQUE}", st)

    def _nondir_entry(self, dfd: int, name: str, st: os.stat_result, arcname: str) -> None:
        mode = st.st_mode
        if self._upper and _is_whiteout(st):
            # Checked before hardlinks: the kernel may share one whiteout inode.
            parent, _, base = arcname.rpartition("/")
            self._empty_file(f"{parent}/{WHITEOUT_PREFIX}{base}" if parent
                             else f"{WHITEOUT_PREFIX}{base}", st)
            return
        if stat.S_ISSOCK(mode):
            return  # sockets cannot be archived; Docker skips them too
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self._links.get(key)
            if first is not None:
                self._header(arcname, st, tarfile.LNKTYPE, linkname=first)
                return
            self._links[key] = arcname
        if stat.S_ISREG(mode):
            self._file(dfd, name, arcname)
        elif stat.S_ISLNK(mode):
            target = os.readlink(name, dir_fd=dfd)
            pax, _ = self._xattrs(_proc_path(dfd, name), follow=False)
            self._header(arcname, st, tarfile.SYMTYPE, linkname=target, xattrs=pax)
            self.content_size += len(os.fsencode(target))
        else:
            kind = {stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE,
                    stat.S_IFIFO: tarfile.FIFOTYPE}.get(stat.S_IFMT(mode))
            if kind is None:
                return  # doors, event ports: nothing tar can say
            pax, _ = self._xattrs(_proc_path(dfd, name), follow=False)
            self._header(arcname, st, kind, xattrs=pax)

    def _file(self, dfd: int, name: str, arcname: str) -> None:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KetchError(f"{arcname} changed while it was being archived")
            pax, overlay = self._xattrs(fd, follow=True)
            if self._upper and _METACOPY_XATTR in overlay:
                raise InvalidArgument(
                    f"{arcname}: metadata-only copy-up (overlay metacopy=on) has no data in "
                    "the upper dir; mount overlay with metacopy=off"
                )
            size = st.st_size
            self._header(arcname, st, tarfile.REGTYPE, size=size, xattrs=pax)
            self._copy(fd, size, arcname)
            self.content_size += size
        finally:
            os.close(fd)

    def _copy(self, fd: int, size: int, arcname: str) -> None:
        view = memoryview(self._buf)
        remaining = size
        while remaining:
            n = os.readv(fd, [view[: min(remaining, COPY_BUFSIZE)]])
            if n == 0:
                # The header already promised `size` bytes; a short member would shift
                # every following header, so the archive cannot be finished.
                raise KetchError(f"{arcname} shrank while it was being archived")
            self._out.write(view[:n])
            remaining -= n
        if size % tarfile.BLOCKSIZE:
            self._out.write(_ZERO_BLOCK[: tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE])

    # -- opaque markers ------------------------------------------------------------------
    def _opaque_needed(self, rel: str) -> bool:
        """Whether an opaque directory hides anything, given the lower dirs (if known).

        Without lower dirs we cannot tell, so the marker is always written (moby). With
        them, it is written only when some visible lower layer has the directory, as
        containers/storage does: an opaque marker on a brand-new directory is noise.
        """
        if not self._lowers:
            return True
        parts = rel.split("/")
        for lfd in self._lowers:  # topmost first, overlay's lowerdir order
            state = _probe_lower(lfd, parts)
            if state == "dir":
                return True
            if state == "hidden":
                return False
        return False


def _probe_lower(lfd: int, parts: list[str]) -> str:
    """In one lower dir: "dir" (path is a directory), "hidden" (it and all layers below are
    masked by a whiteout, a non-directory or an opaque parent) or "missing"."""
    cur = lfd
    opened: list[int] = []
    try:
        for i, part in enumerate(parts):
            try:
                st = os.stat(part, dir_fd=cur, follow_symlinks=False)
            except FileNotFoundError:
                return "missing"
            if not stat.S_ISDIR(st.st_mode):
                return "hidden"  # a whiteout or any non-directory masks what lies below
            if i == len(parts) - 1:
                return "dir"
            cur = os.open(part, _DIR_FLAGS, dir_fd=cur)
            opened.append(cur)
            try:
                opaque = os.getxattr(cur, OVERLAY_OPAQUE_XATTR) == b"y"
            except OSError:
                opaque = False
            if opaque:
                # Lower layers are masked below this directory; only this layer counts.
                rest = _probe_lower(cur, parts[i + 1:])
                return "hidden" if rest == "missing" else rest
        return "missing"
    finally:
        for fd in opened:
            os.close(fd)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _proc_path(dfd: int, name: str) -> str:
    # listxattr/getxattr have no *at() form; going through the directory descriptor we
    # hold keeps the lookup inside the tree.
    return f"/proc/self/fd/{dfd}/{name}"


def write_layer_from_upper(
    upper: Path | str, out_fileobj: IO[bytes] | Any, *,
    lower_dirs: Sequence[str | os.PathLike[str]] = ()
) -> int:
    """Write the layer tar that an overlayfs upper dir stands for to `out_fileobj`.

    Char devices 0/0 become `.wh.NAME`, opaque directories get a `DIR/.wh..wh..opq`
    entry after them (only if a lower dir has that directory, when `lower_dirs`, topmost
    first, are given), other xattrs become `SCHILY.xattr.*` records, and files sharing
    an inode become hardlinks to the first path written. `out_fileobj` is flushed, not
    closed. Returns the layer's size as dockerd gives it (the bytes of its regular files,
    each inode once, and of its symlinks' targets).
    """
    writer = _TarWriter(out_fileobj, upper=True, lower_dirs=lower_dirs)
    fd = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        writer.walk(fd, "")
    except BaseException:
        writer.abort()
        raise
    finally:
        os.close(fd)
    writer.close()
    return writer.content_size


def write_tree(
    src: Path | str,
    out_fileobj: IO[bytes] | Any,
    *,
    arcname_prefix: str = "",
    exclude: Exclude | None = None,
    follow_top_symlink: bool = False,
) -> None:
    """Tar an arbitrary file or tree to `out_fileobj` (flushed, not closed).

    A directory's contents are named relative to it, under `arcname_prefix/` when a
    prefix is given (and then the directory itself is the entry `arcname_prefix/`). A
    single file is named `arcname_prefix`, or its own name without one. Symlinks inside
    the tree are archived as links; `follow_top_symlink` (`docker cp -L`) archives what
    `src` points to instead of `src` itself. `exclude(rel, is_dir)` leaves entries out.
    For a path inside a container, resolve it with `resolve_in_root` first.
    """
    src = Path(src)
    prefix = "/".join(p for p in arcname_prefix.split("/") if p not in ("", "."))
    if ".." in prefix.split("/"):
        raise InvalidArgument(f"archive name prefix {arcname_prefix!r} contains '..'")
    if follow_top_symlink:
        src = Path(os.path.realpath(src))
    st = os.lstat(src)
    writer = _TarWriter(out_fileobj)
    try:
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(src, _DIR_FLAGS)
            try:
                if prefix:
                    writer._dir_entry(fd, prefix, "")
                writer.walk(fd, f"{prefix}/" if prefix else "", exclude)
            finally:
                os.close(fd)
        else:
            pfd = os.open(src.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                writer._nondir_entry(pfd, src.name, st, prefix or src.name)
            finally:
                os.close(pfd)
    except BaseException:
        writer.abort()
        raise
    writer.close()


def write_dir_fd(dir_fd: int, out_fileobj: IO[bytes] | Any) -> None:
    """Tar everything below the open directory `dir_fd` (not the directory itself), named
    relative to it. For a directory found with `InRoot`: the walk starts at exactly the
    inode that was opened, whatever its path has become since."""
    writer = _TarWriter(out_fileobj)
    try:
        writer.walk(dir_fd, "")
    except BaseException:
        writer.abort()
        raise
    writer.close()


def layer_blob_from_upper(
    upper: Path | str,
    dst_file: IO[bytes] | Any,
    *,
    lower_dirs: Sequence[str | os.PathLike[str]] = (),
    level: int = DEFAULT_GZIP_LEVEL,
) -> LayerDigests:
    """Write the gzip layer blob for an upper dir to `dst_file`, in one streaming pass.

    tar -> sha256 (diff ID) -> gzip (ISA-L, its own thread) -> sha256 (blob digest) ->
    `dst_file`; nothing is buffered beyond a few MiB. `dst_file` is flushed, not closed.
    """
    compressed = DigestingWriter(dst_file)
    gz = gzip_writer(compressed, level)
    try:
        uncompressed = DigestingWriter(gz)
        content_size = write_layer_from_upper(upper, uncompressed, lower_dirs=lower_dirs)
    finally:
        gz.close()
    compressed.flush()
    return LayerDigests(
        diff_id=uncompressed.digest,
        digest=compressed.digest,
        size=compressed.size,
        uncompressed_size=uncompressed.size,
        content_size=content_size,
    )
