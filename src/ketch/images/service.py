"""The image service: every operation on local images, shared by the CLI and the API.

Results are Docker-shaped (the dicts `docker image ls/inspect` and the Engine API use), so
both front doors only format them.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ketch import reference
from ketch.errors import AmbiguousID, Conflict, ImageNotFound, InvalidArgument
from ketch.oci.digest import chain_ids, hex_of, sha256_bytes
from ketch.oci.media import MediaType
from ketch.oci.model import Descriptor, ImageConfig, Manifest, host_platform
from ketch.store.images import ImageRecord, LayerRecord, labels_of

if TYPE_CHECKING:
    from ketch.engine import Engine

_FULL_ID = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
_HEX_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{1,63})$")

# Container users of an image: returns (container id, running?) pairs. The container
# service registers itself here so images never import containers.
ImageUsers = Callable[[str], list[tuple[str, bool]]]


@dataclass
class NewLayer:
    """A layer blob already in the content store, with its unpacked tree in the layer store."""

    blob_digest: str
    media_type: str
    blob_size: int
    diff_id: str
    size: int


@dataclass
class PruneReport:
    deleted: list[dict[str, str]] = field(default_factory=list)
    space_reclaimed: int = 0


def now_rfc3339() -> str:
    from ketch.fmt.units import rfc3339nano

    return rfc3339nano(time.time())


def parse_created(s: str | None) -> float:
    """Seconds since the epoch from an RFC 3339 timestamp (nanoseconds allowed)."""
    if not s:
        return 0.0
    from datetime import datetime

    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$", s)
    if not m:
        return 0.0
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    frac = float("0" + m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


class ImageService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.records = engine.records
        self.content = engine.content
        self.layers = engine.layers
        self.db = engine.db
        self.users: ImageUsers = lambda image_id: []

    # -- lookup -------------------------------------------------------------------
    def resolve(self, name: str) -> ImageRecord:
        """Find an image by reference, full ID or unique ID prefix (Docker's order)."""
        if not name:
            raise ImageNotFound(name)
        m = _FULL_ID.match(name)
        if m:
            rec = self.records.get("sha256:" + m.group(1))
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
        m = _HEX_PREFIX.match(name)
        if m:
            ids = self.records.ids_with_prefix(m.group(1))
            if len(ids) > 1:
                raise AmbiguousID(name, "image")
            if ids:
                rec = self.records.get(ids[0])
                if rec:
                    return rec
        if ref is None and not m:
            # Not a valid name and not an ID: Docker reports the format problem.
            reference.parse(name)
        raise ImageNotFound(name)

    def get_config(self, rec: ImageRecord) -> ImageConfig:
        return ImageConfig.parse(self.content.read(rec.id))

    def get_manifest(self, rec: ImageRecord) -> Manifest:
        return Manifest.parse(self.content.read(rec.manifest_digest))

    def chain_ids(self, rec: ImageRecord) -> list[str]:
        return chain_ids(self.get_config(rec).diff_ids)

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
               parent: str | None = None, tags: list[str] = (),  # type: ignore[assignment]
               cache_key: str | None = None, created: float | None = None,
               config_bytes: bytes | None = None) -> ImageRecord:
        """Store config + manifest for layers already in the stores and record the image.

        `config_bytes` keeps an existing config byte for byte (its digest is the image ID).
        """
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

    def cached(self, parent: str | None, cache_key: str) -> ImageRecord | None:
        image_id = self.records.cached_child(parent, cache_key)
        if image_id is None:
            return None
        rec = self.records.get(image_id)
        if rec is None:
            return None
        for chain in self.chain_ids(rec):
            if not self.layers.has(chain):
                return None
        return rec

    # -- list / inspect ---------------------------------------------------------------
    def _parse_filters(self, filters: dict[str, list[str]] | None,
                       allowed: set[str]) -> dict[str, list[str]]:
        filters = filters or {}
        for k in filters:
            if k not in allowed:
                raise InvalidArgument(f"invalid filter '{k}'")
        return filters

    def list(self, *, all: bool = False,
             filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        filters = self._parse_filters(
            filters, {"dangling", "label", "reference", "before", "since", "until"})
        records = self.records.all()
        has_children = {r.parent for r in records if r.parent}
        before = since = None
        if "before" in filters:
            before = self.resolve(filters["before"][-1]).created
        if "since" in filters:
            since = self.resolve(filters["since"][-1]).created
        out = []
        for r in records:
            dangling = not r.tags and not r.digests
            if "dangling" in filters:
                want = filters["dangling"][-1].lower()
                if want not in ("true", "false", "1", "0"):
                    raise InvalidArgument(
                        f"invalid filter 'dangling={want}': expected true or false")
                if (want in ("true", "1")) != (dangling and r.id not in has_children):
                    continue
            elif not all and dangling and r.id in has_children:
                continue  # intermediate build images are shown only with -a
            if not _labels_match(r.labels, filters.get("label", [])):
                continue
            if before is not None and r.created >= before:
                continue
            if since is not None and r.created <= since:
                continue
            if "until" in filters:
                from ketch.fmt.units import parse_timestamp

                if r.created > parse_timestamp(filters["until"][-1], time.time()):
                    continue
            tags = [reference.parse(t).familiar() for t in r.tags]
            if "reference" in filters:
                pats = filters["reference"]
                tags = [t for t in tags if any(_ref_match(p, t) for p in pats)]
                if not tags:
                    continue
            out.append({
                "Id": r.id,
                "ParentId": r.parent or "",
                "RepoTags": tags,
                "RepoDigests": [_familiar_digest(d) for d in r.digests],
                "Created": int(r.created),
                "Size": r.size,
                "SharedSize": -1,
                "VirtualSize": r.size,
                "Labels": r.labels or None,
                "Containers": len(self.users(r.id)),
            })
        return out

    def inspect(self, name: str) -> dict[str, Any]:
        rec = self.resolve(name)
        cfg = self.get_config(rec).raw
        c = cfg.get("config") or {}
        chains = chain_ids(self.get_config(rec).diff_ids)
        lowers = [str(self.layers.path(ch)) for ch in reversed(chains)]
        config = {
            "Hostname": "", "Domainname": "", "User": c.get("User", ""),
            "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
            "ExposedPorts": c.get("ExposedPorts"), "Tty": False, "OpenStdin": False,
            "StdinOnce": False, "Env": c.get("Env"), "Cmd": c.get("Cmd"),
            "Healthcheck": c.get("Healthcheck"), "ArgsEscaped": c.get("ArgsEscaped"),
            "Image": "", "Volumes": c.get("Volumes"), "WorkingDir": c.get("WorkingDir", ""),
            "Entrypoint": c.get("Entrypoint"), "OnBuild": c.get("OnBuild"),
            "Labels": c.get("Labels"), "StopSignal": c.get("StopSignal"),
            "Shell": c.get("Shell"),
        }
        config = {k: v for k, v in config.items()
                  if v is not None or k in ("Cmd", "Entrypoint", "Env", "Labels", "OnBuild",
                                            "Volumes")}
        return {
            "Id": rec.id,
            "RepoTags": [reference.parse(t).familiar() for t in rec.tags],
            "RepoDigests": [_familiar_digest(d) for d in rec.digests],
            "Parent": rec.parent or "",
            "Comment": _last_comment(cfg),
            "Created": cfg.get("created") or "",
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": config,
            "Architecture": cfg.get("architecture", ""),
            "Variant": cfg.get("variant"),
            "Os": cfg.get("os", ""),
            "Size": rec.size,
            "VirtualSize": rec.size,
            "GraphDriver": {"Name": "overlay2", "Data": {
                "LowerDir": ":".join(lowers[1:]) if len(lowers) > 1 else None,
                "MergedDir": None, "UpperDir": lowers[0] if lowers else None,
                "WorkDir": None}},
            "RootFS": {"Type": "layers", "Layers": self.get_config(rec).diff_ids},
            "Metadata": {"LastTagTime": ""},
        }

    def history(self, name: str) -> list[dict[str, Any]]:
        rec = self.resolve(name)
        cfg = self.get_config(rec)
        diff_ids = cfg.diff_ids
        chains = chain_ids(diff_ids)
        sizes = []
        for ch in chains:
            lr = self.records.layer(ch)
            sizes.append(lr.size if lr else 0)
        # Image IDs for history rows come from the parent chain of locally built images.
        ids: list[str | None] = []
        cur: ImageRecord | None = rec
        while cur is not None:
            ids.append(cur.id)
            cur = self.records.get(cur.parent) if cur.parent else None
        rows = []
        layer_i = len(sizes) - 1
        hist = cfg.history or [{"created": cfg.created, "created_by": ""}] * len(sizes)
        for i, h in enumerate(reversed(hist)):
            empty = bool(h.get("empty_layer"))
            size = 0
            if not empty and layer_i >= 0:
                size = sizes[layer_i]
                layer_i -= 1
            rows.append({
                "Id": (ids[i] if i < len(ids) and ids[i] else "<missing>"),
                "Created": int(parse_created(h.get("created"))),
                "CreatedBy": h.get("created_by", ""),
                "Tags": [reference.parse(t).familiar() for t in rec.tags] if i == 0 else None,
                "Size": size,
                "Comment": h.get("comment", ""),
            })
        return rows

    # -- tag / remove -----------------------------------------------------------------
    def tag(self, source: str, target: str) -> None:
        rec = self.resolve(source)
        ref = reference.parse(target)
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        with self.db.transaction() as conn:
            self.records.set_tag(conn, str(ref), rec.id)

    def remove(self, name: str, *, force: bool = False,
               prune: bool = True) -> list[dict[str, str]]:
        """Docker's `rmi` for one name: untag, and delete when nothing references it."""
        rec = self.resolve(name)
        out: list[dict[str, str]] = []
        ref_given = self._is_reference_to(name, rec)
        users = self.users(rec.id)
        running = [cid for cid, run in users if run]
        if ref_given:
            full = str(reference.parse(name))
            key = full if not reference.parse(name).digest else None
            if len(rec.tags) + len(rec.digests) == 1 and users and not force:
                raise Conflict(
                    f'conflict: unable to remove repository reference "{name}" (must force)'
                    f" - container {users[0][0][:12]} is using its referenced image"
                    f" {rec.short_id}")
            with self.db.transaction() as conn:
                if key:
                    self.records.remove_tag(conn, key)
                    self.records.remove_repo_digests(
                        conn, rec.id, reference.parse(name).repository)
                else:
                    conn.execute("DELETE FROM repo_digests WHERE name=?", (full,))
            out.append({"Untagged": reference.parse(name).familiar()})
            rec = self.records.get(rec.id) or rec
            if rec.tags or rec.digests:
                return out
        else:
            if len(rec.tags) > 1 and not force:
                raise Conflict(
                    f"conflict: unable to delete {rec.short_id} (must be forced) - image is"
                    " referenced in multiple repositories")
        if running:
            raise Conflict(
                f"conflict: unable to delete {rec.short_id} (cannot be forced) - image is"
                f" being used by running container {running[0][:12]}")
        if users and not force:
            raise Conflict(
                f"conflict: unable to delete {rec.short_id} (must be forced) - image is being"
                f" used by stopped container {users[0][0][:12]}")
        if self.records.children(rec.id):
            if ref_given:
                return out
            raise Conflict(
                f"conflict: unable to delete {rec.short_id} (cannot be forced) - image has"
                " dependent child images")
        for t in rec.tags:
            out.append({"Untagged": reference.parse(t).familiar()})
        for d in rec.digests:
            out.append({"Untagged": _familiar_digest(d)})
        out.extend(self._delete_chain(rec, prune))
        self.gc()
        return out

    def _is_reference_to(self, name: str, rec: ImageRecord) -> bool:
        if _FULL_ID.match(name):
            return False
        try:
            ref = reference.parse(name)
        except InvalidArgument:
            return False
        if ref.digest:
            return f"{ref.repository}@{ref.digest}" in rec.digests
        return str(ref) in rec.tags

    def _delete_chain(self, rec: ImageRecord, prune: bool) -> list[dict[str, str]]:
        out = []
        cur: ImageRecord | None = rec
        while cur is not None:
            with self.db.transaction() as conn:
                self.records.delete(conn, cur.id)
            out.append({"Deleted": cur.id})
            if not prune or not cur.parent:
                break
            parent = self.records.get(cur.parent)
            if (parent is None or parent.tags or parent.digests
                    or self.records.children(parent.id) or self.users(parent.id)):
                break
            cur = parent
        return out

    def prune(self, *, all: bool = False,
              filters: dict[str, list[str]] | None = None) -> PruneReport:
        filters = self._parse_filters(filters, {"label", "label!", "until", "dangling"})
        report = PruneReport()
        if "dangling" in filters and filters["dangling"][-1].lower() in ("false", "0"):
            all = True
        before_bytes = self._disk_bytes()
        changed = True
        while changed:  # deleting a child can make its parent prunable
            changed = False
            records = self.records.all()
            has_children = {r.parent for r in records if r.parent}
            for r in records:
                if r.id in has_children or self.users(r.id):
                    continue
                if not all and (r.tags or r.digests):
                    continue
                if not _labels_match(r.labels, filters.get("label", [])):
                    continue
                if filters.get("label!") and _labels_match(r.labels, filters["label!"]):
                    continue
                if "until" in filters:
                    from ketch.fmt.units import parse_timestamp

                    if r.created >= parse_timestamp(filters["until"][-1], time.time()):
                        continue
                for t in r.tags:
                    report.deleted.append({"Untagged": reference.parse(t).familiar()})
                for d in r.digests:
                    report.deleted.append({"Untagged": _familiar_digest(d)})
                with self.db.transaction() as conn:
                    self.records.delete(conn, r.id)
                report.deleted.append({"Deleted": r.id})
                changed = True
        self.gc()
        report.space_reclaimed = max(0, before_bytes - self._disk_bytes())
        return report

    def _disk_bytes(self) -> int:
        return sum(layer.size for layer in self.records.all_layers())

    # -- garbage collection ---------------------------------------------------------------
    @contextmanager
    def writing(self) -> Iterator[None]:
        """Held (shared) by anything that writes blobs/layers before recording an image."""
        import fcntl

        fd = os.open(self.engine.root / "gc.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def gc(self, extra_chains: set[str] | None = None) -> None:
        """Mark and sweep: remove blobs and layers no image or container references."""
        import fcntl

        fd = os.open(self.engine.root / "gc.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a writer is busy; the next gc will sweep
            from ketch.store.tmpclean import clean_tmp

            clean_tmp(self.content.tmp)
            keep_blobs: set[str] = set()
            keep_chains: set[str] = set(extra_chains or ())
            keep_chains |= self.engine.layer_users()
            for r in self.records.all():
                keep_blobs.add(r.id)
                keep_blobs.add(r.manifest_digest)
                try:
                    m = Manifest.parse(self.content.read(r.manifest_digest))
                    keep_blobs.update(d.digest for d in m.layers)
                    keep_chains.update(chain_ids(self.get_config(r).diff_ids))
                except Exception:  # a damaged record keeps what it may reference
                    continue
            for lr in self.records.all_layers():
                if lr.chain_id not in keep_chains:
                    self.layers.remove(lr.chain_id)
            for d in list(self.content.walk()):
                if d not in keep_blobs:
                    self.content.delete(d)
        finally:
            os.close(fd)

    # -- import / save / load ------------------------------------------------------------
    def import_tar(self, stream: Any, *, changes: list[str] = (),  # type: ignore[assignment]
                   ref: str | None = None, message: str = "",
                   platform: str | None = None) -> ImageRecord:
        """`docker import`: one layer from a rootfs tarball (plain or compressed)."""
        from ketch.archive import open_decompressed
        from ketch.images.changes import apply_changes

        target = reference.parse(ref) if ref else None
        if target is not None and target.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        plat = host_platform()
        config: dict[str, Any] = {
            "architecture": plat.architecture, "os": plat.os, "created": now_rfc3339(),
            "config": {}, "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{"created": None, "created_by": "", "comment": message
                         or "Imported from -"}],
        }
        config["history"][0]["created"] = config["created"]
        apply_changes(config, changes)
        with self.writing():
            layer = self.add_layer_stream(open_decompressed(stream), parent=None)
            config["rootfs"]["diff_ids"] = [layer.diff_id]
            return self.commit(config, [layer], tags=[str(target)] if target else [])

    def add_layer_stream(self, stream: Any, parent: str | None) -> NewLayer:
        """Store an uncompressed layer tar stream as a blob and unpack it, in one read."""
        import shutil
        import tempfile
        from pathlib import Path

        from ketch.archive import extract
        from ketch.layers.store import HashingReader

        stage = Path(tempfile.mkdtemp(prefix=f"layer-{os.getpid()}-", dir=self.content.tmp))
        try:
            with self.content.writer() as w:
                reader = HashingReader(_Tee(stream, w))
                (stage / "diff").mkdir()
                extract(reader, stage / "diff", whiteouts="overlay")
                reader.drain()
                diff_id = reader.digest
                size = reader.size
                blob = w.commit(diff_id)
            chain = diff_id if parent is None else sha256_bytes(f"{parent} {diff_id}".encode())
            self.layers.adopt_dir(stage / "diff", chain_id=chain, diff_id=diff_id,
                                  parent=parent, blob_digest=blob,
                                  media_type=MediaType.OCI_LAYER, blob_size=size, size=size)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return NewLayer(blob, MediaType.OCI_LAYER, size, diff_id, size)

    def add_layer_blob(self, blob_digest: str, media_type: str, diff_id: str, size: int,
                       parent: str | None) -> NewLayer:
        """Record a layer whose compressed blob is in the content store (unpacking it)."""
        chain = diff_id if parent is None else sha256_bytes(f"{parent} {diff_id}".encode())
        lr = self.records.layer(chain)
        if lr is None or not self.layers.has(chain):
            lr = self.layers.unpack_blob(blob_digest, media_type, chain_id=chain,
                                         diff_id=diff_id, parent=parent)
        return NewLayer(blob_digest, media_type, self.content.size(blob_digest), diff_id,
                        lr.size if lr else size)

    def save(self, names: list[str], out: Any) -> None:
        from ketch.images.archive import write_image_archive

        if not names:
            raise InvalidArgument("docker save requires at least one image name")
        entries = []
        for n in names:
            rec = self.resolve(n)
            tags: list[str] = []
            if not _FULL_ID.match(n) and not _HEX_PREFIX.match(n) or self._is_reference_to(
                    n, rec):
                try:
                    r = reference.parse(n)
                    if not r.digest and str(r) in rec.tags:
                        tags = [str(r)]
                    elif not r.digest and reference.parse(n).tag:
                        # a repository name: every tag of it on this image
                        tags = [t for t in rec.tags if t.startswith(r.repository + ":")]
                except InvalidArgument:
                    pass
            entries.append((rec, tags))
        write_image_archive(self, entries, out)

    def load(self, stream: Any, *, on_message: Callable[[str], None] | None = None
             ) -> list[str]:
        from ketch.images.archive import read_image_archive

        with self.writing():
            return read_image_archive(self, stream, on_message or (lambda s: None))


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


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for w in wanted:
        if "=" in w:
            k, v = w.split("=", 1)
            if labels.get(k) != v:
                return False
        elif w not in labels:
            return False
    return True


def _ref_match(pattern: str, familiar_tag: str) -> bool:
    name, _, tag = familiar_tag.rpartition(":")
    if ":" in pattern:
        return fnmatch.fnmatchcase(familiar_tag, pattern)
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(familiar_tag, pattern)


def _familiar_digest(name: str) -> str:
    repo, _, digest = name.partition("@")
    try:
        return reference.parse(repo, default_tag=None).familiar_name + "@" + digest
    except InvalidArgument:
        return name


def _last_comment(cfg: dict[str, Any]) -> str:
    hist = cfg.get("history") or []
    return (hist[-1].get("comment") or "") if hist else ""


def layer_record_size(rec: LayerRecord | None) -> int:
    return rec.size if rec else 0


def short(image_id: str) -> str:
    return hex_of(image_id)[:12]
