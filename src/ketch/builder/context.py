"""The build context: the files a build may read, and the Dockerfile that drives it.

A context is always a directory by the time the builder sees it. `docker build DIR`
uses the directory in place (nothing is copied, so an unchanged rebuild reads only
metadata); a tarball or `-` on stdin is unpacked once into ketch's tmp/ and removed when
the build ends. `.dockerignore` is applied before any file is read: an ignored file is
neither listed, hashed nor copied, exactly as if the client had never sent it.

The Dockerfile is read even when `.dockerignore` names it (Docker keeps it for itself);
it and `.dockerignore` are only hidden from COPY/ADD when a pattern excludes them.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from ketch.dockerfile.dockerignore import Pattern, PatternMatcher, clean_path, read_ignore_file
from ketch.errors import BuildError

TYPE_CHECKING = False  # `typing` costs milliseconds at start; a cached build loads this
if TYPE_CHECKING:
    from typing import IO, Any

# The characters that make a COPY/ADD source a pattern (Go's filepath.Match).
_GLOB_CHARS = frozenset("*?[")


class Source:
    """One COPY/ADD source found in a context (or in another stage's root).

    `rel` is the cleaned path relative to the root it was found in (after symlinks at
    the top were followed: `COPY link /x` copies what `link` points to); `path` is the
    host path to read; `st` its lstat.
    """

    __slots__ = ("rel", "path", "st")

    def __init__(self, rel: str, path: Path, st: os.stat_result) -> None:
        self.rel = rel
        self.path = path
        self.st = st

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


class SourceRoot:
    """A directory COPY/ADD take sources from: the context, or a stage's root filesystem."""

    def __init__(self, root: Path, matcher: PatternMatcher | None = None, *,
                 label: str = "build context") -> None:
        # Symlinks above the root are resolved once, so a path inside the root is its
        # own real path unless a symlink inside the root is involved.
        self.root = Path(os.path.realpath(root))
        self.matcher = matcher if matcher is not None and matcher.patterns else None
        self.label = label
        self._listing: list[str] | None = None

    def excluded(self, rel: str) -> bool:
        return self.matcher is not None and rel not in ("", ".") and self.matcher.matches(rel)

    def listing(self) -> list[str]:
        """Every path in the root that .dockerignore lets through, parents first."""
        if self._listing is None:
            from ketch.dockerfile.dockerignore import walk_context

            self._listing = list(walk_context(self.root, self.matcher))
        return self._listing

    def below(self, rel: str) -> list[str]:
        """The listed paths inside directory `rel` ("" or "." for the whole root)."""
        if rel in ("", "."):
            return self.listing()
        prefix = rel + "/"
        return [p for p in self.listing() if p.startswith(prefix)]

    def resolve(self, patterns: list[str], cmd: str) -> list[Source]:
        """The sources a COPY/ADD names, in the order given; errors as Docker words them."""
        out: list[Source] = []
        for pattern in patterns:
            rel = _clean_source(pattern, cmd)
            if _GLOB_CHARS.intersection(rel):
                matched = self._glob(rel)
                out.extend(matched)
                continue
            src = self._lookup(rel)
            if src is None:
                raise BuildError(
                    f"{cmd} failed: file not found in {self.label} or excluded by"
                    f" .dockerignore: stat {pattern}: file does not exist")
            out.append(src)
        if not out:
            raise BuildError(f"{cmd} failed: no source files were specified")
        return out

    def _lookup(self, rel: str) -> Source | None:
        if rel == ".":
            return Source(".", self.root, os.stat(self.root))
        if self.excluded(rel):
            return None
        path = self.root / rel
        real_rel = rel
        if os.path.realpath(path) != str(path):
            # A symlink named as a source is followed, inside the root (never out of
            # it). Only then is the in-root resolver (and ketch.archive) loaded.
            from ketch.archive.paths import resolve_in_root

            path = resolve_in_root(self.root, rel)
            real_rel = os.path.relpath(path, self.root)
        if real_rel != rel and self.excluded(real_rel):
            return None
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Source(real_rel if real_rel != "." else ".", path, st)

    def _glob(self, pattern: str) -> list[Source]:
        matcher = Pattern(pattern)
        found = []
        for rel in self.listing():
            if matcher.match(rel):
                src = self._lookup(rel)
                if src is not None:
                    found.append(src)
        return found


def _clean_source(pattern: str, cmd: str) -> str:
    rel = clean_path(pattern.replace("\\", "/") if os.sep != "/" else pattern)
    rel = rel.lstrip("/") or "."
    if rel == ".." or rel.startswith("../"):
        raise BuildError(f"{cmd} failed: forbidden path outside the build context:"
                         f" {pattern} ()")
    return rel


class BuildContext(SourceRoot):
    """The build context directory, its .dockerignore, and whether we own the directory."""

    def __init__(self, root: Path, *, temporary: bool = False) -> None:
        self.temporary = temporary
        patterns: list[Pattern] = []
        ignore = root / ".dockerignore"
        try:
            text = ignore.read_text(encoding="utf-8", errors="surrogateescape")
        except (FileNotFoundError, NotADirectoryError):
            text = ""
        except IsADirectoryError:
            text = ""
        if text:
            patterns = read_ignore_file(text)
        super().__init__(root, PatternMatcher(patterns) if patterns else None)

    def close(self) -> None:
        if self.temporary:
            from ketch.store.trash import delete_tree

            delete_tree(str(self.root))


class Prepared:
    """What `prepare` found: the context and the Dockerfile's text and name."""

    def __init__(self, context: BuildContext, dockerfile_text: str,
                 dockerfile_name: str) -> None:
        self.context = context
        self.dockerfile_text = dockerfile_text
        self.dockerfile_name = dockerfile_name


def _is_tar_head(head: bytes) -> bool:
    from ketch.archive import detect_compression

    if detect_compression(head[:6]) != "none":
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def check_members(stream: IO[bytes] | Any) -> None:
    """Refuse a context tar with a member named absolutely or climbing out with `..`
    (the extractor would contain it; a client sending one is broken or hostile, and
    nothing is unpacked). Reads `stream` through; the caller rewinds it."""
    import tarfile

    from ketch.archive import open_decompressed
    from ketch.errors import InvalidArgument

    seen = 0
    try:
        with tarfile.open(fileobj=open_decompressed(stream, threaded=False),
                          mode="r|") as tf:
            for member in tf:
                seen += 1
                for name in (member.name, member.linkname if member.islnk() else ""):
                    if name.startswith("/") or ".." in name.split("/"):
                        raise InvalidArgument(
                            f"invalid build context: the member {name!r} of the context"
                            " tar points outside of it")
    except tarfile.TarError as e:
        # The docker CLI's `build -f - DIR` context ends right after its last member's
        # data (no padding, no end blocks), which Go's reader accepts: a tar that ends
        # early after whole members is read as ending there.
        if not seen:
            raise InvalidArgument(f"invalid build context: not a tar archive: {e}") from None


def _unpack(stream: IO[bytes] | Any, tmp_root: Path) -> Path:
    import tempfile

    from ketch.archive import extract
    from ketch.store.intents import owner_tag

    tmp_root.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix=f"context-{owner_tag()}-", dir=tmp_root))
    try:
        # Ownership is kept: it is part of what COPY's checksum covers, as in Docker.
        extract(stream, dest, whiteouts="none", same_owner=True, digest=False)
    except BaseException:
        from ketch.store.trash import delete_tree

        delete_tree(str(dest))
        raise
    return dest


class _Prefixed:
    """A reader that first returns bytes already read (the sniffed head) of a stream."""

    def __init__(self, head: bytes, rest: IO[bytes] | Any) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data = self._head + self._rest.read()
                self._head = b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._rest.read(n)


def _read_head(stream: IO[bytes] | Any, n: int = 512) -> bytes:
    head = b""
    while len(head) < n:
        chunk = stream.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head


def prepare(context: str, dockerfile: str | None, tmp_root: Path,
            stdin: IO[bytes] | None = None, *, dockerfile_in_context: bool = False
            ) -> Prepared:
    """Turn `docker build`'s PATH | URL | - and -f into a context directory + Dockerfile.

    `context` is a directory, a tarball (plain or compressed), or "-" for stdin (a tar
    context, or a bare Dockerfile and no context). `dockerfile` is a path relative to
    the current directory (falling back to the context), "-" for stdin, or None for
    `Dockerfile` in the context. With `dockerfile_in_context` (a remote client's
    build) the Dockerfile is only looked up inside the context, never on this host.
    """
    stdin = stdin if stdin is not None else sys.stdin.buffer
    if context == "-" and dockerfile == "-":
        raise BuildError("invalid argument: can't use stdin for both build context and"
                         " dockerfile")
    ctx: BuildContext
    text: str | None = None
    name = "Dockerfile"
    if context == "-":
        seekable = getattr(stdin, "seekable", lambda: False)()
        head = _read_head(stdin)
        if _is_tar_head(head) and seekable:
            stdin.seek(0)
            check_members(stdin)
            stdin.seek(0)
            ctx = BuildContext(_unpack(stdin, tmp_root), temporary=True)
        elif _is_tar_head(head):
            ctx = BuildContext(_unpack(_Prefixed(head, stdin), tmp_root), temporary=True)
        else:
            # `docker build - < Dockerfile`: the Dockerfile alone, an empty context.
            text = (head + stdin.read()).decode("utf-8", "surrogateescape")
            from ketch.store.intents import owner_tag

            empty = tmp_root / f"context-{owner_tag()}-{os.urandom(4).hex()}"
            empty.mkdir(parents=True)
            ctx = BuildContext(empty, temporary=True)
    else:
        path = Path(context)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise BuildError(f'unable to prepare context: path "{context}" not found') from None
        if stat.S_ISDIR(st.st_mode):
            ctx = BuildContext(path.absolute())
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                if not _is_tar_head(_read_head(f)):
                    raise BuildError(f"unable to prepare context: {context} is neither a"
                                     " directory nor a tar archive")
                f.seek(0)
                check_members(f)
                f.seek(0)
                ctx = BuildContext(_unpack(f, tmp_root), temporary=True)
        else:
            raise BuildError(f"unable to prepare context: {context} is not a directory")
    try:
        if text is None:
            text, name = _read_dockerfile(ctx, dockerfile, stdin, dockerfile_in_context)
    except BaseException:
        ctx.close()
        raise
    return Prepared(ctx, text, name)


def _read_dockerfile(ctx: BuildContext, dockerfile: str | None,
                     stdin: IO[bytes], in_context: bool = False) -> tuple[str, str]:
    if dockerfile == "-" and not in_context:
        return stdin.read().decode("utf-8", "surrogateescape"), "Dockerfile"
    candidates: list[Path] = []
    if dockerfile and in_context:
        from ketch.archive import safe_join

        candidates = [safe_join(ctx.root, dockerfile.lstrip("/"))]
    elif dockerfile:
        given = Path(dockerfile)
        if given.is_absolute():
            candidates = [given]
        else:
            # Relative to the current directory, as the docker CLI reads it; a name that
            # only exists inside the context (a tarball context) is looked up there.
            candidates = [given.absolute(), ctx.root / given]
    else:
        candidates = [ctx.root / "Dockerfile", ctx.root / "dockerfile"]
    for c in candidates:
        try:
            data = c.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except IsADirectoryError:
            raise BuildError(f"unable to prepare context: {c} is a directory, not a"
                             " Dockerfile") from None
        return data.decode("utf-8", "surrogateescape"), c.name
    shown = dockerfile or "Dockerfile"
    raise BuildError(f"Cannot locate specified Dockerfile: {shown}")
