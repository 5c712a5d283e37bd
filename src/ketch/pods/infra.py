"""The infra container's image: `localhost/ketch-pause:<version>`, made offline by ketch
from the host's static busybox the first time a pod is created.

Why busybox and not catatonit (Podman's choice): busybox-static is already what ketch's
offline base image is made from, so a host that runs ketch's tests has it; catatonit is
one more package for the same job. The infra process only has to hold the namespaces
open and exit cleanly on SIGTERM. Members never share its PID namespace, so it never
has orphans to reap (the other half of catatonit's job). The image holds /bin/busybox
and two applet links, nothing else, and its bytes are fixed: the same busybox always
gives the same image ID.
"""

from __future__ import annotations

import io
import tarfile

from ketch import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.images.service import ImageService

PAUSE_IMAGE = f"localhost/ketch-pause:{__version__}"
# PID 1 in its namespace ignores signals it has no handler for: the shell's trap
# makes SIGTERM (and SIGINT) end it at once, with status 0, as catatonit does
PAUSE_SCRIPT = "trap 'exit 0' TERM INT; while :; do sleep 86400 & wait $!; done"
PAUSE_CMD = ["/bin/sh", "-c", PAUSE_SCRIPT]
_MTIME = 1700000000


def _entry(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.linkname, ti.mtime = kind, mode, size, link, _MTIME
    return ti


def pause_rootfs() -> bytes:
    """The rootfs tarball of the pause image."""
    from ketch.images.busybox import find_busybox

    with open(find_busybox(), "rb") as f:
        data = f.read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("bin", "dev", "proc", "sys", "etc"):
            tf.addfile(_entry(d, tarfile.DIRTYPE, 0o755))
        tf.addfile(_entry("bin/busybox", tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
        for applet in ("sh", "sleep"):
            tf.addfile(_entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox"))
    return buf.getvalue()


def ensure_pause_image(images: ImageService) -> str:
    """The pause image's reference, imported first if this state root lacks it."""
    from ketch.errors import KetchError
    from ketch.images.busybox import BusyboxMissing

    try:
        images.resolve(PAUSE_IMAGE)
        return PAUSE_IMAGE
    except KetchError:
        pass
    try:
        tar = pause_rootfs()
    except BusyboxMissing as e:
        raise KetchError(f"cannot make the pod infra image: {e}") from None
    images.import_tar(io.BytesIO(tar), ref=PAUSE_IMAGE, message="ketch pod infra",
                      changes=[f"CMD {_json(PAUSE_CMD)}"])
    return PAUSE_IMAGE


def _json(v: object) -> str:
    import json

    return json.dumps(v)
