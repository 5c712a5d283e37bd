"""fmt.gofmt.quote is Go's %q (strconv.Quote): Dockerfile errors, build history and
`printf "%q"` in templates all quote through it, so each must read as Docker's does."""

from __future__ import annotations

import pytest

from ketch.fmt.gofmt import quote
from ketch.fmt.units import format_duration_ns


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("node", '"node"'),
        ('say "hi"\\', '"say \\"hi\\"\\\\"'),
        ("a\tb\nc\r", '"a\\tb\\nc\\r"'),
        ("\a\b\f\v", '"\\a\\b\\f\\v"'),
        ("\x01\x7f", '"\\x01\\x7f"'),
        ("é✓", '"é✓"'),
        ("\u00a0\u2028", '"\\u00a0\\u2028"'),
        ("\U000e0001", '"\\U000e0001"'),
    ],
)
def test_quote_is_strconv_quote(text: str, quoted: str) -> None:
    assert quote(text) == quoted


@pytest.mark.parametrize(
    ("ns", "text"),
    [(0, "0s"), (1, "1ns"), (1_500, "1.5µs"), (30_000_000_000, "30s"),
     (5_400_000_000_000, "1h30m0s"), (90_061_000_000_001, "25h1m1.000000001s"),
     (-2_000_000, "-2ms")],
)
def test_duration_string_is_exact_in_nanoseconds(ns: int, text: str) -> None:
    assert format_duration_ns(ns) == text
