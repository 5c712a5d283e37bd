"""ketch: a daemonless, Docker-compatible container engine.

Importing the package is cheap; the Engine and everything behind it load on first use,
so `ketch --version` stays fast.

Importing the package also puts ketch's code bundle in front of the import system (see
`ketch.codebundle`): the compiled code of the modules ketch's commands use, in one file,
each entry used only while its source file has the size and mtime it was compiled from.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported: `ketch --version` stays cheap

__version__ = "0.1.0"

if TYPE_CHECKING:
    from types import CodeType, ModuleType

    from ketch.engine import Engine

__all__ = ["Engine", "__version__"]


def __getattr__(name: str) -> type[Engine]:
    if name == "Engine":
        from ketch.engine import Engine

        return Engine
    raise AttributeError(name)


def _fill_closed_stdio() -> None:
    # A process started without a standard descriptor (`ketch ps >&-`, a service's
    # `<&-`): /dev/null takes that number now, as Go's runtime does for the docker CLI,
    # before the bundle below or any file ketch opens gets it (the bundle on fd 0 was
    # what `run -i` then sent a container as its stdin; a database on fd 2 would take
    # the error messages). Python leaves such a stream None: cli/main.py gives it one.
    import sys

    if sys.stdin is not None and sys.stdout is not None and sys.stderr is not None:
        return
    from posix import O_RDWR, close, dup2, fstat
    from posix import open as open_fd

    for fd in (0, 1, 2):
        try:
            fstat(fd)
        except OSError:
            null = open_fd("/dev/null", O_RDWR)  # the lowest free number: fd itself
            if null != fd:
                dup2(null, fd)
                close(null)


def _install_code_bundle() -> None:
    # Here rather than in ketch.codebundle, so that reading the bundle costs no module
    # search of its own; ketch.codebundle has the format, the measurements and the writer.
    import sys
    from _frozen_importlib import ModuleSpec
    from marshal import loads
    from posix import O_CLOEXEC, O_RDONLY, close, getpid, pread, read, stat
    from posix import open as open_fd

    if sys.flags.optimize:  # the bundle holds code compiled for -O0
        return
    root = __path__[0] + "/"
    bundle = f"{root}__pycache__/ketch.{sys.implementation.cache_tag}.bundle"
    index: dict[str, tuple[str, bool, int, int, int, int]] = {}
    fd = base = -1
    try:
        fd = open_fd(bundle, O_RDONLY | O_CLOEXEC)
        head = read(fd, 16)
        if (head[:4] == b"KCB1" and len(head) == 16
                and head[4:8] == sys.modules["_frozen_importlib_external"].MAGIC_NUMBER):
            base = 16 + int.from_bytes(head[8:16], "little")
            index = loads(read(fd, base - 16))
    except (OSError, ValueError, EOFError, TypeError):
        index = {}
    if not index and fd >= 0:
        close(fd)

    class BundleLoader:
        """Finder and loader of the modules in the bundle whose source is unchanged."""

        @staticmethod
        def find_spec(name: str, path: object = None, target: object = None
                      ) -> ModuleSpec | None:
            entry = index.get(name)
            if entry is None:
                return None
            origin = root + entry[0]
            try:
                st = stat(origin)
            except OSError:
                return None
            if st.st_mtime_ns != entry[2] or st.st_size != entry[3]:
                return None
            spec = ModuleSpec(name, BundleLoader,  # type: ignore[arg-type]  # the loader is the class itself (static methods), not an instance
                              origin=origin, is_package=entry[1])
            spec.has_location = True
            spec.cached = bundle
            if entry[1]:
                spec.submodule_search_locations = [origin.rpartition("/")[0]]
            return spec

        @staticmethod
        def create_module(spec: ModuleSpec) -> None:
            return None

        @staticmethod
        def get_code(name: str) -> CodeType:
            entry = index[name]
            code: CodeType = loads(pread(fd, entry[5], base + entry[4]))
            return code

        @staticmethod
        def exec_module(module: ModuleType) -> None:
            exec(BundleLoader.get_code(module.__name__), module.__dict__)

        @staticmethod
        def is_package(name: str) -> bool:
            return index[name][1]

        @staticmethod
        def get_filename(name: str) -> str:
            return root + index[name][0]

        @staticmethod
        def get_source(name: str) -> str:
            with open(root + index[name][0], encoding="utf-8") as f:
                return f.read()

    if index:
        sys.meta_path.insert(0, BundleLoader)
    if not sys.dont_write_bytecode:
        import atexit

        pid = getpid()

        def refresh() -> None:
            if getpid() != pid:  # a forked child's exit
                return
            missed = [m for n, m in list(sys.modules.items()) if n.startswith("ketch.")
                      and (spec := getattr(m, "__spec__", None)) is not None
                      and spec.loader is not BundleLoader
                      and (spec.origin or "").startswith(root)
                      and spec.origin.endswith(".py")]
            if missed:
                from ketch.codebundle import refresh as write

                write(bundle, root, index, (fd, base), missed)

        atexit.register(refresh)


_fill_closed_stdio()
_install_code_bundle()
