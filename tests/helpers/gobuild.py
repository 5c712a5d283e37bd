"""The tests' Go programs (tests/cri/spdyclient), built offline from Debian's packaged Go
sources, with Go's build cache kept between sessions beside the test rootfs tarballs: a
cold build compiles the standard library's packages it uses (~6 CPU-seconds here), a
warm one takes ~0.1 s. Go checks every cached result against its inputs, and builds
sharing the cache may run at once."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.helpers.rootfs import CACHE

SPDY_CLIENT = Path(__file__).resolve().parents[1] / "cri" / "spdyclient"
SPDYSTREAM = Path("/usr/share/gocode/src/github.com/moby/spdystream")


def go_build(package: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """`go build -o out` of the package directory (GOPATH mode, no network)."""
    go = shutil.which("go") or "go"
    CACHE.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode",
           "GOCACHE": str(CACHE / "go-build"), "GOPROXY": "off", "GOFLAGS": "",
           "CGO_ENABLED": "0"}
    return subprocess.run([go, "build", "-o", str(out), "."], cwd=package, env=env,
                          capture_output=True, text=True, timeout=300)
