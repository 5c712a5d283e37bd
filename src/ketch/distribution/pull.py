"""`pull`: a manifest (through an index to the host's platform), its config and layers.

Blobs stream into the content store with their digest and size checked before they are
kept; blobs already present are not downloaded again. Layers are unpacked in order and
the image is recorded with its tag and its RepoDigest (the digest the registry served).
"""

from __future__ import annotations

from ketch import reference
from ketch.distribution import credentials, mirrors
from ketch.distribution.progress import PullResult
from ketch.distribution.transport import (
    MANIFEST_ACCEPT,
    RegistryErrorResponse,
    RegistryUnauthorized,
    Transport,
)
from ketch.errors import DigestMismatch, InvalidArgument, KetchError, NotFound
from ketch.fastjson import loads
from ketch.oci.digest import chain_of
from ketch.oci.media import MediaType
from ketch.progress import Progress

TYPE_CHECKING = False  # `typing` costs milliseconds at start
if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from ketch.images.service import ImageService, NewLayer
    from ketch.oci.model import Descriptor, Manifest
    from ketch.store.images import ImageRecord, ImageRecords

MAX_MANIFEST = 4 << 20
MAX_CONCURRENT_DOWNLOADS = 3


def transport_for(ref: reference.Reference) -> Transport:
    return Transport(ref.domain, credentials.get(reference.registry_for_auth(ref)))


def fetch_manifest(t: Transport, ref: reference.Reference, which: str,
                   scope: str) -> tuple[bytes, str, str]:
    """Bytes, media type and digest of a manifest, the digest checked when pinned."""
    path = f"/v2/{ref.path}/manifests/{which}"
    try:
        resp = t.request("GET", path, scope=scope, headers={"Accept": MANIFEST_ACCEPT})
    except RegistryErrorResponse as e:
        if e.status == 404 and e.code == "NAME_UNKNOWN":
            message = e.message.partition(": ")[2] or "repository name not known to registry"
            raise NotFound(f"repository {ref.repository} not found: name unknown:"
                           f" {message}") from None
        if e.status == 404:
            raise NotFound(f"manifest for {ref.familiar()} not found: manifest unknown:"
                           " manifest unknown") from None
        raise
    except RegistryUnauthorized as e:
        if e.message == "no basic auth credentials":
            # dockerd names the request, as Go's HTTP client reports it
            raise RegistryUnauthorized(f'Head "{t.base}{path}": {e.message}') from None
        raise
    data = resp.body
    if len(data) > MAX_MANIFEST:
        raise KetchError(f"manifest for {ref.familiar()} is too large")
    # Pinned by digest: verified in that digest's algorithm (sha512 included), and
    # named by it; by tag: the canonical sha256, as the registry reports it.
    algorithm = which.partition(":")[0] if ":" in which else "sha256"
    if algorithm not in ("sha256", "sha384", "sha512"):
        raise KetchError(f"unsupported digest algorithm in {which}")
    digest = f"{algorithm}:" + _hexdigest(algorithm, data)
    if ":" in which and digest != which:
        raise DigestMismatch(f"manifest verification failed for digest {which}")
    media_type = resp.header("Content-Type").split(";")[0].strip()
    try:
        declared = loads(data).get("mediaType")
    except (ValueError, AttributeError):
        raise KetchError(f"invalid manifest for {ref.familiar()}") from None
    return data, declared or media_type, digest


def _hexdigest(algorithm: str, data: bytes) -> str:
    if algorithm == "sha256":
        # A manifest is small: CPython's own sha256 spares loading OpenSSL (hashlib),
        # milliseconds of a re-pull that makes this one request.
        from ketch.oci.digest import small_sha256

        return small_sha256(data).hexdigest()
    import hashlib

    return hashlib.new(algorithm, data).hexdigest()


def fetch_blob(images: ImageService, t: Transport, repo_path: str, digest: str, size: int,
               scope: str) -> None:
    """A small blob (a config) into the content store, checked before it is kept."""
    resp = t.request("GET", f"/v2/{repo_path}/blobs/{digest}", scope=scope, stream=True)
    raw = resp.raw
    assert raw is not None
    try:
        with images.content.writer() as w:
            while chunk := raw.read(1 << 20):
                w.write(chunk)
            w.commit(digest, size if size >= 0 else None)
    except TimeoutError:
        raise KetchError(_stalled(t, digest)) from None


def _stalled(t: Transport, digest: str) -> str:
    from ketch.distribution.transport import read_timeout

    return (f"error pulling {digest[7:19]}: {t.host} sent nothing for"
            f" {read_timeout():g}s (read timed out)")


def _short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


def _layer_plan(images: ImageService, manifest: Manifest,
                diff_ids: list[str]) -> list[tuple[Descriptor, str, str | None, str]]:
    """(descriptor, diff ID, parent chain ID, chain ID) of every layer, in order."""
    plan = []
    parent: str | None = None
    for desc, diff_id in zip(manifest.layers, diff_ids, strict=True):
        chain = chain_of(parent, diff_id)
        plan.append((desc, diff_id, parent, chain))
        parent = chain
    return plan


def _download_and_unpack(images: ImageService, t: Transport, repo_path: str,
                         manifest: Manifest, diff_ids: list[str], scope: str,
                         quiet: bool) -> Generator[Progress, None, list[NewLayer]]:
    """Every layer the store lacks, in one pass: see `ketch.distribution.pipeline`.
    When everything is present (the common re-pull) no thread is started."""
    from ketch.images.service import NewLayer

    plan = _layer_plan(images, manifest, diff_ids)
    content, layer_store = images.content, images.layers
    missing_blobs = {d.digest for d, _, _, _ in plan if not content.exists(d.digest)}
    missing_chains = {c for _, _, _, c in plan if not layer_store.has(c)}
    if missing_blobs or missing_chains:
        from ketch.distribution.pipeline import LayerPipeline

        pipe = LayerPipeline(images, t, repo_path, scope, plan, missing_blobs,
                             missing_chains, MAX_CONCURRENT_DOWNLOADS)
        events = pipe.run()
        try:
            for event in events:
                if not quiet:
                    yield event
        finally:
            events.close()  # an abandoned pull stops its threads now, not at gc
    elif not quiet:
        for desc, _, _, _ in plan:
            yield Progress("Already exists", _short(desc.digest))
    layers: list[NewLayer] = []
    for desc, diff_id, _, chain in plan:
        lr = images.records.layer(chain)
        assert lr is not None
        layers.append(NewLayer(desc.digest, desc.media_type, content.size(desc.digest),
                               diff_id, lr.size))
    return layers


def pull(images: Callable[[], ImageService], records: ImageRecords, root: str, name: str,
         *, quiet: bool = False, platform: str | None = None, all_tags: bool = False
         ) -> Iterator[Progress | PullResult]:
    """Pull `name`: progress events (fewer when `quiet`), then a PullResult. Nothing
    happens until the iterator is advanced; abandoning it ends the pull. `platform`
    ("linux/arm64") picks that entry of an index instead of the host's. `all_tags`:
    `name` is a repository, and every tag the registry lists is pulled, in one stream
    with one status line for the repository at its end, as dockerd pulls a repository
    named without a tag (a tag with no image for the platform is passed over).

    `images` makes the image service on first need: an image that is up to date is
    answered from `records` alone, without the content and layer stores (whose
    `pathlib` and friends cost a re-pull, one manifest request, a good part of its
    time). `root` is the state root, for the event journal."""
    bare = reference.parse(name, default_tag=None)
    if all_tags:
        if bare.tag or bare.digest:
            raise InvalidArgument("tag can't be used with --all-tags/-a")
        downloaded, last = False, None
        for tag in sorted(list_tags(bare)):
            try:
                last = yield from _pull_ref(images, records, root, bare.with_tag(tag),
                                            quiet=quiet, platform=platform)
            except NotFound as e:
                if "no matching manifest" in e.message:
                    continue
                raise
            downloaded = downloaded or last.downloaded
        shown = bare.familiar()
        if not quiet:
            yield Progress(f"Status: {_status(downloaded)} for {shown}")
        if last is None:
            raise NotFound(f"repository {bare.familiar()} has no tags to pull")
        yield PullResult(last.image_id, last.digest, downloaded, str(bare))
        return
    if bare.tag is None and bare.digest is None:
        yield Progress("Using default tag: latest")
    ref = reference.parse(name)
    result = yield from _pull_ref(images, records, root, ref, quiet=quiet, platform=platform)
    if not quiet:
        yield Progress(f"Status: {_status(result.downloaded)} for {ref.familiar()}")
    yield result


def _status(downloaded: bool) -> str:
    return "Downloaded newer image" if downloaded else "Image is up to date"


def _pull_ref(images: Callable[[], ImageService], records: ImageRecords, root: str,
              ref: reference.Reference, *, quiet: bool, platform: str | None
              ) -> Generator[Progress, None, PullResult]:
    """One image: its "Pulling from", layer and "Digest" lines; the result."""
    from ketch.oci.model import Index, Manifest, Platform, host_platform

    which = ref.digest or ref.tag or "latest"
    scope = f"repository:{ref.path}:pull"
    # the registry's mirrors first (ketch.toml), the image then all from the one serving
    t, (data, media_type, top_digest) = mirrors.first_serving(
        root, ref, lambda: transport_for(ref),
        lambda t: fetch_manifest(t, ref, which, scope))
    try:
        if not quiet:
            yield Progress(f"Pulling from {ref.path}", ref.tag or ref.digest or "")
        if media_type in MediaType.INDEXES or b'"manifests"' in data[:4096] and (
                media_type not in MediaType.MANIFESTS):
            index = Index.parse(data)
            want = Platform.parse(platform) if platform else host_platform()
            desc = index.select(want)
            if desc is None:
                raise NotFound(f"no matching manifest for {want} in the manifest list"
                               " entries")
            data, media_type, _ = fetch_manifest(t, ref, desc.digest, scope)
        manifest: Manifest = Manifest.parse(data)
        cfg_desc = manifest.config
        for d in [cfg_desc, *manifest.layers]:
            if not d.digest.startswith("sha256:"):
                # The content store is addressed by sha256 (image IDs, diff IDs, chain
                # IDs all are): say so instead of failing on a digest mismatch later.
                raise KetchError(f"image {ref.familiar()} refers to blob {d.digest}: only"
                                 " sha256 blobs can be pulled into ketch's store")
        repo_digest = f"{ref.repository}@{top_digest}"
        rec = records.get(cfg_desc.digest)
        if (rec is not None and records.lookup_digest(repo_digest) == rec.id
                and (not ref.tag or ref.digest
                     or records.lookup_tag(f"{ref.repository}:{ref.tag}") == rec.id)):
            # Up to date: the image is recorded (so are its layers) and the name and
            # digest already point at it. Nothing to write, so no write lock and no
            # transaction; docker shows no layer lines either.
            up_to_date = True
        else:
            rec, up_to_date = yield from _pull_image(images(), t, ref, manifest,
                                                     top_digest, scope, quiet)
    finally:
        t.close()
    if not quiet:
        yield Progress(f"Digest: {top_digest}")
    from ketch.events import emit

    emit(root, "image", "pull", ref.familiar(), {"name": ref.familiar()})
    return PullResult(rec.id, top_digest, not up_to_date, str(ref))


def _pull_image(images: ImageService, t: Transport, ref: reference.Reference,
                manifest: Manifest, top_digest: str, scope: str,
                quiet: bool) -> Generator[Progress, None, tuple[ImageRecord, bool]]:
    """Config and layers into the stores, the image recorded and named."""
    from ketch.oci.model import ImageConfig

    cfg_desc = manifest.config
    with images.writing():
        if not images.content.exists(cfg_desc.digest):
            fetch_blob(images, t, ref.path, cfg_desc.digest, cfg_desc.size, scope)
        config_bytes = images.content.read(cfg_desc.digest)
        config = ImageConfig.parse(config_bytes)
        diff_ids = config.diff_ids
        if len(diff_ids) != len(manifest.layers):
            raise KetchError(f"invalid image {ref.familiar()}: {len(manifest.layers)}"
                             f" layers but {len(diff_ids)} diff IDs")
        # Docker's "up to date": the name already pointed at this very image.
        repo_digest = f"{ref.repository}@{top_digest}"
        known = (images.records.lookup_tag(f"{ref.repository}:{ref.tag}")
                 if ref.tag and not ref.digest
                 else images.records.lookup_digest(repo_digest))
        existed = images.records.get(cfg_desc.digest) is not None
        up_to_date = existed and known == cfg_desc.digest
        # A name with both tag and digest pulls the digest; docker ignores the tag.
        tags = [f"{ref.repository}:{ref.tag}"] if ref.tag and not ref.digest else []
        if existed:
            # The image is here under another name (its config, so its layers): it is
            # only named, no layer is fetched or shown, as dockerd does.
            rec = images.records.get(cfg_desc.digest)
            assert rec is not None
        else:
            for desc in manifest.layers:
                if desc.urls:
                    raise KetchError(f"foreign layer {desc.digest} is not supported")
            layers = yield from _download_and_unpack(images, t, ref.path, manifest,
                                                     diff_ids, scope, quiet)
            rec = images.commit(config.raw, layers, config_bytes=config_bytes)
        with images.db.transaction() as conn:
            for tag in tags:
                images.records.set_tag(conn, tag, rec.id)
            images.records.add_digest(conn, repo_digest, rec.id)
    return rec, up_to_date


def list_tags(ref: reference.Reference, page_size: int = 100) -> list[str]:
    """Every tag of `ref`'s repository, following the registry's `Link` pages."""
    import re

    t = transport_for(ref)
    scope = f"repository:{ref.path}:pull"
    tags: list[str] = []
    path: str | None = f"/v2/{ref.path}/tags/list?n={page_size}"
    try:
        while path:
            resp = t.request("GET", path, scope=scope)
            try:
                page = loads(resp.body).get("tags") or []
            except (ValueError, AttributeError):
                raise KetchError(f"invalid tag list from {ref.domain}") from None
            tags.extend(page)
            m = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", resp.header("Link"))
            path = m.group(1) if m and page else None
    finally:
        t.close()
    return tags
