"""`kill -9` in the middle of `ketch load`: the store stays usable, never shows a partial
image, and the same load succeeds afterwards; gc then leaves exactly what the image needs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, ketch_command
from tests.images.archives import ImageSpec, big_layer, docker_archive, files_tar, sha256
from tests.images.conftest import StoreState, gc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImageSpec]:
    """A ~50 MB docker-archive: a small base layer and a 48 MB incompressible one."""
    spec = ImageSpec([files_tar({"etc/base": b"base\n" * 1000}), big_layer(48 << 20, 7)],
                     tags=["big:1"], cmd=["true"])
    path = tmp_path_factory.mktemp("crash") / "big.tar"
    return docker_archive(path, [spec]), spec


@pytest.fixture(scope="module")
def load_seconds(big_archive: tuple[Path, ImageSpec],
                 tmp_path_factory: pytest.TempPathFactory) -> float:
    """How long an uninterrupted load of the big archive takes on this machine."""
    probe = KetchCLI(tmp_path_factory.mktemp("probe") / "root")
    start = time.monotonic()
    probe("load", "-i", str(big_archive[0]), timeout=300)
    return time.monotonic() - start


def _env(ketch: KetchCLI) -> dict[str, str]:
    return dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))


def _listed_images_are_whole(ketch: KetchCLI) -> list[str]:
    """Every image `ketch images` lists can be inspected, has all its layers unpacked and
    saves completely; returns their IDs."""
    proc = ketch("images", "-a", "-q", "--no-trunc")
    ids = proc.stdout.split()
    for image_id in ids:
        fmt = "{{len .RootFS.Layers}} {{.GraphDriver.Data.UpperDir}}"
        n, upper = ketch("image", "inspect", "-f", fmt, image_id).stdout.split()
        assert n == "2" and Path(upper).is_dir()
        saved = subprocess.run([*ketch_command(), "save", image_id],
                               capture_output=True, env=_env(ketch), timeout=300)
        assert saved.returncode == 0, saved.stderr
        assert len(saved.stdout) > 48 << 20
    return ids


# Absolute delays, and fractions of a whole load's duration (so that some kills land in
# the unpacking and recording phases whatever the machine's speed).
@pytest.mark.parametrize("when", [0.05, 0.2, 0.5, "25%", "50%", "75%", "90%"])
def test_load_killed_at_any_point_leaves_a_usable_store(
        ketch: KetchCLI, big_archive: tuple[Path, ImageSpec], load_seconds: float,
        when: float | str) -> None:
    path, spec = big_archive
    image_id = sha256(spec.config_bytes())
    delay = (load_seconds * int(when[:-1]) / 100) if isinstance(when, str) else when
    proc = subprocess.Popen([*ketch_command(), "load", "-i", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(ketch))
    time.sleep(delay)
    killed_while_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if delay <= 0.05:
        # Nothing loads 50 MB this fast: the earliest kill must land mid-load. (Later
        # ones may land after the end on a fast machine; they still must hold.)
        assert killed_while_running

    # The store answers, and shows the image whole or not at all.
    assert _listed_images_are_whole(ketch) in ([], [image_id])
    ketch("system", "df")

    # The same load now succeeds and yields the same image.
    out = ketch("load", "-i", str(path), timeout=300).stdout
    assert out == "Loaded image: big:1\n"
    assert _listed_images_are_whole(ketch) == [image_id]

    # gc leaves exactly the image's config, manifest and two layer blobs, two layer
    # dirs, and no staging debris of the killed process.
    gc(ketch)
    state = StoreState.of(ketch)
    assert len(state.blobs) == 4 and image_id[7:] in state.blobs
    assert {sha256(x)[7:] for x in spec.layers} <= state.blobs
    assert len(state.layers) == 2
    assert list((ketch.root / "tmp").iterdir()) == []


def test_two_loads_at_once_both_succeed(ketch: KetchCLI,
                                        big_archive: tuple[Path, ImageSpec]) -> None:
    path, spec = big_archive
    procs = [subprocess.Popen([*ketch_command(), "load", "-i", str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(ketch))
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert out == b"Loaded image: big:1\n"
    assert _listed_images_are_whole(ketch) == [sha256(spec.config_bytes())]
    gc(ketch)
    assert len(StoreState.of(ketch).blobs) == 4
