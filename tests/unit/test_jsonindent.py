"""The inspect commands' JSON writer prints exactly what json.dumps(indent=4,
ensure_ascii=False) prints, for every value, including those it hands to json."""

from __future__ import annotations

import json

import pytest

from ketch.fmt.jsonindent import dumps

VALUES = [
    [{"Id": "sha256:" + "a" * 64, "RepoTags": ["busybox:latest"], "Config": {
        "Cmd": ["sh", "-c", "echo \"hi\" \\ there\n\t"], "Env": None, "Labels": {},
        "ExposedPorts": {"80/tcp": {}}}, "Size": 2140000, "Variant": None}],
    [], {}, None, True, False, 0, -12, 3.5, -0.0, 1e300, 2 ** 80, "text",
    {"é": "日本", "ctl": "\u0000\u001f\u007f\u2028", "surrogate": "\ud800"},
    ("tuple", [[], {}], [[1, [2, [3]]]]),
    {"nested": [{"a": [None, {"b": -0.0, "c": [True, False]}]}]},
    # outside the fast path: non-string keys, NaN and infinities
    {7: "int key", 2.5: "float key", True: "bool key", None: "none key"},
    [float("nan"), float("inf"), -float("inf")],
]


@pytest.mark.parametrize("value", VALUES)
def test_output_is_json_dumps_with_indent_4(value: object) -> None:
    assert dumps(value) == json.dumps(value, indent=4, ensure_ascii=False)


def test_values_json_cannot_write_raise_its_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"a": object()})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        dumps(loop)


def test_other_indent_widths_match_json() -> None:
    value = {"a": [1, {"b": None}], "c": {}}
    assert dumps(value, indent=2) == json.dumps(value, indent=2, ensure_ascii=False)
