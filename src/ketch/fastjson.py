"""JSON without importing the `json` package: ketch.db's JSON columns, the intents'
data, image configs and manifests read on short commands' paths.

`json.decoder` compiles regular expressions at import, which pulls in `re` and `enum`:
about a sixth of `ketch ps`'s run time on this class of machine. The C scanner
underneath it (`_json.make_scanner`, what `json.loads` itself runs) needs none of
that, so the text ketch wrote with `json.dumps` is read through it directly. Any
text it does not take whole (and any interpreter without `_json`) goes to
`json.loads`, which gives the same result or the usual error.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Context:
    # the attributes the C scanner reads from a JSONDecoder
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity: float() reads all three


try:
    from _json import make_scanner as _make_scanner

    _scan = _make_scanner(_Context())  # type: ignore[arg-type]  # _json's scanner takes any object with the decoder's attributes
except ImportError:  # pragma: no cover - CPython always has _json
    _scan = None  # type: ignore[assignment]  # an interpreter without _json: the pure-Python path is used


def loads(data: str | bytes) -> Any:
    """`json.loads(data)`; bytes (a blob, e.g. an image config) are read as UTF-8 on the
    fast path, and any other encoding json.loads detects still goes to json.loads."""
    text = data
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError:
            text = ""
    if _scan is not None and text and text[0] in '{["ntf-0123456789':
        try:
            value, end = _scan(text, 0)
        except (StopIteration, ValueError):
            pass
        else:
            if end == len(text):
                return value
    import json

    return json.loads(data)


def _unserializable(o: object) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


try:  # the C encoder json.dumps runs for its default arguments
    from _json import encode_basestring_ascii as _quote_ascii
    from _json import make_encoder as _make_encoder
except ImportError:  # pragma: no cover - CPython always has _json
    _make_encoder = None  # type: ignore[assignment,misc]  # as `_scan` above


def dumps(value: Any, *, compact: bool = False) -> str:
    """`json.dumps(value)`: the same C encoder with json's default arguments (ASCII
    output, ", " and ": " separators, circular references and NaN as json treats them);
    `compact`: `separators=(",", ":")`."""
    item, key = (",", ":") if compact else (", ", ": ")
    if _make_encoder is not None:
        if isinstance(value, str):
            return _quote_ascii(value)
        encode = _make_encoder({}, _unserializable, _quote_ascii, None, key, item,
                               False, False, True)
        return "".join(encode(value, 0))
    import json

    return json.dumps(value, separators=(item, key))
