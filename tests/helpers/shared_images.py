"""A big image imported once per test session and linked into the roots that use it.

Importing a Debian rootfs of some 400 MB costs seconds of CPU (the tar is read, hashed,
stored as a blob and unpacked into tens of thousands of files). Tests that only need
the image as a base (not the import under test; `ketch import` of such a tarball is
tested through the CLI by tests/containers/test_postgres_volume.py) take it from one
template root made by the first xdist worker that asks (the others wait on its lock):
the layer directories and blobs are hard-linked into the test's root, and the image,
layer and tag rows copied into its database. Layers are read-only lower directories
of overlay mounts, and nothing ketch does rewrites a stored file in place (removing an
image unlinks its files), so a root using the links cannot change the template nor
another root.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

# the tables that describe stored images (ketch/store/schema), copied row for row
_IMAGE_TABLES = ("layers", "layer_tar_sizes", "images", "tags", "repo_digests")


def _session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory every xdist worker of this run shares (its own base otherwise)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def template_root(tmp_path_factory: pytest.TempPathFactory, tar: Path, ref: str,
                  *changes: str) -> Path:
    """A state root holding only `tar` imported as `ref` (with `changes`), made once per
    test run."""
    from tests.conftest import import_image

    key = hashlib.sha256(repr((str(tar), ref, changes)).encode()).hexdigest()[:16]
    where = _session_dir(tmp_path_factory)
    root = where / f"image-template-{key}"
    with open(where / f"image-template-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "complete").exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            import_image(root, tar, ref, *changes)
            (root / "complete").touch()
    return root


def link_images(template: Path, root: Path) -> None:
    """Make every image of `template` an image of `root` (which may hold others)."""
    from ketch.engine import Engine

    Engine(root, root / "run").close()  # the database and its tables exist from here
    for sub in ("layers", "blobs/sha256"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for blob in (template / "blobs" / "sha256").iterdir():
        target = root / "blobs" / "sha256" / blob.name
        if not target.exists():
            os.link(blob, target)
    for layer in (template / "layers").iterdir():
        target = root / "layers" / layer.name
        if target.exists():
            continue
        if layer.is_dir():  # cp keeps owners, modes, times and xattrs; --link: no data
            subprocess.run(["cp", "-a", "--link", str(layer), str(target)], check=True)
        else:
            shutil.copy2(layer, target)
    conn = sqlite3.connect(root / "ketch.db")
    try:
        conn.execute("ATTACH DATABASE ? AS tpl", (str(template / "ketch.db"),))
        with conn:
            for table in _IMAGE_TABLES:
                conn.execute(f"INSERT OR IGNORE INTO main.{table} SELECT * FROM tpl.{table}")
        conn.execute("DETACH DATABASE tpl")
    finally:
        conn.close()
