"""Writing a whole buffer to a file descriptor.

`os.write` may write less than it was given and say so in its result: a pipe or a
stream socket when a signal (or a debugger's stop) interrupts a blocking write after
part of the data went in, a file when the disk fills up. A caller that ignores the
count loses the rest without an error. Data that must arrive whole (a container's
stdin, a file ketch writes) goes through `write_all`.

Standard library only, and nothing loaded at import.
"""

from __future__ import annotations

import os


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
