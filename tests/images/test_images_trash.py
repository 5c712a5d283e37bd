"""Removed layer trees: renamed into `<root>/trash` at once, deleted by a background
emptier (see ketch.store.trash), never outside the state root, and a killed emptier's
work finished by the next command."""

from __future__ import annotations

import fcntl
import os
import signal
import tarfile
import time
from pathlib import Path

from tests.conftest import KetchCLI
from tests.images.archives import Entry, tar_bytes


def _layer_dirs(root: Path) -> set[str]:
    return {p.name for p in (root / "layers").iterdir() if p.is_dir()}


def _emptier_pid(root: Path) -> int | None:
    """The process holding `trash.lock` (an emptier at work), from /proc/locks."""
    try:
        ino = (root / "trash.lock").stat().st_ino
    except FileNotFoundError:
        return None
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{ino}"):
            return int(fields[4])
    return None


def _wait_until_emptied(root: Path, timeout: float = 60) -> None:
    """Until the trash is empty and no emptier holds its lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trash = root / "trash"
        left = list(trash.iterdir()) if trash.exists() else []
        lock = os.open(root / "trash.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                idle = True
            except BlockingIOError:
                idle = False
        finally:
            os.close(lock)
        if not left and idle:
            return
        time.sleep(0.2)
    raise AssertionError(f"trash not emptied after {timeout}s: {sorted(os.listdir(trash))}")


def _import_tree(ketch: KetchCLI, tmp_path: Path, name: str) -> None:
    """A one-layer image with 300 files and a read-only directory (which a plain
    recursive delete could not empty)."""
    entries = [Entry("data", type=tarfile.DIRTYPE)]
    entries += [Entry(f"data/f{i}", f"file {i}\n".encode()) for i in range(300)]
    entries += [Entry("ro", type=tarfile.DIRTYPE, mode=0o555), Entry("ro/kept", b"x")]
    src = tmp_path / f"{name}.tar"
    src.write_bytes(tar_bytes(entries))
    ketch("import", str(src), name)


def test_rmi_moves_the_layer_tree_to_the_trash_inside_the_root_and_it_is_deleted(
        ketch: KetchCLI, tmp_path: Path) -> None:
    root = ketch.root
    _import_tree(ketch, tmp_path, "tree:1")
    layers = _layer_dirs(root)
    assert len(layers) == 1
    outside_before = set(os.listdir(root.parent))

    ketch("rmi", "tree:1")
    # The layer is gone from the store at once; what is not deleted yet is in trash/.
    assert _layer_dirs(root) == set()
    # (the emptier waits two seconds before deleting: the tree is still there)
    trashed = [p.name for p in (root / "trash").iterdir()]
    assert len(trashed) == 1 and trashed[0].startswith(next(iter(layers)) + "-")
    _wait_until_emptied(root)
    assert list((root / "trash").iterdir()) == []
    assert set(os.listdir(root.parent)) == outside_before  # nothing left the root
    assert ketch("images", "-q").stdout.strip() == ""


def test_a_killed_emptier_leaves_its_entries_and_the_next_command_deletes_them(
        ketch: KetchCLI, tmp_path: Path) -> None:
    root = ketch.root
    _import_tree(ketch, tmp_path, "tree:1")
    ketch("rmi", "tree:1")
    # The emptier waits a moment before deleting (a command that unpacks may follow):
    # kill it in that window, as a crash or a reboot would.
    deadline = time.monotonic() + 10
    pid = _emptier_pid(root)
    while pid is None and time.monotonic() < deadline:
        time.sleep(0.05)
        pid = _emptier_pid(root)
    assert pid is not None and pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    while _emptier_pid(root) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    left = list((root / "trash").iterdir())
    assert len(left) == 1 and (left[0] / "diff" / "data" / "f299").exists()

    # Any command that opens the image store starts a new emptier.
    ketch("images")
    _wait_until_emptied(root)
    assert list((root / "trash").iterdir()) == []


def test_the_emptier_waits_while_a_writer_holds_the_store(ketch: KetchCLI,
                                                          tmp_path: Path) -> None:
    """Deletion pauses while a pull, load or build holds gc.lock shared, so the tree they
    unpack does not land among inodes freed a moment before."""
    root = ketch.root
    _import_tree(ketch, tmp_path, "tree:1")
    ketch("rmi", "tree:1")
    # A writer starts within the emptier's start delay (a pull right after the rmi).
    writer = os.open(root / "gc.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(writer, fcntl.LOCK_SH)
        time.sleep(4)  # well past the start delay
        left = list((root / "trash").iterdir())
        assert len(left) == 1 and (left[0] / "diff" / "data" / "f0").exists()
    finally:
        os.close(writer)  # the writer is done
    _wait_until_emptied(root)
    assert list((root / "trash").iterdir()) == []
