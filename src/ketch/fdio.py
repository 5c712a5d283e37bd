"""Writing a whole buffer to a file descriptor, and a whole file under a name.

`os.write` may write less than it was given and say so in its result: a pipe or a
stream socket when a signal (or a debugger's stop) interrupts a blocking write after
part of the data went in, a file when the disk fills up. A caller that ignores the
count loses the rest without an error. Data that must arrive whole (a container's
stdin, a file ketch writes) goes through `write_all`.

`WholeFile` writes a file (an archive `save -o` or `export -o` makes) beside the name
asked for and renames it over that name at the end: a failure never leaves half a file
there. `check_output_file` refuses, before any work, a name that could not take it.

`read_text` and `remove_file` are pathlib's `read_text()` and `unlink(missing_ok=True)`
for paths kept as text (a container's start keeps its paths so: pathlib's import, with
re and enum behind it, is ~7 ms of a `run`).

Standard library only (and ketch.errors for the refusal), nothing loaded at import.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO


def read_text(path: str | os.PathLike[str]) -> str:
    """The whole file as UTF-8 text."""
    with open(path, encoding="utf-8") as f:
        return f.read()


def remove_file(path: str | os.PathLike[str]) -> None:
    """Unlink `path`; one that is not there is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of `data` to `fd`, again and again after a short write. An error
    raises as `os.write` does; a write that takes nothing (it should not happen with
    data left) raises OSError(EIO) rather than looping."""
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        if n <= 0:
            import errno

            raise OSError(errno.EIO, "short write took no bytes")
        view = view[n:]


def check_output_file(path: str, failure: str) -> None:
    """Refuse an output file whose directory is missing, or that is a directory (the
    rename at the end would fail, after the work), in the docker CLI's words after
    `failure` ("failed to save image")."""
    from ketch.errors import InvalidArgument

    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InvalidArgument(f"{failure}: invalid output path: stat {parent}: "
                              + ("not a directory" if os.path.exists(parent)
                                 else "no such file or directory"))
    if os.path.isdir(path):
        from ketch.fmt.gofmt import quote

        raise InvalidArgument(f"{failure}: invalid output path: {quote(path)} is a directory")


class WholeFile:
    """`with WholeFile(path) as f:` a binary file written beside `path` and renamed over
    it when the body ends without an error; otherwise removed."""

    def __init__(self, path: str) -> None:
        from _thread import get_ident

        self.path = path
        # (the process and the thread: two threads of a program using ketch.Engine may
        # save to the same path at once, each into a file of its own)
        self.tmp = f"{path}.ketch-{os.getpid()}-{get_ident()}.tmp"

    def __enter__(self) -> BinaryIO:
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed by __exit__)
        return self.file

    def __exit__(self, kind: object, *rest: object) -> None:
        try:
            self.file.close()
            if kind is None:
                os.replace(self.tmp, self.path)
        finally:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass
