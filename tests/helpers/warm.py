"""`python3 -m tests.helpers.warm`: what the tests keep between sessions and a fresh
machine lacks, made side by side before the tests start: the Debian roots
(tests/helpers/rootfs.py, ~20 CPU-seconds of mmdebstrap) and Go's build cache for the
tests' Go client (tests/helpers/gobuild.py, ~6). scripts/test.sh starts it beside mypy
and the test collection; the tests that need a root wait on its lock, and a Go build
finds the cache filled. Prints nothing: a failure is reported by the tests that need
what failed."""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.helpers import rootfs
from tests.helpers.gobuild import SPDY_CLIENT, SPDYSTREAM, go_build


def _go() -> bool:
    if shutil.which("go") is None or not SPDYSTREAM.is_dir():
        return True
    with tempfile.TemporaryDirectory() as out:
        return go_build(SPDY_CLIENT, Path(out) / "spdyclient").returncode == 0


def main() -> int:
    if os.geteuid() != 0:
        return 0
    jobs = [_go]
    if shutil.which("mmdebstrap") is not None:
        for name in rootfs.DEBIAN_ROOTS:
            if not rootfs.tar_of(name).exists():
                jobs.append(lambda name=name: rootfs.make(name) is None)
    with ThreadPoolExecutor(len(jobs)) as pool:
        done = list(pool.map(lambda job: job(), jobs))
    return 0 if all(done) else 1


if __name__ == "__main__":
    raise SystemExit(main())
