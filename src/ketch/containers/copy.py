"""`cp` and `export`: files between a container's filesystem and the host.

A container's filesystem is untrusted: any path component in it may be a symlink to "/"
or to "../../..", or be swapped for one while we copy (CVE-2018-15664). So every path
inside the container is walked with `ketch.archive.InRoot` (one O_NOFOLLOW open per
component, symlinks expanded as if the container root were "/"), the tree is archived
from the descriptors that walk returned (`/proc/self/fd/N/name`, which the kernel
resolves to exactly the directory we hold), and archives are unpacked with the safe
extractor. Nothing of the container is ever executed or loaded: no chroot, no NSS
lookups (CVE-2019-14271), numeric owners only.

The work runs in a forked child with a private mount namespace. There the container's
root is mounted if it is stopped, and its volumes and bind mounts are mounted where the
container sees them, so `cp` reaches what the container's processes see. Those mounts
die with the child: even a `kill -9` leaves no mount behind.

Size: one job, copies into and out of an untrusted container filesystem; the containment
argument (the held descriptors, the private mount namespace) spans copy in, copy out and
export, so they stay together.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import stat
import sys
import threading
from pathlib import Path

from ketch.errors import Conflict, InvalidArgument, KetchError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import IO, Any

    from _typeshed import StrPath

    from ketch.archive import InRoot
    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 0x4000, 1 << 18
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_SYMLINKS = 40
_ERRORS: dict[str, type[KetchError]] = {"NotFound": NotFound, "Conflict": Conflict,
                                        "InvalidArgument": InvalidArgument}


# -- the child with the container's filesystem ------------------------------------------
def _mount_error(what: str) -> KetchError:
    import ctypes

    return KetchError(f"{what}: {os.strerror(ctypes.get_errno())}")


def _enter_private_namespace() -> None:
    from ketch.containers.rootfs import libc

    if libc().unshare(CLONE_NEWNS) != 0:
        raise _mount_error("cannot make a private mount namespace")
    # Mounts made from here on must not propagate back to the host.
    if libc().mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise _mount_error("cannot make the mount namespace private")


def _mount_root(svc: ContainerService, rec: ContainerRecord) -> Path:
    from ketch.containers.rootfs import OverlayMount, is_mounted, mount_overlay

    d = Path(svc.path(rec.id))
    merged = d / "merged"
    if not is_mounted(merged):
        lowers: list[StrPath] = []
        if rec.chain_ids:
            lowers += svc.engine.layers.lower_dirs(rec.chain_ids)
        if not lowers:
            (d / "empty").mkdir(exist_ok=True)
            lowers = [d / "empty"]
        mount_overlay(OverlayMount(lowers, d / "upper", d / "work", merged))
    return merged


def container_mounts(svc: ContainerService, rec: ContainerRecord) -> list[dict[str, Any]]:
    """What the container has mounted over its root (Docker's `Mounts`, plus the /etc
    files), shallowest first so nested mounts stack as they do in the container."""
    d = Path(svc.path(rec.id))
    out = [dict(m) for m in rec.extra.get("Mounts") or [] if m.get("Type") in ("bind",
                                                                                 "volume")]
    for name in ("hostname", "hosts", "resolv.conf"):
        if (d / name).exists():
            out.append({"Source": str(d / name), "Destination": f"/etc/{name}", "RW": True,
                        "Type": "bind"})
    out.sort(key=lambda m: len([p for p in m["Destination"].split("/") if p]))
    return out


def _mount_volume_devices(svc: ContainerService, mounts: list[dict[str, Any]]) -> None:
    """Volumes with local driver options (tmpfs, bind, NFS) that are not mounted because
    the container is stopped: mounted here, in the child's namespace, as Docker mounts
    them for `cp`, so a bind volume's copy lands in its host directory."""
    from ketch.containers.rootfs import is_mounted
    from ketch.containers.volumes import VolumeStore, mount_device

    store = VolumeStore(svc.engine)
    for m in mounts:
        if m.get("Type") != "volume" or not m.get("Name"):
            continue
        opts = store.options(m["Name"])
        if opts and not is_mounted(Path(m["Source"])):
            mount_device(opts, Path(m["Source"]))


def _mount_volumes(root_fd: int, mounts: list[dict[str, Any]]) -> None:
    from ketch.archive import InRoot
    from ketch.containers.rootfs import libc

    walker = InRoot(root_fd)
    for m in mounts:
        target = m["Destination"]
        try:
            got = walker.open_dir(target)
            fd = got[0] if got is not None else None
        except NotADirectoryError:
            try:
                fd = walker.open(target, os.O_PATH)
            except OSError:
                fd = None
        except OSError:
            fd = None
        if fd is None:
            continue  # the mount point was never made: the container has not run
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                continue
            # Mounting on /proc/self/fd/N mounts on exactly the inode we opened in-root,
            # whatever the container did to the path since (runc does the same).
            where = f"/proc/self/fd/{fd}".encode()
            if libc().mount(m["Source"].encode(), where, None, MS_BIND | MS_REC, None) != 0:
                raise _mount_error(f"cannot mount {m['Source']} on {target}")
            if not m.get("RW", True):
                libc().mount(None, where, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
        finally:
            os.close(fd)


def _in_container_fs(svc: ContainerService, rec: ContainerRecord,
                     work: Callable[[int, Path], Any], *, volumes: bool = True) -> Any:
    """Run `work(root_fd, root_path)` in a child that sees the container's filesystem.

    The child shares our stdin/stdout (tar streams go straight through); its result, or
    its error, comes back over a pipe as JSON.
    """
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        code = 1
        result: dict[str, Any]
        try:
            _enter_private_namespace()
            root = _mount_root(svc, rec)
            root_fd = os.open(root, _DIR_FLAGS)
            if volumes:
                mounts = container_mounts(svc, rec)
                _mount_volume_devices(svc, mounts)
                _mount_volumes(root_fd, mounts)
            result = {"ok": work(root_fd, root)}
            code = 0
        except KetchError as e:
            kind = next((k for k, cls in _ERRORS.items() if isinstance(e, cls)), "")
            result = {"error": e.message, "kind": kind}
        except BrokenPipeError:
            result = {"ok": 0}
            code = 0
        except OSError as e:
            result = {"error": f"{e.strerror or e}" + (f": {e.filename}" if e.filename
                                                       else "")}
        except BaseException as e:
            result = {"error": f"internal error: {type(e).__name__}: {e}"}
        try:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    with open(r, "rb") as f:
        while True:
            data = f.read()
            if not data:
                break
            chunks.append(data)
    os.waitpid(pid, 0)
    try:
        result = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        result = {}
    if "ok" in result:
        return result["ok"]
    message = result.get("error") or "copying failed: the helper process died"
    raise _ERRORS.get(result.get("kind") or "", KetchError)(message)


@contextlib.contextmanager
def _container_held(svc: ContainerService, name: str) -> Iterator[ContainerRecord]:
    """The container, locked while it is stopped: a `start` must not mount its overlay
    (same upper dir) while our child has it mounted."""
    rec = svc.get(name)
    if rec.state in ("running", "paused"):
        yield rec
        return
    with svc.lock(rec.id):
        cur = svc.records.get(rec.id)
        if cur is None:
            from ketch.errors import ContainerNotFound

            raise ContainerNotFound(name)
        yield cur


# -- paths ------------------------------------------------------------------------------
class _Spec:
    """A path as `docker cp` reads it: trailing "/." copies a directory's contents and a
    trailing "/" insists on a directory."""

    def __init__(self, path: str) -> None:
        self.raw = path
        self.contents = path == "." or path.endswith("/.")
        self.asserts_dir = path.endswith("/") or self.contents
        trimmed = path[:-1] if self.contents else path
        self.trimmed = trimmed.rstrip("/") or ("/" if trimmed.startswith("/") else ".")

    @property
    def base(self) -> str:
        return posixpath.basename(self.trimmed)


def _local_abs(path: str) -> str:
    """An absolute host path that keeps the trailing "/" or "/." the user typed."""
    absolute = os.path.abspath(path)
    if path.endswith("/.") or path == ".":
        return absolute.rstrip("/") + "/."
    if path.endswith("/") and absolute != "/":
        return absolute + "/"
    return absolute


class _Found:
    """A path looked up in the container: its parent directory (open) and its name."""

    def __init__(self, parent_fd: int, parent_rel: str, name: str,
                 st: os.stat_result | None) -> None:
        self.parent_fd = parent_fd
        self.parent_rel = parent_rel
        self.name = name
        self.st = st

    @property
    def rel(self) -> str:
        return posixpath.join(self.parent_rel, self.name) if self.name else self.parent_rel

    @property
    def proc_path(self) -> str:
        """A host path for this entry that cannot be redirected: the parent is the
        descriptor we hold, and the last component is never a symlink we follow."""
        return f"/proc/self/fd/{self.parent_fd}/{self.name}"

    def close(self) -> None:
        os.close(self.parent_fd)


def _lookup(walker: InRoot, path: str, *, follow: bool) -> _Found | None:
    """Find `path` in the container; None when its parent directory is missing.

    With `follow`, a final symlink is expanded (in-root, as many times as it takes);
    otherwise the link itself is the result.
    """
    rel = "/" + path.lstrip("/")
    for _ in range(MAX_SYMLINKS):
        parent, name = posixpath.split(posixpath.normpath(rel))
        if name in ("", ".", ".."):
            # the root itself (".." never climbs above it)
            got = walker.open_dir(rel)
            if got is None:
                return None
            return _Found(got[0], got[1], "", os.fstat(got[0]))
        got = walker.open_dir(parent)
        if got is None:
            return None
        pfd, presolved = got
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return _Found(pfd, presolved, name, None)
        except BaseException:
            os.close(pfd)
            raise
        if follow and stat.S_ISLNK(st.st_mode):
            target = os.readlink(name, dir_fd=pfd)
            os.close(pfd)
            rel = target if target.startswith("/") else f"/{presolved}/{target}"
            continue
        return _Found(pfd, presolved, name, st)
    from ketch.errors import UnsafeArchive

    raise UnsafeArchive(f"too many levels of symbolic links in {path!r}")


def check_in_root(path: str) -> None:
    """Refuse a path whose ".." climb above the container's root (a tar stream's path:
    the API's archive endpoints, `cp -`); InvalidArgument."""
    depth = 0
    for part in path.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise InvalidArgument(f"path {path!r} leads outside the container's root")
        elif part not in ("", "."):
            depth += 1


def _not_found(path: str, container: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {container}")


# -- moving tar streams -----------------------------------------------------------------
def _pump(write: Callable[[IO[bytes]], None], read: Callable[[IO[bytes]], object]) -> int:
    """`write` produces a tar into a pipe on a thread while `read` consumes it here;
    returns the bytes that went through. The writer's error wins (it is the cause)."""
    r, w = os.pipe()
    rfile = open(r, "rb")
    wfile = open(w, "wb")
    errors: list[BaseException] = []
    counter = _Counter(wfile)

    def produce() -> None:
        try:
            write(counter)  # type: ignore[arg-type]  # a writable stand-in for the file the writer takes
        except BaseException as e:  # handed to the reading side below
            errors.append(e)
        finally:
            with contextlib.suppress(OSError):
                wfile.close()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    try:
        read(rfile)
        # drain what the reader left (tar padding after the end marker)
        while rfile.read(1 << 16):
            pass
    except BaseException:
        rfile.close()
        t.join()
        if errors:
            raise errors[0] from None
        raise
    rfile.close()
    t.join()
    if errors:
        raise errors[0]
    return counter.count


class _Counter:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.count = 0

    def write(self, b: Any) -> int:
        n = self.out.write(b)
        self.count += len(b) if n is None else n
        return n if n is not None else len(b)

    def flush(self) -> None:
        self.out.flush()


def _check_overwrite(dest_dir_fd: int, name: str, src_is_dir: bool) -> None:
    """Docker never replaces a directory with a file or a file with a directory."""
    if not name:
        return
    try:
        st = os.stat(name, dir_fd=dest_dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(st.st_mode) and not src_is_dir:
        raise InvalidArgument(f'cannot overwrite directory "{name}" with non-directory')
    if not stat.S_ISDIR(st.st_mode) and src_is_dir:
        raise InvalidArgument(f'cannot overwrite non-directory "{name}" with directory')


# -- stat -------------------------------------------------------------------------------
# Go's os.FileMode type bits, which Docker's path stat carries (above the permissions)
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE = 1 << 31, 1 << 27, 1 << 26, 1 << 25
_GO_SOCKET, _GO_SETUID, _GO_SETGID, _GO_CHAR, _GO_STICKY = (1 << 24, 1 << 23, 1 << 22,
                                                            1 << 21, 1 << 20)
_GO_IRREGULAR = 1 << 19


def go_file_mode(mode: int) -> int:
    """A stat st_mode as Go's os.FileMode."""
    out = mode & 0o777
    kind = stat.S_IFMT(mode)
    out |= {stat.S_IFDIR: _GO_DIR, stat.S_IFLNK: _GO_SYMLINK, stat.S_IFBLK: _GO_DEVICE,
            stat.S_IFCHR: _GO_DEVICE | _GO_CHAR, stat.S_IFIFO: _GO_PIPE,
            stat.S_IFSOCK: _GO_SOCKET, stat.S_IFREG: 0}.get(kind, _GO_IRREGULAR)
    for bit, go in ((stat.S_ISUID, _GO_SETUID), (stat.S_ISGID, _GO_SETGID),
                    (stat.S_ISVTX, _GO_STICKY)):
        if mode & bit:
            out |= go
    return out


def _rfc3339(ns: int) -> str:
    import datetime

    sec, frac = divmod(ns, 1_000_000_000)
    text = datetime.datetime.fromtimestamp(sec, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def stat_path(svc: ContainerService, name: str, path: str) -> dict[str, Any]:
    """Docker's container path stat (the archive endpoints' X-Docker-Container-Path-Stat):
    name, size, mode (Go FileMode bits), mtime and, for a symlink, linkTarget (where it
    leads, resolved inside the container). NotFound "Could not find the file ..."."""
    check_in_root(path)
    spec = _Spec("/" + path.lstrip("/"))
    base = posixpath.basename(spec.raw.rstrip("/")) or "/"

    def work(root_fd: int, root: Path) -> dict[str, Any]:
        from ketch.archive import InRoot

        walker = InRoot(root_fd)
        found = _lookup(walker, spec.trimmed, follow=spec.asserts_dir)
        if found is None or found.st is None:
            if found is not None:
                found.close()
            raise _not_found(spec.raw, name)
        try:
            st = found.st
            link = ""
            if stat.S_ISLNK(st.st_mode):
                target = _lookup(walker, spec.trimmed, follow=True)
                if target is not None:
                    link = "/" + target.rel.strip("/")
                    target.close()
            return {"name": base, "size": st.st_size, "mode": go_file_mode(st.st_mode),
                    "mtime": _rfc3339(st.st_mtime_ns), "linkTarget": link}
        finally:
            found.close()

    with _container_held(svc, name) as rec:
        return dict(_in_container_fs(svc, rec, work))


# -- copy out ---------------------------------------------------------------------------
def copy_out(svc: ContainerService, name: str, src: str, dest: str,
             follow_link: bool, stream: IO[bytes] | None = None) -> int:
    """`cp CONTAINER:SRC DEST|-`; returns the number of bytes of tar that moved.
    With DEST "-" the tar goes to `stream` (standard output by default)."""
    if not src:
        raise InvalidArgument("path cannot be empty")  # `cp CTR: DEST`, as dockerd
    if dest == "-":
        check_in_root(src)
    spec = _Spec("/" + src.lstrip("/"))
    target = None if dest == "-" else _Spec(_local_abs(dest))
    if target is not None:
        parent = os.path.dirname(target.trimmed) or "/"
        if not os.path.isdir(parent):
            raise KetchError(f'invalid output path: directory "{parent}" does not exist'
                             if not os.path.exists(parent) else f"stat {parent}: not a directory")

    def work(root_fd: int, root: Path) -> int:
        from ketch.archive import InRoot, extract, write_tree

        walker = InRoot(root_fd)
        found = _lookup(walker, spec.trimmed, follow=follow_link or spec.asserts_dir)
        if found is None or found.st is None:
            if found is not None:
                found.close()
            raise _not_found(spec.raw, name)
        try:
            is_dir = stat.S_ISDIR(found.st.st_mode)
            if spec.asserts_dir and not is_dir:
                raise InvalidArgument(f"{spec.raw}: not a directory")
            top = found.proc_path if found.name else str(root)
            contents = spec.contents or not found.name
            arcname = "" if contents else spec.base
            if target is None:
                out = stream or sys.stdout.buffer
                counter = _Counter(out)
                write_tree(top, counter, arcname_prefix=arcname)
                out.flush()
                return counter.count
            dest_dir, final = _host_destination(target, is_dir, contents, arcname)
            dfd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                _check_overwrite(dfd, final, is_dir)
                return _pump(
                    lambda out: write_tree(top, out, arcname_prefix=final),
                    lambda stream: extract(stream, f"/proc/self/fd/{dfd}", whiteouts="none",
                                           same_owner=False, digest=False))
            finally:
                os.close(dfd)
        finally:
            found.close()

    with _container_held(svc, name) as rec:
        moved = _in_container_fs(svc, rec, work)
        svc.event(rec, "archive-path")  # dockerd's event for a copy out of a container
        return moved


def _host_destination(target: _Spec, src_is_dir: bool, contents: bool,
                      arcname: str) -> tuple[str, str]:
    """(directory to unpack into, name of the top entry), by docker cp's rules."""
    path = target.trimmed
    if os.path.isdir(path):
        return path, arcname
    if os.path.exists(path):
        if src_is_dir:
            raise InvalidArgument("cannot copy directory")
        return os.path.dirname(path), os.path.basename(path)
    if not src_is_dir and target.asserts_dir:
        raise InvalidArgument("no such directory")
    return os.path.dirname(path) or "/", os.path.basename(path)


# -- copy in ----------------------------------------------------------------------------
def copy_in(svc: ContainerService, name: str, src: str, dest: str, follow_link: bool,
            copy_uid_gid: bool, stream: IO[bytes] | None = None,
            no_overwrite_dir_non_dir: bool = False) -> int:
    """`cp SRC|- CONTAINER:DEST`; returns the number of bytes of tar that moved.
    With SRC "-" the tar is read from `stream` (standard input by default), kept in a
    temporary file and checked whole before anything is written: a member with an
    absolute name or a ".." refuses the copy, and with `no_overwrite_dir_non_dir` so
    does one that would replace a directory with a non-directory or the reverse."""
    if not dest:
        raise InvalidArgument("path cannot be empty")  # `cp SRC CTR:`, as dockerd
    dspec = _Spec("/" + dest.lstrip("/"))
    source = None if src == "-" else _Spec(_local_abs(src))
    src_path = ""
    src_is_dir = False
    if source is not None:
        src_path = source.trimmed
        try:
            st = os.lstat(src_path)
            if stat.S_ISLNK(st.st_mode) and (follow_link or source.asserts_dir):
                src_path = os.path.realpath(src_path)
                st = os.stat(src_path)
        except FileNotFoundError:
            raise KetchError(f"lstat {src_path}: no such file or directory") from None
        src_is_dir = stat.S_ISDIR(st.st_mode)
        if source.asserts_dir and not src_is_dir:
            raise InvalidArgument(f"{src}: not a directory")

    def destination(found: _Found) -> tuple[str, str]:
        """(container directory to unpack into, name of the top entry)."""
        exists = found.st is not None
        is_dir = found.st is not None and stat.S_ISDIR(found.st.st_mode)
        if found.st is not None and not is_dir and not stat.S_ISREG(found.st.st_mode):
            raise InvalidArgument(f'destination "{name}:{dest}" must be a directory or a'
                                  " regular file")
        if source is None:  # a tar on stdin unpacks into an existing directory
            if not exists:
                raise _not_found(dspec.raw, name)
            if not is_dir:
                raise InvalidArgument(f'destination "{name}:{dest}" must be a directory')
            return found.rel, ""
        if is_dir:
            # -L still names the copy after the link, not its target (Docker's rebase)
            return found.rel, "" if source.contents else source.base
        if exists:
            if src_is_dir:
                raise InvalidArgument("cannot copy directory")
            return found.parent_rel, found.name
        if not src_is_dir and dspec.asserts_dir:
            raise InvalidArgument("no such directory")
        return found.parent_rel, found.name

    spool: IO[bytes] | None = None
    members: list[tuple[str, bool]] = []
    if source is None:
        check_in_root(dest)
        svc.get(name)  # an unknown container before reading the stream
        spool, members = _spool_checked(svc, stream or sys.stdin.buffer)

    with contextlib.ExitStack() as cleanup, _container_held(svc, name) as rec:
        if spool is not None:
            cleanup.callback(spool.close)

        def work(root_fd: int, root: Path) -> int:
            from ketch.archive import InRoot, extract, write_tree

            walker = InRoot(root_fd)
            found = _lookup(walker, dspec.trimmed, follow=True)
            if found is None:  # its directory is missing: named, as docker cp names it
                raise _not_found(os.path.dirname(dspec.raw.rstrip("/")) or "/", name)
            try:
                into_rel, top_name = destination(found)
            finally:
                found.close()
            _refuse_read_only(svc, rec, "/" + into_rel)
            got = walker.open_dir(into_rel)
            if got is None:
                raise _not_found(dspec.raw, name)
            dfd = got[0]
            # the extractor works below the directory we hold, never by its path
            into = f"/proc/self/fd/{dfd}"
            try:
                if spool is not None:
                    if no_overwrite_dir_non_dir:
                        for member, is_dir in members:
                            _check_overwrite(dfd, member, is_dir)
                    counter = _CountingReader(spool)
                    extract(counter, into, whiteouts="none", same_owner=copy_uid_gid,
                            digest=False)
                    return counter.count
                _check_overwrite(dfd, top_name, src_is_dir)
                return _pump(
                    lambda out: write_tree(src_path, out, arcname_prefix=top_name),
                    lambda stream: extract(stream, into, whiteouts="none",
                                           same_owner=copy_uid_gid, digest=False))
            finally:
                os.close(dfd)

        moved = _in_container_fs(svc, rec, work)
        svc.event(rec, "extract-to-dir")  # and for a copy into one
        return moved


def _spool_checked(svc: ContainerService, stream: IO[bytes]
                   ) -> tuple[IO[bytes], list[tuple[str, bool]]]:
    """The tar of `stream` in a temporary file (rewound) and its members (clean name, is
    a directory); UnsafeArchive for an absolute name or a "..", InvalidArgument for what
    is not a tar."""
    import shutil
    import tarfile
    import tempfile

    from ketch.errors import UnsafeArchive

    tmp = svc.engine.root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    f = tempfile.TemporaryFile(dir=tmp)
    try:
        shutil.copyfileobj(stream, f, 1 << 20)
        if f.tell() == 0:
            return _rewound(f), []  # an empty body copies nothing
        f.seek(0)
        members: list[tuple[str, bool]] = []
        try:
            with tarfile.open(fileobj=f, mode="r:*") as tf:
                for m in tf:
                    for what in (m.name, m.linkname if m.islnk() else ""):
                        if what.startswith("/") or ".." in what.split("/"):
                            raise UnsafeArchive(f"archive entry {what!r} points outside"
                                                " the destination")
                    clean = "/".join(p for p in m.name.split("/") if p not in ("", "."))
                    if clean:
                        members.append((clean, m.isdir()))
        except (tarfile.TarError, EOFError) as e:
            raise InvalidArgument(f"the request body is not a tar archive: {e}") from None
        return _rewound(f), members
    except BaseException:
        f.close()
        raise


def _rewound(f: IO[bytes]) -> IO[bytes]:
    f.seek(0)
    return f


class _CountingReader:
    def __init__(self, src: IO[bytes]) -> None:
        self.src = src
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.count += len(data)
        return data

    def readinto(self, b: Any) -> int:
        n = self.src.readinto(b)  # type: ignore[attr-defined]  # the source is a binary file object (raw or buffered)
        self.count += n or 0
        return n or 0

    def readable(self) -> bool:
        return True


def _refuse_read_only(svc: ContainerService, rec: ContainerRecord, path: str) -> None:
    """Docker refuses to write into a read-only root or a read-only volume."""
    best: dict[str, Any] | None = None
    for m in container_mounts(svc, rec):
        d = m["Destination"].rstrip("/") or "/"
        if path == d or path.startswith(d + "/") or d == "/":
            if best is None or len(d) > len(best["Destination"]):
                best = m
    if best is not None:
        if not best.get("RW", True):
            raise Conflict("mounted volume is marked read-only")
        return
    if rec.host_config.get("ReadonlyRootfs"):
        raise Conflict("container rootfs is marked read-only")


# -- export -----------------------------------------------------------------------------
def export(svc: ContainerService, name: str, output: str | None,
           stream: IO[bytes] | None = None) -> int:
    """`export`: the container's root filesystem as a tar (volumes are not included),
    into the file `output`, else to `stream` (standard output by default)."""
    if output is None and stream is None and sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or"
                              " redirect")
    if output is not None:
        from ketch.fdio import check_output_file

        check_output_file(output, "failed to export container")  # before any work

    def work(root_fd: int, root: Path) -> int:
        from ketch.archive import write_tree

        if output is None:
            out = stream or sys.stdout.buffer
            counter = _Counter(out)
            write_tree(root, counter)
            out.flush()
            return counter.count
        from ketch.fdio import WholeFile

        with WholeFile(output) as f:
            counter = _Counter(f)
            write_tree(root, counter)
        return counter.count

    with _container_held(svc, name) as rec:
        moved = _in_container_fs(svc, rec, work, volumes=False)
        svc.event(rec, "export")
        return moved
