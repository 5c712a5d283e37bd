"""The image configuration JSON (image-spec config.md), apart from the other documents
of ketch.oci.model (which re-exports it): `image inspect` and `history` read an image's
config and nothing else, and the other classes cost a fifth of a millisecond to make."""

from __future__ import annotations

from ketch.errors import InvalidArgument
from ketch.values import field, value

TYPE_CHECKING = False  # `typing` and `dataclasses` cost milliseconds of every start
if TYPE_CHECKING:
    from typing import Any


@value
class ImageConfig:
    """The image configuration JSON (image-spec config.md); `raw` keeps unknown fields."""

    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        from ketch.fastjson import loads  # `json` stays off `image inspect`'s path

        try:
            d = loads(data)
        except ValueError as e:
            raise InvalidArgument(f"invalid image config: {e}") from None
        if not isinstance(d, dict):
            raise InvalidArgument("invalid image config: not a JSON object")
        return cls(d)

    @property
    def config(self) -> dict[str, Any]:
        c = self.raw.get("config")
        if c is None:
            c = self.raw["config"] = {}
        return c

    @property
    def diff_ids(self) -> list[str]:
        return list((self.raw.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.raw.get("history") or [])

    @property
    def created(self) -> str | None:
        return self.raw.get("created")

    def to_bytes(self) -> bytes:
        import json

        return json.dumps(self.raw, separators=(",", ":")).encode()
