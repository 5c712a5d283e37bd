"""A state root on the disk's own filesystem, where ketch keeps /var/lib/ketch.

scripts/test.sh gives the other tests' temporary directories a tmpfs (see there why);
this one puts its root next to the default state root, so overlay mounts, the image
store, commit and copy also run on the filesystem users have under /var/lib."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, isolated_network_config, require_root, teardown_root
from tests.helpers.host import mounts_under


def _fs_type(path: str) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def disk_root() -> Iterator[Path]:
    require_root()
    root = Path(tempfile.mkdtemp(prefix="ketch-disk-test-", dir="/var/lib"))
    try:
        isolated_network_config(root)
        yield root
    finally:
        teardown_root(root, root / "run")
        shutil.rmtree(root, ignore_errors=True)


def test_a_root_on_the_disk_runs_commits_copies_and_removes(disk_root: Path,
                                                            busybox_tar: Path,
                                                            tmp_path: Path) -> None:
    fs = _fs_type(str(disk_root))
    assert fs not in ("tmpfs", "ramfs"), f"{disk_root} is on {fs}, not on the disk"
    ketch = KetchCLI(disk_root)
    ketch("import", str(busybox_tar), "busybox")
    p = ketch("run", "--name", "writer", "busybox", "sh", "-c",
              "echo kept > /data.txt && rm /bin/vi && echo wrote")
    assert p.stdout == "wrote\n"
    assert ketch("diff", "writer").stdout.splitlines() == ["C /bin", "D /bin/vi", "A /data.txt"]
    ketch("cp", "writer:/data.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "kept\n"
    ketch("commit", "writer", "committed")
    p = ketch("run", "--rm", "committed", "sh", "-c", "cat /data.txt; ls /bin/vi", check=False)
    assert (p.returncode, p.stdout) == (1, "kept\n")
    assert "/bin/vi: No such file or directory" in p.stderr
    ketch("rm", "writer")
    ketch("rmi", "committed", "busybox")
    assert ketch("images", "-q").stdout == ""
    assert ketch("ps", "-aq").stdout == ""
    netns_dir = os.path.join(disk_root, "run", "netns")  # kept while the root exists
    assert [m for m in mounts_under(disk_root) if m != netns_dir] == []
