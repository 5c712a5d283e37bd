"""Typed views of the JSON documents of the image-spec (descriptor, manifest, index, config).

The on-disk and on-wire form stays the JSON bytes (digests are over bytes); these classes
parse and build them.
"""

from __future__ import annotations

import os

from ketch.errors import InvalidArgument
from ketch.oci.digest import validate_digest
from ketch.oci.imageconfig import ImageConfig
from ketch.oci.media import MediaType
from ketch.values import value

__all__ = ["Descriptor", "ImageConfig", "Index", "Manifest", "Platform", "host_platform"]

TYPE_CHECKING = False  # `typing` and `dataclasses` cost milliseconds of every start
if TYPE_CHECKING:
    from typing import Any

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "i686": "386", "riscv64": "riscv64"}


@value(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    @classmethod
    def parse(cls, s: str) -> Platform:
        parts = s.strip().lower().split("/")
        if not parts or not parts[0] or len(parts) > 3:
            raise InvalidArgument(f"invalid platform {s!r}: expected os[/arch[/variant]]")
        arch = parts[1] if len(parts) > 1 else host_platform().architecture
        arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}.get(arch, arch)
        return cls(parts[0], arch, parts[2] if len(parts) > 2 else None)

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Platform:
        d = d or {}
        return cls(d.get("os", "linux"), d.get("architecture", "amd64"), d.get("variant"))

    def matches(self, other: Platform) -> bool:
        if self.os != other.os or self.architecture != other.architecture:
            return False
        return self.variant is None or other.variant is None or self.variant == other.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    machine = os.uname().machine  # what platform.machine() returns, without importing it
    variant = "v8" if machine == "aarch64" else None
    return Platform("linux", _ARCH.get(machine, machine), variant)


@value(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None = None
    platform: Platform | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Descriptor:
        try:
            return cls(
                media_type=d.get("mediaType", ""),
                digest=validate_digest(d["digest"]),
                size=int(d["size"]),
                annotations=d.get("annotations"),
                platform=Platform.from_json(d["platform"]) if d.get("platform") else None,
                urls=tuple(d.get("urls") or ()),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgument(f"invalid descriptor: {e}") from None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.annotations:
            out["annotations"] = self.annotations
        if self.platform:
            p: dict[str, Any] = {"architecture": self.platform.architecture,
                                 "os": self.platform.os}
            if self.platform.variant:
                p["variant"] = self.platform.variant
            out["platform"] = p
        if self.urls:
            out["urls"] = list(self.urls)
        return out


@value
class Manifest:
    config: Descriptor
    layers: list[Descriptor]
    media_type: str = MediaType.OCI_MANIFEST
    annotations: dict[str, str] | None = None

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        from ketch.fastjson import loads

        try:
            d = loads(data)
            mt = d.get("mediaType") or MediaType.OCI_MANIFEST
            if mt not in MediaType.MANIFESTS:
                raise InvalidArgument(f"unsupported manifest media type {mt!r}")
            return cls(Descriptor.from_json(d["config"]),
                       [Descriptor.from_json(x) for x in d.get("layers") or []], mt,
                       d.get("annotations"))
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidArgument(f"invalid image manifest: {e}") from None

    def to_bytes(self) -> bytes:
        d: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                             "config": self.config.to_json(),
                             "layers": [x.to_json() for x in self.layers]}
        if self.annotations:
            d["annotations"] = self.annotations
        import json

        return json.dumps(d, separators=(",", ":")).encode()


@value
class Index:
    manifests: list[Descriptor]
    media_type: str = MediaType.OCI_INDEX
    annotations: dict[str, str] | None = None

    @classmethod
    def parse(cls, data: bytes) -> Index:
        from ketch.fastjson import loads

        try:
            d = loads(data)
            return cls([Descriptor.from_json(x) for x in d.get("manifests") or []],
                       d.get("mediaType") or MediaType.OCI_INDEX, d.get("annotations"))
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidArgument(f"invalid image index: {e}") from None

    def select(self, want: Platform) -> Descriptor | None:
        for m in self.manifests:
            if m.platform is None or want.matches(m.platform):
                if m.media_type in MediaType.MANIFESTS or not m.media_type:
                    return m
        return None

    def to_bytes(self) -> bytes:
        d: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                             "manifests": [x.to_json() for x in self.manifests]}
        if self.annotations:
            d["annotations"] = self.annotations
        import json

        return json.dumps(d, separators=(",", ":")).encode()
