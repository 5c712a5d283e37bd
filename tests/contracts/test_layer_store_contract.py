"""The layer store contract: layers unpacked from tar streams, addressed by chain ID.

Every implementation in tests/contracts/conftest.py LAYER_STORES passes these."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.conftest import require_root

from ketch.errors import DigestMismatch, NotFound
from ketch.layers.store import LayerStore
from ketch.oci.digest import chain_ids, hex_of
from ketch.store.images import LayerRecord
from ketch.store.tmpclean import clean_tmp


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unpack(store: LayerStore, data: bytes, *, chain_id: str, diff_id: str | None,
           parent: str | None = None, compressed: bytes | None = None) -> LayerRecord:
    blob = compressed if compressed is not None else data
    return store.unpack(io.BytesIO(blob), chain_id=chain_id, diff_id=diff_id, parent=parent,
                        blob_digest=sha(blob), media_type=None, blob_size=len(blob))


def visible_layers(store: LayerStore) -> list[str]:
    return sorted(p.name for p in store.dir.iterdir() if p.is_dir())


def staging(store: LayerStore) -> list[str]:
    return sorted(p.name for p in store.tmp.iterdir() if p.name.startswith("layer-"))


def test_a_layer_unpacked_from_a_tar_stream_is_recorded_under_its_chain_id(
        layer_store: LayerStore) -> None:
    tar = layer_tar({"etc/hello": b"hi\n", "bin/tool": b"#!/bin/sh\n"})
    diff = sha(tar)
    rec = unpack(layer_store, tar, chain_id=diff, diff_id=diff)
    assert (rec.chain_id, rec.diff_id, rec.parent) == (diff, diff, None)
    # its size as dockerd counts it (the files' bytes); the tar's length beside it
    assert (rec.size, rec.tar_size) == (len(b"hi\n#!/bin/sh\n"), len(tar))
    assert layer_store.has(diff)
    assert layer_store.records.layer(diff) == rec
    assert (layer_store.path(diff) / "etc" / "hello").read_bytes() == b"hi\n"
    assert layer_store.lower_dirs([diff]) == [str(layer_store.path(diff))]
    assert staging(layer_store) == []


def test_the_diff_id_of_a_compressed_layer_is_the_digest_of_the_uncompressed_tar(
        layer_store: LayerStore) -> None:
    tar = layer_tar({"a": b"a" * 5000})
    gz = gzip.compress(tar)
    rec = unpack(layer_store, tar, chain_id=sha(tar), diff_id=None, compressed=gz)
    assert rec.diff_id == sha(tar)
    assert (rec.blob_digest, rec.blob_size) == (sha(gz), len(gz))
    assert (layer_store.path(sha(tar)) / "a").read_bytes() == b"a" * 5000


def test_a_layer_whose_content_does_not_match_its_diff_id_leaves_nothing(
        layer_store: LayerStore) -> None:
    tar = layer_tar({"x": b"x"})
    promised = sha(b"something else")
    with pytest.raises(DigestMismatch, match="does not match its diff ID"):
        unpack(layer_store, tar, chain_id=promised, diff_id=promised)
    assert not layer_store.has(promised)
    assert layer_store.records.layer(promised) is None
    assert visible_layers(layer_store) == []
    assert staging(layer_store) == []


def test_a_chain_id_that_is_not_the_parents_chain_with_the_diff_id_is_refused(
        layer_store: LayerStore) -> None:
    base, top = layer_tar({"base": b"0"}), layer_tar({"top": b"1"})
    unpack(layer_store, base, chain_id=sha(base), diff_id=sha(base))
    wrong = sha(top)  # top's DiffID, but top sits on base: its chain ID differs
    with pytest.raises(DigestMismatch, match="is not the chain ID of diff ID"):
        unpack(layer_store, top, chain_id=wrong, diff_id=sha(top), parent=sha(base))
    with pytest.raises(DigestMismatch, match="is not the chain ID of diff ID"):
        unpack(layer_store, top, chain_id=wrong, diff_id=None, parent=sha(base))
    tree = layer_store.tmp / "tree"
    tree.mkdir()
    with pytest.raises(DigestMismatch, match="is not the chain ID of diff ID"):
        layer_store.adopt_dir(tree, chain_id=wrong, diff_id=sha(top), parent=sha(base),
                              blob_digest=None, media_type=None, blob_size=None, size=0)
    assert layer_store.records.layer(wrong) is None
    assert visible_layers(layer_store) == [hex_of(sha(base))]
    assert staging(layer_store) == []


def test_a_parent_chain_gives_overlay_lower_dirs_topmost_first(layer_store: LayerStore) -> None:
    tars = [layer_tar({"base": b"0"}), layer_tar({"mid": b"1"}), layer_tar({"top": b"2"})]
    diffs = [sha(t) for t in tars]
    chains = chain_ids(diffs)
    assert chains[0] == diffs[0]
    assert chains[1] == sha(f"{diffs[0]} {diffs[1]}".encode())
    parent = None
    for tar, diff, chain in zip(tars, diffs, chains, strict=True):
        rec = unpack(layer_store, tar, chain_id=chain, diff_id=diff, parent=parent)
        assert rec.parent == parent
        parent = chain
    assert layer_store.lower_dirs(chains) == [str(layer_store.path(c)) for c in reversed(chains)]
    assert [layer_store.records.layer(c).parent for c in chains] == [None, *chains[:2]]


def test_a_chain_mounted_with_overlayfs_shows_the_union_with_whiteouts_applied(
        layer_store: LayerStore, tmp_path: Path) -> None:
    require_root()
    base = layer_tar({"etc/keep": b"base\n", "etc/gone": b"x", "etc/changed": b"old\n"})
    top = layer_tar({"etc/.wh.gone": b"", "etc/changed": b"new\n", "etc/added": b"+\n"})
    chains = chain_ids([sha(base), sha(top)])
    unpack(layer_store, base, chain_id=chains[0], diff_id=sha(base))
    unpack(layer_store, top, chain_id=chains[1], diff_id=sha(top), parent=chains[0])
    target = tmp_path / "merged"
    target.mkdir()
    lower = ":".join(str(p) for p in layer_store.lower_dirs(chains))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower}",
                    str(target)], check=True, capture_output=True)
    try:
        etc = target / "etc"
        assert sorted(p.name for p in etc.iterdir()) == ["added", "changed", "keep"]
        assert ((etc / "changed").read_text(), (etc / "keep").read_text()) == ("new\n", "base\n")
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_unpacking_a_layer_that_exists_returns_it_without_reading_the_stream(
        layer_store: LayerStore) -> None:
    tar = layer_tar({"once": b"1"})
    first = unpack(layer_store, tar, chain_id=sha(tar), diff_id=sha(tar))
    again = layer_store.unpack(io.BytesIO(b"not a tar at all"), chain_id=sha(tar),
                               diff_id=sha(tar), parent=None, blob_digest=None,
                               media_type=None, blob_size=None)
    assert again == first
    assert visible_layers(layer_store) == [hex_of(sha(tar))]


def test_concurrent_unpacks_of_one_layer_all_return_it_and_leave_one_copy(
        layer_store: LayerStore) -> None:
    tar = layer_tar({f"d/f{i}": os.urandom(4096) for i in range(64)})
    chain = sha(tar)
    barrier = threading.Barrier(4)

    def unpack_one() -> LayerRecord:
        barrier.wait(10)
        return unpack(layer_store, tar, chain_id=chain, diff_id=chain)

    with ThreadPoolExecutor(4) as pool:
        records = list(pool.map(lambda _i: unpack_one(), range(4)))
    assert records == [layer_store.records.layer(chain)] * 4
    assert visible_layers(layer_store) == [hex_of(chain)]
    assert len(list((layer_store.path(chain) / "d").iterdir())) == 64
    assert staging(layer_store) == []


def test_an_adopted_tree_becomes_the_layer_and_a_second_adoption_keeps_the_first(
        layer_store: LayerStore) -> None:
    chain = sha(b"adopted")

    def tree(name: str, text: str) -> Path:
        t = layer_store.tmp / name
        t.mkdir()
        (t / "file").write_text(text)
        return t

    first = tree("first", "one")
    rec = layer_store.adopt_dir(first, chain_id=chain, diff_id=chain, parent=None,
                                blob_digest=None, media_type=None, blob_size=None, size=3)
    assert not first.exists()
    assert layer_store.has(chain) and layer_store.records.layer(chain) == rec
    second = tree("second", "two")
    again = layer_store.adopt_dir(second, chain_id=chain, diff_id=chain, parent=None,
                                  blob_digest=None, media_type=None, blob_size=None, size=3)
    assert again == rec
    assert not second.exists()
    assert (layer_store.path(chain) / "file").read_text() == "one"


def test_a_removed_layer_is_gone_from_disk_records_and_lower_dirs(
        layer_store: LayerStore) -> None:
    keep, drop = layer_tar({"keep": b"k"}), layer_tar({"drop": b"d"})
    unpack(layer_store, keep, chain_id=sha(keep), diff_id=sha(keep))
    unpack(layer_store, drop, chain_id=sha(drop), diff_id=sha(drop))
    layer_store.remove(sha(drop))
    assert not layer_store.has(sha(drop))
    assert layer_store.records.layer(sha(drop)) is None
    assert visible_layers(layer_store) == [hex_of(sha(keep))]
    with pytest.raises(NotFound, match="not unpacked"):
        layer_store.lower_dirs([sha(drop)])
    layer_store.remove(sha(drop))  # idempotent
    assert layer_store.has(sha(keep))


def test_a_layer_directory_without_a_record_is_not_a_layer_and_is_swept(
        layer_store: LayerStore) -> None:
    """A kill between the rename into place and the record leaves such a directory."""
    tar = layer_tar({"f": b"f"})
    orphan = layer_store.dir / hex_of(sha(tar)) / "diff"
    orphan.mkdir(parents=True)
    assert not layer_store.has(sha(tar))
    assert layer_store.sweep_unrecorded() == 1
    assert visible_layers(layer_store) == []
    unpack(layer_store, tar, chain_id=sha(tar), diff_id=sha(tar))
    assert layer_store.has(sha(tar))
    assert layer_store.sweep_unrecorded() == 0


_KILLED_UNPACK = """
import io, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.contracts.conftest import LAYER_STORES
store = LAYER_STORES[sys.argv[3]](Path(sys.argv[1]))
store.unpack(open(0, "rb", buffering=0), chain_id=sys.argv[4], diff_id=sys.argv[4], parent=None,
             blob_digest=None, media_type=None, blob_size=None)
"""


def test_a_creation_killed_midway_leaves_no_visible_layer_and_its_staging_is_cleaned(
        layer_store: LayerStore, request: pytest.FixtureRequest) -> None:
    tar = layer_tar({f"f{i}": os.urandom(64 * 1024) for i in range(16)})
    chain = sha(tar)
    repo = str(Path(__file__).resolve().parents[2])
    name = request.node.callspec.params["layer_store"]
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_UNPACK, str(layer_store.dir.parent),
                             repo, name, chain], stdin=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdin is not None
    proc.stdin.write(tar[: len(tar) // 2])
    proc.stdin.flush()
    deadline = time.monotonic() + 20
    while not any((layer_store.tmp / s / "diff").is_dir() and
                  any((layer_store.tmp / s / "diff").iterdir()) for s in staging(layer_store)):
        assert proc.poll() is None and time.monotonic() < deadline, "the unpack never began"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    assert not layer_store.has(chain)
    assert layer_store.records.layer(chain) is None
    assert visible_layers(layer_store) == []
    assert len(staging(layer_store)) == 1  # the dead writer's staging, not a layer
    assert clean_tmp(layer_store.tmp) == 1
    assert staging(layer_store) == []
    rec = unpack(layer_store, tar, chain_id=chain, diff_id=chain)
    assert rec.chain_id == chain and layer_store.has(chain)


def test_a_layer_is_kept_while_an_image_or_a_container_uses_it_and_freed_after(
        tmp_path: Path) -> None:
    """The store counts no references itself: the Engine's image gc keeps every chain an
    image or a container stands on, and `rmi` refuses while a container uses one."""
    from ketch.engine import Engine
    from ketch.errors import Conflict

    tar = layer_tar({"hello": b"hi"})
    with Engine(tmp_path / "root", tmp_path / "run") as engine:
        image = engine.images.import_tar(io.BytesIO(tar), ref="tiny:1")
        [chain] = engine.images.chain_ids(image)
        assert chain == sha(tar)
        engine.images.gc()
        assert engine.layers.has(chain)
        ctr = engine.containers.create({"Image": "tiny:1", "Cmd": ["/hello"]},
                                       {"NetworkMode": "none"})
        with pytest.raises(Conflict, match="image is being used by stopped container"):
            engine.images.remove(image.id)
        engine.images.remove(image.id, force=True)
        assert engine.records.get(image.id) is None
        engine.images.gc()
        assert engine.layers.has(chain), "the container's layer went with its image"
        engine.containers.remove(ctr.id, force=True)
        engine.images.gc()
        assert not engine.layers.has(chain)
        assert visible_layers(engine.layers) == []


def test_gc_waits_out_a_moment_of_its_lock_and_leaves_the_sweep_to_a_writer(
        tmp_path: Path) -> None:
    """A writer (pull, load, build) holds gc.lock shared while it writes: gc does not wait
    for it, and the next gc sweeps. The trash emptier takes the lock for a moment before
    each tree it deletes: a gc that meets that moment still sweeps."""
    import fcntl

    from ketch.engine import Engine

    with Engine(tmp_path / "root", tmp_path / "run") as engine:
        image = engine.images.import_tar(io.BytesIO(layer_tar({"gone": b"x"})), ref="t:1")
        [chain] = engine.images.chain_ids(image)
        lock = os.open(tmp_path / "root" / "gc.lock", os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_SH)  # a writer
            began = time.monotonic()
            engine.images.remove(image.id)
            assert time.monotonic() - began < 2
            assert engine.records.get(image.id) is None and engine.layers.has(chain)
            fcntl.flock(lock, fcntl.LOCK_UN)

            held = threading.Event()

            def moment() -> None:  # as the emptier looks for writers
                fcntl.flock(lock, fcntl.LOCK_EX)
                held.set()
                time.sleep(0.05)
                fcntl.flock(lock, fcntl.LOCK_UN)

            t = threading.Thread(target=moment)
            t.start()
            try:
                held.wait(10)
                swept = engine.images.gc()
            finally:
                t.join()
            assert swept is True
        finally:
            os.close(lock)
        assert not engine.layers.has(chain)
