"""Hostile and broken input: truncated or corrupt archives, layer tars that try to
escape, blobs that lie about their digest. Each is refused with one line on stderr, and
the store is left as it was: the same images, and after gc the same blobs and layers."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
from tests.conftest import KetchCLI
from tests.images.archives import (
    Entry,
    ImageSpec,
    docker_archive,
    files_tar,
    oci_archive,
    sha256,
    tar_bytes,
)
from tests.images.conftest import StoreState, assert_one_line_error, gc


@pytest.fixture
def saved(ketch: KetchCLI, busybox: str, tmp_path: Path) -> Path:
    """A real two-image archive from `ketch save`, then removed from the store again so
    that loading it would change the store."""
    from tests.images.conftest import child_image

    child_image(ketch, busybox, {"data/payload": os.urandom(300_000)}, "child:1")
    path = tmp_path / "saved.tar"
    ketch("save", "-o", str(path), "child:1")
    ketch("rmi", "child:1")
    return path


def assert_load_refused(ketch: KetchCLI, archive: Path, *needles: str) -> None:
    before = StoreState.of(ketch)
    proc = ketch("load", "-i", str(archive), check=False)
    assert proc.returncode == 1, proc.stdout
    assert proc.stdout == ""
    assert_one_line_error(proc.stderr, *needles)
    gc(ketch)
    after = StoreState.of(ketch)
    assert after.images == before.images
    assert after.blobs == before.blobs
    assert after.layers == before.layers
    assert not list((ketch.root / "tmp").iterdir())


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, "last-byte"])
def test_truncated_archive_is_refused_and_store_unchanged(
        ketch: KetchCLI, saved: Path, tmp_path: Path, fraction: float | str) -> None:
    data = saved.read_bytes()
    if fraction == "last-byte":
        # cut inside the data of the archive's last member: one byte short. (A cut in
        # the zero blocks after it is a complete archive, which Go's tar reader and so
        # `docker load` accept, and so does ketch.)
        with tarfile.open(saved) as tf:
            last = tf.getmembers()[-1]
        end = last.offset_data + last.size
        assert last.size > 0
        cut_at = end - 1
    else:
        cut_at = int(len(data) * float(fraction))
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[:cut_at])
    assert_load_refused(ketch, cut)


def test_truncated_archive_then_the_whole_one_loads(ketch: KetchCLI, saved: Path,
                                                    tmp_path: Path) -> None:
    data = saved.read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2])
    ketch("load", "-i", str(tmp_path / "cut.tar"), check=False)
    assert ketch("load", "-i", str(saved)).stdout == "Loaded image: child:1\n"


def test_archive_with_a_corrupted_layer_is_refused(ketch: KetchCLI, saved: Path,
                                                   tmp_path: Path) -> None:
    data = bytearray(saved.read_bytes())
    # flip bytes inside the child's own layer (the base layer is in the store already,
    # and like Docker, load does not read again a layer it has)
    import json

    with tarfile.open(saved) as tf:
        top = json.loads(tf.extractfile("manifest.json").read())[0]["Layers"][-1]  # type: ignore[union-attr]
        member = tf.getmember(top)
        start = member.offset_data + member.size // 2
    data[start:start + 16] = bytes(b ^ 0xFF for b in data[start:start + 16])
    bad = tmp_path / "corrupt.tar"
    bad.write_bytes(bytes(data))
    assert_load_refused(ketch, bad, "diff ID")


def test_archive_with_a_corrupted_tar_header_is_refused(ketch: KetchCLI, saved: Path,
                                                        tmp_path: Path) -> None:
    data = bytearray(saved.read_bytes())
    data[600:620] = b"\xff" * 20  # inside the second member's header
    bad = tmp_path / "header.tar"
    bad.write_bytes(bytes(data))
    assert_load_refused(ketch, bad)


def test_garbage_and_empty_input_are_refused(ketch: KetchCLI, busybox: str,
                                             tmp_path: Path) -> None:
    (tmp_path / "garbage").write_bytes(os.urandom(4096))
    assert_load_refused(ketch, tmp_path / "garbage")
    (tmp_path / "empty").write_bytes(b"")
    assert_load_refused(ketch, tmp_path / "empty", "empty")


def test_tar_without_an_image_index_is_refused(ketch: KetchCLI, busybox: str,
                                              tmp_path: Path) -> None:
    (tmp_path / "plain.tar").write_bytes(files_tar({"hello": b"world"}))
    assert_load_refused(ketch, tmp_path / "plain.tar", "manifest.json", "index.json")


def test_manifest_naming_a_missing_layer_is_refused(ketch: KetchCLI, busybox: str,
                                                    tmp_path: Path) -> None:
    spec = ImageSpec([files_tar({"a": b"1"})], tags=["x:1"])
    path = docker_archive(tmp_path / "a.tar", [spec])
    with tarfile.open(path) as tf:
        keep = [(m, tf.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
                for m in tf.getmembers() if not m.name.endswith("layer.tar")]
    with tarfile.open(tmp_path / "nolayer.tar", "w") as tf:
        import io

        for m, data in keep:
            tf.addfile(m, io.BytesIO(data) if data is not None else None)
    assert_load_refused(ketch, tmp_path / "nolayer.tar", "missing")


def test_layer_count_mismatch_is_refused(ketch: KetchCLI, busybox: str,
                                         tmp_path: Path) -> None:
    import json

    spec = ImageSpec([files_tar({"a": b"1"}), files_tar({"b": b"2"})], tags=["x:1"])
    path = docker_archive(tmp_path / "a.tar", [spec])
    with tarfile.open(path) as tf:
        items = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]
    manifest = json.loads(items["manifest.json"])
    manifest[0]["Layers"] = manifest[0]["Layers"][:1]
    items["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(tmp_path / "short.tar", "w") as tf:
        import io

        for name, data in items.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    assert_load_refused(ketch, tmp_path / "short.tar", "layers length mismatch")


def test_manifest_pointing_outside_the_archive_is_refused(ketch: KetchCLI, busybox: str,
                                                          tmp_path: Path) -> None:
    import io
    import json

    cfg = ImageSpec([]).config_bytes()
    with tarfile.open(tmp_path / "evil.tar", "w") as tf:
        for name, data in (("c.json", cfg), ("manifest.json", json.dumps(
                [{"Config": "../../../../../../etc/hostname", "RepoTags": ["e:1"],
                  "Layers": []}]).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    assert_load_refused(ketch, tmp_path / "evil.tar", "outside")


# -- escapes --------------------------------------------------------------------------------
@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "victim").write_text("original\n")
    return d


def _escape_layers(outside: Path) -> dict[str, bytes]:
    victim = outside / "victim"
    rel_up = "../" * 30
    return {
        "dotdot": tar_bytes([Entry(f"{rel_up}{outside.relative_to('/')}/dotdot", b"x")]),
        "absolute": tar_bytes([Entry(f"{outside}/absolute", b"x")]),
        "symlink-dir": tar_bytes([Entry("link", type=tarfile.SYMTYPE, linkname=str(outside)),
                                  Entry("link/through-symlink", b"x")]),
        "relative-symlink": tar_bytes([
            Entry("up", type=tarfile.SYMTYPE, linkname=rel_up + str(outside).lstrip("/")),
            Entry("up/through-relative", b"x")]),
        "symlink-file": tar_bytes([Entry("v", type=tarfile.SYMTYPE, linkname=str(victim)),
                                   Entry("v", b"overwritten\n")]),
        "hardlink": tar_bytes([Entry("hl", type=tarfile.LNKTYPE, linkname=str(victim))]),
        "hardlink-dotdot": tar_bytes([Entry("hl", type=tarfile.LNKTYPE,
                                            linkname=rel_up + str(victim).lstrip("/"))]),
    }


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink-dir", "relative-symlink",
                                  "symlink-file", "hardlink", "hardlink-dotdot"])
@pytest.mark.parametrize("form", ["docker-archive", "oci-archive", "import"])
def test_layer_that_tries_to_escape_writes_nothing_outside(
        ketch: KetchCLI, tmp_path: Path, outside: Path, case: str, form: str) -> None:
    layer = _escape_layers(outside)[case]
    before = StoreState.of(ketch)
    spec = ImageSpec([layer], tags=["evil:1"])
    if form == "import":
        (tmp_path / "rootfs.tar").write_bytes(layer)
        proc = ketch("import", str(tmp_path / "rootfs.tar"), "evil:1", check=False)
    else:
        make = docker_archive if form == "docker-archive" else oci_archive
        proc = ketch("load", "-i", str(make(tmp_path / "evil.tar", [spec])), check=False)
    # Rejected or contained -- never written outside.
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "original\n"
    assert os.stat(outside / "victim").st_nlink == 1
    assert "Traceback" not in proc.stderr
    if proc.returncode != 0:
        assert_one_line_error(proc.stderr)
        gc(ketch)
        after = StoreState.of(ketch)
        assert (after.images, after.blobs, after.layers) == (
            before.images, before.blobs, before.layers)
        return
    # contained: whatever the layer made sits inside its own directory
    upper = Path(ketch("image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}",
                       "evil:1").stdout.strip())
    assert upper.is_dir()
    for p in upper.rglob("*"):
        if p.is_symlink():
            continue
        assert p.resolve().is_relative_to(upper.resolve()), p


def test_outer_archive_entries_that_climb_out_are_refused(ketch: KetchCLI, busybox: str,
                                                          tmp_path: Path,
                                                          outside: Path) -> None:
    spec = ImageSpec([files_tar({"a": b"1"})], tags=["x:1"])
    path = docker_archive(tmp_path / "a.tar", [spec])
    with tarfile.open(path, "a") as tf:
        import io

        ti = tarfile.TarInfo("../" * 30 + str(outside).lstrip("/") + "/planted")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    proc = ketch("load", "-i", str(path), check=False)
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    if proc.returncode != 0:
        assert_one_line_error(proc.stderr)


# -- digests --------------------------------------------------------------------------------
def test_oci_blob_whose_digest_does_not_match_is_never_stored(
        ketch: KetchCLI, busybox: str, tmp_path: Path) -> None:
    real = files_tar({"real": b"the real layer"})
    fake = files_tar({"fake": b"something else!"})
    spec = ImageSpec([real], tags=["liar:1"])
    path = oci_archive(tmp_path / "liar.tar", [spec], lie_about={0: fake})
    assert_load_refused(ketch, path, "digest")
    assert not (ketch.root / "blobs" / "sha256" / sha256(real)[7:]).exists()


def test_docker_archive_layer_that_does_not_match_its_diff_id_is_refused(
        ketch: KetchCLI, busybox: str, tmp_path: Path) -> None:
    real = files_tar({"real": b"the real layer"})
    spec = ImageSpec([real], tags=["liar:1"],
                     stored_layers={0: files_tar({"fake": b"something else!"})})
    path = docker_archive(tmp_path / "liar.tar", [spec])
    assert_load_refused(ketch, path, "diff ID", sha256(real))
    assert not (ketch.root / "blobs" / "sha256" / sha256(real)[7:]).exists()


def test_oci_manifest_whose_digest_does_not_match_is_refused(
        ketch: KetchCLI, busybox: str, tmp_path: Path) -> None:
    import io
    import json

    spec = ImageSpec([files_tar({"a": b"1"})], tags=["x:1"])
    path = oci_archive(tmp_path / "oci.tar", [spec])
    with tarfile.open(path) as tf:
        items = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]
    index = json.loads(items["index.json"])
    mname = "blobs/sha256/" + index["manifests"][0]["digest"][7:]
    items[mname] = items[mname].replace(b'"schemaVersion": 2', b'"schemaVersion":  2')
    with tarfile.open(tmp_path / "bad.tar", "w") as tf:
        for name, data in items.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    assert_load_refused(ketch, tmp_path / "bad.tar", "manifest")
