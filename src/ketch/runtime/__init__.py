"""The low layer that runs a bundle: OCI config generation (`spec`), user resolution
inside a rootfs (`users`), the runc/crun driver (`oci`), the conmon monitor with attach
and exec (`monitor`) and k8s-file log reading (`logs`). No images, no database."""

from __future__ import annotations

import os


def which(name: str) -> str | None:
    """`shutil.which` for a bare command name: the first executable file of that name on
    $PATH. Here, in the package itself, because shutil's import (bz2, lzma, fnmatch)
    costs `run` ~5 ms and the driver's module (json, subprocess) `info` ~15."""
    for d in (os.environ.get("PATH") or os.defpath).split(os.pathsep):
        candidate = os.path.join(d or ".", name)
        if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
            return candidate
    return None


def version_commit(binary: str) -> str:
    """The `commit:` line of `BINARY --version` (runc's and crun's), which dockerd reports
    as the default runtime's commit in `docker info`; "N/A" when the binary cannot say."""
    from ketch.runtime.spawn import SpawnTimeout, run

    try:
        _, out, _ = run([binary, "--version"], timeout=5)
    except (OSError, SpawnTimeout):
        return "N/A"
    for line in out.decode(errors="replace").splitlines():
        key, sep, commit = line.partition(":")
        if sep and key.strip() == "commit":
            return commit.strip()
    return "N/A"
