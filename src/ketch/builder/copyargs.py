"""What COPY/ADD's words mean before anything is copied: the destination, `--chmod`, and
whether a source is a URL. The cache key of every COPY/ADD step needs these, so they
live apart from the copying machinery (ketch.builder.copy), which loads only on a miss."""

from __future__ import annotations

import posixpath

from ketch.errors import BuildError


def parse_chmod(value: str | None) -> int | None:
    if not value:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        raise BuildError(f"invalid chmod parameter {value!r}: use an octal mode like"
                         " 0755") from None
    if not 0 <= mode <= 0o7777:
        raise BuildError(f"invalid chmod parameter {value!r}: out of range")
    return mode


def dest_is_dir(dest: str) -> bool:
    return dest.endswith("/") or dest.endswith("/.") or dest in (".", "")


def container_dest(dest: str, workdir: str) -> str:
    """The absolute path a COPY destination names (relative ones start at WORKDIR)."""
    full = dest if dest.startswith("/") else posixpath.join(workdir or "/", dest)
    return posixpath.normpath(full)


def is_url(src: str) -> bool:
    return src.startswith("http://") or src.startswith("https://")
