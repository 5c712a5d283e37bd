"""Registry semantics over a storage driver: blobs, uploads, manifests, tags, catalog.

Every write lands in a temporary file first and is moved into place only after its
digest has been checked, so a failed or lying upload never leaves a blob behind.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid as uuidlib
from pathlib import Path

from ketch.registry import paths
from ketch.registry.driver import FilesystemDriver, FileWriter, PathNotFound, StorageDriver
from ketch.registry.errors import RegistryError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, BinaryIO


CHUNK = 256 << 10
_DIGEST_RE = re.compile(r"^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
_ANY_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_UUID_RE = re.compile(r"^[a-f0-9-]{36}$")

MANIFEST_TYPES = frozenset({
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
})
INDEX_TYPES = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})


def check_digest(digest: str) -> str:
    if _DIGEST_RE.match(digest):
        return digest
    if _ANY_DIGEST_RE.match(digest) and digest.partition(":")[0] not in paths.ALGORITHMS:
        raise RegistryError("UNSUPPORTED", "only sha256 and sha512 digests are supported",
                            {"digest": digest}, status=400)
    raise RegistryError("DIGEST_INVALID", "provided digest did not match uploaded content",
                        {"digest": digest})


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()


def check_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise RegistryError("TAG_INVALID", "manifest tag did not match URI", {"tag": tag},
                            status=400)
    return tag


def upload_headers(name: str, uid: str, offset: int) -> dict[str, str]:
    """Where an upload session lives and how much of it the registry has."""
    return {"Location": f"/v2/{name}/blobs/uploads/{uid}",
            "Range": f"0-{max(offset - 1, 0)}", "Docker-Upload-UUID": uid}


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or len(name) > 255:
        raise RegistryError("NAME_INVALID", "invalid repository name", {"name": name})
    return name


class Storage:
    def __init__(self, root: Path | StorageDriver, sparse_indexes: bool = False) -> None:
        # With sparse_indexes, an index may name manifests this registry does not hold
        # (a mirror of only some platforms, the distribution-spec's "sparse" option).
        self.sparse_indexes = sparse_indexes
        self.driver: StorageDriver = (FilesystemDriver(root) if isinstance(root, Path)
                                      else root)
        # Manifest and tag writes are serialised so that a manifest is never tagged
        # while its revision is half written.
        self._lock = threading.Lock()

    def _exists(self, path: str) -> bool:
        try:
            self.driver.stat(path)
            return True
        except PathNotFound:
            return False

    # -- blobs ------------------------------------------------------------------------
    def blob_size(self, name: str, digest: str) -> int:
        check_digest(digest)
        if not self._exists(paths.layer_link(name, digest)) and not self._exists(
                paths.revision(name, digest)):
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
        try:
            return self.driver.stat(paths.blob(digest)).size
        except PathNotFound:
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry",
                                {"digest": digest}) from None

    def open_blob(self, name: str, digest: str) -> tuple[BinaryIO, int]:
        size = self.blob_size(name, digest)
        try:
            return self.driver.reader(paths.blob(digest)), size
        except PathNotFound:
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry",
                                {"digest": digest}) from None

    def link_blob(self, name: str, digest: str) -> None:
        self.driver.put_content(paths.layer_link(name, digest), digest.encode())

    def delete_blob(self, name: str, digest: str) -> None:
        check_digest(digest)
        try:
            # Only the link goes: other repositories may share the blob (garbage
            # collection removes unreferenced blobs offline, as distribution does).
            self.driver.delete(paths.layer_link(name, digest))
        except PathNotFound:
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry",
                                {"digest": digest}) from None

    def mount(self, name: str, digest: str, source: str) -> bool:
        if not _DIGEST_RE.match(digest) or not NAME_RE.match(source):
            return False
        if not self._exists(paths.layer_link(source, digest)):
            return False
        if not self._exists(paths.blob(digest)):
            return False
        self.link_blob(name, digest)
        return True

    def _store_verified(self, src: str, digest: str) -> None:
        """Hash `src`, compare with `digest`, and move it into the blob store."""
        algorithm = digest.partition(":")[0]
        h = hashlib.new(algorithm)
        with self.driver.reader(src) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        actual = f"{algorithm}:" + h.hexdigest()
        if actual != digest:
            raise RegistryError("DIGEST_INVALID",
                                "provided digest did not match uploaded content",
                                {"expected": digest, "actual": actual})
        if self._exists(paths.blob(digest)):
            self.driver.delete(src)
        else:
            self.driver.move(src, paths.blob(digest))

    # -- uploads ----------------------------------------------------------------------
    def start_upload(self, name: str) -> str:
        uid = str(uuidlib.uuid4())
        self.driver.put_content(paths.upload_data(name, uid), b"")
        return uid

    def _upload_data(self, name: str, uid: str) -> str:
        data = paths.upload_data(name, uid) if _UUID_RE.match(uid) else ""
        if not data or not self._exists(data):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
                                {"uuid": uid})
        return data

    def upload_offset(self, name: str, uid: str) -> int:
        return self.driver.stat(self._upload_data(name, uid)).size

    def upload_writer(self, name: str, uid: str, start: int | None = None) -> FileWriter:
        """A writer appending to upload `uid`, after checking that a chunk claiming to
        start at `start` continues it (RANGE_INVALID, nothing written, if not)."""
        data = self._upload_data(name, uid)
        w = self.driver.writer(data, append=True)
        if start is not None and start != w.size:
            w.cancel()
            raise RegistryError("RANGE_INVALID", "invalid content range",
                                {"offset": w.size, "start": start},
                                headers=upload_headers(name, uid, w.size))
        return w

    def append_upload(self, name: str, uid: str, body: Iterator[bytes],
                      start: int | None = None) -> int:
        w = self.upload_writer(name, uid, start)
        try:
            for chunk in body:
                w.write(chunk)
            w.commit()
        finally:
            w.cancel()
        return w.size

    def finish_upload(self, name: str, uid: str, digest: str) -> None:
        data = self._upload_data(name, uid)
        check_digest(digest)
        try:
            self._store_verified(data, digest)
            self.link_blob(name, digest)
        finally:
            self._delete_quietly(paths.upload(name, uid))

    def cancel_upload(self, name: str, uid: str) -> None:
        self._upload_data(name, uid)
        self._delete_quietly(paths.upload(name, uid))

    def _delete_quietly(self, path: str) -> None:
        try:
            self.driver.delete(path)
        except PathNotFound:
            pass

    def monolithic_writer(self, digest: str) -> tuple[str, FileWriter]:
        """A temp file for a blob pushed in one request, and its writer; the blob is
        kept by `store_monolithic` once the writer committed."""
        check_digest(digest)
        tmp = f"{paths.TMP}/upload-{uuidlib.uuid4()}"
        return tmp, self.driver.writer(tmp)

    def store_monolithic(self, name: str, digest: str, tmp: str) -> None:
        try:
            self._store_verified(tmp, digest)
            self.link_blob(name, digest)
        finally:
            self._delete_quietly(tmp)

    def discard(self, tmp: str) -> None:
        self._delete_quietly(tmp)

    def put_monolithic(self, name: str, digest: str, body: Iterator[bytes]) -> None:
        tmp, w = self.monolithic_writer(digest)
        try:
            for chunk in body:
                w.write(chunk)
            w.commit()
            self.store_monolithic(name, digest, tmp)
        finally:
            w.cancel()
            self._delete_quietly(tmp)

    # -- manifests ----------------------------------------------------------------------
    def _digest_for(self, name: str, reference: str) -> str:
        if ":" in reference and not _TAG_RE.match(reference):
            check_digest(reference)
            if not self._exists(paths.revision(name, reference)):
                raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown",
                                    {"digest": reference})
            return reference
        if not _TAG_RE.match(reference):
            raise RegistryError("MANIFEST_INVALID", "invalid tag", {"tag": reference})
        try:
            return self.driver.get_content(paths.tag(name, reference)).decode().strip()
        except PathNotFound:
            if not self._exists(paths.repo(name)):
                raise RegistryError("NAME_UNKNOWN", "repository name not known to registry",
                                    {"name": name}) from None
            raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown",
                                {"tag": reference}) from None

    def get_manifest(self, name: str, reference: str) -> tuple[bytes, str, str]:
        """The manifest's bytes, media type and digest."""
        digest = self._digest_for(name, reference)
        try:
            media_type = self.driver.get_content(paths.revision_type(name, digest)).decode()
            data = self.driver.get_content(paths.blob(digest))
        except PathNotFound:
            raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown",
                                {"digest": digest}) from None
        return data, media_type, digest

    def put_manifest(self, name: str, reference: str, data: bytes,
                     content_type: str, tags: list[str] | None = None) -> str:
        """Store a manifest under its digest (in the reference's algorithm when the
        reference is a digest, else sha256) and point `reference` (a tag) and `tags`
        (OCI 1.1's `?tag=`) at it."""
        is_tag = _TAG_RE.match(reference) is not None and ":" not in reference
        tags = [check_tag(t) for t in tags or []]
        if is_tag:
            tags = [reference, *tags]
            digest = digest_bytes(data)
        else:
            check_digest(reference)
            digest = digest_bytes(data, reference.partition(":")[0])
            if reference != digest:
                raise RegistryError("DIGEST_INVALID",
                                    "manifest digest did not match the reference",
                                    {"expected": reference, "actual": digest})
        media_type = self._validate_manifest(name, data, content_type)
        with self._lock:
            if not self._exists(paths.blob(digest)):
                self.driver.put_content(paths.blob(digest), data)
            self.driver.put_content(paths.revision_type(name, digest), media_type.encode())
            for t in dict.fromkeys(tags):
                self.driver.put_content(paths.tag(name, t), digest.encode())
        return digest
    def _validate_manifest(self, name: str, data: bytes, content_type: str) -> str:
        try:
            doc = json.loads(data)
        except ValueError:
            raise RegistryError("MANIFEST_INVALID", "manifest invalid",
                                "manifest is not valid JSON") from None
        if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
            raise RegistryError("MANIFEST_INVALID", "manifest invalid",
                                "only schemaVersion 2 manifests are supported")
        declared = doc.get("mediaType")
        if declared is not None and not isinstance(declared, str):
            raise RegistryError("MANIFEST_INVALID", "manifest invalid",
                                "mediaType is not a string")
        media_type = declared or content_type.split(";")[0].strip()
        shape_manifest = "config" in doc or "layers" in doc
        shape_index = "manifests" in doc
        if not media_type or media_type in ("application/json", "application/octet-stream"):
            # OCI lets mediaType be omitted: the shape tells an index from a manifest.
            media_type = ("application/vnd.oci.image.index.v1+json" if shape_index
                          else "application/vnd.oci.image.manifest.v1+json")
        if declared and content_type and content_type.split(";")[0].strip() not in (
                declared, "application/json", "application/octet-stream"):
            raise RegistryError("MANIFEST_INVALID", "manifest invalid",
                                f"Content-Type {content_type} does not match mediaType"
                                f" {declared}")
        # A body must be one thing whatever it is called (CVE-2021-41190): an index may
        # not carry config or layers, a manifest no manifests, or a client that reads the
        # other shape would see content this registry never checked.
        if media_type in INDEX_TYPES and shape_manifest:
            raise RegistryError("MANIFEST_INVALID", "manifest invalid",
                                "expected an index but found a manifest (config/layers)")
        if media_type in MANIFEST_TYPES and shape_index:
            raise RegistryError("MANIFEST_INVALID", "manifest invalid",
                                "expected a manifest but found an index (manifests)")
        try:
            if media_type in MANIFEST_TYPES:
                refs = [doc["config"]] + list(doc.get("layers") or [])
                for d in refs:
                    if d.get("urls"):
                        continue  # foreign layers live elsewhere
                    if not self._has_blob(name, d["digest"]):
                        raise RegistryError("MANIFEST_BLOB_UNKNOWN",
                                            "blob unknown to registry",
                                            {"digest": d["digest"]})
            elif media_type in INDEX_TYPES:
                for d in doc.get("manifests") or []:
                    child = paths.revision(name, check_digest(d["digest"]))
                    if not self.sparse_indexes and not self._exists(child):
                        raise RegistryError("MANIFEST_BLOB_UNKNOWN",
                                            "manifest unknown to registry",
                                            {"digest": d["digest"]})
            else:
                raise RegistryError("MANIFEST_INVALID", "manifest invalid",
                                    f"unsupported manifest media type {media_type}")
        except (KeyError, TypeError, AttributeError) as e:
            raise RegistryError("MANIFEST_INVALID", "manifest invalid",
                                f"malformed descriptor: {e}") from None
        return media_type

    def _has_blob(self, name: str, digest: str) -> bool:
        check_digest(digest)
        return (self._exists(paths.layer_link(name, digest))
                and self._exists(paths.blob(digest)))

    def delete_manifest(self, name: str, reference: str) -> None:
        with self._lock:
            if ":" in reference and not _TAG_RE.match(reference):
                digest = self._digest_for(name, reference)
                self._delete_quietly(paths.revision(name, digest))
                # Tags pointing at the deleted manifest go with it, as in distribution.
                for tag in self._tag_names(name):
                    if self._read_tag(name, tag) == digest:
                        self._delete_quietly(paths.tag(name, tag))
            else:
                self._digest_for(name, reference)
                self._delete_quietly(paths.tag(name, reference))

    def _read_tag(self, name: str, tag: str) -> str | None:
        try:
            return self.driver.get_content(paths.tag(name, tag)).decode().strip()
        except PathNotFound:
            return None

    def revisions(self, name: str) -> list[str]:
        out = []
        for algorithm in paths.ALGORITHMS:
            try:
                out += [f"{algorithm}:{h}"
                        for h in self.driver.list(paths.revisions(name, algorithm))]
            except PathNotFound:
                continue
        return out

    def _read_json(self, digest: str) -> tuple[bytes, dict[str, Any]] | None:
        try:
            data = self.driver.get_content(paths.blob(digest))
            doc = json.loads(data)
        except (PathNotFound, ValueError):
            return None
        return (data, doc) if isinstance(doc, dict) else None

    def referrers(self, name: str, digest: str,
                  artifact_type: str | None = None) -> list[dict[str, object]]:
        """Descriptors of this repository's manifests whose `subject` is `digest`.

        A scan of the revisions: repositories hold few manifests, and a scan needs no
        index that could disagree with the manifests themselves.
        """
        check_digest(digest)
        out: list[dict[str, object]] = []
        for rev in self.revisions(name):
            found = self._read_json(rev)
            if found is None:
                continue
            data, doc = found
            subject = doc.get("subject")
            if not isinstance(subject, dict) or subject.get("digest") != digest:
                continue
            try:
                media_type = self.driver.get_content(
                    paths.revision_type(name, rev)).decode()
            except PathNotFound:
                continue
            kind = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
            if artifact_type and kind != artifact_type:
                continue
            desc: dict[str, object] = {"mediaType": media_type, "digest": rev,
                                       "size": len(data)}
            if kind:
                desc["artifactType"] = kind
            if doc.get("annotations"):
                desc["annotations"] = doc["annotations"]
            out.append(desc)
        return out

    # -- listing ------------------------------------------------------------------------
    def _tag_names(self, name: str) -> list[str]:
        try:
            return self.driver.list(paths.tags(name))
        except PathNotFound:
            return []

    def tags(self, name: str) -> list[str]:
        if not self._exists(paths.repo(name)):
            raise RegistryError("NAME_UNKNOWN", "repository name not known to registry",
                                {"name": name})
        return self._tag_names(name)

    def catalog(self) -> list[str]:
        out: list[str] = []

        def visit(prefix: str) -> None:
            try:
                children = self.driver.list(f"{paths.REPOSITORIES}/{prefix}".rstrip("/"))
            except PathNotFound:
                return
            if "_manifests" in children or "_layers" in children:
                out.append(prefix.rstrip("/"))
            for child in children:
                if not child.startswith("_"):
                    visit(f"{prefix}{child}/")

        visit("")
        return sorted(o for o in out if o)


def paginate(items: list[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    """Lexically ordered items after `last`, at most `n`; True when more follow."""
    if last:
        items = [i for i in items if i > last]
    if n is None:
        return items, False
    return items[:n], len(items) > n


# A resumable upload session (POST, PATCH...) may be continued for a day.
UPLOAD_MAX_AGE = 24 * 3600
# The server drops a connection that sends nothing for UPLOAD_IDLE seconds, and hands
# on what a body sent within 10 s of its arrival, so a live upload writes its temp file
# at least every UPLOAD_IDLE + 10 s. One untouched for UPLOAD_TIMEOUT belongs to no live
# request: its writer was killed.
UPLOAD_IDLE = 300
UPLOAD_TIMEOUT = 2 * UPLOAD_IDLE


def garbage_collect(storage: Storage, *, delete_untagged: bool = False,
                    dry_run: bool = False) -> list[str]:
    """Mark and sweep: delete blobs no manifest of any repository references.

    Like distribution's `garbage-collect`, this is for a registry that is not serving:
    a blob uploaded just before its manifest would look unreferenced. Returns the
    digests removed (or that would be, with `dry_run`).
    """
    marked: set[str] = set()
    for name in storage.catalog():
        tagged = {storage._read_tag(name, t) for t in storage._tag_names(name)}
        revisions = storage.revisions(name)
        docs = {d: storage._read_json(d) for d in revisions}
        children = {str(m.get("digest", "")) for found in docs.values() if found
                    for m in found[1].get("manifests") or [] if isinstance(m, dict)}
        for digest in revisions:
            if delete_untagged and digest not in tagged and digest not in children:
                if not dry_run:
                    storage._delete_quietly(paths.revision(name, digest))
                continue
            marked.add(digest)
            found = docs[digest]
            if found is None:
                continue
            doc = found[1]
            for d in [doc.get("config") or {}, *(doc.get("layers") or [])]:
                if isinstance(d, dict) and d.get("digest"):
                    marked.add(d["digest"])
    if not dry_run:
        _purge_sessions(storage)
    removed = []
    blobs = []
    for algorithm in paths.ALGORITHMS:
        try:
            blobs += [f"{algorithm}:{h}" for h in storage.driver.list(paths.blobs(algorithm))]
        except PathNotFound:
            continue
    for digest in blobs:
        if digest not in marked:
            removed.append(digest)
            if not dry_run:
                storage._delete_quietly(paths.blob(digest))
    return sorted(removed)


def _purge_sessions(storage: Storage) -> None:
    """Drop upload sessions a client abandoned a day ago or more."""
    import time

    cutoff = time.time() - UPLOAD_MAX_AGE
    try:
        entries = list(storage.driver.walk(paths.REPOSITORIES))
    except PathNotFound:
        entries = []
    for info in entries:
        if info.is_dir and info.path.rsplit("/", 2)[-2:-1] == ["_uploads"]:
            try:
                mtime = storage.driver.stat(f"{info.path}/data").mtime
            except PathNotFound:
                mtime = 0.0
            if mtime < cutoff:
                storage._delete_quietly(info.path)


def collect_temp_files(storage: Storage, *, dry_run: bool = False,
                       now: float | None = None) -> list[str]:
    """Delete the temp files of writes that were cut off (a killed server, a crash):
    `.tmp-*` files anywhere, and monolithic uploads left in tmp/, once untouched for
    longer than UPLOAD_TIMEOUT. Fresher ones may belong to a live request and stay.
    Returns their paths."""
    import time

    cutoff = (time.time() if now is None else now) - UPLOAD_TIMEOUT
    stale = [info.path for info in storage.driver.temp_files("") if info.mtime < cutoff]
    try:
        tmp = storage.driver.list(paths.TMP)
    except PathNotFound:
        tmp = []
    for name in tmp:
        try:
            if storage.driver.stat(f"{paths.TMP}/{name}").mtime < cutoff:
                stale.append(f"{paths.TMP}/{name}")
        except PathNotFound:
            continue
    if not dry_run:
        for path in stale:
            storage._delete_quietly(path)
    return sorted(stale)
