"""Writes ketch's code bundle: the compiled code of ketch's modules in one file, which
the package's `__init__` puts in front of the import system.

Why: a short command imports 30-50 of ketch's modules, and for each the standard path
finder and source loader run some hundred lines of importlib's Python (directory
checks, cache paths, four system calls, header checks) around the one step that
matters, unmarshalling the code. Reading it from one open file instead, after a single
stat of the source, took `ketch image inspect` from 56.0 to 51.4 million instructions
(callgrind, same sources, with and without the bundle) and `create` about as much.

Format (`<package>/__pycache__/ketch.<cache tag>.bundle`): 16 bytes of header (b"KCB1",
the interpreter's bytecode magic number, the index's length as 8 little-endian bytes),
the index (marshal: module name -> (path under the package, is a package, the source's
st_mtime_ns and st_size, offset and length of its code)), then each module's code object
(marshal). An entry is used only while its source file has that size and mtime; any
other module is imported the usual way.

The bundle is written as Python writes `.pyc` files, and under the same rule (not when
`sys.dont_write_bytecode`): at the exit of a process that imported a module of ketch's
outside it, keeping the entries that are still valid. So it holds what commands use,
and catches up with edited sources by itself.
"""

from __future__ import annotations

import marshal
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

HEADER = b"KCB1"


def refresh(bundle: str, root: str, index: dict[str, tuple[str, bool, int, int, int, int]],
            handle: tuple[int, int], missed: list[ModuleType]) -> None:
    """Rewrite `bundle` with the still-valid entries of `index` (read through `handle`,
    the open bundle's descriptor and the offset of its code) and the modules `missed`.
    Failures are silent, as a `.pyc` that cannot be written is."""
    try:
        _refresh(bundle, root, index, handle, missed)
    except (OSError, SyntaxError, ValueError):
        pass


def _refresh(bundle: str, root: str, index: dict[str, tuple[str, bool, int, int, int, int]],
             handle: tuple[int, int], missed: list[ModuleType]) -> None:
    where = os.path.dirname(bundle)
    os.makedirs(where, exist_ok=True)
    if not os.access(where, os.W_OK):
        return  # a read-only installation: no compiling for nothing at every exit
    fd, base = handle
    entries: dict[str, tuple[str, bool, int, int, bytes]] = {}
    for name, (rel, is_pkg, mtime, size, offset, length) in index.items():
        try:
            st = os.stat(root + rel)
        except OSError:
            continue
        if (st.st_mtime_ns, st.st_size) == (mtime, size):
            entries[name] = (rel, is_pkg, mtime, size, os.pread(fd, length, base + offset))
    for module in missed:
        spec = module.__spec__
        origin = spec.origin if spec is not None else None
        if spec is None or not origin or not origin.startswith(root) \
                or not origin.endswith(".py"):
            continue
        st = os.stat(origin)
        with open(origin, "rb") as f:
            source = f.read()
        if len(source) != st.st_size:  # changing as we read it: left for a later run
            continue
        code = compile(source, origin, "exec", dont_inherit=True)
        is_package = spec.submodule_search_locations is not None
        entries[module.__name__] = (origin[len(root):], is_package, st.st_mtime_ns,
                                    st.st_size, marshal.dumps(code))
    write(bundle, entries)


def write(bundle: str, entries: dict[str, tuple[str, bool, int, int, bytes]]) -> None:
    """Write the bundle atomically (a reader has the old file or the new one)."""
    from _frozen_importlib_external import MAGIC_NUMBER

    index: dict[str, tuple[str, bool, int, int, int, int]] = {}
    offset = 0
    for name, (rel, is_pkg, mtime, size, code) in sorted(entries.items()):
        index[name] = (rel, is_pkg, mtime, size, offset, len(code))
        offset += len(code)
    packed = marshal.dumps(index)
    tmp = f"{bundle}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(HEADER + MAGIC_NUMBER + len(packed).to_bytes(8, "little") + packed)
            for _, _, _, _, code in (entries[n] for n in index):
                f.write(code)
        os.replace(tmp, bundle)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


