"""Fixtures for the image-management tests: a fresh root per test with the busybox image
imported through the real CLI, and a way to see everything a store holds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, import_image, require_root
from tests.helpers.host import wait_for
from tests.images.archives import files_tar


@pytest.fixture(autouse=True)
def _as_root() -> None:
    # Layers are unpacked as overlay lower dirs: whiteouts are 0/0 character devices
    # and ownership is kept, which only root can do.
    require_root()


@pytest.fixture
def busybox(ketch: KetchCLI, busybox_tar: Path) -> str:
    """busybox:latest imported into the test's root; returns its image ID."""
    image_id = import_image(ketch.root, busybox_tar, "busybox:latest", 'CMD ["sh"]')
    assert image_id.startswith("sha256:") and len(image_id) == 71
    return image_id


def import_files(ketch: KetchCLI, tmp_path: Path, files: dict[str, bytes],
                 tag: str | None = None, *changes: str) -> str:
    """Import a one-layer image holding `files`; returns its ID."""
    src = tmp_path / f"rootfs-{abs(hash(tuple(sorted(files.items()))))}.tar"
    src.write_bytes(files_tar(files))
    args = ["import"]
    for c in changes:
        args += ["--change", c]
    args.append(str(src))
    if tag:
        args.append(tag)
    return ketch(*args).stdout.strip()


@dataclass
class StoreState:
    """What a ketch root holds, for before/after comparisons."""

    images: list[dict[str, object]]
    blobs: set[str]
    layers: set[str]

    @classmethod
    def of(cls, ketch: KetchCLI) -> StoreState:
        """The store as the next command finds it: the Engine calls `images -a` makes
        (recovery first, then Docker's image summaries), here in this process, since
        the tests take it before and after the command they test (what `images` prints
        is tested through the CLI in test_images_list.py)."""
        from ketch.engine import Engine

        with Engine(ketch.root, ketch.root / "run") as engine:
            engine.recover()
            images = engine.images.list(all=True)
        root = ketch.root
        blobs = {p.name for p in (root / "blobs" / "sha256").iterdir()}
        layers = {p.name for p in (root / "layers").iterdir() if p.is_dir()}
        return cls(images, blobs, layers)


def gc(ketch: KetchCLI) -> None:
    """Run the store's garbage collector, as every rmi and prune does afterwards. A gc
    that finds the lock held sweeps nothing and says so (the next one sweeps); the trash
    emptier a refused unpack started takes that lock for a moment between batches, so
    this tries again until one gc has run."""
    from ketch.engine import Engine

    with Engine(ketch.root, ketch.root / "run") as engine:
        wait_for(engine.images.gc, timeout=20, what="a gc that finds the lock free")


def assert_one_line_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    for n in needles:
        assert n in lines[0], stderr


def child_image(ketch: KetchCLI, parent_id: str, files: dict[str, bytes],
                tag: str | None = None, labels: dict[str, str] | None = None) -> str:
    """A child of `parent_id` with one more layer, recorded with its parent as a build
    step records it (the builder and `commit` use this same Engine call)."""
    import io

    from ketch.engine import Engine
    from ketch.images.service import NewLayer, now_rfc3339
    from ketch.oci.digest import chain_ids

    with Engine(ketch.root, ketch.root / "run") as engine:
        images = engine.images
        base = images.resolve(parent_id)
        cfg = json.loads(json.dumps(images.get_config(base).raw))
        diff_ids = list(cfg["rootfs"]["diff_ids"])
        manifest = images.get_manifest(base)
        with images.writing():
            layer = images.add_layer_stream(io.BytesIO(files_tar(files)),
                                            parent=chain_ids(diff_ids)[-1])
            cfg["rootfs"]["diff_ids"] = diff_ids + [layer.diff_id]
            cfg["created"] = now_rfc3339()
            cfg["history"] = list(cfg.get("history") or []) + [
                {"created": cfg["created"], "created_by": "/bin/sh -c #(nop) ADD files"}]
            if labels:
                cfg["config"]["Labels"] = {**(cfg["config"].get("Labels") or {}), **labels}
            layers = [NewLayer(d.digest, d.media_type, d.size, diff_id, 0)
                      for d, diff_id in zip(manifest.layers, diff_ids, strict=True)]
            rec = images.commit(cfg, layers + [layer], parent=base.id,
                                tags=[str(_ref(tag))] if tag else [])
        return rec.id


def add_repo_digest(ketch: KetchCLI, name: str, image_id: str) -> None:
    """Record `repo@sha256:...` for an image, as a pull does."""
    from ketch.engine import Engine

    with Engine(ketch.root, ketch.root / "run") as engine:
        with engine.db.transaction() as conn:
            engine.records.add_digest(conn, name, image_id)


def _ref(name: str) -> object:
    from ketch import reference

    return reference.parse(name)
