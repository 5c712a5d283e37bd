"""Writable views of an image for COPY/ADD, and turning an overlay upper dir into a layer.

A build step's changes always live in an overlay upper dir: a RUN container's own, or
the one of a `Workspace` that COPY/ADD write through. Such a dir is already in the
layer store's format (overlay whiteouts and opaque markers), so after the layer blob
has been written from it (tar → sha256 → ISA-L gzip → sha256, one pass) the directory
itself is moved into the layer store instead of being unpacked again.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ketch.images.service import NewLayer
from ketch.oci.digest import chain_of
from ketch.oci.media import MediaType
from ketch.store.trash import delete_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from _typeshed import StrPath

    from ketch.builder.host import BuildHost
    from ketch.builder.watchdog import Watchdog

# What runc creates in a container's root as mount points when the image lacks them.
# Docker hides them in an "init layer" below the container's upper dir; ketch drops
# them from a RUN step's upper dir instead, so they never end up in a layer.
_MOUNT_POINT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")
_MOUNT_POINT_DIRS = ("etc", "dev", "proc", "sys")


def _in_lowers(lowers: Sequence[StrPath], rel: str) -> os.stat_result | None:
    for lower in lowers:
        try:
            st = os.lstat(os.path.join(lower, rel))
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None  # a whiteout: deleted in this layer
        return st
    return None


def drop_mount_points(upper: Path, lowers: Sequence[StrPath]) -> None:
    """Remove what the runtime created only to mount /etc/hosts, /proc, ... on."""
    for rel in _MOUNT_POINT_FILES:
        p = upper / rel
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size == 0 and _in_lowers(lowers, rel) is None:
            p.unlink()
    for rel in _MOUNT_POINT_DIRS:
        p = upper / rel
        try:
            st = os.lstat(p)
            if not stat.S_ISDIR(st.st_mode) or os.listdir(p):
                continue
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            if os.getxattr(p, "trusted.overlay.opaque") == b"y":
                continue  # deliberately emptied (rm -rf /etc/*; mkdir): keep the marker
        except OSError:
            pass
        below = _in_lowers(lowers, rel)
        if below is None or (stat.S_ISDIR(below.st_mode)
                             and stat.S_IMODE(below.st_mode) == stat.S_IMODE(st.st_mode)
                             and (below.st_uid, below.st_gid) == (st.st_uid, st.st_gid)):
            os.rmdir(p)


def commit_upper(engine: BuildHost, upper: Path, lowers: Sequence[StrPath], parent_chain: str | None,
                 *, move: bool = True) -> NewLayer:
    """Write the layer blob for `upper` and put the tree in the layer store.

    With `move` the directory itself becomes the unpacked layer; otherwise (the
    container is kept, `--rm=false`) the layer is unpacked from the blob just written.
    The caller holds `images.writing()` until the image that uses the layer is recorded.
    """
    from ketch.archive import layer_blob_from_upper

    with engine.content.writer() as w:
        d = layer_blob_from_upper(upper, w, lower_dirs=lowers)
        blob = w.commit(d.digest)
    chain = chain_of(parent_chain, d.diff_id)
    media = MediaType.OCI_LAYER_GZIP
    if move:
        engine.layers.adopt_dir(upper, chain_id=chain, diff_id=d.diff_id, parent=parent_chain,
                                blob_digest=blob, media_type=media, blob_size=d.size,
                                size=d.content_size, tar_size=d.uncompressed_size)
    elif not engine.layers.has(chain):
        engine.layers.unpack_blob(blob, media, chain_id=chain, diff_id=d.diff_id,
                                  parent=parent_chain)
    return NewLayer(blob, media, d.size, d.diff_id, d.content_size)


class Workspace:
    """A writable overlay over an image's layers (COPY/ADD write through `merged`).

    upper/ and work/ live in tmp/ on the layer store's filesystem (so the upper dir can be
    renamed into the store); the mount point lives under the run root, away from tmp/'s
    cleaner. The watchdog knows both, so a killed build leaves neither behind.
    """

    def __init__(self, engine: BuildHost, chains: list[str], watchdog: Watchdog | None) -> None:
        self.engine = engine
        self.watchdog = watchdog
        from ketch.store.intents import owner_tag

        tmp = engine.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(prefix=f"build-{owner_tag()}-", dir=tmp))
        if watchdog is not None:
            watchdog.add("dir", str(self.stage))
        self.upper = self.stage / "upper"
        self.work = self.stage / "work"
        self.lowers = engine.layers.lower_dirs(chains) if chains else []
        run_dir = engine.run_root / "build"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.merged = run_dir / self.stage.name
        self.mounted = False

    def mount(self) -> Path:
        from ketch.containers.rootfs import OverlayMount, mount_overlay

        lowers: list[StrPath] = [*self.lowers]
        if not lowers:
            empty = self.stage / "empty"
            empty.mkdir()
            lowers = [empty]
        if self.watchdog is not None:
            self.watchdog.add("mount", str(self.merged))
        mount_overlay(OverlayMount(lowers, self.upper, self.work, self.merged))
        self.mounted = True
        return self.merged

    def unmount(self) -> None:
        from ketch.containers.rootfs import unmount

        if self.mounted:
            unmount(self.merged)
            self.mounted = False
        try:
            self.merged.rmdir()
        except OSError:
            pass
        if self.watchdog is not None:
            self.watchdog.done("mount", str(self.merged))

    def close(self) -> None:
        self.unmount()
        delete_tree(str(self.stage))
        if self.watchdog is not None:
            self.watchdog.done("dir", str(self.stage))

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
