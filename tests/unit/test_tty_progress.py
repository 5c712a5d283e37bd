"""The terminal renderer of pull/push/load progress: one line per layer, redrawn in
place with ANSI cursor movement, as the docker CLI draws it."""

from __future__ import annotations

import io

from ketch.cli.ttyprogress import Renderer, bar
from ketch.progress import Progress


def test_bar_shows_docker_style_fill_and_decimal_sizes() -> None:
    assert bar(0, 100) == "[" + ">" + " " * 49 + "]      0B/100B"
    half = bar(22_800_000, 45_600_000)
    assert half.startswith("[" + "=" * 25 + ">")
    assert half.endswith(" 22.8MB/45.6MB")
    assert bar(45_600_000, 45_600_000).startswith("[" + "=" * 49 + ">]")


def test_renderer_rewrites_a_layers_own_line_and_appends_new_ones() -> None:
    out = io.StringIO()
    r = Renderer(out)
    r.show(Progress("The push refers to repository [x]"))
    r.show(Progress("Preparing", "aaa"))
    r.show(Progress("Preparing", "bbb"))
    r.show(Progress("Pushing", "aaa", current=5, total=10))
    r.show(Progress("Pushed", "bbb"))
    text = out.getvalue()
    lines = text.split("\n")
    assert lines[:3] == ["The push refers to repository [x]", "aaa: Preparing",
                         "bbb: Preparing"]
    # aaa is two lines up from the cursor, bbb one.
    assert "\x1b[2A\r\x1b[2Kaaa: Pushing [" + "=" * 25 + ">" in text
    assert text.endswith("\x1b[1A\r\x1b[2Kbbb: Pushed\x1b[1B\r")
