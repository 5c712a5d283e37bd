"""The crash harness: each operation SIGKILLed at random points (seeded), then the next
command must leave nothing of it behind, the store must answer, and the operation must
succeed when repeated.

KETCH_CRASH_POINTS sets the kill points per operation (1 in the normal suite; 20 for a
thorough run), KETCH_CRASH_SEED the seed (printed on failure to replay a run).
"""

from __future__ import annotations

import io
import os
import random
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import (
    KetchCLI,
    import_image,
    isolated_network_config,
    ketch_command,
    teardown_root,
)
from tests.crash.conftest import assert_no_leftovers, assert_usable, kill_after
from tests.images.archives import ImageSpec, big_layer, docker_archive, files_tar

POINTS = int(os.environ.get("KETCH_CRASH_POINTS", "1"))
SEED = int(os.environ.get("KETCH_CRASH_SEED", "20261203"))

# one worker runs them all under `--dist loadgroup`: the harness (a registry, a loaded
# and pushed image, a build context) is made once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("crash_harness")]


@dataclass
class Op:
    name: str
    args: list[str]
    prepare: Callable[[], None] = lambda: None


def _running_ids(cli: KetchCLI) -> set[str]:
    return set(cli("ps", "-q", "--no-trunc").stdout.split())


def unreferenced(cli: KetchCLI) -> list[str]:
    """Blobs and unpacked layers no image or container references (what a killed
    operation stored and never recorded)."""
    from ketch.engine import Engine
    from ketch.oci.model import Manifest

    with Engine(cli.root, cli.root / "run") as engine:
        keep_blobs: set[str] = set()
        keep_chains = set(engine.layer_users())
        for r in engine.records.all():
            keep_blobs |= {r.id, r.manifest_digest}
            keep_blobs |= {d.digest for d in Manifest.parse(
                engine.content.read(r.manifest_digest)).layers}
            keep_chains |= set(engine.images.chain_ids(r))
        blobs = {"sha256:" + p.name for p in (cli.root / "blobs" / "sha256").glob("*")}
        layers = {p.name for p in (cli.root / "layers").glob("*") if p.is_dir()}
        return ([f"blob {b}" for b in sorted(blobs - keep_blobs)]
                + [f"layer {c}" for c in sorted(layers - {c.removeprefix("sha256:")
                                                          for c in keep_chains})])


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path,
            crash_prereqs: None) -> Iterator[tuple[KetchCLI, dict[str, Op]]]:
    base = tmp_path_factory.mktemp("harness")
    root = base / "root"
    root.mkdir()
    isolated_network_config(root)
    cli = KetchCLI(root)
    import_image(root, busybox_tar, "busybox", 'CMD ["sh"]')
    spec = ImageSpec([files_tar({"etc/h": b"h\n"}), big_layer(12 << 20, 5)],
                     tags=["hload:1"], cmd=["true"])
    archive = docker_archive(base / "hload.tar", [spec])
    server = subprocess.Popen(
        [*ketch_command(), "registry", "serve", "--addr", "127.0.0.1:0",
         "--root", str(base / "registry"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert server.stdout is not None
    host = server.stdout.readline().decode().strip().removeprefix("listening on ")
    remote = f"{host}/harness/hload:1"
    cli("load", "-i", str(archive))
    cli("tag", "hload:1", remote)
    cli("push", remote)
    context = base / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM busybox\nRUN dd if=/dev/urandom of=/x bs=1M count=8 2>/dev/null\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    counter = iter(range(10**6))

    def rm(*names: str) -> None:
        for n in names:
            cli("rm", "-f", n, check=False)

    def prepare_commit() -> None:
        if not cli("ps", "-q", "--filter", "name=^h-c$").stdout.strip():
            rm("h-c")
            cli("run", "-d", "--name", "h-c", "busybox", "sh", "-c",
                "dd if=/dev/urandom of=/big bs=1M count=16 2>/dev/null; touch /written;"
                " sleep 3000")
            # returns once dd has written its 16 MB
            cli("exec", "h-c", "sh", "-c", "while [ ! -e /written ]; do sleep 0.05; done",
                timeout=60)
        cli("rmi", "-f", "h-snap", check=False)

    def prepare_prune() -> None:
        from ketch.engine import Engine

        # three dangling images (`import` without a name), made in this process: making
        # them is not what is under test
        with Engine(root, root / "run") as engine:
            for i in range(3):
                unique = base / "dangling.tar"
                shutil.copyfile(busybox_tar, unique)
                with tarfile.open(unique, "a") as tf:
                    tf.addfile(tarfile.TarInfo(f"d-{next(counter)}-{i}"), io.BytesIO(b""))
                with open(unique, "rb") as f:
                    engine.images.import_tar(f)

    ops = {
        "load": Op("load", ["load", "-i", str(archive)],
                   lambda: cli("rmi", "-f", "hload:1", remote, check=False) and None),
        "pull": Op("pull", ["pull", remote],
                   lambda: cli("rmi", "-f", "hload:1", remote, check=False) and None),
        "push": Op("push", ["push", remote],
                   lambda: cli("tag", "hload:1", remote, check=False) and None),
        "run": Op("run", ["run", "-d", "--name", "h-run", "-p", f"{port}:80", "busybox",
                          "sleep", "3000"], lambda: rm("h-run")),
        "commit": Op("commit", ["commit", "h-c", "h-snap"], prepare_commit),
        "rm": Op("rm", ["rm", "-f", "h-rm"],
                 lambda: (rm("h-rm"), cli("run", "-d", "--name", "h-rm", "-p",
                                          f"{port}:80", "busybox", "sleep", "3000"),
                          None)[-1]),
        "image prune": Op("image prune", ["image", "prune", "-f"], prepare_prune),
        "build": Op("build", ["build", "--no-cache", "-q", "-t", "h-built", str(context)]),
    }
    yield cli, ops
    server.terminate()
    server.wait(timeout=10)
    teardown_root(root, root / "run")
    from ketch.containers.rootfs import unmount

    unmount(root / "run" / "netns")


@pytest.mark.parametrize("op_name", ["load", "pull", "push", "run", "commit", "rm",
                                     "image prune", "build"])
def test_operation_killed_at_random_points_leaves_nothing_and_succeeds_again(
        harness: tuple[KetchCLI, dict[str, Op]], op_name: str) -> None:
    cli, ops = harness
    op = ops[op_name]
    rng = random.Random(f"{SEED}-{op_name}")
    # an uninterrupted run: it works, and how long it takes sets the range of kill points
    op.prepare()
    start = time.monotonic()
    cli(*op.args, timeout=300)
    duration = time.monotonic() - start
    for n in range(POINTS):
        delay = rng.uniform(0.05, duration)
        where = f"{op_name} killed at {delay:.3f}s of {duration:.3f}s (seed {SEED}, #{n})"
        op.prepare()
        kill_after(cli, op.args, delay)
        try:
            cli("images")  # the next command: it finishes or undoes the killed one
            assert_usable(cli)
            assert_no_leftovers(cli, _running_ids(cli))
            assert unreferenced(cli) == []
        except AssertionError as e:
            raise AssertionError(f"{where}: {e}") from None
        op.prepare()
        proc = cli(*op.args, timeout=300, check=False)
        assert proc.returncode == 0, f"{where}: repeating it failed: {proc.stderr}"
    if op_name in ("run", "rm", "commit"):
        cli("rm", "-f", "h-run", "h-rm", check=False)
