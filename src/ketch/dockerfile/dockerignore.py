""".dockerignore: which files of the build context the builder may see.

Semantics follow moby/patternmatcher (`ignorefile.ReadAll` + `MatchesOrParentMatches`):
patterns are Go `filepath.Match` globs plus `**`, cleaned like `filepath.Clean`, a leading
`/` dropped; they are evaluated in order and the last one that matches a path or any of
its parent directories decides; `!pattern` re-includes.

`walk_context` lists a context directory through a matcher. Like BuildKit's file walker
it skips a wholly excluded directory without reading it, unless an exception pattern
could re-include something below it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from ketch.errors import BuildError
from ketch.globs import check_glob as _check_glob
from ketch.globs import class_regex as _class_regex
from ketch.globs import segment_regex as _segment_regex

__all__ = [
    "Pattern",
    "PatternMatcher",
    "clean_path",
    "parse_pattern",
    "read_ignore_file",
    "walk_context",
]

# How a pattern is matched, decided once per pattern (moby's compile step): most
# patterns never need a regular expression.
_EXACT, _PREFIX, _SUFFIX, _REGEX = range(4)


def clean_path(path: str) -> str:
    """Go's filepath.Clean for slash paths: no `.`/`..` segments, no duplicate slashes."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(seg)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


class Pattern:
    """One cleaned .dockerignore line; `exclusion` is True for `!pattern` lines."""

    __slots__ = ("text", "exclusion", "line", "_kind", "_regex", "_segments")

    def __init__(self, text: str, exclusion: bool = False, line: int = 0) -> None:
        self.text = text
        self.exclusion = exclusion
        self.line = line
        self._kind = -1
        self._regex: re.Pattern[str] | None = None
        self._segments: list[re.Pattern[str]] | None = None

    def __repr__(self) -> str:
        return f"Pattern({('!' if self.exclusion else '') + self.text!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pattern):
            return NotImplemented
        return (self.text, self.exclusion) == (other.text, other.exclusion)

    def __hash__(self) -> int:
        return hash((self.text, self.exclusion))

    def __str__(self) -> str:
        return ("!" if self.exclusion else "") + self.text

    def _compile(self) -> None:
        # Mirrors moby's Pattern.compile: classify as exact / prefix (`dir/**`) /
        # suffix (`**/x`) and build an anchored regex only when needed.
        p = self.text
        try:
            _check_glob(p)  # a Pattern built directly skipped parse_pattern's check
        except ValueError:
            raise BuildError(f"syntax error in pattern: {p}") from None
        kind = _EXACT
        out = ["^"]
        i = 0
        n = len(p)
        first = True
        while i < n:
            ch = p[i]
            i += 1
            if ch == "*":
                if i < n and p[i] == "*":
                    i += 1
                    if i < n and p[i] == "/":
                        i += 1
                    if i >= n:
                        # A trailing ** matches everything below, like .gitignore.
                        if kind == _EXACT:
                            kind = _PREFIX
                        else:
                            out.append(".*")
                            kind = _REGEX
                    else:
                        # `**/` matches zero or more directories.
                        out.append("(.*/)?")
                        kind = _REGEX
                    if first:
                        kind = _SUFFIX
                else:
                    out.append("[^/]*")
                    kind = _REGEX
            elif ch == "?":
                out.append("[^/]")
                kind = _REGEX
            elif ch == "\\":
                if i < n:
                    out.append(re.escape(p[i]))
                    i += 1
                    kind = _REGEX
                else:
                    out.append(re.escape("\\"))
            elif ch == "[":
                cls, i = _class_regex(p, i - 1)
                out.append(cls)
                kind = _REGEX
            else:
                out.append(re.escape(ch))
            first = False
        if kind == _REGEX:
            out.append("$")
            self._regex = re.compile("".join(out))
        self._kind = kind

    def match(self, path: str) -> bool:
        """Does the pattern itself match `path` (a cleaned slash path)? No parents."""
        kind = self._kind
        if kind < 0:
            self._compile()
            kind = self._kind
        if kind == _EXACT:
            return path == self.text
        if kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if kind == _SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            # `**/foo` also matches `foo` at the top.
            return suffix.startswith("/") and path == suffix[1:]
        assert self._regex is not None
        return self._regex.match(path) is not None

    def could_match_below(self, directory: str) -> bool:
        """Could this pattern match some path strictly inside `directory`?

        Conservative: True unless the pattern's leading segments rule it out.
        """
        if self._segments is None:
            segments: list[re.Pattern[str]] = []
            try:
                for seg in self.text.split("/"):
                    if "**" in seg:
                        break
                    segments.append(_segment_regex(seg))
            except ValueError:
                # A class spanning a `/` cannot be judged per segment: assume it can.
                return True
            self._segments = segments
        dir_parts = directory.split("/")
        pattern_parts = self.text.split("/")
        for k, part in enumerate(dir_parts):
            if k >= len(self._segments):
                # Either a `**` segment (matches anything below) or the pattern ran out
                # of segments, in which case it matches `directory` or a parent of it
                # and so cannot change the verdict for what lies below.
                return k < len(pattern_parts)
            if not self._segments[k].match(part):
                return False
        return len(pattern_parts) > len(dir_parts)


def parse_pattern(text: str, line: int = 0) -> Pattern:
    """Turn one pattern as written (`!/foo/`, `./bar`) into a Pattern; BuildError if bad."""
    p = text.strip()
    exclusion = p.startswith("!")
    if exclusion:
        p = p[1:].strip()
        if not p:
            raise BuildError(_where(line) + 'illegal exclusion pattern: "!"')
    p = clean_path(p)
    if len(p) > 1 and p.startswith("/"):
        p = p[1:]
    try:
        _check_glob(p)
    except ValueError:
        raise BuildError(_where(line) + f"syntax error in pattern: {p}") from None
    return Pattern(p, exclusion, line)


def _where(line: int) -> str:
    return f".dockerignore line {line}: " if line else ".dockerignore: "


def read_ignore_file(text: str) -> list[Pattern]:
    """Parse .dockerignore text: comments are `#` in column 1, blank lines skipped."""
    if text.startswith("\ufeff"):
        text = text[1:]
    patterns: list[Pattern] = []
    # Lines end at "\n" only (Go's bufio.ScanLines), with a trailing "\r" dropped.
    for lineno, raw in enumerate(text.split("\n"), 1):
        raw = raw.removesuffix("\r")
        if raw.startswith("#") or not raw.strip():
            continue
        patterns.append(parse_pattern(raw, lineno))
    return patterns


class PatternMatcher:
    """Decides whether a context path is excluded by an ordered list of patterns."""

    __slots__ = ("patterns", "exclusions")

    def __init__(self, patterns: Iterable[Pattern | str]) -> None:
        self.patterns: list[Pattern] = [
            p if isinstance(p, Pattern) else parse_pattern(p)
            for p in patterns
            if isinstance(p, Pattern) or p.strip()
        ]
        self.exclusions = any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """True if `path` (relative, slash-separated) is excluded from the context."""
        path = clean_path(path)
        if path.startswith("/") and len(path) > 1:
            path = path.lstrip("/")
        if path == ".":
            # Nobody may exclude the context root itself.
            return False
        prefixes: list[str] = []
        idx = path.find("/")
        while idx > 0:
            prefixes.append(path[:idx])
            idx = path.find("/", idx + 1)
        excluded = False
        for pattern in self.patterns:
            if pattern.match(path) or any(pattern.match(pre) for pre in prefixes):
                excluded = not pattern.exclusion
        return excluded

    def _evaluate(self, path: str, parent: list[bool] | None) -> tuple[bool, list[bool]]:
        # Per-pattern "matched this path or an ancestor", reused for the children, so a
        # walk never re-matches parents (MatchesUsingParentResults, minus its skips).
        hits: list[bool] = []
        excluded = False
        for k, pattern in enumerate(self.patterns):
            hit = (parent is not None and parent[k]) or pattern.match(path)
            hits.append(hit)
            if hit:
                excluded = not pattern.exclusion
        return excluded, hits

    def _may_reinclude_below(self, directory: str) -> bool:
        return self.exclusions and any(
            p.exclusion and p.could_match_below(directory) for p in self.patterns
        )


def walk_context(
    root: Path, matcher: PatternMatcher | None, keep: Iterable[str] = ()
) -> Iterator[str]:
    """Yield the relative slash paths under `root` that the matcher does not exclude.

    Directories come before their contents, entries in byte order of their names, so
    the listing is deterministic. Symlinks are listed, never followed. Paths in `keep`
    (the Dockerfile and .dockerignore) are listed even when a pattern excludes them,
    as the docker CLI does.
    """
    kept = {clean_path(k).lstrip("/") for k in keep}
    kept_dirs: set[str] = set()
    for k in kept:
        idx = k.find("/")
        while idx > 0:
            kept_dirs.add(k[:idx])
            idx = k.find("/", idx + 1)
    active = matcher if matcher is not None and matcher.patterns else None
    yield from _walk(os.fspath(root), "", active, None, kept, kept_dirs)


def _walk(
    base: str,
    prefix: str,
    matcher: PatternMatcher | None,
    parent: list[bool] | None,
    kept: set[str],
    kept_dirs: set[str],
) -> Iterator[str]:
    with os.scandir(os.path.join(base, prefix) if prefix else base) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = prefix + entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if matcher is None:
            yield rel
            if is_dir:
                yield from _walk(base, rel + "/", None, None, kept, kept_dirs)
            continue
        excluded, hits = matcher._evaluate(rel, parent)
        if not excluded or rel in kept:
            yield rel
        elif not is_dir or (rel not in kept_dirs and not matcher._may_reinclude_below(rel)):
            # Excluded wholesale and no exception can reach inside: don't even read it.
            continue
        if is_dir:
            yield from _walk(base, rel + "/", matcher, hits, kept, kept_dirs)
