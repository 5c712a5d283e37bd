"""ketch.ids: what every lookup takes for an ID (Docker's 64 lower-case hex digits) or the
start of one, the one test the reference parser, the record and image lookups, volumes,
networks, exec sessions and CRI sandboxes share."""

from __future__ import annotations

import pytest

from ketch.ids import is_full_id, is_id_prefix

FULL = "0123456789abcdef" * 4


@pytest.mark.parametrize(("text", "full"), [
    (FULL, True),
    (FULL[:63], False),           # one short
    (FULL + "0", False),          # one over
    (FULL.upper(), False),        # Docker's IDs are lower-case; upper-case is a name
    (FULL[:63] + "g", False),
    ("sha256:" + FULL[:57], False),  # the algorithm is the reference parser's business
    ("", False),
])
def test_a_full_id_is_exactly_64_lower_case_hex_digits(text: str, full: bool) -> None:
    assert is_full_id(text) is full


@pytest.mark.parametrize(("text", "min_length", "prefix"), [
    ("a", 1, True),
    ("", 1, False),
    ("abc", 4, False),
    ("abcd", 4, True),
    (FULL, 1, True),
    (FULL + "a", 1, False),
    ("ABCD", 1, False),
    ("my-app", 1, False),
])
def test_an_id_prefix_is_min_length_to_64_lower_case_hex_digits(text: str, min_length: int,
                                                                prefix: bool) -> None:
    assert is_id_prefix(text, min_length=min_length) is prefix
