"""`ketch save` and `ketch load`: round trips, Docker's archive layout, and skopeo (a
second, independent implementation of docker-archive and OCI archives) on both sides."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, ketch_command, require_tool
from tests.images.archives import ImageSpec, docker_archive, files_tar, oci_archive, sha256
from tests.images.conftest import StoreState, assert_one_line_error, child_image


def ketch_bytes(ketch: KetchCLI, *args: str, stdin: bytes | None = None,
                check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """The CLI with binary stdin/stdout (KetchCLI speaks text)."""
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    proc = subprocess.run([*ketch_command(), *args], input=stdin,
                          capture_output=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: (tf.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
                for m in tf.getmembers()}


# -- save -----------------------------------------------------------------------------------
def test_save_to_a_file_writes_docker_25s_layout(ketch: KetchCLI, busybox: str,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "bb.tar"
    proc = ketch("save", "-o", str(out), "busybox")
    assert proc.stdout == "" and proc.stderr == ""
    files = members(out)
    hex_id = busybox[7:]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    manifest = json.loads(files["manifest.json"])
    assert manifest == [{"Config": f"blobs/sha256/{hex_id}", "RepoTags": ["busybox:latest"],
                         "Layers": manifest[0]["Layers"]}]
    layer = files[manifest[0]["Layers"][0]]
    assert sha256(layer) == "sha256:" + manifest[0]["Layers"][0].rsplit("/", 1)[1]
    assert sha256(files[f"blobs/sha256/{hex_id}"]) == busybox
    assert json.loads(files["repositories"]) == {"busybox": {"latest": hex_id}}
    index = json.loads(files["index.json"])
    ann = index["manifests"][0]["annotations"]
    assert ann == {"io.containerd.image.name": "docker.io/library/busybox:latest",
                   "org.opencontainers.image.ref.name": "latest"}
    assert not list(tmp_path.glob("*.tmp"))


def test_save_to_stdout_equals_save_to_a_file(ketch: KetchCLI, busybox: str,
                                              tmp_path: Path) -> None:
    ketch("save", "--output", str(tmp_path / "a.tar"), "busybox")
    streamed = ketch_bytes(ketch, "save", "busybox").stdout
    assert streamed == (tmp_path / "a.tar").read_bytes()


def test_save_by_id_has_no_repo_tags(ketch: KetchCLI, busybox: str, tmp_path: Path) -> None:
    ketch("save", "-o", str(tmp_path / "id.tar"), busybox[7:19])
    files = members(tmp_path / "id.tar")
    assert json.loads(files["manifest.json"])[0]["RepoTags"] is None
    assert "repositories" not in files


def test_save_of_a_repository_takes_all_its_tags(ketch: KetchCLI, busybox: str,
                                                 tmp_path: Path) -> None:
    ketch("tag", "busybox", "busybox:1")
    ketch("tag", "busybox", "other:1")
    ketch("save", "-o", str(tmp_path / "repo.tar"), "busybox")
    tags = json.loads(members(tmp_path / "repo.tar")["manifest.json"])[0]["RepoTags"]
    assert sorted(tags) == ["busybox:1", "busybox:latest"]


def test_save_of_several_images_holds_each_once(ketch: KetchCLI, busybox: str,
                                                tmp_path: Path) -> None:
    child = child_image(ketch, busybox, {"c": b"1"}, "child:1")
    ketch("save", "-o", str(tmp_path / "two.tar"), "busybox", "child:1", busybox[7:19])
    files = members(tmp_path / "two.tar")
    manifest = json.loads(files["manifest.json"])
    assert sorted(m["Config"] for m in manifest) == sorted(
        f"blobs/sha256/{i[7:]}" for i in (busybox, child))
    # the shared base layer is stored once
    layer_paths = [p for m in manifest for p in m["Layers"]]
    assert len(set(layer_paths)) == 2


def test_save_of_a_missing_image_fails_and_leaves_no_file(ketch: KetchCLI, busybox: str,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "x.tar"
    proc = ketch("save", "-o", str(out), "busybox", "ghost", check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "No such image: ghost")
    assert not out.exists() and not list(tmp_path.glob("x.tar*"))


def test_save_into_a_missing_directory_says_so(ketch: KetchCLI, busybox: str,
                                               tmp_path: Path) -> None:
    proc = ketch("save", "-o", str(tmp_path / "no" / "such" / "x.tar"), "busybox", check=False)
    assert proc.returncode == 1
    assert proc.stderr == ("Error: failed to save image: invalid output path: stat"
                           f" {tmp_path / 'no' / 'such'}: no such file or directory\n")


def test_save_into_a_directory_says_so_before_it_writes(ketch: KetchCLI, busybox: str,
                                                      tmp_path: Path) -> None:
    """It was an internal error at the end, once the whole archive was written."""
    where = tmp_path / "archives"
    where.mkdir()
    proc = ketch("save", "-o", str(where), "busybox", check=False)
    assert proc.returncode == 1
    assert proc.stderr == ("Error: failed to save image: invalid output path:"
                           f' "{where}" is a directory\n')
    assert list(where.iterdir()) == []
    assert not list(tmp_path.glob("archives.ketch-*"))


def test_save_refuses_to_write_to_a_terminal(ketch: KetchCLI, busybox: str) -> None:
    import pty

    primary, secondary = pty.openpty()
    try:
        env = dict(os.environ, KETCH_ROOT=str(ketch.root))
        proc = subprocess.run([*ketch_command(), "save", "busybox"],
                              stdout=secondary, stderr=subprocess.PIPE, env=env, timeout=60)
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 1
    assert b"cowardly refusing to save to a terminal" in proc.stderr


# -- load -----------------------------------------------------------------------------------
def test_save_piped_to_load_keeps_the_image_id(ketch: KetchCLI, busybox: str,
                                               ketch_root: Path, tmp_path: Path) -> None:
    archive = ketch_bytes(ketch, "save", "busybox").stdout
    other = KetchCLI(tmp_path / "second-root")
    proc = ketch_bytes(other, "load", stdin=archive)
    assert proc.stdout == b"Loaded image: busybox:latest\n"
    assert other("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip() == busybox
    # the loaded image saves to the very same archive
    assert ketch_bytes(other, "save", "busybox").stdout == archive


def test_load_into_the_same_store_is_idempotent(ketch: KetchCLI, busybox: str,
                                                tmp_path: Path) -> None:
    ketch("save", "-o", str(tmp_path / "bb.tar"), "busybox")
    before = StoreState.of(ketch)
    assert ketch("load", "-i", str(tmp_path / "bb.tar")).stdout == (
        "Loaded image: busybox:latest\n")
    after = StoreState.of(ketch)
    assert (after.blobs, after.layers) == (before.blobs, before.layers)
    assert [i["Id"] for i in after.images] == [i["Id"] for i in before.images]


def test_load_of_an_untagged_archive_reports_the_id(ketch: KetchCLI, busybox: str,
                                                    tmp_path: Path) -> None:
    ketch("save", "-o", str(tmp_path / "id.tar"), busybox)
    ketch("rmi", "busybox")
    assert ketch("load", "--input", str(tmp_path / "id.tar")).stdout == (
        f"Loaded image ID: {busybox}\n")


def test_load_quiet_still_names_the_loaded_image(ketch: KetchCLI, busybox: str,
                                                tmp_path: Path) -> None:
    ketch("save", "-o", str(tmp_path / "bb.tar"), "busybox")
    assert ketch("load", "-q", "-i", str(tmp_path / "bb.tar")).stdout == (
        "Loaded image: busybox:latest\n")


def test_load_moves_an_existing_tag_and_says_so(ketch: KetchCLI, tmp_path: Path) -> None:
    a = ImageSpec([files_tar({"a": b"1"})], tags=["app:1"])
    b = ImageSpec([files_tar({"b": b"2"})], tags=["app:1"])
    ketch("load", "-i", str(docker_archive(tmp_path / "a.tar", [a])))
    old = ketch("image", "inspect", "-f", "{{.Id}}", "app:1").stdout.strip()
    out = ketch("load", "-i", str(docker_archive(tmp_path / "b.tar", [b]))).stdout
    assert out.splitlines() == [
        f"The image app:1 already exists, renaming the old one with ID {old} to empty string",
        "Loaded image: app:1"]
    assert ketch("images", "-q", "--no-trunc", "-f", "dangling=true").stdout.split() == [old]


def test_load_of_a_classic_docker_archive_with_several_images(ketch: KetchCLI,
                                                              tmp_path: Path) -> None:
    base = files_tar({"base": b"b"})
    a = ImageSpec([base, files_tar({"a": b"1"})], tags=["a:1", "a:2"], cmd=["x"])
    b = ImageSpec([base], tags=["b:1"], labels={"k": "v"})
    out = ketch("load", "-i", str(docker_archive(tmp_path / "two.tar", [a, b]))).stdout
    assert out.splitlines() == ["Loaded image: a:1", "Loaded image: a:2", "Loaded image: b:1"]
    assert ketch("image", "inspect", "-f", "{{.Id}}", "a:1").stdout.strip() == sha256(
        a.config_bytes())
    assert ketch("image", "inspect", "-f", "{{json .Config.Cmd}}", "a:2").stdout == '["x"]\n'
    assert ketch("images", "-q", "-f", "label=k=v").stdout.strip() == sha256(
        b.config_bytes())[7:19]


def test_load_of_a_gzip_compressed_archive(ketch: KetchCLI, busybox: str,
                                           tmp_path: Path) -> None:
    raw = ketch_bytes(ketch, "save", "busybox").stdout
    ketch("rmi", "busybox")
    out = ketch_bytes(ketch, "load", stdin=gzip.compress(raw, 1)).stdout
    assert out == b"Loaded image: busybox:latest\n"
    assert ketch("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip() == busybox


def test_load_of_an_oci_layout_archive(ketch: KetchCLI, tmp_path: Path) -> None:
    spec = ImageSpec([files_tar({"o": b"1"})], tags=["oci/app:2"])
    out = ketch("load", "-i", str(oci_archive(tmp_path / "oci.tar", [spec]))).stdout
    assert out == "Loaded image: oci/app:2\n"
    assert ketch("image", "inspect", "-f", "{{.Id}}", "oci/app:2").stdout.strip() == sha256(
        spec.config_bytes())


def test_load_of_an_oci_layout_whose_ref_name_is_only_a_tag_is_untagged(
        ketch: KetchCLI, tmp_path: Path) -> None:
    spec = ImageSpec([files_tar({"o": b"1"})], tags=["latest"])
    out = ketch("load", "-i", str(oci_archive(tmp_path / "oci.tar", [spec]))).stdout
    assert out == f"Loaded image ID: {sha256(spec.config_bytes())}\n"


def test_load_from_a_missing_file_is_a_clear_error(ketch: KetchCLI, tmp_path: Path) -> None:
    # the docker CLI opens the file itself and prints its words as they are (no "Error:")
    proc = ketch("load", "-i", str(tmp_path / "nope.tar"), check=False)
    assert (proc.returncode, proc.stderr) == (1, f"open {tmp_path / 'nope.tar'}: no such"
                                                 " file or directory\n")
    proc = ketch("import", str(tmp_path / "nope.tar"), "x", check=False)
    assert (proc.returncode, proc.stderr) == (1, f"open {tmp_path / 'nope.tar'}: no such"
                                                 " file or directory\n")


# -- skopeo on the other side ---------------------------------------------------------------
@pytest.fixture
def skopeo() -> str:
    return require_tool("skopeo")


def test_skopeo_inspects_ketchs_save_output(ketch: KetchCLI, busybox: str, tmp_path: Path,
                                            skopeo: str) -> None:
    ketch("save", "-o", str(tmp_path / "bb.tar"), "busybox")
    layers = json.loads(ketch("image", "inspect", "-f", "{{json .RootFS.Layers}}",
                              "busybox").stdout)
    for transport in ("docker-archive", "oci-archive"):
        proc = subprocess.run([skopeo, "inspect", f"{transport}:{tmp_path / 'bb.tar'}"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout)
        assert info["Os"] == "linux" and info["Layers"] == layers
        # the config blob skopeo reads back is the very one the image ID names
        proc = subprocess.run([skopeo, "inspect", "--config", "--raw",
                               f"{transport}:{tmp_path / 'bb.tar'}"],
                              capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert sha256(proc.stdout) == busybox
        assert json.loads(proc.stdout)["config"]["Cmd"] == ["sh"]


def test_docker_archive_written_by_skopeo_loads_with_the_same_id(
        ketch: KetchCLI, busybox: str, tmp_path: Path, skopeo: str) -> None:
    ketch("save", "-o", str(tmp_path / "ketch.tar"), "busybox")
    proc = subprocess.run([skopeo, "copy", "-q", f"docker-archive:{tmp_path / 'ketch.tar'}",
                           f"docker-archive:{tmp_path / 'skopeo.tar'}:foo:latest"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    ketch("rmi", "busybox")
    assert ketch("load", "-i", str(tmp_path / "skopeo.tar")).stdout == (
        "Loaded image: foo:latest\n")
    assert ketch("image", "inspect", "-f", "{{.Id}}", "foo").stdout.strip() == busybox


def test_oci_archive_written_by_skopeo_loads(ketch: KetchCLI, busybox: str, tmp_path: Path,
                                             skopeo: str) -> None:
    layers = ketch("image", "inspect", "-f", "{{json .RootFS.Layers}}", "busybox").stdout
    ketch("save", "-o", str(tmp_path / "ketch.tar"), "busybox")
    proc = subprocess.run([skopeo, "copy", "-q", f"docker-archive:{tmp_path / 'ketch.tar'}",
                           f"oci-archive:{tmp_path / 'skopeo-oci.tar'}:foo:oci"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert ketch("load", "-i", str(tmp_path / "skopeo-oci.tar")).stdout == (
        "Loaded image: foo:oci\n")
    # skopeo gzips the layers for OCI; the uncompressed content is the same layer
    assert ketch("image", "inspect", "-f", "{{json .RootFS.Layers}}", "foo:oci").stdout == layers
    # and ketch saves it again in a form skopeo reads
    ketch("save", "-o", str(tmp_path / "again.tar"), "foo:oci")
    proc = subprocess.run([skopeo, "inspect", f"docker-archive:{tmp_path / 'again.tar'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_loaded_layers_stack_as_overlay_lower_dirs_with_whiteouts(
        ketch: KetchCLI, tmp_path: Path) -> None:
    """The unpacked layers are real overlay lower dirs: a whiteout in the top layer hides
    the file of the layer below, an opaque dir hides its old content."""
    from tests.conftest import require
    from tests.images.archives import Entry, tar_bytes

    base = files_tar({"keep": b"k", "gone": b"g", "dir/old": b"o"})
    top = tar_bytes([Entry(".wh.gone"), Entry("dir", type=tarfile.DIRTYPE),
                     Entry("dir/.wh..wh..opq"), Entry("dir/new", b"n")])
    spec = ImageSpec([base, top], tags=["wh:1"])
    ketch("load", "-i", str(docker_archive(tmp_path / "wh.tar", [spec])))
    data = json.loads(ketch("image", "inspect", "-f", "{{json .GraphDriver.Data}}",
                            "wh:1").stdout)
    lowers = f"{data['UpperDir']}:{data['LowerDir']}"
    merged = tmp_path / "merged"
    merged.mkdir()
    mount = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lowers}",
                            str(merged)], capture_output=True, text=True)
    require(mount.returncode == 0, f"overlayfs mount: {mount.stderr.strip()}")
    try:
        assert sorted(p.name for p in merged.iterdir()) == ["dir", "keep"]
        assert sorted(p.name for p in (merged / "dir").iterdir()) == ["new"]
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    # and the image saves back byte for byte what was loaded
    out = ketch_bytes(ketch, "save", "wh:1").stdout
    (tmp_path / "again.tar").write_bytes(out)
    files = members(tmp_path / "again.tar")
    assert files[f"blobs/sha256/{sha256(top)[7:]}"] == top


# -- --platform -----------------------------------------------------------------------------
def test_save_platform_of_the_image_saves_it_and_another_is_refused(
        ketch: KetchCLI, busybox: str, tmp_path: Path) -> None:
    ketch("save", "--platform", "linux/amd64", "-o", str(tmp_path / "ok.tar"), "busybox")
    assert "manifest.json" in members(tmp_path / "ok.tar")
    p = ketch("save", "--platform", "linux/arm64", "-o", str(tmp_path / "arm.tar"), "busybox",
              check=False)
    assert p.returncode == 1
    assert_one_line_error(p.stderr, "busybox is linux/amd64", "no linux/arm64")
    assert not (tmp_path / "arm.tar").exists()


def test_load_platform_of_the_host_loads_and_another_is_refused(
        ketch: KetchCLI, busybox: str, tmp_path: Path) -> None:
    ketch("save", "-o", str(tmp_path / "b.tar"), "busybox")
    ketch("rmi", "busybox")
    before = StoreState.of(ketch)
    p = ketch("load", "--platform", "linux/arm64", "-i", str(tmp_path / "b.tar"), check=False)
    assert p.returncode == 1
    assert_one_line_error(p.stderr, "cannot load platform linux/arm64")
    assert StoreState.of(ketch) == before
    p = ketch("load", "--platform", "linux/amd64", "-i", str(tmp_path / "b.tar"))
    assert p.stdout == "Loaded image: busybox:latest\n"
