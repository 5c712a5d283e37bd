"""The names both whiteout formats use: AUFS-style files in tars, overlayfs in trees.

In a layer tar (image-spec layer.md) a deletion is an empty file `.wh.NAME` and an
opaque directory holds `.wh..wh..opq`. In an overlayfs upper or lower directory the same
facts are a character device 0/0 named NAME and the xattr `trusted.overlay.opaque=y`.
"""

from __future__ import annotations

WHITEOUT_PREFIX = ".wh."
# Names starting with this are AUFS bookkeeping (".wh..wh.plnk", ".wh..wh.aufs"), not
# deletions; the only one that means something to us is the opaque marker.
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"

# Root overlayfs keeps its metadata in trusted.*; rootless mounts (userxattr) use user.*.
OVERLAY_XATTR_PREFIX = "trusted.overlay."
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

PAX_XATTR_PREFIX = "SCHILY.xattr."
