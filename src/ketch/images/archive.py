"""`save` and `load`: image archives as Docker 25+ writes them.

One tar holds both an OCI image layout (oci-layout, index.json, blobs/sha256/...) and the
docker-archive index (manifest.json, repositories), with uncompressed layer tars, so
`docker load`, skopeo's `docker-archive:` and `oci-archive:` transports all read it.
`load` accepts either form (plain, gzip or zstd compressed).
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
import tempfile
import zlib
from pathlib import Path

from ketch import reference
from ketch.errors import InvalidArgument, KetchError
from ketch.oci.digest import chain_ids, hex_of, sha256_bytes
from ketch.oci.media import MediaType
from ketch.oci.model import Descriptor, ImageConfig, Index, Manifest, host_platform
from ketch.store.images import ImageRecord
from ketch.store.trash import delete_tree
from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO

    from ketch.images.service import ImageService

CHUNK = 1 << 20
_ZERO = bytes(512)


class _TarWriter:
    """A minimal streaming tar writer with large copies (tarfile's are 16 KiB)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.written: set[str] = set()

    def _header(self, name: str, size: int, type_: bytes = tarfile.REGTYPE,
                mode: int = 0o644) -> None:
        ti = tarfile.TarInfo(name)
        ti.size = size
        ti.type = type_
        ti.mode = mode
        ti.mtime = 0
        self.out.write(ti.tobuf(format=tarfile.PAX_FORMAT))

    def dir(self, name: str) -> None:
        if name in self.written:
            return
        self.written.add(name)
        self._header(name.rstrip("/") + "/", 0, tarfile.DIRTYPE, 0o755)

    def bytes(self, name: str, data: bytes) -> None:
        if name in self.written:
            return
        self.written.add(name)
        self._header(name, len(data))
        self.out.write(data)
        self._pad(len(data))

    def stream(self, name: str, src: BinaryIO, size: int) -> None:
        if name in self.written:
            return
        self.written.add(name)
        self._header(name, size)
        remaining = size
        while remaining:
            chunk = src.read(min(CHUNK, remaining))
            if not chunk:
                raise KetchError(f"layer data for {name} ended early: store is damaged")
            self.out.write(chunk)
            remaining -= len(chunk)
        self._pad(size)

    def _pad(self, size: int) -> None:
        if size % 512:
            self.out.write(_ZERO[: 512 - size % 512])

    def close(self) -> None:
        self.out.write(_ZERO * 2)
        self.out.flush()


def write_image_archive(svc: ImageService, entries: list[tuple[ImageRecord, list[str]]],
                        out: BinaryIO) -> None:
    from ketch.archive import open_decompressed

    tw = _TarWriter(out)
    tw.dir("blobs")
    tw.dir("blobs/sha256")
    docker_manifest: list[dict[str, Any]] = []
    index_manifests: list[Descriptor] = []
    repositories: dict[str, dict[str, str]] = {}
    for rec, tags in entries:
        cfg_bytes = svc.content.read(rec.id)
        cfg = ImageConfig.parse(cfg_bytes)
        stored = svc.get_manifest(rec)
        layer_descs = []
        layer_paths = []
        for chain, diff_id, desc in zip(chain_ids(cfg.diff_ids), cfg.diff_ids, stored.layers,
                                        strict=True):
            lr = svc.records.layer(chain)
            name = f"blobs/sha256/{hex_of(diff_id)}"
            if desc.media_type == MediaType.OCI_LAYER or desc.digest == diff_id:
                size = svc.content.size(desc.digest)
                with svc.content.open(desc.digest) as f:
                    tw.stream(name, f, size)
            else:
                if lr is None:
                    raise KetchError(f"layer {diff_id} has no size record: store is damaged")
                size = lr.tar_size if lr.tar_size is not None else lr.size
                with svc.content.open(desc.digest) as f:
                    tw.stream(name, open_decompressed(f), size)
            layer_descs.append(Descriptor(MediaType.OCI_LAYER, diff_id, size))
            layer_paths.append(name)
        tw.bytes(f"blobs/sha256/{hex_of(rec.id)}", cfg_bytes)
        manifest = Manifest(Descriptor(MediaType.OCI_CONFIG, rec.id, len(cfg_bytes)),
                            layer_descs)
        mbytes = manifest.to_bytes()
        mdigest = sha256_bytes(mbytes)
        tw.bytes(f"blobs/sha256/{hex_of(mdigest)}", mbytes)
        familiar = []
        for t in tags:
            ref = reference.parse(t)
            familiar.append(ref.familiar())
            repositories.setdefault(ref.familiar_name, {})[ref.tag or "latest"] = hex_of(rec.id)
            index_manifests.append(Descriptor(
                MediaType.OCI_MANIFEST, mdigest, len(mbytes),
                annotations={"io.containerd.image.name": str(ref),
                             "org.opencontainers.image.ref.name": ref.tag or "latest"}))
        if not tags:
            index_manifests.append(Descriptor(MediaType.OCI_MANIFEST, mdigest, len(mbytes)))
        docker_manifest.append({"Config": f"blobs/sha256/{hex_of(rec.id)}",
                                "RepoTags": familiar or None, "Layers": layer_paths})
    tw.bytes("index.json", Index(index_manifests).to_bytes())
    tw.bytes("manifest.json", json.dumps(docker_manifest, separators=(",", ":")).encode())
    tw.bytes("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    if repositories:
        tw.bytes("repositories", json.dumps(repositories, separators=(",", ":")).encode())
    tw.close()


_MAX_LINKS = 40  # as the kernel's limit on symlinks followed in one lookup


def _member(stage: Path, name: Any, what: str | None = None) -> Path:
    """The staged regular file that archive member `name` names.

    The archive is untrusted: its members may be symlinks. They are followed here, one
    component at a time and never by the kernel, only while they stay inside the
    archive: an absolute target or a `..` that climbs above the archive's root makes
    the archive invalid, wherever in a chain of links it appears. Hardlinks need no
    check here: extraction only ever links to files of the archive itself.
    """
    if not isinstance(name, str) or not name or "\0" in name:
        raise InvalidArgument(f"invalid archive: bad file name {name!r} in its index")
    what = what or name
    outside = InvalidArgument(
        f"invalid archive: {what} leads outside the archive ({name!r})")
    if name.startswith("/"):
        raise outside
    pending = name.split("/")[::-1]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise outside
            resolved.pop()
            continue
        cur = stage.joinpath(*resolved, part)
        try:
            st = os.lstat(cur)
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidArgument(f"invalid archive: {what} is missing") from None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise InvalidArgument(f"invalid archive: {what} is a loop of symlinks")
            target = os.readlink(cur)
            if target.startswith("/"):
                raise outside
            pending.extend(target.split("/")[::-1])
            continue
        resolved.append(part)
    path = stage.joinpath(*resolved)
    if not resolved or not stat.S_ISREG(os.lstat(path).st_mode):
        raise InvalidArgument(f"invalid archive: {what} is not a regular file")
    return path


def _read_member(stage: Path, name: Any, what: str | None = None) -> bytes:
    fd = os.open(_member(stage, name, what), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        return f.read()


def read_image_archive(svc: ImageService, stream: BinaryIO,
                       say: Callable[[str], None],
                       progress: Callable[[Any], None] | None = None) -> list[str]:
    """Load every image of a docker-archive or OCI image layout tar (maybe compressed).

    The archive is unpacked into tmp/ first (safely: it is untrusted input) and checked
    completely (indexes, configs, digests) before the first image is recorded; an image
    is recorded only after all its layers are verified and stored, so a failure or a
    kill leaves at most unreferenced blobs and layers, which gc removes. `progress`
    gets a `Progress` ("Loading layer", bytes read of the layer file) while each layer
    is unpacked.
    """
    from ketch.archive import extract
    from ketch.store.intents import owner_tag

    stage = Path(tempfile.mkdtemp(prefix=f"load-{owner_tag()}-", dir=svc.content.tmp))
    try:
        try:
            extract(stream, stage, whiteouts="none", same_owner=False, digest=False)
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise InvalidArgument(f"invalid archive: {e or 'unexpected end of file'}") from None
        except KetchError as e:
            msg = e.message
            raise InvalidArgument(msg if "archive" in msg else f"invalid archive: {msg}"
                                  ) from None
        except OSError as e:
            raise InvalidArgument(
                f"invalid archive: {e.strerror or e or 'unexpected end of file'}") from None
        _start_writeback(stage)
        # lexists, not is_file: a link that leads away must fail, not be skipped
        if os.path.lexists(stage / "manifest.json"):
            return _load_docker(svc, stage, say, progress)
        if os.path.lexists(stage / "index.json"):
            return _load_oci(svc, stage, say, progress)
        if not any(stage.iterdir()):
            raise InvalidArgument("invalid archive: it is empty (unexpected EOF)")
        raise InvalidArgument(
            "invalid archive: it has neither manifest.json nor index.json;"
            " expected the output of `docker save` or an OCI image layout")
    finally:
        delete_tree(str(stage))


def _start_writeback(stage: Path) -> None:
    """fsync the big staged files in a background thread while layers are unpacked.

    Layer tars become blobs by rename, after an fsync (`ContentStore.adopt`); flushing
    them early overlaps that disk wait with the CPU work of unpacking, instead of paying
    it after each layer.
    """
    import threading

    def flush() -> None:
        for dirpath, _, files in os.walk(stage):
            for name in files:
                p = os.path.join(dirpath, name)
                try:
                    if os.lstat(p).st_size < CHUNK:
                        continue
                    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    continue
                try:
                    os.fsync(fd)
                except OSError:
                    pass
                finally:
                    os.close(fd)

    threading.Thread(target=flush, name="writeback", daemon=True).start()


def _read_json(stage: Path, name: str) -> Any:
    data = _read_member(stage, name)
    try:
        return json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"invalid archive: {name} is not valid JSON: {e}") from None


def _parse_tags(names: Any, what: str) -> list[str]:
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidArgument(f"invalid archive: {what} is not a list of names")
    out = []
    for n in names:
        try:
            ref = reference.parse(n)
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid archive: {what} entry {n!r}: {e.message}"
                                  ) from None
        if ref.digest:
            raise InvalidArgument(f"invalid archive: {what} holds a digest reference {n!r}")
        out.append(str(ref))
    return out


@value
class _Layer:
    """A layer file of the archive, already verified and stored as a blob when `blob`."""

    path: Path
    blob: str | None = None
    media_type: str | None = None
    size: int = 0


def _load_docker(svc: ImageService, stage: Path, say: Callable[[str], None],
                 progress: Callable[[Any], None] | None = None) -> list[str]:
    entries = _read_json(stage, "manifest.json")
    if not isinstance(entries, list):
        raise InvalidArgument("invalid archive: manifest.json is not a list")
    if not entries:
        # Docker loads nothing and exits 0; an archive that holds no image is a mistake.
        raise InvalidArgument("invalid archive: manifest.json lists no image")
    prepared = []
    for e in entries:  # check everything before recording anything
        if not isinstance(e, dict):
            raise InvalidArgument("invalid archive: manifest.json entry is not an object")
        cfg_bytes = _read_member(stage, e.get("Config"), "image config")
        cfg = ImageConfig.parse(cfg_bytes)
        layer_names = e.get("Layers") or []
        if not isinstance(layer_names, list):
            raise InvalidArgument("invalid archive: Layers in manifest.json is not a list")
        layers = [_Layer(_member(stage, p)) for p in layer_names]
        if len(layers) != len(cfg.diff_ids):
            raise InvalidArgument(
                f"invalid archive: invalid manifest, layers length mismatch: expected"
                f" {len(cfg.diff_ids)}, got {len(layers)}")
        prepared.append((cfg_bytes, cfg, layers, _parse_tags(e.get("RepoTags"), "RepoTags")))
    messages = []
    for cfg_bytes, cfg, layer_files, tags in prepared:
        image_id = _commit_loaded(svc, cfg_bytes, cfg, layer_files, tags, say, progress)
        messages.extend(_loaded_messages(image_id, tags))
    for m in messages:
        say(m)
    return messages


def _commit_loaded(svc: ImageService, cfg_bytes: bytes, cfg: ImageConfig,
                   layers: list[_Layer], tags: list[str],
                   say: Callable[[str], None],
                   progress: Callable[[Any], None] | None = None) -> str:
    from ketch.images.service import NewLayer, parse_created
    from ketch.reference import familiar

    new_layers = []
    parent = None
    for layer, diff_id, chain in zip(layers, cfg.diff_ids, chain_ids(cfg.diff_ids),
                                     strict=True):
        if not layer.path.exists() and svc.content.exists(diff_id):
            # An earlier image of this archive shares the file and moved it into the store.
            layer.path = Path(svc.content.path(diff_id))
        with open(layer.path, "rb") as f:
            magic = f.read(4)
        compressed = magic[:2] == b"\x1f\x8b" or magic == b"\x28\xb5\x2f\xfd"
        if layer.blob is not None:
            blob, size, mt = layer.blob, layer.size, layer.media_type or MediaType.OCI_LAYER
        elif compressed:
            with open(layer.path, "rb") as f:
                blob, size = svc.content.put_stream(f)
            mt = (MediaType.OCI_LAYER_ZSTD if magic == b"\x28\xb5\x2f\xfd"
                  else MediaType.OCI_LAYER_GZIP)
        else:
            blob, size, mt = diff_id, layer.path.stat().st_size, MediaType.OCI_LAYER
        lr = svc.records.layer(chain)
        if lr is None or not svc.layers.has(chain):
            with open(layer.path, "rb") as f:
                src: Any = f if progress is None else _Reporting(f, diff_id, progress)
                lr = svc.layers.unpack(src, chain_id=chain, diff_id=diff_id, parent=parent,
                                       blob_digest=blob, media_type=mt, blob_size=size)
        if not svc.content.exists(blob):
            # unpack verified these bytes against the diff ID, which is this blob's digest
            svc.content.adopt(layer.path, blob)
        new_layers.append(NewLayer(blob, mt, size, diff_id, lr.size))
        parent = chain
    image_id = sha256_bytes(cfg_bytes)
    for t in tags:
        old = svc.records.lookup_tag(t)
        if old and old != image_id:
            say(f"The image {familiar(t)} already exists, renaming the old one with ID {old}"
                " to empty string")
    svc.commit(cfg.raw, new_layers, tags=tags, created=parse_created(cfg.created),
               config_bytes=cfg_bytes)
    return image_id


class _Reporting:
    """A layer file being unpacked, reporting Docker's "Loading layer" progress."""

    def __init__(self, f: BinaryIO, diff_id: str, progress: Callable[[Any], None]) -> None:
        import time

        from ketch.progress import Progress

        self._f = f
        self._progress = progress
        self._make = Progress
        self._clock = time.monotonic
        self._id = diff_id.split(":", 1)[1][:12]
        self._total = os.fstat(f.fileno()).st_size
        self._done = 0
        self._last = 0.0
        progress(Progress("Loading layer", self._id, current=0, total=self._total))

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._done += len(data)
        now = self._clock()
        if now - self._last >= 0.1 or not data or self._done >= self._total:
            self._last = now
            self._progress(self._make("Loading layer", self._id, current=self._done,
                                      total=self._total))
        return data

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def _loaded_messages(image_id: str, tags: list[str]) -> list[str]:
    from ketch.reference import familiar

    if tags:
        return [f"Loaded image: {familiar(t)}" for t in tags]
    return [f"Loaded image ID: {image_id}"]


def _verified(stage: Path, desc: Descriptor, what: str) -> bytes:
    data = _read_member(stage, f"blobs/sha256/{hex_of(desc.digest)}")
    if sha256_bytes(data) != desc.digest or len(data) != desc.size:
        raise InvalidArgument(
            f"invalid archive: {what} {desc.digest} does not match its digest or size")
    return data


def _oci_tag(annotations: dict[str, str] | None) -> list[str]:
    """The name an index entry gives its image: containerd's full name if present, else
    `org.opencontainers.image.ref.name` when it is a whole reference ("foo:1"), not just
    a tag ("latest", which names nothing without a repository)."""
    ann = annotations or {}
    name = ann.get("io.containerd.image.name")
    if not name:
        name = ann.get("org.opencontainers.image.ref.name") or ""
        if not any(c in name for c in ":/@"):
            return []
    try:
        ref = reference.parse(name)
    except InvalidArgument:
        return []
    return [] if ref.digest else [str(ref)]


def _load_oci(svc: ImageService, stage: Path, say: Callable[[str], None],
              progress: Callable[[Any], None] | None = None) -> list[str]:
    index = Index.parse(_read_member(stage, "index.json"))
    if not index.manifests:
        raise InvalidArgument("invalid archive: index.json lists no images")
    prepared = []
    for desc in index.manifests:  # check everything before recording anything
        mdesc = desc
        mbytes = _verified(stage, mdesc, "manifest")
        if mdesc.media_type in MediaType.INDEXES:
            inner = Index.parse(mbytes).select(host_platform())
            if inner is None:
                raise InvalidArgument(
                    f"invalid archive: no manifest for platform {host_platform()}")
            mdesc = inner
            mbytes = _verified(stage, mdesc, "manifest")
        manifest = Manifest.parse(mbytes)
        cfg_bytes = _verified(stage, manifest.config, "image config")
        cfg = ImageConfig.parse(cfg_bytes)
        if len(manifest.layers) != len(cfg.diff_ids):
            raise InvalidArgument(
                f"invalid archive: manifest lists {len(manifest.layers)} layers but the"
                f" config {len(cfg.diff_ids)}")
        layers = [_Layer(_member(stage, f"blobs/sha256/{hex_of(ld.digest)}"))
                  for ld in manifest.layers]
        prepared.append((desc, manifest, cfg_bytes, cfg, layers))
    messages = []
    for desc, manifest, cfg_bytes, cfg, layers in prepared:
        for ld, layer in zip(manifest.layers, layers, strict=True):
            with open(layer.path, "rb") as f:
                # Nothing is stored under a digest it does not have: put_stream verifies.
                layer.blob, layer.size = svc.content.put_stream(f, expected=ld.digest,
                                                                size=ld.size)
            layer.media_type = _layer_media_type(ld.media_type)
        tags = _oci_tag(desc.annotations)
        image_id = _commit_loaded(svc, cfg_bytes, cfg, layers, tags, say, progress)
        messages.extend(_loaded_messages(image_id, tags))
    for m in messages:
        say(m)
    return messages


def _layer_media_type(mt: str) -> str:
    """Docker's layer media types as their OCI equivalents (ketch's manifests are OCI)."""
    return {MediaType.DOCKER_LAYER_GZIP: MediaType.OCI_LAYER_GZIP,
            "application/vnd.docker.image.rootfs.diff.tar": MediaType.OCI_LAYER}.get(
                mt, mt or MediaType.OCI_LAYER)
