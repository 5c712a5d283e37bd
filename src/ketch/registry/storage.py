"""Registry semantics over the filesystem: blobs, uploads, manifests, tags, catalog.

Every write lands in a temporary file first and is renamed into place only after its
digest has been checked, so a failed or lying upload never leaves a blob behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ketch.registry.errors import RegistryError
from ketch.registry.paths import Layout

CHUNK = 1 << 20
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
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
    if _ANY_DIGEST_RE.match(digest):
        raise RegistryError("UNSUPPORTED", "only sha256 digests are supported",
                            {"digest": digest}, status=400)
    raise RegistryError("DIGEST_INVALID", "provided digest did not match uploaded content",
                        {"digest": digest})


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or len(name) > 255:
        raise RegistryError("NAME_INVALID", "invalid repository name", {"name": name})
    return name


class Storage:
    def __init__(self, root: Path) -> None:
        self.paths = Layout(root)
        for d in (self.paths.blobs, self.paths.repositories, self.paths.tmp):
            d.mkdir(parents=True, exist_ok=True)
        # Manifest and tag writes of one repository are serialised so that a manifest
        # is never tagged while its revision is half written.
        self._lock = threading.Lock()

    # -- blobs ------------------------------------------------------------------------
    def blob_size(self, name: str, digest: str) -> int:
        check_digest(digest)
        if not self.paths.layer_link(name, digest).exists() and not (
                self.paths.revision(name, digest).exists()):
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
        try:
            return self.paths.blob(digest).stat().st_size
        except FileNotFoundError:
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry",
                                {"digest": digest}) from None

    def open_blob(self, name: str, digest: str) -> tuple[BinaryIO, int]:
        size = self.blob_size(name, digest)
        return open(self.paths.blob(digest), "rb"), size

    def link_blob(self, name: str, digest: str) -> None:
        link = self.paths.layer_link(name, digest)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.write_text(digest)

    def delete_blob(self, name: str, digest: str) -> None:
        check_digest(digest)
        link = self.paths.layer_link(name, digest)
        if not link.exists():
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
        # Only the link goes: other repositories may share the blob (garbage collection
        # removes unreferenced blobs offline, as distribution does).
        link.unlink()

    def mount(self, name: str, digest: str, source: str) -> bool:
        check_digest(digest)
        if not NAME_RE.match(source):
            return False
        if not self.paths.layer_link(source, digest).exists():
            return False
        if not self.paths.blob(digest).exists():
            return False
        self.link_blob(name, digest)
        return True

    def _store_verified(self, src: Path, digest: str) -> None:
        """Hash `src`, compare with `digest`, and move it into the blob store."""
        h = hashlib.sha256()
        with open(src, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        actual = "sha256:" + h.hexdigest()
        if actual != digest:
            raise RegistryError("DIGEST_INVALID",
                                "provided digest did not match uploaded content",
                                {"expected": digest, "actual": actual})
        final = self.paths.blob(digest)
        if final.exists():
            src.unlink()
        else:
            with open(src, "rb") as f:
                os.fsync(f.fileno())
            os.rename(src, final)

    # -- uploads ----------------------------------------------------------------------
    def start_upload(self, name: str) -> str:
        uid = str(uuidlib.uuid4())
        d = self.paths.upload(name, uid)
        d.mkdir(parents=True)
        (d / "data").touch()
        return uid

    def _upload_dir(self, name: str, uid: str) -> Path:
        d = self.paths.upload(name, uid)
        if not _UUID_RE.match(uid) or not (d / "data").exists():
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
                                {"uuid": uid})
        return d

    def upload_offset(self, name: str, uid: str) -> int:
        return (self._upload_dir(name, uid) / "data").stat().st_size

    def append_upload(self, name: str, uid: str, body: Iterator[bytes],
                      start: int | None = None) -> int:
        data = self._upload_dir(name, uid) / "data"
        offset = data.stat().st_size
        if start is not None and start != offset:
            raise RegistryError("RANGE_INVALID", "invalid content range",
                                {"offset": offset, "start": start})
        with open(data, "ab") as f:
            for chunk in body:
                f.write(chunk)
        return data.stat().st_size

    def finish_upload(self, name: str, uid: str, digest: str) -> None:
        d = self._upload_dir(name, uid)
        check_digest(digest)
        try:
            self._store_verified(d / "data", digest)
            self.link_blob(name, digest)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def cancel_upload(self, name: str, uid: str) -> None:
        shutil.rmtree(self._upload_dir(name, uid), ignore_errors=True)

    def put_monolithic(self, name: str, digest: str, body: Iterator[bytes]) -> None:
        check_digest(digest)
        fd, tmp = tempfile.mkstemp(dir=self.paths.tmp, prefix="upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in body:
                    f.write(chunk)
            self._store_verified(Path(tmp), digest)
            self.link_blob(name, digest)
        finally:
            Path(tmp).unlink(missing_ok=True)

    # -- manifests ----------------------------------------------------------------------
    def _digest_for(self, name: str, reference: str) -> str:
        if ":" in reference and not _TAG_RE.match(reference):
            check_digest(reference)
            if not self.paths.revision(name, reference).exists():
                raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown",
                                    {"digest": reference})
            return reference
        if not _TAG_RE.match(reference):
            raise RegistryError("MANIFEST_INVALID", "invalid tag", {"tag": reference})
        try:
            return self.paths.tag(name, reference).read_text().strip()
        except FileNotFoundError:
            if not self.paths.repo(name).exists():
                raise RegistryError("NAME_UNKNOWN", "repository name not known to registry",
                                    {"name": name}) from None
            raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown",
                                {"tag": reference}) from None

    def get_manifest(self, name: str, reference: str) -> tuple[bytes, str, str]:
        """The manifest's bytes, media type and digest."""
        digest = self._digest_for(name, reference)
        rev = self.paths.revision(name, digest)
        try:
            media_type = (rev / "type").read_text()
            data = self.paths.blob(digest).read_bytes()
        except FileNotFoundError:
            raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown",
                                {"digest": digest}) from None
        return data, media_type, digest

    def put_manifest(self, name: str, reference: str, data: bytes,
                     content_type: str) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        is_tag = _TAG_RE.match(reference) is not None and ":" not in reference
        if not is_tag:
            check_digest(reference)
            if reference != digest:
                raise RegistryError("DIGEST_INVALID",
                                    "manifest digest did not match the reference",
                                    {"expected": reference, "actual": digest})
        media_type = self._validate_manifest(name, data, content_type)
        with self._lock:
            final = self.paths.blob(digest)
            if not final.exists():
                fd, tmp = tempfile.mkstemp(dir=self.paths.tmp, prefix="manifest-")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.rename(tmp, final)
            rev = self.paths.revision(name, digest)
            rev.mkdir(parents=True, exist_ok=True)
            (rev / "type").write_text(media_type)
            if is_tag:
                tag = self.paths.tag(name, reference)
                tag.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.paths.tmp, prefix="tag-")
                with os.fdopen(fd, "w") as f:
                    f.write(digest)
                os.rename(tmp, tag)
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
        media_type = declared or content_type.split(";")[0].strip()
        if not media_type or media_type == "application/json":
            # OCI lets mediaType be omitted: the shape tells an index from a manifest.
            media_type = ("application/vnd.oci.image.index.v1+json" if "manifests" in doc
                          else "application/vnd.oci.image.manifest.v1+json")
        if declared and content_type and content_type.split(";")[0].strip() not in (
                declared, "application/json", "application/octet-stream"):
            raise RegistryError("MANIFEST_INVALID", "manifest invalid",
                                f"Content-Type {content_type} does not match mediaType"
                                f" {declared}")
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
                    if not self.paths.revision(name, check_digest(d["digest"])).exists():
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
        return (self.paths.layer_link(name, digest).exists()
                and self.paths.blob(digest).exists())

    def delete_manifest(self, name: str, reference: str) -> None:
        with self._lock:
            if ":" in reference and not _TAG_RE.match(reference):
                digest = self._digest_for(name, reference)
                shutil.rmtree(self.paths.revision(name, digest), ignore_errors=True)
                # Tags pointing at the deleted manifest go with it, as in distribution.
                for tag in self._tag_names(name):
                    p = self.paths.tag(name, tag)
                    if p.read_text().strip() == digest:
                        p.unlink()
            else:
                self._digest_for(name, reference)
                self.paths.tag(name, reference).unlink()

    def referrers(self, name: str, digest: str,
                  artifact_type: str | None = None) -> list[dict[str, object]]:
        """Descriptors of this repository's manifests whose `subject` is `digest`.

        A scan of the revisions: repositories hold few manifests, and a scan needs no
        index that could disagree with the manifests themselves.
        """
        check_digest(digest)
        out: list[dict[str, object]] = []
        try:
            revisions = sorted(p.name for p in self.paths.revisions(name).iterdir())
        except FileNotFoundError:
            return out
        for hexpart in revisions:
            rev = "sha256:" + hexpart
            try:
                data = self.paths.blob(rev).read_bytes()
                doc = json.loads(data)
                media_type = (self.paths.revision(name, rev) / "type").read_text()
            except (OSError, ValueError):
                continue
            subject = doc.get("subject") if isinstance(doc, dict) else None
            if not isinstance(subject, dict) or subject.get("digest") != digest:
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
            return sorted(p.name for p in self.paths.tags(name).iterdir())
        except FileNotFoundError:
            return []

    def tags(self, name: str) -> list[str]:
        if not self.paths.repo(name).exists():
            raise RegistryError("NAME_UNKNOWN", "repository name not known to registry",
                                {"name": name})
        return self._tag_names(name)

    def catalog(self) -> list[str]:
        out = []
        for dirpath, dirnames, _ in os.walk(self.paths.repositories):
            if "_manifests" in dirnames or "_layers" in dirnames:
                out.append(os.path.relpath(dirpath, self.paths.repositories))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(out)


def paginate(items: list[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    """Lexically ordered items after `last`, at most `n`; True when more follow."""
    if last:
        items = [i for i in items if i > last]
    if n is None:
        return items, False
    return items[:n], len(items) > n


UPLOAD_MAX_AGE = 24 * 3600


def garbage_collect(storage: Storage, *, delete_untagged: bool = False,
                    dry_run: bool = False) -> list[str]:
    """Mark and sweep: delete blobs no manifest of any repository references.

    Like distribution's `garbage-collect`, this is for a registry that is not serving:
    a blob uploaded just before its manifest would look unreferenced. Returns the
    digests removed (or that would be, with `dry_run`).
    """
    paths = storage.paths
    marked: set[str] = set()
    for name in storage.catalog():
        tagged = set()
        for tag in storage._tag_names(name):
            try:
                tagged.add(paths.tag(name, tag).read_text().strip())
            except OSError:
                continue
        try:
            revisions = ["sha256:" + p.name for p in paths.revisions(name).iterdir()]
        except FileNotFoundError:
            revisions = []
        children: set[str] = set()
        for digest in revisions:
            try:
                doc = json.loads(paths.blob(digest).read_bytes())
            except (OSError, ValueError):
                continue
            children.update(m.get("digest", "") for m in doc.get("manifests") or [])
        for digest in revisions:
            if delete_untagged and digest not in tagged and digest not in children:
                if not dry_run:
                    shutil.rmtree(paths.revision(name, digest), ignore_errors=True)
                continue
            marked.add(digest)
            try:
                doc = json.loads(paths.blob(digest).read_bytes())
            except (OSError, ValueError):
                continue
            for d in [doc.get("config") or {}, *(doc.get("layers") or [])]:
                if d.get("digest"):
                    marked.add(d["digest"])
    if not dry_run:
        _purge_uploads(storage)
    removed = []
    for p in paths.blobs.iterdir():
        digest = "sha256:" + p.name
        if digest not in marked:
            removed.append(digest)
            if not dry_run:
                p.unlink(missing_ok=True)
    return sorted(removed)


def _purge_uploads(storage: Storage) -> None:
    """Drop upload sessions a client abandoned a day ago or more."""
    import time

    cutoff = time.time() - UPLOAD_MAX_AGE
    for uploads in storage.paths.repositories.glob("**/_uploads"):
        for d in uploads.iterdir():
            try:
                if (d / "data").stat().st_mtime < cutoff:
                    shutil.rmtree(d, ignore_errors=True)
            except FileNotFoundError:
                shutil.rmtree(d, ignore_errors=True)
    for p in storage.paths.tmp.iterdir():
        try:
            if p.stat().st_mtime < cutoff:
                p.unlink(missing_ok=True)
        except OSError:
            continue
