"""IDs as Docker gives them: 64 lower-case hex digits (containers, images by the digest
of their config, anonymous volumes, networks, pods, exec sessions), which users may
shorten to a unique prefix. One home for the test every lookup makes."""

from __future__ import annotations

LOWER_HEX = frozenset("0123456789abcdef")


def is_full_id(s: str) -> bool:
    """A whole ID: exactly 64 lower-case hex digits."""
    return len(s) == 64 and LOWER_HEX.issuperset(s)


def is_id_prefix(s: str, *, min_length: int = 1) -> bool:
    """Whether `s` may be (the start of) an ID: `min_length` to 64 lower-case hex digits."""
    return min_length <= len(s) <= 64 and LOWER_HEX.issuperset(s)
