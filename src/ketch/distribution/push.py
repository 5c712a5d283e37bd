"""`push`: layers and config (skipping blobs the registry has, mounting blobs it holds
in another repository), then the manifest under the tag.

Layers ketch stores uncompressed are compressed on the way out (gzip unless asked
otherwise) and streamed to the registry as one chunked PATCH while their digest is
computed; the manifest sent then names the compressed blobs. Layers that are already
compressed (pulled ones) go as they are, so a pulled image pushes under its own digest.
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import quote, urljoin

from ketch import reference
from ketch.distribution.compression import (
    UNCOMPRESSED,
    CompressedBlobs,
    CompressedStream,
    Compression,
    layer_media_type,
    parse,
)
from ketch.distribution.progress import PushResult
from ketch.distribution.pull import transport_for
from ketch.distribution.transport import (
    RegistryErrorResponse,
    RegistryUnauthorized,
    Transport,
)
from ketch.errors import ImageNotFound, InvalidArgument, KetchError, NotFound
from ketch.oci.media import MediaType
from ketch.progress import Progress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import BinaryIO

    from ketch.images.service import ImageService
    from ketch.oci.model import Descriptor

MAX_CONCURRENT_UPLOADS = 5
PROGRESS_INTERVAL = 0.1  # seconds between two "Pushing" events of one layer


def _short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


def _blob_exists(t: Transport, path: str, digest: str, scope: str) -> bool:
    try:
        t.request("HEAD", f"/v2/{path}/blobs/{digest}", scope=scope)
        return True
    except RegistryErrorResponse as e:
        if e.status == 404:
            return False
        raise


def _mount(t: Transport, path: str, digest: str, source: str, scope: str) -> bool:
    try:
        resp = t.request("POST", f"/v2/{path}/blobs/uploads/?mount={quote(digest)}"
                         f"&from={quote(source)}", scope=scope, ok=(201, 202))
    except RegistryUnauthorized:
        return False  # no pull right on the source repository: upload instead
    except RegistryErrorResponse as e:
        if e.status in (401, 403, 404):
            return False
        raise
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


def _start_upload(t: Transport, path: str, scope: str) -> str:
    resp = t.request("POST", f"/v2/{path}/blobs/uploads/", scope=scope, ok=(202,))
    loc = resp.header("Location")
    if not loc:
        raise KetchError("registry started an upload without a Location")
    return urljoin(t.base + f"/v2/{path}/blobs/uploads/", loc)


def _with_digest(url: str, digest: str) -> str:
    return url + ("&" if "?" in url else "?") + "digest=" + quote(digest)


class _Counting:
    """A blob file as an HTTP body, reporting how much of it has been read."""

    def __init__(self, f: BinaryIO, on_read: Callable[[int], None]) -> None:
        self._f = f
        self._on_read = on_read
        self.done = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.done += len(data)
        self._on_read(self.done)
        return data

    def seek(self, pos: int) -> int:
        self.done = pos
        return self._f.seek(pos)


def _upload(images: ImageService, t: Transport, path: str, desc: Descriptor, scope: str,
            on_read: Callable[[int], None] | None = None) -> None:
    """One monolithic PUT of a blob the content store holds as it is to be sent."""
    url = _with_digest(_start_upload(t, path, scope), desc.digest)
    with images.content.open(desc.digest) as f:
        body: BinaryIO | _Counting = f if on_read is None else _Counting(f, on_read)
        t.request("PUT", url, scope=scope, body=body, ok=(201, 204),  # type: ignore[arg-type]  # _Counting reads as a binary file
                  headers={"Content-Type": "application/octet-stream",
                           "Content-Length": str(desc.size)})


def _upload_stream(t: Transport, path: str, stream: CompressedStream, scope: str) -> None:
    """Stream a blob whose digest is known only at its end: PATCH the bytes chunked,
    then close the upload with a PUT naming the digest (the spec's chunked upload)."""
    url = _start_upload(t, path, scope)
    resp = t.request("PATCH", url, scope=scope, body=stream,  # type: ignore[arg-type]  # CompressedStream reads as a binary file
                     headers={"Content-Type": "application/octet-stream"}, ok=(202, 204))
    if not stream.done:
        raise KetchError("the registry answered before the layer was sent")
    loc = resp.header("Location")
    url = urljoin(url, loc) if loc else url
    t.request("PUT", _with_digest(url, stream.digest), scope=scope, ok=(201, 204))


def _place(t: Transport, path: str, digest: str, source: str | None,
           scope: str) -> str | None:
    """Make the registry hold `digest` without sending it: "Layer already exists",
    "Mounted from x", or None when it has to be uploaded. One mount attempt at most."""
    if _blob_exists(t, path, digest, scope):
        return "Layer already exists"
    if source and _mount(t, path, digest, source, f"{scope} repository:{source}:pull"):
        return f"Mounted from {source}"
    return None


class _Pusher:
    """The layers of one push, sent a few at a time by worker threads that report
    their progress through `emit` (the generator in `push` yields it)."""

    def __init__(self, images: ImageService, t: Transport, domain: str, path: str,
                 scope: str, compression: Compression, manifest_media_type: str,
                 fallback_source: str | None) -> None:
        import queue

        self.images = images
        self.t = t
        self.domain = domain
        self.path = path
        self.scope = scope
        self.compression = compression
        self.manifest_media_type = manifest_media_type
        self.fallback_source = fallback_source
        self.blobs = CompressedBlobs(images.db)
        self.blobs.forget_unused()
        self.events: queue.SimpleQueue[Progress | None] = queue.SimpleQueue()

    def emit(self, event: Progress) -> None:
        self.events.put(event)

    def _source(self, digest: str) -> str | None:
        return self.blobs.repository(digest, self.domain, self.path) or self.fallback_source

    def _progress(self, short: str, total: int) -> Callable[[int], None]:
        last = [0.0]

        def report(done: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL or done >= total:
                last[0] = now
                self.emit(Progress("Pushing", short, current=done, total=total))
        return report

    def send_layer(self, desc: Descriptor, diff_id: str) -> Descriptor:
        from ketch.oci.model import Descriptor

        short = _short(desc.digest)
        t = self.t.clone()
        try:
            c = self.compression
            if desc.media_type in UNCOMPRESSED and c.format != "none":
                media_type = layer_media_type(self.manifest_media_type, c.format)
                known = self.blobs.lookup(diff_id, c)
                if known is not None:
                    how = _place(t, self.path, known[0], self._source(known[0]), self.scope)
                    if how is not None:
                        self.emit(Progress(how, short))
                        return Descriptor(media_type, known[0], known[1])
                self.emit(Progress("Pushing", short, current=0, total=desc.size))
                with self.images.content.open(desc.digest) as f:
                    stream = CompressedStream(f, c, desc.size,
                                              self._progress(short, desc.size))
                    _upload_stream(t, self.path, stream, self.scope)
                self.blobs.remember(diff_id, c, stream.digest, stream.size)
                out = Descriptor(media_type, stream.digest, stream.size)
            else:
                how = _place(t, self.path, desc.digest, self._source(desc.digest),
                             self.scope)
                if how is not None:
                    self.emit(Progress(how, short))
                    return desc
                self.emit(Progress("Pushing", short, current=0, total=desc.size))
                _upload(self.images, t, self.path, desc, self.scope,
                        self._progress(short, desc.size))
                out = desc
            self.blobs.note_repository(out.digest, self.domain, self.path)
            self.emit(Progress("Pushed", short))
            return out
        finally:
            t.close()

    def send_layers(self, layers: list[Descriptor],
                    diff_ids: list[str]) -> Iterator[Progress | list[Descriptor]]:
        """Progress events while the layers go (docker uploads 5 at once, and lists the
        top layer first), then the list of descriptors the manifest is to name."""
        from concurrent.futures import Future, ThreadPoolExecutor

        futures: dict[str, Future[Descriptor]] = {}
        unique: dict[str, tuple[Descriptor, str]] = {}
        for desc, diff in reversed(list(zip(layers, diff_ids, strict=True))):
            unique.setdefault(desc.digest, (desc, diff))
        for desc, _ in unique.values():
            yield Progress("Preparing", _short(desc.digest))
        for i, (desc, _) in enumerate(unique.values()):
            if i >= MAX_CONCURRENT_UPLOADS:
                yield Progress("Waiting", _short(desc.digest))
        def job(desc: Descriptor, diff: str) -> Descriptor:
            try:
                return self.send_layer(desc, diff)
            finally:
                self.events.put(None)  # this layer is done (or failed)

        pool = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_UPLOADS)
        try:
            for desc, diff in unique.values():
                futures[desc.digest] = pool.submit(job, desc, diff)
            running = len(futures)
            while running:
                event = self.events.get()
                if event is None:
                    running -= 1
                else:
                    yield event
            yield [futures[d.digest].result() for d in layers]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def push(images: ImageService, name: str, *, compression_format: str | None = None,
         compression_level: int | str | None = None,
         all_tags: bool = False) -> Iterator[Progress | PushResult]:
    """Push the local image `name`: progress events, then a PushResult. Nothing happens
    until the iterator is advanced. Uncompressed layers are compressed as
    `compression_format` ("gzip", the default, "zstd" or "none") at `compression_level`.
    `all_tags`: `name` is a repository, and each of its local tags is pushed, in one
    stream (one "The push refers to repository" line, a PushResult per tag), as
    dockerd pushes a repository named without a tag."""
    compression = parse(compression_format, compression_level)
    bare = reference.parse(name, default_tag=None)
    if bare.digest:
        raise KetchError("cannot push a digest reference")
    if all_tags:
        if bare.tag:
            raise InvalidArgument("tag can't be used with --all-tags/-a")
        # docker push names the repository before it finds the image missing
        yield Progress(f"The push refers to repository [{bare.repository}]")
        tags = images.records.tags_in_repository(bare.repository)
        if not tags:
            raise NotFound(f"An image does not exist locally with the tag:"
                           f" {bare.familiar_name}")
        for tag, _ in tags:
            yield from _push_one(images, reference.parse(tag), compression)
        return
    if bare.tag is None:
        yield Progress("Using default tag: latest")
    ref = reference.parse(name)
    yield Progress(f"The push refers to repository [{ref.repository}]")
    yield from _push_one(images, ref, compression)


def _push_one(images: ImageService, ref: reference.Reference,
              compression: Compression) -> Iterator[Progress | PushResult]:
    try:
        rec = images.resolve(str(ref))
    except ImageNotFound:
        if images.records.tags_in_repository(ref.repository):
            raise NotFound(f"tag does not exist: {ref.familiar()}") from None
        raise NotFound(f"An image does not exist locally with the tag:"
                       f" {ref.familiar_name}") from None
    manifest = images.get_manifest(rec)
    manifest_bytes = images.content.read(rec.manifest_digest)
    diff_ids = images.get_config(rec).diff_ids
    scope = f"repository:{ref.path}:pull,push"
    # The repository of this registry the image came from (pulled, or pushed before):
    # the registry can link a blob from there instead of receiving it again.
    fallback = None
    for d in rec.digests:
        r = reference.parse(d.split("@", 1)[0], default_tag=None)
        if r.domain == ref.domain and r.path != ref.path:
            fallback = r.path
            break
    media_type = manifest.media_type
    if compression.format == "zstd" and any(d.media_type in UNCOMPRESSED
                                            for d in manifest.layers):
        media_type = MediaType.OCI_MANIFEST  # schema2 has no zstd layers
    pusher = _Pusher(images, transport_for(ref), ref.domain, ref.path, scope, compression,
                     media_type, fallback)
    t = pusher.t
    try:
        layers: list[Descriptor] = []
        for event in pusher.send_layers(manifest.layers, diff_ids):
            if isinstance(event, list):
                layers = event
            else:
                yield event
        config = manifest.config
        if media_type != manifest.media_type:
            from ketch.oci.model import Descriptor

            config = Descriptor(MediaType.OCI_CONFIG, config.digest, config.size)
        if _place(t, ref.path, config.digest, None, scope) is None:
            _upload(images, t, ref.path, config, scope)
        if layers != manifest.layers or config != manifest.config:
            from ketch.oci.model import Manifest

            manifest_bytes = Manifest(config, layers, media_type,
                                      manifest.annotations).to_bytes()
        resp = t.request("PUT", f"/v2/{ref.path}/manifests/{ref.tag}", scope=scope,
                         body=manifest_bytes, ok=(200, 201, 202),
                         headers={"Content-Type": media_type})
    finally:
        t.close()
    digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    served = resp.header("Docker-Content-Digest")
    if served and served != digest and not _same_content(served, manifest_bytes):
        raise KetchError(f"registry stored the manifest as {served}, expected {digest}")
    with images.db.transaction() as conn:
        images.records.add_digest(conn, f"{ref.repository}@{digest}", rec.id)
    images.event("push", ref.familiar(), ref.familiar())
    yield PushResult(ref.tag or "latest", digest, len(manifest_bytes))


def _same_content(served: str, data: bytes) -> bool:
    """True when a registry's digest in another algorithm (the spec lets it answer
    with its own canonical one, e.g. sha512) still names exactly these bytes."""
    algorithm, _, hexpart = served.partition(":")
    if algorithm not in ("sha384", "sha512"):
        return False
    return hashlib.new(algorithm, data).hexdigest() == hexpart
