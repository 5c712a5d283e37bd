"""How dockerd matches a `name=` filter value (and a network's `id=`) against a name:
Docker's `filters.Args.Match`. The value matches when it equals the name, or when, read
as a regular expression, it is found anywhere in it (so `name=web` matches `webapp`, and
`name=^web$` only `web`); a value that is not a valid expression matches only itself
(`ps -f name=[` lists nothing and exits 0, as dockerd answers). Podman's pod `name=`
filter is the same search.

`re` is imported on first use: `volume ls` and `network ls` without filters load none
of it.
"""

from __future__ import annotations


def matches(value: str, name: str) -> bool:
    if value == name:
        return True
    import re

    try:
        return re.search(value, name) is not None
    except re.error:
        return False
