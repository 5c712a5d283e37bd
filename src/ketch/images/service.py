"""The image service: every operation on local images, shared by the CLI and the API.

Results are Docker-shaped (the dicts `docker image ls/inspect` and the Engine API use), so
both front doors only format them.

The service is the façade; beside it: `images` (listing.py), `inspect` and `history`
(inspect.py), `rmi` and `image prune` (removal.py), `import`, `save` and `load`
(transfer.py, with the archive format in archive.py).
"""

from __future__ import annotations

import builtins
import os
import time

from ketch.errors import (
    AmbiguousID,
    ImageNotFound,
    InvalidArgument,
    InvalidReference,
    NotFound,
)
from ketch.ids import LOWER_HEX
from ketch.oci.digest import chain_ids, chain_of
from ketch.oci.media import MediaType
from ketch.reference import familiar
from ketch.store.images import ImageRecord, labels_of
from ketch.values import contextmanager, field, value

# `typing` and `dataclasses` are not imported at run time: a cached `build` loads this
# module, and each costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

    from ketch.layers.store import LayerStore
    from ketch.oci.model import ImageConfig, Manifest
    from ketch.store.content import ContentStore
    from ketch.store.db import Database
    from ketch.store.images import ImageRecords
    from ketch.store.intents import Intents

    # Container users of an image: returns (container id, running?) pairs. The container
    # service registers itself here so images never import containers.
    ImageUsers = Callable[[str], list[tuple[str, bool]]]

# How long gc waits for gc.lock before it leaves the sweep to the next gc (seconds).
GC_LOCK_WAIT = 0.2


def hex_of_id(name: str, full: bool) -> str | None:
    """The hex of `[sha256:]<hex>`: 64 digits when `full`, else 1 to 63; None otherwise."""
    h = name[7:] if name.startswith("sha256:") else name
    if not h or not LOWER_HEX.issuperset(h) or (len(h) == 64) != full or len(h) > 64:
        return None
    return h


@value
class NewLayer:
    """A layer blob already in the content store, with its unpacked tree in the layer store."""

    blob_digest: str
    media_type: str
    blob_size: int
    diff_id: str
    size: int


@value
class PruneReport:
    deleted: builtins.list[dict[str, str]] = field(default_factory=list)
    space_reclaimed: int = 0


def now_rfc3339() -> str:
    from ketch.fmt.units import rfc3339nano

    return rfc3339nano(time.time())


def parse_created(s: str | None) -> float:
    """Seconds since the epoch from an RFC 3339 timestamp (nanoseconds allowed)."""
    # YYYY-MM-DDTHH:MM:SS[.digits](Z|+HH:MM|-HH:MM), read by hand: `re` (with enum) was
    # a quarter of `history`'s start-up. A value that is not one (or not a real date)
    # counts as missing.
    if not s or len(s) < 20:
        return 0.0
    head, rest = s[:19], s[19:]
    if (head[4] + head[7] + head[10] + head[13] + head[16] != "--T::"
            or not (head[:4] + head[5:7] + head[8:10] + head[11:13] + head[14:16]
                    + head[17:]).isdecimal()):
        return 0.0
    frac = ""
    if rest[:1] == ".":
        end = 1
        while end < len(rest) and rest[end].isdecimal():
            end += 1
        if end == 1:
            return 0.0
        frac, rest = rest[:end], rest[end:]
    if rest == "Z":
        rest = "+00:00"
    elif not (len(rest) == 6 and rest[0] in "+-" and rest[3] == ":"
              and (rest[1:3] + rest[4:]).isdecimal()):
        return 0.0
    from datetime import datetime

    try:
        base = datetime.fromisoformat(head + rest)
    except ValueError:  # (a month 13, a 25th hour)
        return 0.0
    return base.timestamp() + (float("0" + frac) if frac else 0.0)


def _open_intents(db: Database) -> Intents:
    from ketch.store.intents import Intents

    return Intents(db)


class ImageService:
    """Local images: lookup, list, inspect, tag, remove, prune, import/load/save, gc.

    Built by the Engine with the stores it works on. `users` and `layer_users` are the
    two questions only the container service can answer (which containers use an image,
    which layer chains containers hold); the Engine wires them, so images never import
    containers.
    """

    def __init__(self, root: str | os.PathLike[str], db: Database, records: ImageRecords, content: ContentStore,
                 layers: LayerStore, *,
                 users: ImageUsers | None = None,
                 layer_users: Callable[[], set[str]] | None = None,
                 intents: Callable[[], Intents] | None = None) -> None:
        self.root = os.fspath(root)  # a string: inspect and list need no pathlib
        self.records = records
        self.content = content
        self.layers = layers
        self.db = db
        self.users: ImageUsers = users or (lambda image_id: [])
        self.layer_users: Callable[[], set[str]] = layer_users or set
        # the crash-recovery journal, opened on first write (listing never needs it)
        self.intents: Callable[[], Intents] = intents or (lambda: _open_intents(db))
        # An image ID is the digest of its config, so its chain IDs never change.
        self._chains: dict[str, list[str]] = {}

    # -- events -------------------------------------------------------------------
    def event(self, action: str, actor_id: str, name: str) -> None:
        """Journal an image event (ketch.events): `actor_id` is the image ID (the
        reference for pull and push, as dockerd), `name` its `name` attribute."""
        from ketch.events import emit

        emit(self.root, "image", action, actor_id, {"name": name})

    # -- lookup -------------------------------------------------------------------
    def resolve(self, name: str) -> ImageRecord:
        """Find an image by reference, full ID or unique ID prefix (Docker's order)."""
        from ketch import reference

        if not name:
            raise ImageNotFound(name)
        full = hex_of_id(name, True)
        if full:
            rec = self.records.get("sha256:" + full)
            if rec:
                return rec
            raise ImageNotFound(name)
        ref = None
        try:
            ref = reference.parse(name)
        except InvalidArgument:
            ref = None
        if ref is not None:
            image_id = (self.records.lookup_digest(f"{ref.repository}@{ref.digest}")
                        if ref.digest else self.records.lookup_tag(str(ref)))
            if image_id:
                rec = self.records.get(image_id)
                if rec:
                    return rec
        prefix = hex_of_id(name, False)
        if prefix:
            ids = self.records.ids_with_prefix(prefix)
            if len(ids) > 1:
                raise AmbiguousID(name, "image")
            if ids:
                rec = self.records.get(ids[0])
                if rec:
                    return rec
        if ref is None and not prefix:
            # Not a valid name and not an ID: Docker reports the format problem.
            reference.parse(name)
        # dockerd names a missing reference as it parsed it: `nosuch` is nosuch:latest
        raise ImageNotFound(ref.familiar() if ref is not None else name)

    def get_config(self, rec: ImageRecord) -> ImageConfig:
        from ketch.oci.imageconfig import ImageConfig

        return ImageConfig.parse(self.content.read(rec.id))

    def get_manifest(self, rec: ImageRecord) -> Manifest:
        from ketch.oci.model import Manifest

        return Manifest.parse(self.content.read(rec.manifest_digest))

    def chain_ids(self, rec: ImageRecord) -> list[str]:
        chains = self._chains.get(rec.id)
        if chains is None:
            chains = self._chains[rec.id] = chain_ids(self.get_config(rec).diff_ids)
        return list(chains)

    def ensure_unpacked(self, rec: ImageRecord) -> list[str]:
        """Make sure every layer of the image is unpacked; returns its chain IDs."""
        cfg = self.get_config(rec)
        manifest = self.get_manifest(rec)
        chains = chain_ids(cfg.diff_ids)
        parent = None
        for chain, diff_id, desc in zip(chains, cfg.diff_ids, manifest.layers, strict=True):
            if not self.layers.has(chain):
                self.layers.unpack_blob(desc.digest, desc.media_type, chain_id=chain,
                                        diff_id=diff_id, parent=parent)
            parent = chain
        return chains

    # -- create -------------------------------------------------------------------
    def commit(self, config: dict[str, Any], layers: list[NewLayer], *,
               parent: str | None = None, tags: Sequence[str] = (),
               cache_key: str | None = None, created: float | None = None,
               config_bytes: bytes | None = None) -> ImageRecord:
        """Store config + manifest for layers already in the stores and record the image.

        `config_bytes` keeps an existing config byte for byte (its digest is the image ID).
        """
        import json

        from ketch.oci.model import Descriptor, Manifest

        cfg_bytes = config_bytes or json.dumps(config, separators=(",", ":")).encode()
        image_id = self.content.put(cfg_bytes)
        manifest = Manifest(
            Descriptor(MediaType.OCI_CONFIG, image_id, len(cfg_bytes)),
            [Descriptor(layer.media_type, layer.blob_digest, layer.blob_size)
             for layer in layers])
        mbytes = manifest.to_bytes()
        manifest_digest = self.content.put(mbytes)
        all_diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        sizes = 0
        for chain in chain_ids(all_diff_ids):
            lr = self.records.layer(chain)
            sizes += lr.size if lr else 0
        rec = ImageRecord(
            id=image_id, manifest_digest=manifest_digest,
            manifest_media_type=MediaType.OCI_MANIFEST,
            created=created if created is not None else parse_created(config.get("created")),
            size=sizes, added=time.time(), parent=parent, labels=labels_of(config),
            cache_key=cache_key)
        with self.db.transaction() as conn:
            self.records.add(conn, rec)
            for t in tags:
                self.records.set_tag(conn, t, image_id)
        out = self.records.get(image_id)
        assert out is not None
        return out

    # -- the build cache ----------------------------------------------------------------
    def read_config(self, image_id: str) -> dict[str, Any]:
        """An image's config JSON as a dict (its blob is named by the image ID)."""
        from ketch.fastjson import loads

        return loads(self.content.read(image_id))

    def new_layers(self, image_id: str) -> builtins.list[NewLayer]:
        """An image's layers as `commit` takes them: blobs from the manifest, diff IDs from
        the config (sizes are the layer store's business, so 0 here)."""
        from ketch.oci.model import Manifest

        rec = self.records.get(image_id)
        if rec is None:
            raise ImageNotFound(image_id)
        manifest = Manifest.parse(self.content.read(rec.manifest_digest))
        diff_ids = (self.read_config(image_id).get("rootfs") or {}).get("diff_ids") or []
        return [NewLayer(d.digest, d.media_type, d.size, diff, 0)
                for d, diff in zip(manifest.layers, diff_ids, strict=True)]

    def cached_config(self, parent: str | None, cache_key: str,
                      verified: set[str] | None = None
                      ) -> tuple[str, dict[str, Any]] | None:
        """The classic builder's cache, whose entries are images: the child of `parent`
        recorded under `cache_key`, as (image ID, config), if its config and every layer
        it stacks are in the store; None otherwise (a miss, so the step runs again).

        `verified` holds chain IDs this caller already found in the store; the ones found
        now are added, so a build checks each layer once, not once per step.
        """
        image_id = self.records.cached_child(parent, cache_key)
        if image_id is None:
            return None
        try:
            config = self.read_config(image_id)
        except (NotFound, ValueError):  # blob gone, or not a config: not a usable entry
            return None
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        known = verified if verified is not None else set()
        for chain in chain_ids(diff_ids):
            if chain not in known:
                if not self.layers.has(chain):
                    return None
                known.add(chain)
        return image_id, config

    # -- list / inspect ---------------------------------------------------------------
    def parse_filters(self, filters: dict[str, list[str]] | None,
                      allowed: set[str]) -> dict[str, list[str]]:
        filters = filters or {}
        for k in filters:
            if k not in allowed:
                raise InvalidArgument(f"invalid filter '{k}'")
        return filters

    def list(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
             container_count: bool = False) -> list[dict[str, Any]]:
        """`GET /images/json`: Docker's image summaries, newest first (see
        images.listing.summaries)."""
        from ketch.images.listing import summaries

        return summaries(self, all=all, filters=filters, container_count=container_count)

    def inspect(self, name: str) -> dict[str, Any]:
        from ketch.images.inspect import document

        return document(self, name)

    def history(self, name: str) -> builtins.list[dict[str, Any]]:
        """Docker's history rows, newest first (see images.inspect.history)."""
        from ketch.images.inspect import history

        return history(self, name)

    # -- tag / remove -----------------------------------------------------------------
    def tag(self, source: str, target: str) -> None:
        """`docker tag`: both names are checked before the image is looked up."""
        from ketch import reference

        for name in (source, target):
            try:
                if not hex_of_id(name, True):
                    reference.parse(name)
            except InvalidReference as e:
                raise InvalidReference(name, f'Error parsing reference: "{name}" is not a'
                                       f" valid repository/tag: {e.message}") from None
        ref = reference.parse(target)
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        rec = self.resolve(source)
        with self.db.transaction() as conn:
            self.records.set_tag(conn, str(ref), rec.id)
        self.event("tag", rec.id, familiar(str(ref)))

    def remove(self, name: str, *, force: bool = False,
               prune: bool = True) -> builtins.list[dict[str, str]]:
        """`docker rmi NAME` (see images.removal.remove)."""
        from ketch.images.removal import remove

        return remove(self, name, force=force, prune=prune)

    def prune(self, *, all: bool = False,
              filters: dict[str, builtins.list[str]] | None = None) -> PruneReport:
        """`docker image prune` (see images.removal.prune)."""
        from ketch.images.removal import prune

        return prune(self, all=all, filters=filters)

    def reserve(self, image_id: str, chains: builtins.list[str], name: str) -> None:
        """Called inside the transaction that records a new container of the image: the
        image and its unpacked layers must still be recorded (ImageNotFound if not)."""
        if self.records.get(image_id) is None or any(
                self.records.layer(c) is None for c in chains):
            raise ImageNotFound(name)

    def chains_in_use(self) -> set[str]:
        used = set(self.layer_users())
        for image_id in self.records.ids():
            try:
                used.update(self._chains.get(image_id) or self.chain_ids(
                    self.records.get(image_id)))  # type: ignore[arg-type]  # removed meanwhile: raises, skipped
            except Exception:  # a damaged record keeps what it may reference
                continue
        return used

    # -- garbage collection ---------------------------------------------------------------
    @contextmanager
    def writing(self) -> Iterator[None]:
        """Held (shared) by anything that writes blobs/layers before recording an image."""
        import fcntl

        fd = os.open(os.path.join(self.root, "gc.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            # Staging in tmp/ and blobs or layers not yet recorded: if this process is
            # killed, whoever finds the intent removes them (`recover`).
            with self.intents().held("images.write"):
                yield
        finally:
            os.close(fd)

    def recover(self, intent: Any) -> bool:
        """A writer was killed: remove its staging, and the blobs and layers it stored
        but never recorded in an image (gc). False when a live writer keeps gc out for
        now; the intent stays and a later command finishes it."""
        from ketch.store.tmpclean import clean_tmp

        clean_tmp(self.content.tmp)
        return self.gc()

    def gc(self, extra_chains: set[str] | None = None) -> bool:
        """Mark and sweep: remove blobs and layers no image or container references.

        Returns False when a writer held the lock and nothing was swept (the next gc
        will); the records are the truth, so skipping is always safe. A writer (pull,
        load, build) holds the lock for as long as it writes, so gc does not wait for
        it; the trash emptier takes the lock for a moment before each tree it deletes
        (its look for writers), and that moment is waited out (GC_LOCK_WAIT).
        """
        import fcntl

        fd = os.open(os.path.join(self.root, "gc.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            deadline = time.monotonic() + GC_LOCK_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(0.01)
            with self.intents().held("images.gc"):  # killed: the next gc finishes
                self._sweep(extra_chains)
            return True
        finally:
            os.close(fd)

    def _sweep(self, extra_chains: set[str] | None) -> None:
        from ketch.oci.model import Manifest
        from ketch.store.tmpclean import clean_tmp

        clean_tmp(self.content.tmp)
        keep_blobs: set[str] = set()
        keep_chains: set[str] = set(extra_chains or ())
        keep_chains |= self.layer_users()
        for r in self.records.all():
            keep_blobs.add(r.id)
            keep_blobs.add(r.manifest_digest)
            try:
                m = Manifest.parse(self.content.read(r.manifest_digest))
                keep_blobs.update(d.digest for d in m.layers)
                keep_chains.update(self.chain_ids(r))
            except Exception:  # a damaged record keeps what it may reference
                continue
        for lr in self.records.all_layers():
            if lr.chain_id not in keep_chains:
                self.layers.remove(lr.chain_id)
        # Directories a killed unpack left without a record.
        self.layers.sweep_unrecorded()
        for d in list(self.content.walk()):
            if d not in keep_blobs:
                self.content.delete(d)
        self.layers.empty_trash()

    # -- import / save / load ------------------------------------------------------------
    def import_tar(self, stream: Any, *, changes: Sequence[str] = (),
                   ref: str | None = None, message: str = "",
                   platform: str | None = None) -> ImageRecord:
        """`docker import`: one layer from a rootfs tarball (plain or compressed)."""
        from ketch.images.transfer import import_tar

        return import_tar(self, stream, changes=changes, ref=ref, message=message,
                          platform=platform)

    def add_layer_stream(self, stream: Any, parent: str | None) -> NewLayer:
        """Store an uncompressed layer tar stream as a blob and unpack it, in one read."""
        import tempfile
        from pathlib import Path

        from ketch.archive import extract
        from ketch.store.intents import owner_tag
        from ketch.store.topdir import ensure_top_dir
        from ketch.store.trash import delete_tree

        ensure_top_dir(self.content.tmp)  # the tree away from deleted ones (store/topdir.py)
        stage = Path(tempfile.mkdtemp(prefix=f"layer-{owner_tag()}-", dir=self.content.tmp))
        try:
            with self.content.writer() as w:
                # One read: the tee stores the tar as the blob while extract() unpacks it
                # and hashes it (the DiffID, which is also the blob's digest).
                stats = extract(_Tee(stream, w), stage / "diff", whiteouts="overlay")
                diff_id = stats.diff_id
                size = stats.uncompressed_size
                blob = w.commit(diff_id)
            chain = chain_of(parent, diff_id)
            self.layers.adopt_dir(stage / "diff", chain_id=chain, diff_id=diff_id,
                                  parent=parent, blob_digest=blob,
                                  media_type=MediaType.OCI_LAYER, blob_size=size,
                                  size=stats.content_size, tar_size=size)
        finally:
            delete_tree(str(stage))
        return NewLayer(blob, MediaType.OCI_LAYER, size, diff_id, stats.content_size)

    def add_layer_blob(self, blob_digest: str, media_type: str, diff_id: str, size: int,
                       parent: str | None) -> NewLayer:
        """Record a layer whose compressed blob is in the content store (unpacking it)."""
        chain = chain_of(parent, diff_id)
        lr = self.records.layer(chain)
        if lr is None or not self.layers.has(chain):
            lr = self.layers.unpack_blob(blob_digest, media_type, chain_id=chain,
                                         diff_id=diff_id, parent=parent)
        return NewLayer(blob_digest, media_type, self.content.size(blob_digest), diff_id,
                        lr.size if lr else size)

    def save(self, names: builtins.list[str], out: Any) -> None:
        """Write the images `names` select as one archive (see images.transfer.save)."""
        from ketch.images.transfer import save

        save(self, names, out)

    def save_to(self, names: builtins.list[str], path: str) -> None:
        """`save -o PATH`: the archive written whole under PATH or not at all; a PATH that
        could not take it is refused before any work."""
        from ketch.fdio import WholeFile, check_output_file

        check_output_file(path, "failed to save image")
        try:
            with WholeFile(path) as f:
                self.save(names, f)
        except OSError as e:
            raise InvalidArgument(f"failed to save image: {e.strerror or e}") from None

    def check_save_platform(self, names: builtins.list[str], platform: str) -> None:
        """`save --platform`: refuse images of another platform, before anything is
        written (see images.platforms)."""
        from ketch.images.platforms import require_platform

        require_platform(self, names, platform)

    @staticmethod
    def check_load_platform(platform: str) -> None:
        """`load --platform`: only the host's platform is loaded (see images.platforms)."""
        from ketch.images.platforms import require_host_platform

        require_host_platform(platform)

    def load(self, stream: Any, *, on_message: Callable[[str], None] | None = None,
             on_progress: Callable[[Any], None] | None = None) -> builtins.list[str]:
        """`docker load` (see images.transfer.load)."""
        from ketch.images.transfer import load

        return load(self, stream, on_message=on_message, on_progress=on_progress)

class _Tee:
    """Reads from `src` and writes every chunk to `sink` too."""

    def __init__(self, src: Any, sink: Any) -> None:
        self._src = src
        self._sink = sink

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        if data:
            self._sink.write(data)
        return data


def labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for w in wanted:
        if "=" in w:
            k, v = w.split("=", 1)
            if labels.get(k) != v:
                return False
        elif w not in labels:
            return False
    return True

