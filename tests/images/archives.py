"""Hand-built tarballs for the image tests: rootfs tars, layer tars with hostile entries,
and image archives in docker-archive and OCI layout form.

Everything is built byte for byte here (tarfile + json + hashlib), independently of
ketch's own archive writer, so a test can make exactly the archive it needs: a valid
one, a truncated one, one whose blob lies about its digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Entry:
    """One tar member. `type` is a tarfile type constant; `data` is for regular files."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    mode: int = 0o644


def tar_bytes(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type = e.type
            ti.mode = 0o755 if e.type == tarfile.DIRTYPE and e.mode == 0o644 else e.mode
            ti.linkname = e.linkname
            ti.mtime = 1700000000
            if e.type == tarfile.REGTYPE:
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def files_tar(files: dict[str, bytes]) -> bytes:
    """A layer/rootfs tar holding regular files (parent directories included)."""
    entries: list[Entry] = []
    dirs: set[str] = set()
    for name in sorted(files):
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                entries.append(Entry(d, type=tarfile.DIRTYPE))
        entries.append(Entry(name, files[name]))
    return tar_bytes(entries)


@dataclass
class ImageSpec:
    """An image to put in an archive: its layer tars (uncompressed) and config fields."""

    layers: list[bytes]
    tags: list[str] = field(default_factory=list)
    cmd: list[str] | None = None
    labels: dict[str, str] | None = None
    created: str = "2024-01-02T03:04:05Z"
    # Replace the bytes stored for layer i (after digests were computed from `layers`).
    stored_layers: dict[int, bytes] = field(default_factory=dict)

    def config_bytes(self) -> bytes:
        cfg = {
            "architecture": "amd64", "os": "linux", "created": self.created,
            "config": {"Cmd": self.cmd, "Labels": self.labels},
            "rootfs": {"type": "layers", "diff_ids": [sha256(x) for x in self.layers]},
            "history": [{"created": self.created, "created_by": f"layer {i}"}
                        for i in range(len(self.layers))],
        }
        return json.dumps(cfg, separators=(",", ":")).encode()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    ti.mtime = 0
    tf.addfile(ti, io.BytesIO(data))


def docker_archive(dest: Path, images: list[ImageSpec]) -> Path:
    """`docker save`'s classic layout: manifest.json, <config>.json, <layer>/layer.tar."""
    manifest = []
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        for img in images:
            cfg = img.config_bytes()
            cfg_name = sha256(cfg).split(":", 1)[1] + ".json"
            _add(tf, cfg_name, cfg)
            layer_names = []
            for i, layer in enumerate(img.layers):
                name = f"{sha256(layer).split(':', 1)[1]}/layer.tar"
                _add(tf, name, img.stored_layers.get(i, layer))
                layer_names.append(name)
            manifest.append({"Config": cfg_name, "RepoTags": img.tags or None,
                             "Layers": layer_names})
        _add(tf, "manifest.json", json.dumps(manifest).encode())
    return dest


def oci_archive(dest: Path, images: list[ImageSpec], *,
                lie_about: dict[int, bytes] | None = None) -> Path:
    """An OCI image layout tar. `lie_about` maps layer index -> bytes stored under the
    digest of the real layer (a blob whose content does not match its name)."""
    lie_about = lie_about or {}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": []}
    blobs: dict[str, bytes] = {}
    for img in images:
        cfg = img.config_bytes()
        blobs[sha256(cfg)] = cfg
        layers = []
        for i, layer in enumerate(img.layers):
            d = sha256(layer)
            blobs[d] = lie_about.get(i, layer)
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                           "digest": d, "size": len(layer)})
        m = json.dumps({"schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": sha256(cfg), "size": len(cfg)},
                        "layers": layers}).encode()
        blobs[sha256(m)] = m
        desc: dict[str, object] = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "digest": sha256(m), "size": len(m)}
        if img.tags:
            desc["annotations"] = {"org.opencontainers.image.ref.name": img.tags[0]}
        index["manifests"].append(desc)  # type: ignore[union-attr]
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        _add(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for d, data in blobs.items():
            _add(tf, "blobs/sha256/" + d.split(":", 1)[1], data)
        _add(tf, "index.json", json.dumps(index).encode())
    return dest


def big_layer(size: int, seed: int = 0) -> bytes:
    """A layer holding one incompressible file of about `size` bytes (SHAKE-128 output:
    the same bytes for the same seed, made at twice the speed of random.randbytes)."""
    import hashlib

    return files_tar({"data/blob.bin": hashlib.shake_128(str(seed).encode()).digest(size)})
