"""The storage driver: the only code that touches the registry's bytes.

Ten operations over "/"-separated paths relative to the driver's root, with no registry
meaning at all (as in CNCF distribution's `storage/driver`): everything above it — links,
uploads, manifests — is expressed in these, so another backend (memory, object store)
only has to implement this interface and pass the shared test suite.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO



class PathNotFound(Exception):
    def __init__(self, path: str) -> None:
        super().__init__(f"path not found: {path}")
        self.path = path


@value(frozen=True)
class FileInfo:
    path: str
    size: int
    mtime: float
    is_dir: bool


class FileWriter(Protocol):
    size: int

    def write(self, data: bytes) -> int: ...

    def commit(self) -> None: ...

    def cancel(self) -> None: ...


class StorageDriver(Protocol):
    def get_content(self, path: str) -> bytes: ...

    def put_content(self, path: str, data: bytes) -> None: ...

    def reader(self, path: str, offset: int = 0) -> BinaryIO: ...

    def writer(self, path: str, append: bool = False) -> FileWriter: ...

    def stat(self, path: str) -> FileInfo: ...

    def list(self, path: str) -> list[str]: ...

    def move(self, src: str, dst: str) -> None: ...

    def delete(self, path: str) -> None: ...

    def walk(self, path: str) -> Iterator[FileInfo]: ...

    def temp_files(self, path: str) -> Iterator[FileInfo]: ...


class _FsWriter:
    """Appends go straight to the file (uploads resume at their size); new files are
    written aside and renamed on commit, so readers never see half a file."""

    def __init__(self, final: Path, append: bool) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        self._final = final
        # Unbuffered: each write reaches the file at once, so its mtime shows the
        # writer is alive (garbage collection spares temp files touched recently).
        if append:
            self._tmp = None
            self._f = open(final, "ab", buffering=0)
            self.size = self._f.tell()
        else:
            fd, name = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
            self._tmp = Path(name)
            self._f = os.fdopen(fd, "wb", buffering=0)
            self.size = 0
        self._done = False

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[self._f.write(view):]
        self.size += len(data)
        return len(data)

    def commit(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        if self._tmp is not None:
            os.rename(self._tmp, self._final)
        self._done = True

    def cancel(self) -> None:
        if not self._done:
            self._f.close()
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)
            self._done = True


class FilesystemDriver:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _full(self, path: str) -> Path:
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError(f"invalid storage path {path!r}")
        return self.root.joinpath(*parts)

    def get_content(self, path: str) -> bytes:
        try:
            return self._full(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None

    def put_content(self, path: str, data: bytes) -> None:
        w = _FsWriter(self._full(path), append=False)
        try:
            w.write(data)
            w.commit()
        finally:
            w.cancel()

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        try:
            f = open(self._full(path), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None
        f.seek(offset)
        return f

    def writer(self, path: str, append: bool = False) -> FileWriter:
        return _FsWriter(self._full(path), append)

    def stat(self, path: str) -> FileInfo:
        try:
            st = self._full(path).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        return FileInfo(path, st.st_size, st.st_mtime, os.path.isdir(self._full(path)))

    def list(self, path: str) -> list[str]:
        try:
            return sorted(p.name for p in self._full(path).iterdir()
                          if not p.name.startswith(".tmp-"))
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None

    def move(self, src: str, dst: str) -> None:
        target = self._full(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(self._full(src), target)
        except FileNotFoundError:
            raise PathNotFound(src) from None

    def delete(self, path: str) -> None:
        full = self._full(path)
        if full.is_dir() and not full.is_symlink():
            shutil.rmtree(full)
        else:
            try:
                full.unlink()
            except FileNotFoundError:
                raise PathNotFound(path) from None

    def walk(self, path: str) -> Iterator[FileInfo]:
        base = self._full(path)
        if not base.exists():
            raise PathNotFound(path)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for name in sorted(dirnames):
                st = os.stat(os.path.join(dirpath, name))
                yield FileInfo(f"{rel}/{name}", st.st_size, st.st_mtime, True)
            for name in sorted(filenames):
                if name.startswith(".tmp-"):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                yield FileInfo(f"{rel}/{name}", st.st_size, st.st_mtime, False)

    def temp_files(self, path: str) -> Iterator[FileInfo]:
        """The `.tmp-*` files of writes in progress or cut off, which list and walk hide."""
        base = self._full(path)
        for dirpath, _, filenames in os.walk(base):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for name in sorted(filenames):
                if not name.startswith(".tmp-"):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                prefix = "" if rel == "." else f"{rel}/"
                yield FileInfo(f"{prefix}{name}", st.st_size, st.st_mtime, False)
