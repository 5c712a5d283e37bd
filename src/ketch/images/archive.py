"""`save` and `load`: image archives as Docker 25+ writes them.

One tar holds both an OCI image layout (oci-layout, index.json, blobs/sha256/...) and the
docker-archive index (manifest.json, repositories), with uncompressed layer tars, so
`docker load`, skopeo's `docker-archive:` and `oci-archive:` transports all read it.
`load` accepts either form (plain, gzip or zstd compressed).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ketch import reference
from ketch.errors import InvalidArgument, KetchError
from ketch.oci.digest import chain_ids, hex_of, sha256_bytes
from ketch.oci.media import MediaType
from ketch.oci.model import Descriptor, ImageConfig, Index, Manifest, host_platform
from ketch.store.images import ImageRecord

if TYPE_CHECKING:
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
                size = lr.size
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


def _safe_member(stage: Path, name: str) -> Path:
    p = (stage / name).resolve()
    if not str(p).startswith(str(stage.resolve()) + os.sep):
        raise InvalidArgument(f"invalid archive: entry {name!r} points outside the archive")
    if not p.is_file():
        raise InvalidArgument(f"invalid archive: {name} is missing")
    return p


def read_image_archive(svc: ImageService, stream: BinaryIO,
                       say: Callable[[str], None]) -> list[str]:
    from ketch.archive import extract, open_decompressed

    stage = Path(tempfile.mkdtemp(prefix=f"load-{os.getpid()}-", dir=svc.content.tmp))
    try:
        try:
            extract(open_decompressed(stream), stage, whiteouts="none", same_owner=False)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise InvalidArgument(f"invalid archive: {e or 'unexpected end of file'}") from None
        if (stage / "manifest.json").is_file():
            return _load_docker(svc, stage, say)
        if (stage / "index.json").is_file():
            return _load_oci(svc, stage, say)
        raise InvalidArgument(
            "invalid archive: it has neither manifest.json nor index.json;"
            " expected the output of `docker save` or an OCI image layout")
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _read_json(p: Path, what: str) -> Any:
    try:
        return json.loads(p.read_bytes())
    except ValueError as e:
        raise InvalidArgument(f"invalid archive: {what} is not valid JSON: {e}") from None


def _load_docker(svc: ImageService, stage: Path, say: Callable[[str], None]) -> list[str]:
    entries = _read_json(stage / "manifest.json", "manifest.json")
    if not isinstance(entries, list):
        raise InvalidArgument("invalid archive: manifest.json is not a list")
    prepared = []
    for e in entries:  # check everything before recording anything
        cfg_bytes = _safe_member(stage, e["Config"]).read_bytes()
        cfg = ImageConfig.parse(cfg_bytes)
        layers = [_safe_member(stage, p) for p in e.get("Layers") or []]
        if len(layers) != len(cfg.diff_ids):
            raise InvalidArgument(
                f"invalid archive: {len(layers)} layers but the config lists"
                f" {len(cfg.diff_ids)}")
        tags = [str(reference.parse(t)) for t in e.get("RepoTags") or []]
        prepared.append((cfg_bytes, cfg, layers, tags))
    messages = []
    for cfg_bytes, cfg, layer_files, tags in prepared:
        image_id = _commit_loaded(svc, cfg_bytes, cfg, layer_files, tags, say)
        messages.extend(_loaded_messages(image_id, tags))
    for m in messages:
        say(m)
    return messages


def _commit_loaded(svc: ImageService, cfg_bytes: bytes, cfg: ImageConfig,
                   layer_files: list[Path], tags: list[str],
                   say: Callable[[str], None]) -> str:
    from ketch.archive import open_decompressed
    from ketch.images.service import NewLayer, parse_created

    new_layers = []
    parent = None
    for path, diff_id, chain in zip(layer_files, cfg.diff_ids, chain_ids(cfg.diff_ids),
                                    strict=True):
        with open(path, "rb") as f:
            magic = f.read(4)
        compressed = magic[:2] == b"\x1f\x8b" or magic == b"\x28\xb5\x2f\xfd"
        if compressed:
            with open(path, "rb") as f:
                blob, size = svc.content.put_stream(f)
            mt = (MediaType.OCI_LAYER_ZSTD if magic == b"\x28\xb5\x2f\xfd"
                  else MediaType.OCI_LAYER_GZIP)
        else:
            blob, size, mt = diff_id, path.stat().st_size, MediaType.OCI_LAYER
        lr = svc.records.layer(chain)
        if lr is None or not svc.layers.has(chain):
            with open(path, "rb") as f:
                lr = svc.layers.unpack(open_decompressed(f), chain_id=chain, diff_id=diff_id,
                                       parent=parent, blob_digest=blob, media_type=mt,
                                       blob_size=size)
        if not compressed and not svc.content.exists(blob):
            # unpack verified the bytes against the diff ID, which is this blob's digest
            os.rename(path, svc.content.path(blob))
        new_layers.append(NewLayer(blob, mt, size, diff_id, lr.size))
        parent = chain
    image_id = sha256_bytes(cfg_bytes)
    for t in tags:
        old = svc.records.lookup_tag(t)
        if old and old != image_id:
            say(f"The image {reference.parse(t).familiar()} already exists, renaming the old"
                f" one with ID {old} to empty string")
    svc.commit(cfg.raw, new_layers, tags=tags, created=parse_created(cfg.created),
               config_bytes=cfg_bytes)
    return image_id


def _loaded_messages(image_id: str, tags: list[str]) -> list[str]:
    if tags:
        return [f"Loaded image: {reference.parse(t).familiar()}" for t in tags]
    return [f"Loaded image ID: {image_id}"]


def _blob(stage: Path, digest: str) -> Path:
    return _safe_member(stage, f"blobs/sha256/{hex_of(digest)}")


def _load_oci(svc: ImageService, stage: Path, say: Callable[[str], None]) -> list[str]:
    index = Index.parse((stage / "index.json").read_bytes())
    messages = []
    for desc in index.manifests:
        mdesc = desc
        mbytes = _blob(stage, mdesc.digest).read_bytes()
        if sha256_bytes(mbytes) != mdesc.digest:
            raise InvalidArgument(f"invalid archive: manifest {mdesc.digest} is corrupt")
        if mdesc.media_type in MediaType.INDEXES:
            inner = Index.parse(mbytes).select(host_platform())
            if inner is None:
                raise InvalidArgument(
                    f"invalid archive: no manifest for platform {host_platform()}")
            mdesc = inner
            mbytes = _blob(stage, mdesc.digest).read_bytes()
        manifest = Manifest.parse(mbytes)
        cfg_bytes = _blob(stage, manifest.config.digest).read_bytes()
        if sha256_bytes(cfg_bytes) != manifest.config.digest:
            raise InvalidArgument("invalid archive: image config is corrupt")
        cfg = ImageConfig.parse(cfg_bytes)
        files = []
        for ld in manifest.layers:
            p = _blob(stage, ld.digest)
            with open(p, "rb") as f:
                svc.content.put_stream(f, expected=ld.digest, size=ld.size)
            files.append(p)
        ann = desc.annotations or {}
        name = ann.get("io.containerd.image.name") or ann.get(
            "org.opencontainers.image.ref.name")
        tags = []
        if name:
            try:
                tags = [str(reference.parse(name))]
            except InvalidArgument:
                tags = []
        image_id = _commit_loaded(svc, cfg_bytes, cfg, files, tags, say)
        messages.extend(_loaded_messages(image_id, tags))
    for m in messages:
        say(m)
    return messages
