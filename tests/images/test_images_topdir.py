"""Layer trees are unpacked under `<root>/tmp`, flagged as an ext4 "top directory"
(`chattr +T`), so each new tree gets a flex group of its own instead of landing where
the previous one was just deleted (see ketch.store.topdir). Run on a private
loop-mounted ext4 without a journal, the filesystem of this project's machines."""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import (
    KetchCLI,
    isolated_network_config,
    require,
    require_root,
    require_tool,
    teardown_root,
)
from tests.images.archives import Entry, tar_bytes
from tests.images.test_images_trash import _wait_until_emptied


class Ext4:
    def __init__(self, image: Path, mount: Path) -> None:
        self.image = image
        self.mount = mount
        head = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True,
                              text=True, check=True).stdout
        self.inodes_per_group = int(re.search(r"Inodes per group:\s+(\d+)", head)[1])
        self.flex_size = int(re.search(r"Flex block group size:\s+(\d+)", head)[1])

    def flex_group(self, path: Path) -> int:
        return (os.lstat(path).st_ino - 1) // self.inodes_per_group // self.flex_size


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Ext4]:
    """A 64 MB ext4 without a journal, 1 KiB blocks and flex groups of two block groups
    (four flex groups), loop-mounted for this test only."""
    require_root()
    for tool in ("mkfs.ext4", "dumpe2fs", "lsattr", "chattr"):
        require_tool(tool)
    image = tmp_path / "ext4.img"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-b", "1024", "-G", "2",
                    str(image)], check=True)
    mount = tmp_path / "mnt"
    mount.mkdir()
    proc = subprocess.run(["mount", "-o", "loop", str(image), str(mount)],
                          capture_output=True, text=True)
    require(proc.returncode == 0, f"a loop mount of an ext4 image ({proc.stderr.strip()})")
    try:
        yield Ext4(image, mount)
    finally:
        # (the loop device goes with the mount)
        deadline = time.monotonic() + 30
        while subprocess.run(["umount", str(mount)], capture_output=True).returncode:
            assert time.monotonic() < deadline, f"{mount} stayed busy"
            time.sleep(0.5)


@pytest.fixture
def ext4_ketch(ext4: Ext4) -> Iterator[KetchCLI]:
    root = ext4.mount / "ketch-root"
    root.mkdir()
    isolated_network_config(root)
    try:
        yield KetchCLI(root)
    finally:
        teardown_root(root, root / "run")


def _tree_tar(tmp_path: Path, name: str) -> Path:
    entries = []
    for d in range(20):
        entries.append(Entry(f"{name}{d}", type=tarfile.DIRTYPE))
        entries += [Entry(f"{name}{d}/f{i}", f"{name} {d} {i}\n".encode()) for i in range(10)]
    tar = tmp_path / f"{name}.tar"
    tar.write_bytes(tar_bytes(entries))
    return tar


def _flags(path: Path) -> str:
    out = subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[0]


def _layer_tree(root: Path) -> Path:
    (layer,) = [p for p in (root / "layers").iterdir() if p.is_dir()]
    return layer / "diff"


def test_new_state_root_flags_its_unpack_directory_and_trees_leave_the_roots_flex_group(
        ext4: Ext4, ext4_ketch: KetchCLI, tmp_path: Path) -> None:
    root = ext4_ketch.root
    ext4_ketch("import", str(_tree_tar(tmp_path, "a")), "tree:a")

    assert "T" in _flags(root / "tmp")
    # Placed like a top-level directory: in a flex group with no directories yet, not
    # beside the state root's own directories (where an unflagged parent puts it).
    tree = _layer_tree(root)
    assert ext4.flex_group(tree) != ext4.flex_group(root / "layers")
    assert ext4.flex_group(tree / "a3" / "f0") == ext4.flex_group(tree)


def test_root_whose_unpack_directory_lacks_the_flag_gets_it_from_the_next_load(
        ext4: Ext4, ext4_ketch: KetchCLI, tmp_path: Path) -> None:
    root = ext4_ketch.root
    ext4_ketch("import", str(_tree_tar(tmp_path, "b")), "tree:b")
    archive = tmp_path / "b.docker.tar"
    ext4_ketch("save", "-o", str(archive), "tree:b")
    ext4_ketch("rmi", "tree:b")
    # A root made before tmp/ was flagged.
    subprocess.run(["chattr", "-T", str(root / "tmp")], check=True)
    assert "T" not in _flags(root / "tmp")

    ext4_ketch("load", "-i", str(archive))

    assert "T" in _flags(root / "tmp")
    assert ext4.flex_group(_layer_tree(root)) != ext4.flex_group(root / "layers")
    _wait_until_emptied(root)  # the emptier started by rmi holds files on the mount
