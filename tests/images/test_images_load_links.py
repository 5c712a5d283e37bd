"""`load` never reads an archive member through a link that leaves the archive.

An archive is untrusted input unpacked into the state root's tmp/: a member may be a
symlink or a hardlink, and following one that points at the host (`manifest.json ->
/home/victim/crafted.json`) would let the archive's author load whatever a file on the
host describes, or read host files as configs and layers. Such an archive is broken:
one line on stderr, exit 1, the store as it was. Links that stay inside the archive
are followed, as Docker follows them (`docker save` itself wrote `../<id>/layer.tar`
symlinks for repeated layers).

Also here: the stricter-than-Docker refusals of `load` (an index that lists no image,
an invalid RepoTags name) and `load -q`, which keeps Docker's "Loaded image" lines.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from tests.conftest import KetchCLI
from tests.images.archives import ImageSpec, docker_archive, files_tar, oci_archive, sha256
from tests.images.conftest import StoreState, assert_one_line_error, gc

UP = "../" * 40


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(path) as tf:
        return [(m, tf.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
                for m in tf.getmembers()]


def _rewrite(src: Path, dest: Path, *, replace: dict[str, tarfile.TarInfo] | None = None,
             extra: list[tarfile.TarInfo] | None = None, compress: bool = False) -> Path:
    """Copy archive `src` to `dest`, replacing members by name with (link) entries and
    appending `extra` entries; gzip-compressed with `compress`."""
    replace = replace or {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m, data in _members(src):
            if m.name in replace:
                tf.addfile(replace[m.name])
            else:
                tf.addfile(m, io.BytesIO(data) if data is not None else None)
        for e in extra or []:
            tf.addfile(e)
    raw = buf.getvalue()
    dest.write_bytes(gzip.compress(raw) if compress else raw)
    return dest


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = target
    return ti


def assert_refused_unchanged(ketch: KetchCLI, archive: Path, *needles: str) -> None:
    before = StoreState.of(ketch)
    proc = ketch("load", "-i", str(archive), check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert_one_line_error(proc.stderr, *needles)
    after = StoreState.of(ketch)
    assert after.images == before.images
    assert after.blobs == before.blobs, "a blob was stored from a refused archive"
    assert after.layers == before.layers, "a layer was unpacked from a refused archive"
    assert not list((ketch.root / "tmp").iterdir())


@pytest.fixture
def spec() -> ImageSpec:
    return ImageSpec([files_tar({"etc/crafted": b"from the host's manifest"})],
                     tags=["crafted:1"])


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A directory on the host, outside every archive, where the victim's files live."""
    d = tmp_path / "host"
    d.mkdir()
    return d


def _docker_parts(tmp_path: Path, spec: ImageSpec) -> tuple[Path, bytes]:
    """A valid docker-archive of `spec` and its manifest.json bytes."""
    path = docker_archive(tmp_path / "valid.tar", [spec])
    manifest = dict((m.name, d) for m, d in _members(path))["manifest.json"]
    assert manifest is not None
    return path, manifest


# -- manifest.json / index.json ------------------------------------------------------------
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("how", ["absolute", "relative", "chain"])
def test_load_refuses_a_manifest_json_symlink_that_leads_to_a_host_file(
        ketch: KetchCLI, tmp_path: Path, host: Path, spec: ImageSpec, how: str,
        compress: bool) -> None:
    valid, manifest = _docker_parts(tmp_path, spec)
    # The crafted manifest sits on the host; it names members the archive really has,
    # so following the link would load an image the archive does not describe.
    (host / "crafted.json").write_bytes(manifest)
    extra = []
    if how == "absolute":
        link = _link("manifest.json", str(host / "crafted.json"))
    elif how == "relative":
        link = _link("manifest.json", UP + str(host / "crafted.json").lstrip("/"))
    else:  # each hop looks harmless, the last one climbs out
        link = _link("manifest.json", "hop1")
        extra = [_link("hop1", "sub/hop2"), _link("sub/hop2", "../" + UP + str(
            host / "crafted.json").lstrip("/"))]
        d = tarfile.TarInfo("sub")
        d.type = tarfile.DIRTYPE
        extra.insert(0, d)
    evil = _rewrite(valid, tmp_path / "evil.tar", replace={"manifest.json": link},
                    extra=extra, compress=compress)
    assert_refused_unchanged(ketch, evil, "manifest.json", "outside the archive")
    assert ketch("images", "-q", "crafted").stdout == ""


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_load_refuses_an_index_json_symlink_that_leads_to_a_host_file(
        ketch: KetchCLI, tmp_path: Path, host: Path, spec: ImageSpec,
        compress: bool) -> None:
    valid = oci_archive(tmp_path / "valid.tar", [spec])
    index = dict((m.name, d) for m, d in _members(valid))["index.json"]
    (host / "index.json").write_bytes(index or b"")
    evil = _rewrite(valid, tmp_path / "evil.tar", compress=compress,
                    replace={"index.json": _link("index.json", str(host / "index.json"))})
    assert_refused_unchanged(ketch, evil, "index.json", "outside the archive")


def test_load_refuses_a_manifest_json_hardlink_to_a_host_path(
        ketch: KetchCLI, tmp_path: Path, host: Path, spec: ImageSpec) -> None:
    valid, manifest = _docker_parts(tmp_path, spec)
    (host / "crafted.json").write_bytes(manifest)
    for target in (str(host / "crafted.json"), UP + str(host / "crafted.json").lstrip("/")):
        evil = _rewrite(valid, tmp_path / "evil.tar", replace={
            "manifest.json": _link("manifest.json", target, tarfile.LNKTYPE)})
        assert_refused_unchanged(ketch, evil, "archive")
    assert (host / "crafted.json").stat().st_nlink == 1


def test_load_refuses_a_hardlink_to_an_archive_symlink_that_leads_outside(
        ketch: KetchCLI, tmp_path: Path, host: Path, spec: ImageSpec) -> None:
    # A hardlink to a symlink is the symlink itself: it must not become a way around.
    valid, manifest = _docker_parts(tmp_path, spec)
    (host / "crafted.json").write_bytes(manifest)
    evil = _rewrite(valid, tmp_path / "evil.tar", replace={
        "manifest.json": _link("manifest.json", "escape", tarfile.LNKTYPE)},
        extra=[])
    # the symlink has to come first in the tar for the hardlink to find it
    members = _members(evil)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(_link("escape", str(host / "crafted.json")))
        for m, data in members:
            tf.addfile(m, io.BytesIO(data) if data is not None else None)
    evil.write_bytes(buf.getvalue())
    assert_refused_unchanged(ketch, evil, "manifest.json", "outside the archive")


# -- config and layers -----------------------------------------------------------------------
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("member", ["config", "layer"])
@pytest.mark.parametrize("form", ["docker-archive", "oci-archive"])
def test_load_refuses_a_config_or_layer_symlink_that_leads_to_a_host_file(
        ketch: KetchCLI, tmp_path: Path, host: Path, spec: ImageSpec, member: str,
        form: str, compress: bool) -> None:
    cfg = spec.config_bytes()
    layer = spec.layers[0]
    if form == "docker-archive":
        valid = docker_archive(tmp_path / "valid.tar", [spec])
        name = (sha256(cfg)[7:] + ".json" if member == "config"
                else sha256(layer)[7:] + "/layer.tar")
    else:
        valid = oci_archive(tmp_path / "valid.tar", [spec])
        name = "blobs/sha256/" + (sha256(cfg) if member == "config" else sha256(layer))[7:]
    # The host holds exactly the bytes the archive promises, so only the link is wrong.
    (host / "member").write_bytes(cfg if member == "config" else layer)
    for target in (str(host / "member"), UP + str(host / "member").lstrip("/")):
        evil = _rewrite(valid, tmp_path / "evil.tar", compress=compress,
                        replace={name: _link(name, target)})
        assert_refused_unchanged(ketch, evil, "outside the archive")


@pytest.mark.parametrize("name", ["c\x00.json", 7, "", ["a"]])
def test_load_refuses_a_manifest_naming_a_member_that_cannot_be_a_file_name(
        ketch: KetchCLI, tmp_path: Path, name: object) -> None:
    data = json.dumps([{"Config": name, "RepoTags": ["x:1"], "Layers": []}]).encode()
    with tarfile.open(tmp_path / "odd.tar", "w") as tf:
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    assert_refused_unchanged(ketch, tmp_path / "odd.tar", "bad file name")


# -- links that stay inside ------------------------------------------------------------------
def test_load_follows_symlinks_that_stay_inside_the_archive_as_docker_does(
        ketch: KetchCLI, tmp_path: Path, spec: ImageSpec) -> None:
    valid, manifest = _docker_parts(tmp_path, spec)
    layer_name = sha256(spec.layers[0])[7:] + "/layer.tar"
    entries = json.loads(manifest)
    entries[0]["Layers"] = ["dup/layer.tar"]  # as docker save wrote repeated layers
    d = tarfile.TarInfo("dup")
    d.type = tarfile.DIRTYPE
    moved = tarfile.TarInfo("real/manifest.json")
    data = json.dumps(entries).encode()
    moved.size = len(data)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m, content in _members(valid):
            if m.name != "manifest.json":
                tf.addfile(m, io.BytesIO(content) if content is not None else None)
        tf.addfile(d)
        tf.addfile(_link("dup/layer.tar", "../" + layer_name))
        tf.addfile(moved, io.BytesIO(data))
        tf.addfile(_link("manifest.json", "real/./manifest.json"))
    (tmp_path / "inside.tar").write_bytes(buf.getvalue())
    proc = ketch("load", "-i", str(tmp_path / "inside.tar"))
    assert proc.stdout == "Loaded image: crafted:1\n"
    assert ketch("images", "-q", "--no-trunc", "crafted:1").stdout.strip() == sha256(
        spec.config_bytes())


def test_load_refuses_an_absolute_symlink_even_to_an_archive_member_stricter_than_docker(
        ketch: KetchCLI, tmp_path: Path, spec: ImageSpec) -> None:
    # Docker would resolve "/real/manifest.json" inside the archive; ketch refuses every
    # absolute link target (`docker save` never writes one).
    valid, manifest = _docker_parts(tmp_path, spec)
    real = tarfile.TarInfo("real/manifest.json")
    real.size = len(manifest)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m, content in _members(valid):
            if m.name != "manifest.json":
                tf.addfile(m, io.BytesIO(content) if content is not None else None)
        tf.addfile(real, io.BytesIO(manifest))
        tf.addfile(_link("manifest.json", "/real/manifest.json"))
    (tmp_path / "abs.tar").write_bytes(buf.getvalue())
    assert_refused_unchanged(ketch, tmp_path / "abs.tar", "outside the archive")


# -- stricter than Docker ---------------------------------------------------------------------
def test_load_of_a_manifest_listing_no_image_fails_where_docker_exits_0(
        ketch: KetchCLI, tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "none.tar", "w") as tf:
        ti = tarfile.TarInfo("manifest.json")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"[]"))
    assert_refused_unchanged(ketch, tmp_path / "none.tar", "no image")
    index = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    with tarfile.open(tmp_path / "none-oci.tar", "w") as tf:
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                           ("index.json", index)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    assert_refused_unchanged(ketch, tmp_path / "none-oci.tar", "no image")


@pytest.mark.parametrize("bad", ["UPPER:tag", "a b", "ok:1 ", "name:", ":tag",
                                 "x:" + "t" * 129])
def test_load_with_an_invalid_repotag_imports_nothing_where_docker_keeps_an_untagged_image(
        ketch: KetchCLI, tmp_path: Path, bad: str) -> None:
    good = ImageSpec([files_tar({"a": b"first image"})], tags=["fine:1"])
    evil = ImageSpec([files_tar({"b": b"second image"})], tags=["also:1", bad])
    path = docker_archive(tmp_path / "bad.tar", [good, evil])
    assert_refused_unchanged(ketch, path, "RepoTags")
    gc(ketch)
    assert ketch("images", "-aq").stdout == ""


# -- quiet --------------------------------------------------------------------------------------
def test_load_quiet_still_prints_the_loaded_image_lines_as_docker_does(
        ketch: KetchCLI, tmp_path: Path) -> None:
    # docker(1) load: "-q Suppress the load progress bar but still outputs the imported
    # images"; only the progress goes.
    a = ImageSpec([files_tar({"a": b"1"})], tags=["app:1", "app:latest"])
    b = ImageSpec([files_tar({"b": b"2"})])
    path = docker_archive(tmp_path / "two.tar", [a, b])
    proc = ketch("load", "-q", "-i", str(path))
    assert proc.stdout == ("Loaded image: app:1\nLoaded image: app:latest\n"
                           f"Loaded image ID: {sha256(b.config_bytes())}\n")
    assert proc.stderr == ""
