"""How dockerd matches a `name=` filter value (and a network's `id=`) against a name:
Docker's `filters.Args.Match`. The value matches when it equals the name, or when, read
as a regular expression, it is found anywhere in it (so `name=web` matches `webapp`, and
`name=^web$` only `web`); a value that is not a valid expression matches only itself.
Podman's pod `name=` filter is the same search. `ps` refuses a bad expression instead
(`refuse_bad`), with a one-line error, as it has since before the other filters came here.

`re` is imported on first use: `volume ls` and `network ls` without filters load none
of it.
"""

from __future__ import annotations

from ketch.errors import InvalidArgument


def matches(value: str, name: str, *, refuse_bad: bool = False) -> bool:
    if value == name:
        return True
    import re

    try:
        return re.search(value, name) is not None
    except re.error as e:
        if refuse_bad:
            raise InvalidArgument(f"invalid name filter {value!r}: {e}") from None
        return False
