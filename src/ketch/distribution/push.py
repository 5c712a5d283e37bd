"""`push`: layers and config (skipping blobs the registry has, mounting blobs it holds
in another repository), then the manifest under the tag."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin

from ketch import reference
from ketch.distribution.progress import Progress, PushResult
from ketch.distribution.pull import transport_for
from ketch.distribution.transport import RegistryErrorResponse, Transport
from ketch.errors import ImageNotFound, KetchError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ketch.images.service import ImageService
    from ketch.oci.model import Descriptor

MAX_CONCURRENT_UPLOADS = 5


def _blob_exists(t: Transport, path: str, digest: str, scope: str) -> bool:
    try:
        t.request("HEAD", f"/v2/{path}/blobs/{digest}", scope=scope)
        return True
    except RegistryErrorResponse as e:
        if e.status == 404:
            return False
        raise


def _mount(t: Transport, path: str, digest: str, source: str, scope: str) -> bool:
    resp = t.request("POST", f"/v2/{path}/blobs/uploads/?mount={quote(digest)}"
                     f"&from={quote(source)}", scope=scope, ok=(201, 202))
    if resp.status == 201:
        return True
    # 202: the registry started a normal upload instead; abandon it.
    loc = resp.header("Location")
    if loc:
        try:
            t.request("DELETE", urljoin(t.base + "/", loc), scope=scope, ok=(204, 404))
        except KetchError:
            pass
    return False


def _upload(images: ImageService, t: Transport, path: str, desc: Descriptor, scope: str) -> None:
    resp = t.request("POST", f"/v2/{path}/blobs/uploads/", scope=scope, ok=(202,))
    loc = resp.header("Location")
    if not loc:
        raise KetchError("registry started an upload without a Location")
    url = urljoin(t.base + f"/v2/{path}/blobs/uploads/", loc)
    url += ("&" if "?" in url else "?") + "digest=" + quote(desc.digest)
    with images.content.open(desc.digest) as f:
        t.request("PUT", url, scope=scope, body=f, ok=(201, 204),
                  headers={"Content-Type": "application/octet-stream",
                           "Content-Length": str(desc.size)})


def _send_blob(images: ImageService, t: Transport, path: str, desc: Descriptor,
               sources: list[str], scope: str) -> str:
    """Make the registry hold `desc`; returns how ("Pushed", "Mounted from x", ...)."""
    if _blob_exists(t, path, desc.digest, scope):
        return "Layer already exists"
    for src in sources:
        if _mount(t, path, desc.digest, src, f"{scope} repository:{src}:pull"):
            return f"Mounted from {src}"
    _upload(images, t, path, desc, scope)
    return "Pushed"


def _send_blobs(images: ImageService, t: Transport, path: str, layers: list[Descriptor],
                config: Descriptor, sources: list[str], scope: str) -> Iterator[Progress]:
    """Layers a few at a time (docker uploads 5 at once), then the config: a manifest
    may only be put once everything it references is there."""
    from concurrent.futures import Future, ThreadPoolExecutor

    def send(desc: Descriptor) -> str:
        own = t.clone()
        try:
            return _send_blob(images, own, path, desc, sources, scope)
        finally:
            own.close()

    futures: dict[str, Future[str]] = {}
    pool = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_UPLOADS)
    try:
        ordered = list(reversed(layers))  # docker lists the top layer first
        for desc in ordered:
            if desc.digest not in futures:
                futures[desc.digest] = pool.submit(send, desc)
        shown: set[str] = set()
        for desc in ordered:
            how = futures[desc.digest].result()
            if desc.digest not in shown:
                shown.add(desc.digest)
                yield Progress(how, desc.digest.split(":", 1)[1][:12])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    _send_blob(images, t, path, config, [], scope)


def push(images: ImageService, name: str) -> Iterator[Progress | PushResult]:
    """Push the local image `name`: progress events, then a PushResult. Nothing happens
    until the iterator is advanced."""
    bare = reference.parse(name, default_tag=None)
    if bare.digest:
        raise KetchError("cannot push a digest reference")
    if bare.tag is None:
        yield Progress("Using default tag: latest")
    ref = reference.parse(name)
    try:
        rec = images.resolve(str(ref))
    except ImageNotFound:
        raise ImageNotFound(f"An image does not exist locally with the tag:"
                            f" {ref.familiar_name}") from None
    manifest = images.get_manifest(rec)
    manifest_bytes = images.content.read(rec.manifest_digest)
    yield Progress(f"The push refers to repository [{ref.repository}]")
    scope = f"repository:{ref.path}:pull,push"
    # Other repositories of the same registry this image came from or went to: the
    # registry can link their blobs instead of receiving them again.
    sources = []
    for d in rec.digests + rec.tags:
        r = reference.parse(d.split("@", 1)[0], default_tag=None)
        if r.domain == ref.domain and r.path != ref.path and r.path not in sources:
            sources.append(r.path)
    t = transport_for(ref)
    try:
        yield from _send_blobs(images, t, ref.path, manifest.layers, manifest.config,
                               sources, scope)
        resp = t.request("PUT", f"/v2/{ref.path}/manifests/{ref.tag}", scope=scope,
                         body=manifest_bytes, ok=(200, 201, 202),
                         headers={"Content-Type": manifest.media_type})
    finally:
        t.close()
    digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    served = resp.header("Docker-Content-Digest")
    if served and served != digest and not _same_content(served, manifest_bytes):
        raise KetchError(f"registry stored the manifest as {served}, expected {digest}")
    with images.db.transaction() as conn:
        images.records.add_digest(conn, f"{ref.repository}@{digest}", rec.id)
    yield PushResult(ref.tag or "latest", digest, len(manifest_bytes))


def _same_content(served: str, data: bytes) -> bool:
    """True when a registry's digest in another algorithm (the spec lets it answer
    with its own canonical one, e.g. sha512) still names exactly these bytes."""
    algorithm, _, hexpart = served.partition(":")
    if algorithm not in ("sha384", "sha512"):
        return False
    return hashlib.new(algorithm, data).hexdigest() == hexpart
