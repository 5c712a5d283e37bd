"""`--platform` of save, load and import: ketch's images are single-platform (a pull
keeps the one entry of an index it was asked for), so save and load check the platform
asked for against the images, and import writes it into the new image's config."""

from __future__ import annotations

from ketch.errors import InvalidArgument
from ketch.oci.model import Platform, host_platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.images.service import ImageService


def image_platform(config: dict[str, Any]) -> Platform:
    return Platform(config.get("os") or "linux", config.get("architecture") or "amd64",
                    config.get("variant") or None)


def require_platform(images: ImageService, names: list[str], platform: str) -> None:
    """Refuse to save images of another platform than `platform` (Docker 25+ saves only
    that platform's variant and fails when an image lacks it)."""
    want = Platform.parse(platform)
    for name in names:
        rec = images.resolve(name)
        have = image_platform(images.get_config(rec).raw)
        if not want.matches(have):
            raise InvalidArgument(f"image {name} is {have}: it has no {want} variant to save")


def require_host_platform(platform: str) -> None:
    """load reads the host's platform from an archive (and a single-platform image as it
    is): another one is refused rather than loaded as if asked for."""
    want = Platform.parse(platform)
    host = host_platform()
    if not want.matches(host):
        raise InvalidArgument(f"cannot load platform {want}: ketch loads the host's platform"
                              f" ({host}) only")


def set_platform(config: dict[str, Any], platform: str) -> None:
    """import --platform: the new image's os, architecture and variant."""
    p = Platform.parse(platform)
    config["os"], config["architecture"] = p.os, p.architecture
    if p.variant:
        config["variant"] = p.variant
