"""The image service: every operation on local images, shared by the CLI and the API.

Results are Docker-shaped (the dicts `docker image ls/inspect` and the Engine API use), so
both front doors only format them.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ketch.errors import (
    AmbiguousID,
    Conflict,
    ImageNotFound,
    InvalidArgument,
    InvalidReference,
    KetchError,
    NotFound,
)
from ketch.oci.digest import chain_ids, chain_of, hex_of
from ketch.oci.media import MediaType
from ketch.reference import familiar
from ketch.store.images import ImageRecord, labels_of
from ketch.values import field, value

# `typing` and `dataclasses` are not imported at run time: a cached `build` loads this
# module, and each costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Callable
    from pathlib import Path
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

_HEX = frozenset("0123456789abcdef")


def _hex_of_id(name: str, full: bool) -> str | None:
    """The hex of `[sha256:]<hex>`: 64 digits when `full`, else 1 to 63; None otherwise."""
    h = name[7:] if name.startswith("sha256:") else name
    if not h or not _HEX.issuperset(h) or (len(h) == 64) != full or len(h) > 64:
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
    if not s:
        return 0.0
    import re
    from datetime import datetime

    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$", s)
    if not m:
        return 0.0
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    frac = float("0" + m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


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

    def __init__(self, root: Path, db: Database, records: ImageRecords, content: ContentStore,
                 layers: LayerStore, *,
                 users: ImageUsers | None = None,
                 layer_users: Callable[[], set[str]] | None = None,
                 intents: Callable[[], Intents] | None = None) -> None:
        self.root = root
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

        emit(str(self.root), "image", action, actor_id, {"name": name})

    # -- lookup -------------------------------------------------------------------
    def resolve(self, name: str) -> ImageRecord:
        """Find an image by reference, full ID or unique ID prefix (Docker's order)."""
        from ketch import reference

        if not name:
            raise ImageNotFound(name)
        full = _hex_of_id(name, True)
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
        prefix = _hex_of_id(name, False)
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
        raise ImageNotFound(name)

    def get_config(self, rec: ImageRecord) -> ImageConfig:
        from ketch.oci.model import ImageConfig

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
               parent: str | None = None, tags: list[str] = (),  # type: ignore[assignment]
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
    def _parse_filters(self, filters: dict[str, list[str]] | None,
                       allowed: set[str]) -> dict[str, list[str]]:
        filters = filters or {}
        for k in filters:
            if k not in allowed:
                raise InvalidArgument(f"invalid filter '{k}'")
        return filters

    def list(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
             container_count: bool = False) -> list[dict[str, Any]]:
        """`GET /images/json`: Docker's image summaries, newest first.

        Containers and SharedSize stay -1 ("not computed") unless `container_count` is
        set, as in Docker: listing images must not pay for a scan of every container.
        """
        filters = self._parse_filters(
            filters, {"dangling", "label", "reference", "before", "since", "until"})
        dangling_only = False
        if "dangling" in filters:
            values = set(filters["dangling"])
            if values == {"true"}:
                dangling_only = True
            elif values != {"false"}:
                raise InvalidArgument(
                    f"invalid filter 'dangling=[{' '.join(filters['dangling'])}]'")
        before = since = until = None
        for v in filters.get("before", []):
            before = self.resolve(v).created
        for v in filters.get("since", []):
            since = self.resolve(v).created
        if "until" in filters:
            from ketch.fmt.units import parse_timestamp

            until = parse_timestamp(filters["until"][-1], time.time())
        patterns = [_compile_path_pattern(p) for p in filters.get("reference", [])]
        records = self.records.all()
        has_children = {r.parent for r in records if r.parent}
        users: dict[str, int] = {}
        shared: dict[str, int] = {}
        if container_count:
            for r in records:
                users[r.id] = len(self.users(r.id))
            shared = self._shared_sizes(records)
        out = []
        for r in records:
            if dangling_only and r.id in has_children:
                continue
            if before is not None and r.created >= before:
                continue
            if since is not None and r.created <= since:
                continue
            if until is not None and r.created > until:
                continue
            if "label" in filters and not _labels_match(r.labels, filters["label"]):
                continue
            # moby lists references in lexical order of their familiar form.
            tags = sorted(familiar(t) for t in r.tags)
            digests = sorted(familiar(d) for d in r.digests)
            if patterns:
                tags = [t for t in tags if _ref_matches(patterns, t)]
                digests = [d for d in digests if _ref_matches(patterns, d)]
            if dangling_only and tags:
                continue
            if not tags and not digests:
                if ((not all and r.id in has_children)
                        or ("dangling" in filters and not dangling_only) or patterns):
                    continue
            out.append({
                "Containers": users.get(r.id, -1),
                "Created": int(r.created),
                "Id": r.id,
                "Labels": r.labels or None,
                "ParentId": r.parent or "",
                "RepoDigests": digests,
                "RepoTags": tags,
                "SharedSize": shared.get(r.id, -1),
                "Size": r.size,
                "VirtualSize": r.size,
            })
        return out

    def _shared_sizes(self, records: builtins.list[ImageRecord]) -> dict[str, int]:
        """Per image, the size of its layers that another image uses too."""
        layer_sizes = {lr.chain_id: lr.size for lr in self.records.all_layers()}
        chains_of: dict[str, builtins.list[str]] = {}
        refs: dict[str, int] = {}
        for r in records:
            try:
                chains_of[r.id] = self.chain_ids(r)
            except Exception:  # a damaged record shares nothing
                chains_of[r.id] = []
            for c in chains_of[r.id]:
                refs[c] = refs.get(c, 0) + 1
        return {image_id: sum(layer_sizes.get(c, 0) for c in chains if refs[c] > 1)
                for image_id, chains in chains_of.items()}

    def inspect(self, name: str) -> dict[str, Any]:
        from ketch.fmt.units import rfc3339nano

        rec = self.resolve(name)
        image_config = self.get_config(rec)
        cfg = image_config.raw
        c = cfg.get("config") or {}
        diff_ids = image_config.diff_ids
        lowers = [str(self.layers.path(ch)) for ch in reversed(chain_ids(diff_ids))]
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
        # Docker's container.Config marshals these as null; the rest are omitempty.
        config = {k: v for k, v in config.items()
                  if v is not None or k in ("Cmd", "Entrypoint", "Env", "Labels", "OnBuild",
                                            "Volumes")}
        graph: dict[str, str] = {}
        if lowers:
            graph["UpperDir"] = lowers[0]
            if len(lowers) > 1:
                graph["LowerDir"] = ":".join(lowers[1:])
        tagged = self.records.last_tag_time(rec.id)
        out: dict[str, Any] = {
            "Id": rec.id,
            "RepoTags": sorted(familiar(t) for t in rec.tags),
            "RepoDigests": sorted(familiar(d) for d in rec.digests),
            "Parent": rec.parent or "",
            "Comment": cfg.get("comment") or "",
            "Created": cfg.get("created") or "",
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": config,
            "Architecture": cfg.get("architecture", ""),
            "Variant": cfg.get("variant"),
            "Os": cfg.get("os", ""),
            "Size": rec.size,
            "GraphDriver": {"Name": "overlay2", "Data": graph},
            "RootFS": {"Type": "layers", "Layers": diff_ids},
            "Metadata": {"LastTagTime": rfc3339nano(tagged) if tagged
                         else "0001-01-01T00:00:00Z"},
        }
        if not out["Variant"]:
            del out["Variant"]
        return out

    def history(self, name: str) -> builtins.list[dict[str, Any]]:
        """Docker's history: one row per history entry, newest first; rows get image IDs
        (and those images' tags) from the local parent chain, the rest say <missing>."""
        rec = self.resolve(name)
        cfg = self.get_config(rec)
        sizes = []
        for ch in chain_ids(cfg.diff_ids):
            lr = self.records.layer(ch)
            sizes.append(lr.size if lr else 0)
        rows: list[dict[str, Any]] = []
        layer_i = 0
        for h in cfg.history:
            size = 0
            if not h.get("empty_layer"):
                if layer_i < len(sizes):
                    size = sizes[layer_i]
                layer_i += 1
            rows.insert(0, {"Id": "<missing>", "Created": int(parse_created(h.get("created"))),
                            "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                            "Comment": h.get("comment", "")})
        cur: ImageRecord | None = rec
        for row in rows:
            if cur is None:
                break
            row["Id"] = cur.id
            row["Tags"] = [familiar(t) for t in cur.tags] or None
            cur = self.records.get(cur.parent) if cur.parent else None
        return rows

    # -- tag / remove -----------------------------------------------------------------
    def tag(self, source: str, target: str) -> None:
        """`docker tag`: both names are checked before the image is looked up."""
        from ketch import reference

        for name in (source, target):
            try:
                if not _hex_of_id(name, True):
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
        """`docker rmi NAME`: moby's ImageDelete, rule for rule.

        A name untags; the image itself goes only when no other tag or digest is left
        (and then quietly: a conflict just keeps it). An ID deletes, refusing when the
        image has child images or a running container (even with -f), or, without -f,
        a stopped container or tags in several repositories.
        """
        records = self._remove(name, force=force, prune=prune)
        self.gc()
        return records

    def _remove(self, name: str, *, force: bool, prune: bool) -> builtins.list[dict[str, str]]:
        from ketch import reference

        rec = self.resolve(name)
        records: list[dict[str, str]] = []
        refs = sorted(rec.tags + rec.digests, key=familiar)  # moby's lexical order
        removed_repo_ref = False
        if not _is_id_prefix(rec.id, name):
            ref = reference.parse(name)
            key = f"{ref.repository}@{ref.digest}" if ref.digest else str(ref)
            with self.db.transaction() as conn:
                # checked in the transaction that untags: a container created meanwhile
                # (its record reserves the image) is seen, never slipped past
                cur = self.records.get(rec.id) or rec
                if not force and _is_single_reference(cur.tags, cur.digests):
                    users = self.users(rec.id)
                    if users:
                        raise Conflict(
                            f'conflict: unable to remove repository reference "{name}"'
                            f" (must force) - container {users[0][0][:12]} is using its"
                            f" referenced image {rec.short_id}")
                if ref.digest:
                    self.records.remove_digest(conn, key)
                else:
                    self.records.remove_tag(conn, key)
            records.append({"Untagged": familiar(key)})
            self.event("untag", rec.id, familiar(key))
            rec = self.records.get(rec.id) or rec
            if not ref.digest and not any(_repo_of(t) == ref.repository for t in rec.tags):
                # The last tag of a repository takes that repository's digests with it.
                for d in rec.digests:
                    if _repo_of(d) == ref.repository:
                        with self.db.transaction() as conn:
                            self.records.remove_digest(conn, d)
                        records.append({"Untagged": familiar(d)})
                        self.event("untag", rec.id, familiar(d))
                rec = self.records.get(rec.id) or rec
            if rec.tags or rec.digests:
                return records
            removed_repo_ref = True
        elif _is_single_reference(rec.tags, rec.digests):
            conflict = self._conflict(rec, hard=True, soft=not force, active_ref=False)
            if conflict is not None:
                raise conflict
            with self.db.transaction() as conn:
                for t in rec.tags:
                    self.records.remove_tag(conn, t)
                for d in rec.digests:
                    self.records.remove_digest(conn, d)
            records.extend({"Untagged": familiar(r)} for r in refs)
            for r in refs:
                self.event("untag", rec.id, familiar(r))
            rec = self.records.get(rec.id) or rec
        self._delete_image(rec, records, force=force, prune=prune, quiet=removed_repo_ref)
        return records

    def _conflict(self, rec: ImageRecord, *, hard: bool, soft: bool,
                  active_ref: bool = True) -> _DeleteConflict | None:
        if hard and self.records.children(rec.id):
            return _DeleteConflict(rec, "image has dependent child images", hard=True)
        users = self.users(rec.id) if hard or soft else []
        if hard:
            running = [cid for cid, run in users if run]
            if running:
                return _DeleteConflict(
                    rec, f"image is being used by running container {running[0][:12]}",
                    hard=True, used=True)
        if soft and active_ref and (rec.tags or rec.digests):
            return _DeleteConflict(rec, "image is referenced in multiple repositories")
        if soft:
            stopped = [cid for cid, run in users if not run]
            if stopped:
                return _DeleteConflict(
                    rec, f"image is being used by stopped container {stopped[0][:12]}",
                    used=True)
        return None

    def _delete_image(self, rec: ImageRecord, records: builtins.list[dict[str, str]], *,
                      force: bool, prune: bool, quiet: bool) -> None:
        conflict = self._conflict(rec, hard=True, soft=not force)
        if conflict is not None:
            dangling = not (rec.tags or rec.digests or self.records.children(rec.id))
            if quiet and (not dangling or conflict.used):
                return
            raise conflict
        try:
            chains = self.chain_ids(rec)
        except Exception:  # a damaged image can still be deleted
            chains = []
        with self.db.transaction() as conn:
            # again inside the transaction: a container created since the check above
            # holds the image (its record is the reservation, see `reserve`)
            conflict = self._conflict(rec, hard=True, soft=not force)
            if conflict is not None:
                if quiet and conflict.used:
                    return
                raise conflict
            self.records.delete(conn, rec.id)
        for r in sorted(rec.tags + rec.digests, key=familiar):
            records.append({"Untagged": familiar(r)})
            self.event("untag", rec.id, familiar(r))
        records.append({"Deleted": rec.id})
        self.event("delete", rec.id, rec.id)
        # Report the layers nothing references any more, topmost first, as Docker does;
        # the sweep that removes them from disk is gc().
        if chains:
            in_use = self._chains_in_use()
            for ch in reversed(chains):
                if ch in in_use:
                    break
                if self.records.layer(ch) is not None:
                    records.append({"Deleted": ch})
        if prune and rec.parent:
            parent = self.records.get(rec.parent)
            if parent is not None:
                self._delete_image(parent, records, force=False, prune=True, quiet=True)

    def reserve(self, image_id: str, chains: builtins.list[str], name: str) -> None:
        """Called inside the transaction that records a new container of the image: the
        image and its unpacked layers must still be recorded (ImageNotFound if not)."""
        if self.records.get(image_id) is None or any(
                self.records.layer(c) is None for c in chains):
            raise ImageNotFound(name)

    def _chains_in_use(self) -> set[str]:
        used = set(self.layer_users())
        for image_id in self.records.ids():
            try:
                used.update(self._chains.get(image_id) or self.chain_ids(
                    self.records.get(image_id)))  # type: ignore[arg-type]
            except Exception:  # a damaged record keeps what it may reference
                continue
        return used

    def prune(self, *, all: bool = False,
              filters: dict[str, builtins.list[str]] | None = None) -> PruneReport:
        """`docker image prune`: moby's ImagePrune over `_remove`, never forced."""
        filters = self._parse_filters(filters, {"label", "label!", "until", "dangling"})
        dangling_only = not all
        if "dangling" in filters:
            value = filters["dangling"][-1].lower()
            if value not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={value}'")
            dangling_only = value in ("true", "1")
        until = None
        if "until" in filters:
            if len(filters["until"]) > 1:
                raise InvalidArgument("more than one until filter specified")
            from ketch.fmt.units import parse_timestamp

            until = parse_timestamp(filters["until"][0], time.time())
        report = PruneReport()
        layer_sizes = {lr.chain_id: lr.size for lr in self.records.all_layers()}
        records = self.records.all()
        has_children = {r.parent for r in records if r.parent}
        candidates = []
        for r in records:
            if dangling_only and r.id in has_children:
                continue
            if not (r.tags or r.digests) and r.id in has_children:
                continue
            if until is not None and r.created > until:
                continue
            if not _labels_match(r.labels, filters.get("label", [])):
                continue
            if filters.get("label!") and _labels_match(r.labels, filters["label!"]):
                continue
            if self.users(r.id):
                continue  # moby's ImagePrune: an image a container uses keeps every tag
            candidates.append(r.id)
        for image_id in candidates:
            cur = self.records.get(image_id)
            if cur is None:
                continue  # already pruned as the parent of another
            refs = cur.tags + cur.digests
            names = refs if refs else [hex_of(cur.id)]
            if refs and dangling_only and cur.tags:
                continue
            for n in names:
                try:
                    report.deleted.extend(self._remove(n, force=False, prune=True))
                except (Conflict, ImageNotFound):
                    continue
        self.gc()
        report.space_reclaimed = sum(layer_sizes.get(d["Deleted"], 0)
                                     for d in report.deleted if "Deleted" in d)
        return report

    # -- garbage collection ---------------------------------------------------------------
    @contextmanager
    def writing(self) -> Iterator[None]:
        """Held (shared) by anything that writes blobs/layers before recording an image."""
        import fcntl

        fd = os.open(self.root / "gc.lock", os.O_CREAT | os.O_RDWR, 0o600)
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
        will); the records are the truth, so skipping is always safe.
        """
        import fcntl

        fd = os.open(self.root / "gc.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
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

    # -- import / save / load ------------------------------------------------------------
    def import_tar(self, stream: Any, *, changes: builtins.list[str] = (),  # type: ignore[assignment]
                   ref: str | None = None, message: str = "",
                   platform: str | None = None) -> ImageRecord:
        """`docker import`: one layer from a rootfs tarball (plain or compressed)."""
        from ketch import reference
        from ketch.archive import open_decompressed
        from ketch.images.changes import apply_changes
        from ketch.oci.model import host_platform

        target = reference.parse(ref) if ref else None
        if target is not None and target.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        plat = host_platform()
        created = now_rfc3339()
        # moby's ImportImage: the message is the image's comment and its one history entry's
        comment = message or "Imported from -"
        config: dict[str, Any] = {
            "architecture": plat.architecture, "os": plat.os, "created": created,
            "comment": comment, "config": {}, "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{"created": created, "comment": comment}],
        }
        apply_changes(config, changes)
        with self.writing():
            layer = self.add_layer_stream(open_decompressed(stream), parent=None)
            config["rootfs"]["diff_ids"] = [layer.diff_id]
            rec = self.commit(config, [layer], tags=[str(target)] if target else [])
        self.event("import", rec.id, familiar(str(target)) if target else rec.id)
        return rec

    def add_layer_stream(self, stream: Any, parent: str | None) -> NewLayer:
        """Store an uncompressed layer tar stream as a blob and unpack it, in one read."""
        import shutil
        import tempfile
        from pathlib import Path

        from ketch.archive import extract
        from ketch.store.intents import owner_tag

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
                                  media_type=MediaType.OCI_LAYER, blob_size=size, size=size)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return NewLayer(blob, MediaType.OCI_LAYER, size, diff_id, size)

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
        """Write the images `names` select as one archive (moby's tarexport parseNames):
        `repo` takes every tag of that repository, `repo:tag` that tag, an ID or digest
        the image without a name."""
        from ketch import reference
        from ketch.images.archive import write_image_archive

        if not names:
            raise InvalidArgument("docker save requires at least one image name")
        selected: dict[str, tuple[ImageRecord, builtins.list[str]]] = {}

        def add(rec: ImageRecord, tag: str | None) -> None:
            entry = selected.setdefault(rec.id, (rec, []))
            if tag and tag not in entry[1]:
                entry[1].append(tag)

        for n in names:
            if _hex_of_id(n, True):
                add(self.resolve(n), None)
                continue
            ref = reference.parse(n, default_tag=None)
            if ref.digest or ref.familiar_name == "sha256":
                # `sha256:<prefix>` parses as a name; it is an ID, as moby reads it.
                add(self.resolve(n), None)
            elif ref.tag is None:
                tagged = self.records.tags_in_repository(ref.repository)
                for tag, image_id in tagged:
                    rec = self.records.get(image_id)
                    if rec is not None:
                        add(rec, tag)
                if not tagged:
                    add(self.resolve(n), None)
            elif self.records.lookup_tag(str(ref)):
                add(self.resolve(n), str(ref))
            else:
                add(self.resolve(n), None)
        for rec, _ in selected.values():
            if not self.get_config(rec).diff_ids:
                raise InvalidArgument("empty export - not implemented")
        write_image_archive(self, list(selected.values()), out)
        for rec, tags in selected.values():
            self.event("save", rec.id, familiar(tags[0]) if tags else rec.id)

    def load(self, stream: Any, *, on_message: Callable[[str], None] | None = None,
             on_progress: Callable[[Any], None] | None = None) -> builtins.list[str]:
        """`docker load`: `on_message` gets the "Loaded image" lines, `on_progress` (when
        given) a `Progress` event per layer as it is unpacked ("Loading layer")."""
        from ketch.images.archive import read_image_archive

        with self.writing():
            loaded = read_image_archive(self, stream, on_message or (lambda s: None),
                                        on_progress)
        for line in loaded:  # "Loaded image: NAME" or "Loaded image ID: ID"
            name = line.partition(": ")[2]
            try:
                self.event("load", self.resolve(name).id, name)
            except KetchError:
                continue  # untagged or removed meanwhile: nothing to name
        return loaded


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


class _DeleteConflict(Conflict):
    """moby's imageDeleteConflict: hard ones cannot be forced; `used` means a container."""

    def __init__(self, rec: ImageRecord, message: str, *, hard: bool = False,
                 used: bool = False) -> None:
        super().__init__(f"conflict: unable to delete {rec.short_id}"
                         f" ({'cannot be forced' if hard else 'must be forced'}) - {message}")
        self.hard = hard
        self.used = used


def _repo_of(name: str) -> str:
    """`docker.io/library/x` from `docker.io/library/x:tag` or `...x@sha256:...`."""
    if "@" in name:
        return name.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail else name


def _is_id_prefix(image_id: str, name: str) -> bool:
    return image_id.startswith(name) or hex_of(image_id).startswith(name)


def _is_single_reference(tags: builtins.list[str], digests: builtins.list[str]) -> bool:
    """moby's isSingleReference: at most one tag, and every reference in one repository."""
    refs = tags + digests
    if len(refs) <= 1:
        return len(refs) == 1
    if len(tags) > 1:
        return False
    single = tags[0] if tags else digests[0]
    return {_repo_of(d) for d in digests} == {_repo_of(single)}


def _compile_path_pattern(pattern: str) -> re.Pattern[str]:
    """Go's path.Match, as distribution's FamiliarMatch uses it."""
    from ketch.globs import compile_glob

    try:
        return compile_glob(pattern)
    except ValueError:
        raise InvalidArgument("syntax error in pattern") from None


def _ref_matches(patterns: builtins.list[re.Pattern[str]], ref: str) -> bool:
    """distribution's FamiliarMatch: the pattern against `name:tag`, then against `name`."""
    name = ref.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    if sep and "/" not in tail:
        name = head
    return any(p.match(ref) or p.match(name) for p in patterns)
