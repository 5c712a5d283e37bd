"""The CRI ImageService on the Engine: list, status, pull (with the kubelet's
credentials), remove and the image filesystem's usage. Images are named as containerd
names them for the kubelet: fully qualified (`docker.io/library/busybox:latest`)."""

from __future__ import annotations

import os
import time

import grpc
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc

from ketch.cri.common import Engines, rpc
from ketch.errors import ImageNotFound, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.engine import Engine
    from ketch.store.images import ImageRecord


def _user(config: dict[str, Any]) -> tuple[int | None, str]:
    """The image's USER as the CRI reports it: a uid when numeric, else a user name."""
    user = ((config.get("config") or {}).get("User") or "").split(":", 1)[0]
    if user.isdigit():
        return int(user), ""
    return None, user


def image_message(e: Engine, rec: ImageRecord) -> cri.Image:
    uid, username = _user(e.images.read_config(rec.id))
    image = cri.Image(id=rec.id, repo_tags=sorted(rec.tags),
                      repo_digests=sorted(rec.digests), size=rec.size, username=username,
                      spec=cri.ImageSpec(image=rec.id))
    if uid is not None:
        image.uid.value = uid
    return image


def _find(e: Engine, name: str) -> ImageRecord | None:
    try:
        return e.images.resolve(name)
    except NotFound:
        return None


def _auth(auth: cri.AuthConfig, image: str) -> dict[str, tuple[str, str]] | None:
    """The kubelet's credentials for this pull (None: ketch's stored logins)."""
    from base64 import b64decode

    from ketch.reference import registry_for_auth

    user, password = auth.username, auth.password
    if not user and auth.auth:
        try:
            user, _, password = b64decode(auth.auth).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user = password = ""
    if not user:
        return None
    return {registry_for_auth(image): (user, password)}


class ImageService(api_pb2_grpc.ImageServiceServicer):
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    @rpc
    def ListImages(self, request: cri.ListImagesRequest,
                   context: grpc.ServicerContext) -> cri.ListImagesResponse:
        e = self.engines.get()
        wanted = request.filter.image.image if request.HasField("filter") else ""
        if wanted:
            rec = _find(e, wanted)
            records = [rec] if rec is not None else []
        else:
            records = e.records.all()
        return cri.ListImagesResponse(images=[image_message(e, r) for r in records])

    @rpc
    def ImageStatus(self, request: cri.ImageStatusRequest,
                    context: grpc.ServicerContext) -> cri.ImageStatusResponse:
        e = self.engines.get()
        rec = _find(e, request.image.image)
        if rec is None:  # the CRI's answer for a missing image: no image, no error
            return cri.ImageStatusResponse()
        return cri.ImageStatusResponse(image=image_message(e, rec))

    @rpc
    def PullImage(self, request: cri.PullImageRequest,
                  context: grpc.ServicerContext) -> cri.PullImageResponse:
        e = self.engines.get()
        name = request.image.image
        auth = _auth(request.auth, name) if request.HasField("auth") else None
        for _ in e.pull(name, quiet=True, auth=auth):
            pass  # the kubelet sees only the result
        rec = e.images.resolve(name)
        return cri.PullImageResponse(image_ref=rec.id)

    @rpc
    def RemoveImage(self, request: cri.RemoveImageRequest,
                    context: grpc.ServicerContext) -> cri.RemoveImageResponse:
        e = self.engines.get()
        rec = _find(e, request.image.image)
        if rec is not None:  # removing what is not there is no error in the CRI
            try:
                e.images.remove(rec.id, force=True)
            except ImageNotFound:
                pass
        return cri.RemoveImageResponse()

    @rpc
    def ImageFsInfo(self, request: cri.ImageFsInfoRequest,
                    context: grpc.ServicerContext) -> cri.ImageFsInfoResponse:
        e = self.engines.get()
        fs = cri.FilesystemUsage(
            timestamp=time.time_ns(),
            fs_id=cri.FilesystemIdentifier(mountpoint=os.path.join(e.root_dir, "layers")))
        # the unpacked layers' sizes as recorded (what `system df` reports); the kubelet
        # reads capacity and free inodes from the filesystem itself
        fs.used_bytes.value = sum(layer.size for layer in e.records.all_layers())
        return cri.ImageFsInfoResponse(image_filesystems=[fs])
