"""ketch.fastjson decodes and encodes exactly as json.loads and json.dumps, errors included."""

from __future__ import annotations

import json

import pytest

from ketch.fastjson import dumps, loads

VALUES = [
    {"Cmd": ["sh", "-c", "echo \"hi\" \\ there"], "Env": ["A=1"], "Labels": {"é": "日本"}},
    [], {}, None, True, False, 0, -12, 3.5, 1e300, "text", ["\u0000", "\ud7ff"],
    {"nested": [{"a": [None, {"b": -0.0}]}]},
]


@pytest.mark.parametrize("value", VALUES)
def test_round_trip_matches_json(value: object) -> None:
    text = dumps(value)
    assert text == json.dumps(value)
    assert repr(loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["NaN", "[Infinity, -Infinity]", " {} ", "{\"a\": 1}\n"])
def test_texts_outside_the_fast_path_still_decode(text: str) -> None:
    assert repr(loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["", "{", "[1,]", "{} {}", "tru", "'x'"])
def test_bad_text_raises_jsons_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        loads(text)


@pytest.mark.parametrize("blob", [b'{"architecture":"amd64","config":{"Cmd":["sh"]}}',
                                  "{\"é\": \"日本\"}".encode(), b"\xef\xbb\xbf{\"a\": 1}",
                                  "[1]".encode("utf-16"), b" [] "])
def test_bytes_decode_as_json_loads_decodes_them(blob: bytes) -> None:
    assert repr(loads(blob)) == repr(json.loads(blob))


def test_undecodable_bytes_raise_json_loads_error() -> None:
    with pytest.raises(ValueError):
        loads(b"\xff\xfe{")


def test_dumps_refuses_what_json_dumps_refuses() -> None:
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        dumps({"a": object()})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        dumps(loop)


@pytest.mark.parametrize("value", [float("nan"), [float("inf"), -float("inf")], "é\n",
                                   {"k": (1, 2)}, {1: "int key", None: 2.5}])
def test_dumps_of_other_values_matches_json(value: object) -> None:
    assert dumps(value) == json.dumps(value)


@pytest.mark.parametrize("value", VALUES)
def test_compact_dumps_matches_jsons_compact_separators(value: object) -> None:
    # (how an OCI config.json is written at every container start)
    assert dumps(value, compact=True) == json.dumps(value, separators=(",", ":"))
