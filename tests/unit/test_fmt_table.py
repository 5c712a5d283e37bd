"""The listing commands' plain tables lay out exactly as docker's tabwriter does."""

from __future__ import annotations

import random

import pytest

from ketch.fmt.table import display_width, tabulate
from ketch.fmt.tabwriter import tabwrite

CELLS = ["", "a", "busybox", "sha256:0123456789ab", "Up 2 minutes", "日本語", "naïve",
         "e\u0301", "tab\there", "two\nlines", "\x1b[0m", "0.0.0.0:3000->80/tcp",
         "x" * 30]


@pytest.mark.parametrize("seed", range(40))
def test_tabulate_matches_the_full_tabwriter(seed: int) -> None:
    rnd = random.Random(seed)
    ncols = rnd.randint(1, 6)
    rows = [[rnd.choice(CELLS) for _ in range(ncols)] for _ in range(rnd.randint(1, 8))]
    assert tabulate(rows) == tabwrite(rows)


def test_display_width_counts_wide_runes_twice_and_controls_not_at_all() -> None:
    assert display_width("abc") == 3
    assert display_width("日本") == 4
    assert display_width("e\u0301") == 1
    assert display_width("a\x1bb") == 2
    assert tabulate([]) == ""
