"""The pull pipeline: a layer is unpacked while it downloads, a bad or stalled layer
fails the pull by name and leaves nothing of itself, and what was complete is reused."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, isolated_network_config, require_root, teardown_root
from tests.distribution.relay import Relay
from tests.distribution.test_registry_server import call, push_blob, sha

from ketch import Engine
from ketch.distribution.progress import PullResult
from ketch.oci.digest import chain_of
from ketch.oci.model import host_platform
from ketch.progress import Progress


@pytest.fixture(autouse=True)
def _as_root() -> None:
    require_root()


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1700000000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _publish(host: str, repo: str, layer_files: list[dict[str, bytes]]) -> list[str]:
    """Push an image of gzip layers made of `layer_files` as `repo:1`; the layers'
    digests, in order."""
    tars = [_tar(files) for files in layer_files]
    blobs = [gzip.compress(t, compresslevel=1, mtime=0) for t in tars]
    plat = host_platform()
    config = json.dumps({
        "architecture": plat.architecture, "os": plat.os, "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in tars]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": push_blob(host, repo, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": push_blob(host, repo, b), "size": len(b)} for b in blobs],
    }).encode()
    r = call(host, "PUT", f"/v2/{repo}/manifests/1", manifest,
             {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.status == 201, r.body
    return [sha(b) for b in blobs]


def _random_files(seed: int, count: int, size: int, prefix: str) -> dict[str, bytes]:
    rnd = random.Random(seed)
    return {f"{prefix}/f{i}": rnd.randbytes(size) for i in range(count)}


@pytest.fixture
def tmpfs_dir(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "tmpfs"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(where)],
                   check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("filesystem", ["state-root-fs", "tmpfs"])
def test_pull_unpacks_a_layer_while_it_and_the_next_layer_download(
        filesystem: str, inproc_registry, tmp_path: Path, request) -> None:
    reg = inproc_registry()
    first = _random_files(1, 96, 64 << 10, "one")  # 6 MiB in 96 files
    second = _random_files(2, 1, 6 << 20, "two")
    digests = _publish(reg.host, "pipe", [first, second])
    l1, l2 = (d[7:19] for d in digests)
    place = request.getfixturevalue("tmpfs_dir") if filesystem == "tmpfs" else tmp_path
    root = place / "puller"
    root.mkdir()
    isolated_network_config(root)
    # 8 MB/s per connection: each layer takes most of a second to arrive.
    with Relay(reg.host, rate=8e6) as relay:
        try:
            with Engine(root, root / "run") as engine:
                events = list(engine.pull(f"{relay.host}/pipe:1"))
                assert isinstance(events[-1], PullResult)
                progress = [e for e in events if isinstance(e, Progress)]

                def first_time(status: str, layer: str) -> float:
                    return next(e.time for e in progress if (e.status, e.id) == (status, layer))

                l1_done = first_time("Download complete", l1)
                # Extraction of layer 1 got bytes in (a partial Extracting update)
                # before its own download and the second layer's finished.
                partial = [e for e in progress if e.id == l1 and e.status == "Extracting"
                           and 0 < e.current < e.total]
                assert partial, [str(e) for e in progress]
                assert partial[0].time < l1_done
                assert partial[0].time < first_time("Download complete", l2)
                assert first_time("Pull complete", l1) < first_time("Pull complete", l2)
                # Both layers' trees are in place, byte for byte.
                rec = engine.images.records.layer(sha(_tar(first)))
                assert rec is not None
                tree = engine.images.layers.path(rec.chain_id)
                assert (tree / "one" / "f95").read_bytes() == first["one/f95"]
                assert engine.images.content.exists(digests[1])
        finally:
            teardown_root(root, root / "run")


def test_pull_extracts_two_layers_at_once_and_reports_them_complete_in_order(
        inproc_registry, tmp_path: Path) -> None:
    reg = inproc_registry()
    first = _random_files(7, 48, 128 << 10, "one")  # 6 MiB each, incompressible
    second = _random_files(8, 48, 128 << 10, "two")
    digests = _publish(reg.host, "par", [first, second])
    l1, l2 = (d[7:19] for d in digests)
    root = tmp_path / "puller"
    root.mkdir()
    isolated_network_config(root)
    # 8 MB/s per connection: both layers arrive side by side over most of a second,
    # each extracted as its bytes come in.
    with Relay(reg.host, rate=8e6) as relay:
        try:
            with Engine(root, root / "run") as engine:
                events = list(engine.pull(f"{relay.host}/par:1"))
                assert isinstance(events[-1], PullResult)
                progress = [e for e in events if isinstance(e, Progress)]

                def times(status: str, layer: str, partial: bool = False) -> list[float]:
                    return [e.time for e in progress if (e.status, e.id) == (status, layer)
                            and (not partial or 0 < e.current < e.total)]

                l1_extracted = max(times("Extracting", l1))  # its last: current == total
                l2_partial = times("Extracting", l2, partial=True)
                assert l2_partial, [str(e) for e in progress]
                # The second layer was being unpacked while the first still was.
                assert l2_partial[0] < l1_extracted
                completes = [e.id for e in progress if e.status == "Pull complete"]
                assert completes == [l1, l2]
                chain1 = sha(_tar(first))
                chain2 = chain_of(chain1, sha(_tar(second)))
                for chain, files, prefix in ((chain1, first, "one"), (chain2, second, "two")):
                    assert engine.images.records.layer(chain) is not None
                    tree = engine.images.layers.path(chain)
                    assert (tree / prefix / "f47").read_bytes() == files[f"{prefix}/f47"]
        finally:
            teardown_root(root, root / "run")


def _files_of(root: Path) -> set[str]:
    return {p.name for p in (root / "blobs" / "sha256").iterdir()}


def test_pull_of_a_corrupt_layer_names_it_keeps_nothing_of_it_and_resumes(
        inproc_registry, other_root) -> None:
    reg = inproc_registry()
    digests = _publish(reg.host, "resume", [_random_files(3, 20, 32 << 10, "a"),
                                            _random_files(4, 20, 32 << 10, "b")])
    l1, l2 = (d[7:19] for d in digests)
    blob2 = reg.root / "blobs" / "sha256" / digests[1][7:]
    good = blob2.read_bytes()
    blob2.write_bytes(good[:-10] + bytes(10))  # same size, wrong bytes
    puller: KetchCLI = other_root("puller")
    proc = puller("pull", f"{reg.host}/resume:1", check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: content digest mismatch for layer {l2}:")
    assert puller("images", "-q").stdout.strip() == ""
    stored = _files_of(puller.root)
    assert digests[0][7:] in stored and digests[1][7:] not in stored
    assert not [p for p in (puller.root / "tmp").iterdir() if p.name.startswith("blob-")]

    blob2.write_bytes(good)
    out = puller("pull", f"{reg.host}/resume:1").stdout
    # The verified first blob is not fetched again. Whether its extraction had started
    # when the second layer failed depends on timing (under way, it finishes and the
    # layer "Already exists"; not yet begun, it is extracted now from the kept blob).
    assert f"{l1}: Pulling fs layer" not in out
    assert f"{l2}: Pulling fs layer" in out and f"{l2}: Pull complete" in out
    assert puller("images", "-q").stdout.strip() != ""


def test_pull_from_a_registry_that_stops_sending_times_out_in_one_line(
        inproc_registry, other_root) -> None:
    reg = inproc_registry()
    digests = _publish(reg.host, "stall", [_random_files(5, 4, 256 << 10, "s")])
    puller: KetchCLI = other_root("puller")
    with Relay(reg.host, stall_after=256 << 10) as relay:
        start = time.monotonic()
        proc = puller("pull", f"{relay.host}/stall:1", check=False, timeout=60,
                      env={"KETCH_REGISTRY_READ_TIMEOUT": "1"})
        elapsed = time.monotonic() - start
        assert relay.stalled.is_set()
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"Error: error pulling layer {digests[0][7:19]}: {relay.host} sent"
                     " nothing for 1s (read timed out)"]
    assert elapsed < 30
    assert digests[0][7:] not in _files_of(puller.root)
    assert not os.listdir(puller.root / "tmp")


def test_an_abandoned_pull_stops_its_stalled_download_at_once_and_leaves_no_staging(
        inproc_registry, tmp_path: Path) -> None:
    reg = inproc_registry()
    _publish(reg.host, "slow", [_random_files(6, 1, 4 << 20, "x")])
    root = tmp_path / "puller"
    root.mkdir()
    isolated_network_config(root)
    # The registry stops sending after 1 MiB of the layer and keeps the connection
    # open: closing the pull must not wait for the read timeout (120 s).
    with Relay(reg.host, stall_after=1 << 20) as relay:
        try:
            with Engine(root, root / "run") as engine:
                events = engine.pull(f"{relay.host}/slow:1")
                for event in events:
                    if isinstance(event, Progress) and event.status == "Extracting":
                        break
                assert relay.stalled.wait(10)
                time.sleep(0.5)  # what was sent is read: the download waits in recv
                start = time.monotonic()
                events.close()  # type: ignore[attr-defined]
                assert time.monotonic() - start < 5
                assert engine.images.list() == []
            assert [p.name for p in (root / "tmp").iterdir()] == []
        finally:
            teardown_root(root, root / "run")
