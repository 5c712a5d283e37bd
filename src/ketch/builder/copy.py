"""COPY and ADD: putting sources into an image's root filesystem, with Docker's rules.

The destination is a mounted, writable view of the image (an overlay whose upper dir
becomes the new layer), so existing directories, symlinks in the image and copy-up all
behave as they do in a container. Every destination path is resolved inside that root
(symlinks followed as if the root were "/"), never on the host.

Rules (Dockerfile reference, moby's copy.go):
* a directory source copies its contents, not itself;
* a destination ending in "/" (or ".", or an existing directory) is a directory and a
  file source lands inside it under its own name; otherwise a single file source is
  written at the destination path;
* several sources (or a pattern) need a directory destination ending in "/";
* a relative destination is relative to WORKDIR; missing directories are created;
* files and directories belong to root (or `--chown`), keep their mode (or `--chmod`)
  and their modification time;
* ADD unpacks a local tar archive (plain, gzip, bzip2, xz) into the destination
  directory, and downloads a URL (mode 0600, mtime from Last-Modified).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from pathlib import Path

from ketch.builder.context import Source, SourceRoot
from ketch.builder.copyargs import container_dest, dest_is_dir, is_url, parse_chmod
from ketch.errors import BuildError

__all__ = ["Copier", "Download", "Owner", "container_dest", "dest_is_dir", "download",
           "is_archive", "is_url", "parse_chmod", "resolve_chown"]

_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


class Owner:
    __slots__ = ("uid", "gid")

    def __init__(self, uid: int = 0, gid: int = 0) -> None:
        self.uid = uid
        self.gid = gid


def resolve_chown(rootfs: Path, spec: str | None) -> Owner:
    """`--chown=user[:group]`, names looked up in the image's own passwd/group files.

    A user without a group uses the same number for the group (Dockerfile reference).
    """
    if not spec:
        return Owner()
    user, sep, group = spec.partition(":")
    from ketch.runtime.users import parse_group, parse_passwd, read_file_in_root

    def lookup(name: str, file: str, kind: str) -> int:
        if name.isdigit():
            return int(name)
        text = read_file_in_root(rootfs, file)
        if text is not None:
            entries = parse_passwd(text) if kind == "user" else parse_group(text)
            for e in entries:
                if e.name == name:
                    return e.uid if kind == "user" else e.gid  # type: ignore[union-attr]  # user entries have uid, group entries gid
        raise BuildError(f"unable to convert uid/gid chown string to host mapping: can't"
                         f" find {kind} {name}: no such {kind}")

    uid = lookup(user, "/etc/passwd", "user")
    gid = lookup(group, "/etc/group", "group") if sep and group else uid
    return Owner(uid, gid)


class Copier:
    """Writes sources into `rootfs` for one COPY/ADD instruction."""

    def __init__(self, rootfs: Path, owner: Owner, chmod: int | None) -> None:
        self.rootfs = rootfs
        self.owner = owner
        self.chmod = chmod
        self._dirs_done: dict[str, Path] = {}
        self._dir_times: list[tuple[Path, os.stat_result]] = []

    # -- destinations ----------------------------------------------------------------
    def _host(self, cpath: str) -> Path:
        from ketch.archive.paths import resolve_in_root

        return resolve_in_root(self.rootfs, cpath)

    def ensure_dir(self, cpath: str) -> Path:
        """mkdir -p inside the root; new directories get 0755 and the COPY's owner."""
        cached = self._dirs_done.get(cpath)
        if cached is not None:
            return cached
        if cpath == "/":
            return self.rootfs
        self.ensure_dir(posixpath.dirname(cpath))
        host = self._host(cpath)
        try:
            st = os.lstat(host)
            if not stat.S_ISDIR(st.st_mode):
                raise BuildError(f"cannot copy to {cpath}: it exists in the image and is"
                                 " not a directory")
        except FileNotFoundError:
            os.mkdir(host, 0o755)
            os.chown(host, self.owner.uid, self.owner.gid)
            os.chmod(host, 0o755)
        self._dirs_done[cpath] = host
        return host

    def ensure_workdir(self, cpath: str) -> None:
        """Create WORKDIR as Docker's WORKDIR step would have: root-owned, 0755."""
        owner, self.owner = self.owner, Owner()
        try:
            self.ensure_dir(cpath)
        finally:
            self.owner = owner

    def _prepare_target(self, parent_host: Path, name: str, want_dir: bool) -> Path:
        target = parent_host / name
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return target
        if want_dir and stat.S_ISDIR(st.st_mode):
            return target
        if stat.S_ISDIR(st.st_mode):
            if not want_dir:
                raise BuildError(f"cannot overwrite directory {target.relative_to(self.rootfs)}"
                                 " with non-directory")
        else:
            os.unlink(target)
        return target

    # -- one entry ---------------------------------------------------------------------
    def _mode(self, st: os.stat_result) -> int:
        return self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode)

    def put(self, src_path: str, st: os.stat_result, cpath: str) -> None:
        """Copy one entry (file, dir, symlink, fifo, device) to container path `cpath`."""
        parent = self.ensure_dir(posixpath.dirname(cpath))
        name = posixpath.basename(cpath)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            target = self._prepare_target(parent, name, True)
            if not os.path.lexists(target):
                os.mkdir(target, 0o700)
            os.chown(target, self.owner.uid, self.owner.gid)
            os.chmod(target, self._mode(st))
            self._dirs_done[cpath] = target
            self._dir_times.append((target, st))
            return
        target = self._prepare_target(parent, name, False)
        if stat.S_ISREG(mode):
            self._copy_file(src_path, target, st)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src_path), target)
            os.lchown(target, self.owner.uid, self.owner.gid)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(target, stat.S_IFMT(mode) | self._mode(st), st.st_rdev)
            os.chown(target, self.owner.uid, self.owner.gid)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        # sockets cannot be archived: Docker skips them too

    def _copy_file(self, src_path: str, target: Path, st: os.stat_result) -> None:
        sfd = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            dfd = os.open(target, _OPEN_NEW, 0o600)
            try:
                _copy_fd(sfd, dfd, st.st_size)
                os.fchown(dfd, self.owner.uid, self.owner.gid)
                os.fchmod(dfd, self._mode(st))  # after chown, which clears setuid bits
                os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)

    def write_bytes(self, cpath: str, data: bytes, mode: int = 0o644,
                    mtime_ns: int | None = None) -> None:
        parent = self.ensure_dir(posixpath.dirname(cpath))
        target = self._prepare_target(parent, posixpath.basename(cpath), False)
        fd = os.open(target, _OPEN_NEW, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fchown(fd, self.owner.uid, self.owner.gid)
            os.fchmod(fd, self.chmod if self.chmod is not None else mode)
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Directory mtimes last: writing their contents changed them."""
        for target, st in reversed(self._dir_times):
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        self._dir_times.clear()

    # -- whole sources ---------------------------------------------------------------
    def copy_source(self, root: SourceRoot, src: Source, dest: str, into_dir: bool) -> None:
        """Copy one resolved source to absolute container path `dest`."""
        if src.is_dir:
            self.ensure_dir(dest)
            base = str(src.path)
            prefix_len = 0 if src.rel in ("", ".") else len(src.rel) + 1
            for rel in root.below(src.rel):
                sub = rel[prefix_len:]
                host = os.path.join(base, sub)
                try:
                    st = os.lstat(host)
                except FileNotFoundError:
                    continue
                self.put(host, st, posixpath.join(dest, sub))
            return
        name = posixpath.basename(src.rel)
        target = posixpath.join(dest, name) if into_dir or self._is_dir(dest) else dest
        self.put(str(src.path), src.st, target)

    def _is_dir(self, cpath: str) -> bool:
        try:
            return stat.S_ISDIR(os.stat(self._host(cpath)).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def extract_tar(self, src: Source, dest: str) -> None:
        """ADD of a local archive: its entries go below `dest`, ownership as archived."""
        from ketch.archive import extract

        target = self.ensure_dir(dest)
        try:
            extract(str(src.path), target, whiteouts="none", same_owner=True, digest=False)
        except BuildError:
            raise
        except Exception as e:
            raise BuildError(f"ADD failed: cannot unpack {src.rel}: {e}") from None


def _copy_fd(sfd: int, dfd: int, size: int) -> None:
    remaining = size
    while remaining > 0:
        try:
            n = os.copy_file_range(sfd, dfd, remaining)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            n = os.sendfile(dfd, sfd, None, remaining)
        if n == 0:
            break
        remaining -= n


def is_archive(path: Path) -> bool:
    """Whether ADD unpacks this local file: a tar, maybe gzip/bzip2/xz compressed."""
    import tarfile

    try:
        with open(path, "rb") as f:
            head = f.read(6)
        from ketch.archive import detect_compression

        kind = detect_compression(head)
        if kind == "zstd":
            return False  # Docker's classic ADD does not unpack zstd
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError, EOFError):
        return False


class Download:
    def __init__(self, path: Path, name: str, digest: str, mtime_ns: int | None) -> None:
        self.path = path
        self.name = name
        self.digest = digest
        self.mtime_ns = mtime_ns


def download(url: str, tmp_dir: Path) -> Download:
    """Fetch an ADD URL into tmp_dir; the name is the URL's last path segment."""
    import email.utils
    import hashlib
    import urllib.error
    import urllib.parse
    import urllib.request

    from ketch.store.intents import owner_tag

    name = posixpath.basename(urllib.parse.urlparse(url).path) or "__unnamed__"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = tmp_dir / f"download-{owner_tag()}-{os.urandom(4).hex()}"
    h = hashlib.sha256()
    mtime_ns = None
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "ketch"})
        with urllib.request.urlopen(req, timeout=60) as resp, open(path, "wb") as f:
            last = resp.headers.get("Last-Modified")
            if last:
                try:
                    mtime_ns = int(email.utils.parsedate_to_datetime(last).timestamp()) \
                        * 1_000_000_000
                except (TypeError, ValueError):
                    mtime_ns = None
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                f.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as e:
        path.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise BuildError(f"ADD failed: cannot download {url}: {reason}") from None
    return Download(path, name, h.hexdigest(), mtime_ns)
