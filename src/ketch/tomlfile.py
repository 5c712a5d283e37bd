"""TOML configuration files of a state root (ketch.toml, network.toml), parsed once per
change.

Importing `tomllib` costs a command 5-7 ms (it loads typing and datetime and compiles
its regular expressions), and every networked command reads network.toml when there is
one. The parse of a file in the state root is kept as JSON in `<root>/cache/`, keyed by
the file's inode, size and modification and change times; later commands read that
(~0.1 ms, `ketch.fastjson`) until the file changes. A file elsewhere (the one
KETCH_NETWORK_CONFIG names) is parsed each time, and so is one holding a value JSON
cannot (a TOML date).
"""

from __future__ import annotations

import os

from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CACHE_DIR = "cache"


def read(path: str, root: str | None = None) -> dict[str, Any]:
    """The TOML document at `path`; InvalidArgument ("cannot read PATH: why", one line)
    when it cannot be read or is not TOML."""
    try:
        return _read(path, root)
    except (OSError, ValueError) as e:  # (tomllib.TOMLDecodeError is a ValueError)
        raise InvalidArgument(f"cannot read {path}: {e}") from None


def _read(path: str, root: str | None) -> dict[str, Any]:
    st = os.stat(path)
    key = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    cache = None
    if root is not None and os.path.dirname(os.path.abspath(path)) == os.path.abspath(root):
        cache = os.path.join(root, CACHE_DIR, os.path.basename(path) + ".json")
        try:
            with open(cache, "rb") as f:
                text = f.read()
            from ketch.fastjson import loads

            entry = loads(text)
            if entry["key"] == key and isinstance(entry["data"], dict):
                return entry["data"]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # none yet, or one this process replaces below
    import tomllib

    with open(path, "rb") as f:
        data = tomllib.load(f)
    if cache is not None:
        _keep(cache, key, data)
    return data


def _keep(cache: str, key: list[int], data: dict[str, Any]) -> None:
    """Write the parse (atomically: a reader sees the old entry or the new one)."""
    from ketch.fastjson import dumps

    try:
        text = dumps({"key": key, "data": data})
    except (TypeError, ValueError):
        return  # a value JSON cannot hold
    tmp = f"{cache}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, cache)
    except OSError:  # a read-only state root: the next command parses again
        try:
            os.unlink(tmp)
        except OSError:
            pass
