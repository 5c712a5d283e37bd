"""Safe, streaming extraction of (layer) tar archives.

Nothing is ever written outside the destination: member names are cleaned (".." that
climbs out is refused, leading "/" dropped), and every parent directory is opened with
O_NOFOLLOW relative to its parent's descriptor, symlinks expanded as if the destination
were "/" (`paths.InRoot`). So `evil -> /` followed by `evil/etc/passwd` lands in
`dest/etc/passwd`, hardlinks can only point at files inside the destination, and a file
entry never writes through an existing symlink or hardlink: the old entry is unlinked
and the file created with O_EXCL.

Whiteouts (image-spec layer.md) are handled in one of three ways:

* "overlay": the destination becomes an overlayfs lower dir: `.wh.NAME` becomes a char
  device 0/0 named NAME, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory;
* "apply": the archive is applied on top of an existing tree (flattening layers, `docker
  cp`): `.wh.NAME` deletes NAME, `.wh..wh..opq` deletes what the directory held before;
* "none": `.wh.*` entries are ordinary files.

A whiteout only hides what lower layers had; entries from the same archive survive it
("Files that are present in the same layer as a whiteout file can only be hidden by
whiteout files in subsequent layers"), which is why extraction tracks what it unpacked.

Size: one job, extraction that never leaves its destination. The safety argument
(descriptor-relative opens, the member checks, the writer threads' ordering) is easiest
to review in one place; the path walk, whiteouts and compression are their own modules.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat
import struct
import tarfile
from pathlib import Path

from ketch.archive.compression import COPY_BUFSIZE, DigestingReader, open_decompressed
from ketch.archive.paths import InRoot, clean_member_name
from ketch.archive.whiteouts import (
    OVERLAY_OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIX,
    PAX_XATTR_PREFIX,
    WHITEOUT_META_PREFIX,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
)
from ketch.errors import InvalidArgument, KetchError
from ketch.fdio import write_all
from ketch.values import value as _value

# typing and collections.abc for the type aliases only: `load`, `import` and `pull` load
# this module, and typing is ~1.5 ms of their start-up
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any, Literal

    WhiteoutMode = Literal["overlay", "apply", "none"]
    OnEntry = Callable[[tarfile.TarInfo], bool | None]
_MODES = ("overlay", "apply", "none")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Open directory descriptors kept between entries; archives list a directory's
# entries together, so a small cache avoids re-walking from the root for every file.
_CACHE_MAX = 128
# xattrs a filesystem may refuse without the layer being wrong (no SELinux, tmpfs
# without user xattrs, ...): moby also drops them with a warning.
_XATTR_SOFT_ERRNOS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES)


@_value
class ExtractStats:
    """What an extraction did; diff_id is the sha256 of the whole uncompressed stream."""

    entries: int = 0
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    devices: int = 0
    whiteouts: int = 0
    opaque_dirs: int = 0
    skipped: int = 0
    bytes_written: int = 0
    xattrs_ignored: int = 0
    diff_id: str = ""
    uncompressed_size: int = 0
    # the layer's size as dockerd gives it (`docker images` SIZE): the bytes of its
    # regular files and symlink targets, as its directory holds them, not the tar's length
    content_size: int = 0


def extract(
    stream_or_fileobj: IO[bytes] | Any,
    dest: Path | str,
    *,
    whiteouts: WhiteoutMode = "overlay",
    same_owner: bool = True,
    on_entry: OnEntry | None = None,
    digest: bool = True,
) -> ExtractStats:
    """Unpack a tar stream (plain, gzip, zstd, bzip2 or xz) into `dest`, never outside it.

    `stream_or_fileobj` is a readable binary stream (a pipe is fine; nothing is seeked)
    or a path. `dest` is created if missing. `same_owner` keeps the archive's numeric
    uid/gid (names are never looked up). `on_entry` sees every member first and may
    return False to skip it. `digest=False` leaves the stats' diff_id empty instead of
    hashing the stream (for what is no layer: `cp`'s streams, load's outer archive, a
    build context). Raises UnsafeArchive for names that
    climb out of `dest`, InvalidArgument for malformed archives and KetchError for I/O
    failures.
    """
    if whiteouts not in _MODES:
        raise InvalidArgument(f"whiteouts must be one of {', '.join(_MODES)}, not {whiteouts!r}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    stats = ExtractStats()
    with contextlib.ExitStack() as stack:
        if isinstance(stream_or_fileobj, str | os.PathLike):
            stream_or_fileobj = stack.enter_context(open(stream_or_fileobj, "rb"))
        decompressed = open_decompressed(stream_or_fileobj)
        stack.callback(decompressed.close)
        reader = DigestingReader(decompressed, "sha256" if digest else None)
        forward = _ForwardReader(reader)
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        stack.callback(os.close, root_fd)
        ex = _Extractor(root_fd, whiteouts, same_owner, stats, fresh=_fresh(root_fd))
        stack.callback(ex.close)

        tf = _open_tar(forward)
        last: tarfile.TarInfo | None = None
        while tf is not None:
            member = _next_member(tf, last)
            if member is None:
                break
            last = member
            # TarFile remembers every member for random access; a streamed layer can
            # have 10^5 of them and we never look back.
            tf.members.clear()  # type: ignore[attr-defined]  # not in typeshed
            stats.entries += 1
            if on_entry is not None and on_entry(member) is False:
                stats.skipped += 1
                continue
            try:
                ex.add(member, tf)
            except KetchError:
                raise
            except OSError as e:
                raise KetchError(f"cannot extract {member.name!r}: {e.strerror or e}") from e
            finally:
                ex.end_entry()
        ex.finish()
        try:
            forward.drain()
        except Exception as e:  # a decoder error in trailing bytes still means a bad blob
            raise _corrupt(e) from e
        stats.diff_id = reader.digest
        stats.uncompressed_size = reader.size
        stats.content_size = stats.bytes_written + ex.symlink_bytes
    return stats


def _fresh(dir_fd: int) -> bool:
    """Whether what we create in this directory gets exactly the owner and mode we ask
    for: it is empty (nothing from before, so every directory below is ours, made
    without set-group-ID), not set-group-ID itself, and without a default ACL. Then a
    new entry is owned by our effective uid/gid and its mode is the requested one less
    the umask, and calls that would set the same again can be skipped."""
    st = os.fstat(dir_fd)
    if st.st_mode & stat.S_ISGID or os.listdir(dir_fd):
        return False
    try:
        os.getxattr(dir_fd, "system.posix_acl_default")
    except OSError:
        return True  # no default ACL (or no ACL support at all)
    return False


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o7777  # unknown: every mode counts as needing its chmod


# Files up to this size are read whole and handed to the writer threads.
_SMALL_FILE = 256 << 10
_WRITERS = 2


def _write_small(name: str, pfd: int, base: str, data: bytes, created: int, mode: int,
                 uid: int, gid: int, chmod: bool, mtime: int) -> None:
    fd = os.open(base, _NEW_FILE_FLAGS, created, dir_fd=pfd)
    try:
        write_all(fd, data)
        if uid >= 0:
            os.fchown(fd, uid, gid)
        if chmod:  # after chown, which clears setuid/setgid bits
            os.fchmod(fd, mode)
        os.utime(fd, ns=(mtime, mtime))
    finally:
        os.close(fd)


class _Writers:
    """A few threads creating small files; `wait` returns when all put so far are done
    and raises the first failure."""

    def __init__(self) -> None:
        import queue
        import threading

        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=512)
        self._cond = threading.Condition()
        self._outstanding = 0
        self._error: KetchError | None = None
        self._threads = [threading.Thread(target=self._run, name="extract-writer",
                                          daemon=True) for _ in range(_WRITERS)]
        for t in self._threads:
            t.start()

    def put(self, task: tuple[Any, ...]) -> None:
        with self._cond:
            if self._error is not None:
                raise self._error
            self._outstanding += 1
        self._queue.put(task)

    def _run(self) -> None:
        while (task := self._queue.get()) is not None:
            try:
                if self._error is None:
                    _write_small(*task)
            except OSError as e:
                with self._cond:
                    if self._error is None:
                        self._error = KetchError(
                            f"cannot extract {task[0]!r}: {e.strerror or e}")
            finally:
                with self._cond:
                    self._outstanding -= 1
                    if not self._outstanding:
                        self._cond.notify_all()

    def wait(self) -> None:
        with self._cond:
            while self._outstanding:
                self._cond.wait()
            if self._error is not None:
                raise self._error

    def stop(self) -> None:
        with self._cond:
            while self._outstanding:
                self._cond.wait()
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()


def _corrupt(e: BaseException) -> KetchError:
    if isinstance(e, KetchError):
        return e
    if isinstance(e, OSError) and e.errno is not None:
        return KetchError(f"cannot read archive: {e.strerror or e}")
    return InvalidArgument(f"invalid or corrupt archive: {e or type(e).__name__}")


class _ForwardReader:
    """A forward-only "seekable" view of a stream, for tarfile's random-access mode.

    tarfile's own stream mode ("r|") keeps its buffer as one bytes object and slices a
    copy of the remainder for every 512-byte header it reads, which made it the single
    biggest cost of unpacking a layer. Its random-access mode only ever seeks forward
    when reading members in order, so a BufferedReader plus a position counter serves
    it from a pipe just as well, without the copies.
    """

    def __init__(self, raw: io.RawIOBase) -> None:
        self._buffered = io.BufferedReader(raw, buffer_size=COPY_BUFSIZE)
        self._pos = 0
        self._scratch = bytearray(COPY_BUFSIZE)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int | None = -1) -> bytes:
        data = self._buffered.read(size)
        self._pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        n = self._buffered.readinto(b)
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            pos += self._pos
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("can only seek forward in a tar stream")
        if pos < self._pos:
            raise io.UnsupportedOperation("can only seek forward in a tar stream")
        view = memoryview(self._scratch)
        while self._pos < pos:
            if not self.readinto(view[: min(pos - self._pos, len(view))]):
                break  # at EOF: tarfile notices the short stream itself
        return self._pos

    def drain(self) -> None:
        view = memoryview(self._scratch)
        while self.readinto(view):
            pass


# A ustar header: name, mode, uid, gid, size, mtime, chksum, type, linkname, (magic and
# version skipped), uname, gname, devmajor, devminor, prefix.
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8x32s32s8s8s155s12x")
_NUMERIC_OFFSETS = (100, 108, 116, 124, 136, 329, 337)
_ZERO_HEADER = bytes(tarfile.BLOCKSIZE)


def _octal(field: bytes) -> int:
    return int(field.split(b"\0", 1)[0] or b"0", 8)


def _text(field: bytes, encoding: str, errors: str) -> str:
    return field.split(b"\0", 1)[0].decode(encoding, errors)


class _FastTarInfo(tarfile.TarInfo):
    """TarInfo with a quicker parser for the plain ustar/PAX header every layer uses.

    tarfile's parser runs a Python function per field and sums the header twice (signed
    and unsigned checksums); that was a third of the time spent per small file. Anything
    unusual (end blocks, base-256 numbers, old GNU sparse, a signed-only checksum, a
    malformed field) goes to tarfile's own parser, which also raises its errors.
    """

    @classmethod
    def frombuf(  # type: ignore[override]  # a TarInfo of the base class where unusual
            cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        if (
            len(buf) != tarfile.BLOCKSIZE
            or buf == _ZERO_HEADER
            or buf[156:157] == tarfile.GNUTYPE_SPARSE
            or any(buf[i] & 0x80 for i in _NUMERIC_OFFSETS)
        ):
            return super().frombuf(buf, encoding, errors)
        (name, mode, uid, gid, size, mtime, chksum, kind, linkname, uname, gname,
         devmajor, devminor, prefix) = _USTAR.unpack(buf)
        try:
            obj = cls()
            obj.chksum = _octal(chksum)
            # The checksum field counts as eight spaces (8 * 32 = 256).
            if obj.chksum != sum(buf) - sum(chksum) + 256:
                return super().frombuf(buf, encoding, errors)
            obj.mode = _octal(mode)
            obj.uid = _octal(uid)
            obj.gid = _octal(gid)
            obj.size = _octal(size)
            obj.mtime = _octal(mtime)
            obj.devmajor = _octal(devmajor)
            obj.devminor = _octal(devminor)
        except ValueError:
            return super().frombuf(buf, encoding, errors)
        obj.type = kind
        obj.name = _text(name, encoding, errors)
        obj.linkname = _text(linkname, encoding, errors)
        obj.uname = _text(uname, encoding, errors)
        obj.gname = _text(gname, encoding, errors)
        if kind == tarfile.AREGTYPE and obj.name.endswith("/"):
            obj.type = tarfile.DIRTYPE  # old V7 tars mark directories by a trailing slash
        if obj.type == tarfile.DIRTYPE:
            obj.name = obj.name.rstrip("/")
        head = _text(prefix, encoding, errors)
        if head and obj.type not in tarfile.GNU_TYPES:
            obj.name = f"{head}/{obj.name}"
        return obj


def _open_tar(reader: _ForwardReader) -> tarfile.TarFile | None:
    try:
        return tarfile.open(  # type: ignore[call-overload]  # any object with read()
            fileobj=reader, mode="r:", encoding="utf-8", errors="surrogateescape",
            tarinfo=_FastTarInfo,
        )
    except tarfile.ReadError as e:
        if str(e) == "empty file":
            return None  # a zero-byte stream is an archive with no entries
        raise _corrupt(e) from e
    except Exception as e:
        raise _corrupt(e) from e


def _next_member(tf: tarfile.TarFile, last: tarfile.TarInfo | None = None
                 ) -> tarfile.TarInfo | None:
    try:
        return tf.next()
    except tarfile.ReadError as e:
        # A stream that stops right after the last member's data, without its padding
        # and the end blocks, has ended: Go's reader (dockerd's) reads it so, and the
        # docker CLI sends such build contexts (`docker build -f - DIR`). Data cut
        # short is still an error.
        if (str(e) == "unexpected end of data" and last is not None and tf.fileobj is not None
                and tf.fileobj.tell() >= last.offset_data + last.size):
            return None
        raise _corrupt(e) from e
    except Exception as e:
        raise _corrupt(e) from e


def _mtime_ns(member: tarfile.TarInfo) -> int:
    m = member.mtime
    return m * 1_000_000_000 if isinstance(m, int) else round(m * 1e9)


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    if not member.pax_headers:
        return []
    out = []
    for key, value in member.pax_headers.items():
        if not key.startswith(PAX_XATTR_PREFIX):
            continue
        name = key[len(PAX_XATTR_PREFIX):]
        # overlayfs metadata only ever comes from whiteout entries: a layer that carries
        # trusted.overlay.redirect/origin/opaque as plain xattrs could rewire lookups in
        # the stacked mount.
        if name.startswith(OVERLAY_XATTR_PREFIX):
            continue
        # tarfile decodes PAX values as UTF-8 with surrogateescape; binary values such
        # as security.capability come back byte for byte.
        out.append((name, value.encode("utf-8", "surrogateescape")))
    return out


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class _Extractor:
    """Per-archive state: descriptor cache, what was unpacked, directories to finish."""

    def __init__(
        self, root_fd: int, mode: WhiteoutMode, same_owner: bool, stats: ExtractStats,
        *, fresh: bool = False,
    ) -> None:
        self.root_fd = root_fd
        # In a fresh destination, the owner and mode a new entry gets by itself: the
        # fchown/fchmod that would set them again are skipped (a layer's thousands of
        # root-owned 0644/0755 entries then cost one system call less each, or two).
        self.own = (os.geteuid(), os.getegid()) if fresh else None
        self.umask = _umask() if fresh else 0o7777
        self.walker = InRoot(root_fd)
        self.mode = mode
        self.same_owner = same_owner
        self.stats = stats
        self.symlink_bytes = 0  # (the targets' lengths: a symlink's size, as stat gives it)
        # Resolved paths (relative to the root) this archive created, with all their
        # ancestors: opaque dirs and whiteouts in "apply" mode spare these.
        self.unpacked: set[str] = set()
        # Directory metadata is applied last, deepest first: a read-only directory must
        # still receive its files, and adding entries would change its mtime.
        self.dirs: dict[str, tuple[int, int]] = {}
        self._cache: dict[str, tuple[int, str]] = {}
        # Descriptors dropped from the cache while an entry may still be using them;
        # closed when the entry is done, so a number is never reused under our feet.
        self._retired: list[int] = []
        self._buf = memoryview(bytearray(COPY_BUFSIZE))
        # Small new files are written by a few threads (their system calls release the
        # GIL, so file creation overlaps reading the archive); `_pending` holds their
        # resolved paths until `_drain` has seen them done.
        self._writers: _Writers | None = None
        self._pending: set[str] = set()

    # -- bookkeeping ---------------------------------------------------------------------
    def close(self) -> None:
        if self._writers is not None:
            self._writers.stop()  # before their directory descriptors are closed
            self._writers = None
            self._pending.clear()
        self._drop_cache()
        self.end_entry()

    def end_entry(self) -> None:
        if self._pending:
            return  # a writer may still use a retired descriptor: closed at `_drain`
        while self._retired:
            os.close(self._retired.pop())

    def _drain(self) -> None:
        """Wait for the writers: before anything that may touch what they create."""
        if self._pending:
            assert self._writers is not None
            self._pending.clear()
            self._writers.wait()
            self.end_entry()

    def _conflicts(self, name: str) -> bool:
        """Whether `name` or a directory above it is a file a writer has yet to make."""
        pending = self._pending
        while name:
            if name in pending:
                return True
            name = name.rpartition("/")[0]
        return False

    def _drop_cache(self) -> None:
        self._retired.extend(fd for fd, _ in self._cache.values())
        self._cache.clear()

    def _mark(self, rel: str) -> None:
        while rel and rel not in self.unpacked:
            self.unpacked.add(rel)
            rel = rel.rpartition("/")[0]

    def _dir(self, rel: str, *, create: bool) -> tuple[int, str] | None:
        """A descriptor for directory `rel` and its resolved path, or None if it is missing.

        The descriptor belongs to the cache (callers never close it). A miss starts from
        the nearest cached ancestor and goes down one plain component at a time, so a
        sorted archive costs about one open per new directory; anything unusual (a
        symlink, a non-directory) takes the full in-root walk from the root.
        """
        if not rel:
            return self.root_fd, ""
        hit = self._cache.pop(rel, None)
        if hit is not None:
            self._cache[rel] = hit  # most recently used goes last; eviction takes the first
            return hit
        below: list[str] = []
        known = rel
        while known and known not in self._cache:
            known, _, name = known.rpartition("/")
            below.append(name)
        start = self._dir(known, create=create)  # a cache hit or the root
        if start is None:
            return None
        fd, resolved = start
        for name in reversed(below):
            try:
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        return None
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=fd)
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                # A symlink (or worse) on the way: resolve the whole path in-root.
                got = self.walker.open_dir(rel, create=create)
                if got is not None:
                    self._remember(rel, got)
                return got
            known = _join(known, name)
            resolved = _join(resolved, name)
            fd = child
            self._remember(known, (child, resolved))
        return fd, resolved

    def _remember(self, rel: str, got: tuple[int, str]) -> None:
        if len(self._cache) >= _CACHE_MAX:
            oldest = next(iter(self._cache))
            self._retired.append(self._cache.pop(oldest)[0])
        self._cache[rel] = got

    def _remove(self, pfd: int, name: str) -> None:
        """Remove whatever `name` is (a whole tree for a directory), never following links."""
        self._drain()
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=pfd)
            self._drop_cache()
        else:
            os.unlink(name, dir_fd=pfd)
            if stat.S_ISLNK(st.st_mode):
                self._drop_cache()

    # -- metadata ------------------------------------------------------------------------
    def _set_xattrs(self, target: int | str, member: tarfile.TarInfo, *, follow: bool) -> None:
        for name, value in _xattrs(member):
            try:
                os.setxattr(target, name, value, follow_symlinks=follow)
            except OSError as e:
                if e.errno not in _XATTR_SOFT_ERRNOS:
                    raise
                self.stats.xattrs_ignored += 1

    def _needs_chown(self, member: tarfile.TarInfo) -> bool:
        return self.same_owner and self.own != (member.uid, member.gid)

    def _needs_chmod(self, mode: int, created: int) -> bool:
        """Whether an entry created with mode `created` must be chmodded to `mode`."""
        return (created & ~self.umask) != mode or self.own is None

    def _lchown(self, pfd: int, name: str, member: tarfile.TarInfo) -> None:
        if self._needs_chown(member):
            os.chown(name, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)

    @staticmethod
    def _proc_path(pfd: int, name: str) -> str:
        # Path-based xattr/chmod calls have no *at() form; /proc/self/fd/N is the
        # directory we hold open, so the lookup of `name` cannot be redirected.
        return f"/proc/self/fd/{pfd}/{name}"

    # -- entries -------------------------------------------------------------------------
    def add(self, member: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        name = clean_member_name(member.name)
        # A hardlink may point at a file a writer has yet to make; anything else waits
        # only when its own path goes through or replaces one.
        if self._pending and (member.islnk() or self._conflicts(name)):
            self._drain()
        if self.mode != "none" and WHITEOUT_PREFIX in name and self._whiteout(member, name):
            return
        parent, _, base = name.rpartition("/")
        if not base:
            self._drain()
            self._root_entry(member)
            return
        got = self._dir(parent, create=True)
        assert got is not None
        pfd, presolved = got
        rel = _join(presolved, base)
        if rel in self._pending:  # the same file again through a symlinked directory
            self._drain()
        if member.isreg() and self._delegate(member, tf, pfd, base, rel):
            self._mark(rel)
            return
        if member.isdir():
            self._directory(member, pfd, base, rel)
        elif member.isreg():
            self._file(member, tf, pfd, base)
        elif member.issym():
            self._symlink(member, pfd, base)
        elif member.islnk():
            if not self._hardlink(member, pfd, base, rel):
                return
        elif member.ischr() or member.isblk() or member.isfifo():
            self._device(member, pfd, base)
        else:
            self.stats.skipped += 1  # GNU volume labels, multi-volume continuations, ...
            return
        self._mark(rel)

    def _root_entry(self, member: tarfile.TarInfo) -> None:
        if not member.isdir():
            raise InvalidArgument(f"archive entry {member.name!r} would replace the destination")
        if self.same_owner:
            os.fchown(self.root_fd, member.uid, member.gid)
        self._set_xattrs(self.root_fd, member, follow=True)
        self.dirs[""] = (member.mode & 0o7777, _mtime_ns(member))

    def _directory(self, member: tarfile.TarInfo, pfd: int, base: str, rel: str) -> None:
        try:
            os.mkdir(base, 0o755, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):  # a directory over a directory merges
                self._remove(pfd, base)
                os.mkdir(base, 0o755, dir_fd=pfd)
        self._lchown(pfd, base, member)
        if _xattrs(member):
            fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
            try:
                self._set_xattrs(fd, member, follow=True)
            finally:
                os.close(fd)
        self.dirs[rel] = (member.mode & 0o7777, _mtime_ns(member))
        self.stats.dirs += 1

    def _delegate(self, member: tarfile.TarInfo, tf: tarfile.TarFile, pfd: int, base: str,
                  rel: str) -> bool:
        """Hand a small plain file to the writers; False when it is not one for them."""
        if (self.own is None or member.size > _SMALL_FILE or member.sparse is not None
                or rel in self.unpacked or _xattrs(member)):
            return False  # (a name made before is replaced by the careful path)
        src = tf.fileobj
        src.seek(member.offset_data)
        try:
            data = src.read(member.size)
        except Exception as e:
            raise _corrupt(e) from e
        if len(data) != member.size:
            raise InvalidArgument(f"archive ends in the middle of {member.name!r}")
        mode = member.mode & 0o7777
        created = mode & 0o777
        chown = self._needs_chown(member)
        chmod = chown or self._needs_chmod(mode, created)
        if self._writers is None:
            self._writers = _Writers()
        self._pending.add(rel)
        self._writers.put((member.name, pfd, base, data, created, mode,
                           member.uid if chown else -1, member.gid, chmod,
                           _mtime_ns(member)))
        self.stats.files += 1
        self.stats.bytes_written += member.size
        return True

    def _file(self, member: tarfile.TarInfo, tf: tarfile.TarFile, pfd: int, base: str) -> None:
        mode = member.mode & 0o7777
        # Created with its final permission bits when they survive the umask (a new
        # file is writable through the descriptor that created it, whatever its mode).
        created = mode & 0o777 if self.own is not None else 0o600
        try:
            fd = os.open(base, _NEW_FILE_FLAGS, created, dir_fd=pfd)
        except FileExistsError:
            # Never write through what is there: it may be a symlink to the host or a
            # hardlink shared with another file.
            self._remove(pfd, base)
            fd = os.open(base, _NEW_FILE_FLAGS, created, dir_fd=pfd)
        try:
            self._copy_data(member, tf, fd)
            chown = self._needs_chown(member)
            if chown:
                os.fchown(fd, member.uid, member.gid)
            # After chown, which clears setuid/setgid bits, and before xattrs, because
            # chown and writes also drop security.capability.
            if chown or self._needs_chmod(mode, created):
                os.fchmod(fd, mode)
            self._set_xattrs(fd, member, follow=True)
            t = _mtime_ns(member)
            os.utime(fd, ns=(t, t))
        finally:
            os.close(fd)
        self.stats.files += 1

    def _copy_data(self, member: tarfile.TarInfo, tf: tarfile.TarFile, fd: int) -> None:
        remaining = member.size
        if member.sparse is not None:
            src: Any = tf.extractfile(member)  # expands the sparse map into zeros
        else:
            src = tf.fileobj
            src.seek(member.offset_data)  # a no-op on the stream unless out of step
        buf = self._buf
        while remaining:
            try:
                n = src.readinto(buf[: min(remaining, COPY_BUFSIZE)])
            except Exception as e:
                raise _corrupt(e) from e
            if not n:
                raise InvalidArgument(f"archive ends in the middle of {member.name!r}")
            write_all(fd, buf[:n])
            remaining -= n
            self.stats.bytes_written += n

    def _symlink(self, member: tarfile.TarInfo, pfd: int, base: str) -> None:
        if not member.linkname:
            raise InvalidArgument(f"symlink {member.name!r} has an empty target")
        # The target is stored as written: symlinks are only ever followed in-root, so
        # an absolute target such as /bin/busybox means the image's own /bin.
        try:
            os.symlink(member.linkname, base, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, base)
            os.symlink(member.linkname, base, dir_fd=pfd)
        self._lchown(pfd, base, member)
        if _xattrs(member):
            self._set_xattrs(self._proc_path(pfd, base), member, follow=False)
        t = _mtime_ns(member)
        os.utime(base, ns=(t, t), dir_fd=pfd, follow_symlinks=False)
        self.stats.symlinks += 1
        self.symlink_bytes += len(os.fsencode(member.linkname))

    def _hardlink(self, member: tarfile.TarInfo, pfd: int, base: str, rel: str) -> bool:
        target = clean_member_name(member.linkname)
        tparent, _, tbase = target.rpartition("/")
        if not tbase:
            raise InvalidArgument(f"hardlink {member.name!r} points at the destination itself")
        got = self._dir(tparent, create=False)
        missing = InvalidArgument(
            f"hardlink {member.name!r} points to {member.linkname!r}, which is not in the archive"
        )
        if got is None:
            raise missing
        tpfd, tresolved = got
        if _join(tresolved, tbase) == rel:
            return False  # a link to itself: nothing to do
        # follow_symlinks=False (no AT_SYMLINK_FOLLOW): a link to a symlink links the
        # symlink itself, so a hardlink can never reach through one to the host.
        try:
            os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileExistsError:
            self._remove(pfd, base)
            os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            raise missing from None
        except PermissionError:
            raise InvalidArgument(
                f"hardlink {member.name!r} points to {member.linkname!r}, which is a directory"
            ) from None
        self.stats.hardlinks += 1
        return True

    def _device(self, member: tarfile.TarInfo, pfd: int, base: str) -> None:
        if member.ischr():
            kind = stat.S_IFCHR
        elif member.isblk():
            kind = stat.S_IFBLK
        else:
            kind = stat.S_IFIFO
        dev = os.makedev(member.devmajor, member.devminor) if kind != stat.S_IFIFO else 0
        mode = member.mode & 0o7777
        try:
            os.mknod(base, kind | mode, dev, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, base)
            os.mknod(base, kind | mode, dev, dir_fd=pfd)
        self._lchown(pfd, base, member)
        # mknod's mode went through the umask. There is no fchmodat(AT_SYMLINK_NOFOLLOW)
        # on Linux and a device cannot be opened for fchmod without side effects, so pin
        # the inode with O_PATH|O_NOFOLLOW and chmod it through its /proc magic link:
        # if the name was swapped for a symlink meanwhile, the check below sees it.
        pin = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            if stat.S_IFMT(os.fstat(pin).st_mode) != kind:
                raise KetchError(f"{member.name!r} changed while it was being extracted")
            os.chmod(f"/proc/self/fd/{pin}", mode)
        finally:
            os.close(pin)
        if _xattrs(member):
            self._set_xattrs(self._proc_path(pfd, base), member, follow=False)
        t = _mtime_ns(member)
        os.utime(base, ns=(t, t), dir_fd=pfd, follow_symlinks=False)
        self.stats.devices += 1

    # -- whiteouts -----------------------------------------------------------------------
    def _whiteout(self, member: tarfile.TarInfo, name: str) -> bool:
        """Handle a whiteout entry; False when `name` is an ordinary entry after all."""
        parts = name.split("/")
        for part in parts[:-1]:
            if part.startswith(WHITEOUT_META_PREFIX):
                self.stats.skipped += 1  # inside AUFS bookkeeping (.wh..wh.plnk/...)
                return True
            if part.startswith(WHITEOUT_PREFIX):
                raise InvalidArgument(f"whiteout {part!r} in {member.name!r} has entries below it")
        base = parts[-1]
        if not base.startswith(WHITEOUT_PREFIX):
            return False
        parent = "/".join(parts[:-1])
        if base == WHITEOUT_OPAQUE:
            self._opaque(parent)
            return True
        if base.startswith(WHITEOUT_META_PREFIX):
            self.stats.skipped += 1
            return True
        target = base[len(WHITEOUT_PREFIX):]
        if target in ("", ".", ".."):
            raise InvalidArgument(f"invalid whiteout entry {member.name!r} in archive")
        if self.mode == "overlay":
            self._overlay_whiteout(member, parent, target)
        else:
            self._apply_whiteout(parent, target)
        self.stats.whiteouts += 1
        return True

    def _overlay_whiteout(self, member: tarfile.TarInfo, parent: str, target: str) -> None:
        got = self._dir(parent, create=True)
        assert got is not None
        pfd, presolved = got
        rel = _join(presolved, target)
        if rel in self.unpacked:
            return  # the same layer made it; only a later layer may hide it
        try:
            os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, target)
            os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
        self._lchown(pfd, target, member)
        t = _mtime_ns(member)
        os.utime(target, ns=(t, t), dir_fd=pfd, follow_symlinks=False)
        self._mark(rel)

    def _apply_whiteout(self, parent: str, target: str) -> None:
        try:
            got = self._dir(parent, create=False)
        except NotADirectoryError:
            return  # nothing below a non-directory to delete
        if got is None:
            return
        pfd, presolved = got
        if _join(presolved, target) in self.unpacked:
            return
        with contextlib.suppress(FileNotFoundError):
            self._remove(pfd, target)

    def _opaque(self, parent: str) -> None:
        self.stats.opaque_dirs += 1
        if self.mode == "overlay":
            got = self._dir(parent, create=True)
            assert got is not None
            os.setxattr(got[0], OVERLAY_OPAQUE_XATTR, b"y")
            self._mark(got[1])
            return
        try:
            got = self._dir(parent, create=False)
        except NotADirectoryError:
            return
        if got is not None:
            self._prune(got[0], got[1])

    def _prune(self, top_fd: int, top_rel: str) -> None:
        """Delete everything below a directory that this archive did not create."""
        todo: list[tuple[int, str]] = []
        dfd, drel = top_fd, top_rel
        try:
            while True:
                for name in os.listdir(dfd):
                    rel = _join(drel, name)
                    if rel not in self.unpacked:
                        self._remove(dfd, name)
                        continue
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        todo.append((os.open(name, _DIR_FLAGS, dir_fd=dfd), rel))
                if dfd != top_fd:
                    os.close(dfd)
                if not todo:
                    break
                dfd, drel = todo.pop()
        except BaseException:
            if dfd != top_fd:
                os.close(dfd)
            for fd, _ in todo:
                os.close(fd)
            raise

    def finish(self) -> None:
        """Apply directory modes and mtimes, children before parents."""
        self._drain()  # new files change their directory's mtime

        def depth(rel: str) -> int:
            return rel.count("/") + 1 if rel else 0

        for rel in sorted(self.dirs, key=depth, reverse=True):
            mode, mtime = self.dirs[rel]
            try:
                got = self._dir(rel, create=False)
            except NotADirectoryError:
                continue  # replaced by a non-directory later in the archive
            if got is None:
                continue  # deleted by a later whiteout
            # Directories below the root were made 0755 by mkdir (the root by whoever
            # made it: always set).
            if not rel or self._needs_chmod(mode, 0o755):
                os.fchmod(got[0], mode)
            os.utime(got[0], ns=(mtime, mtime))
