"""`ketch.store.trash.delete_tree`: the descriptor-relative deletion of trees a command
removes (a container's directory, a volume) and the trash emptier's walk."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.conftest import require_root

from ketch.store.trash import delete_tree


def test_a_symlink_in_the_tree_is_removed_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "keep").write_text("keep\n")
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "to-dir").symlink_to(outside)
    (tree / "to-sub").symlink_to(outside / "sub")
    (tree / "a" / "ro").mkdir()
    (tree / "a" / "ro" / "f").write_text("x")
    (tree / "a" / "ro").chmod(0o500)
    delete_tree(str(tree))
    assert not tree.exists()
    assert (outside / "sub" / "keep").read_text() == "keep\n"


def test_any_depth_is_deleted_with_a_bounded_number_of_descriptors(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.mkdir("tree", dir_fd=fd)
    cur = os.open("tree", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    for _ in range(3000):  # deeper than PATH_MAX allows to name, and the recursion limit
        os.mkdir("d", dir_fd=cur)
        nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=cur)
        os.close(cur)
        cur = nxt
    with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=cur), "w") as f:
        f.write("bottom\n")
    os.close(cur)
    delete_tree(str(tree))
    assert not tree.exists()


def test_a_mount_inside_the_tree_is_not_entered(tmp_path: Path) -> None:
    require_root()
    data = tmp_path / "data"
    data.mkdir()
    (data / "precious").write_text("user data\n")
    tree = tmp_path / "tree"
    (tree / "mnt").mkdir(parents=True)
    (tree / "other").write_text("x")
    subprocess.run(["mount", "--bind", str(data), str(tree / "mnt")], check=True)
    try:
        delete_tree(str(tree))
        assert (data / "precious").read_text() == "user data\n"
        assert [p.name for p in tree.iterdir()] == ["mnt"]  # the rest went
        with pytest.raises(OSError):
            delete_tree(str(tree), ignore_errors=False)
    finally:
        subprocess.run(["umount", str(tree / "mnt")], check=True)
    delete_tree(str(tree), ignore_errors=False)
    assert not tree.exists()


def test_a_mount_point_with_a_space_in_its_path_is_known_as_one(tmp_path: Path) -> None:
    # mountinfo writes the space as \040: one reader (ketch.mountinfo) decodes it for
    # every caller (the overlay and volume checks read the raw field before)
    require_root()
    from ketch.containers.rootfs import is_mounted
    from ketch.mountinfo import is_mount_point, mount_points_under

    data = tmp_path / "data"
    data.mkdir()
    target = tmp_path / "a dir" / "mnt point"
    target.mkdir(parents=True)
    assert not is_mounted(target)
    subprocess.run(["mount", "--bind", str(data), str(target)], check=True)
    try:
        assert is_mount_point(target) and is_mounted(target)
        assert mount_points_under(str(tmp_path / "a dir")) == {str(target)}
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert not is_mount_point(target)
