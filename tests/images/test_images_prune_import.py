"""`ketch image prune` (dangling by default, -a, --filter, the prompt) and
`ketch import` (file, stdin, --change, --message, compressed tarballs)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.conftest import KetchCLI
from tests.images.archives import files_tar
from tests.images.conftest import (
    StoreState,
    assert_one_line_error,
    child_image,
    import_files,
)


def ids(ketch: KetchCLI) -> set[str]:
    return set(ketch("images", "-a", "-q", "--no-trunc").stdout.split())


# -- prune ----------------------------------------------------------------------------------
def test_prune_removes_only_dangling_images_by_default(ketch: KetchCLI, busybox: str,
                                                       tmp_path: Path) -> None:
    loose = import_files(ketch, tmp_path, {"loose": b"1" * 5000})
    out = ketch("image", "prune", "-f").stdout
    assert out.splitlines()[0] == "Deleted Images:"
    assert f"deleted: {loose}" in out.splitlines()
    assert out.splitlines()[-1].startswith("Total reclaimed space: ")
    assert out.splitlines()[-1] != "Total reclaimed space: 0B"
    assert "" in out.splitlines()  # a blank line before the total, as docker prints
    assert ids(ketch) == {busybox}


def test_prune_with_nothing_to_do_prints_only_the_total(ketch: KetchCLI, busybox: str) -> None:
    assert ketch("image", "prune", "-f").stdout == "Total reclaimed space: 0B\n"


def test_prune_all_removes_unused_tagged_images_too(ketch: KetchCLI, busybox: str,
                                                    tmp_path: Path) -> None:
    import_files(ketch, tmp_path, {"a": b"1"}, "app:1")
    out = ketch("image", "prune", "-a", "-f").stdout.splitlines()
    assert "untagged: busybox:latest" in out and f"deleted: {busybox}" in out
    assert "untagged: app:1" in out
    state = StoreState.of(ketch)
    assert state.images == [] and state.blobs == set() and state.layers == set()


def test_prune_all_keeps_images_used_by_containers(ketch: KetchCLI, busybox: str,
                                                  tmp_path: Path) -> None:
    app = import_files(ketch, tmp_path, {"a": b"1"}, "app:1")
    ketch("create", "busybox", "true")
    ketch("image", "prune", "-a", "-f")
    assert ids(ketch) == {busybox}
    assert app not in ids(ketch)


def test_prune_removes_an_untagged_child_and_its_untagged_parent(
        ketch: KetchCLI, busybox: str) -> None:
    child = child_image(ketch, busybox, {"c": b"1"})
    ketch("rmi", "busybox")  # parent now untagged, child dangling
    out = ketch("image", "prune", "-f").stdout.splitlines()
    assert f"deleted: {child}" in out and f"deleted: {busybox}" in out
    assert ids(ketch) == set()


def test_prune_filter_label_and_negated_label(ketch: KetchCLI, tmp_path: Path) -> None:
    keep = import_files(ketch, tmp_path, {"k": b"1"}, None, "LABEL keep=yes")
    drop = import_files(ketch, tmp_path, {"d": b"1"}, None, "LABEL keep=no")
    ketch("image", "prune", "-f", "--filter", "label=keep=no")
    assert ids(ketch) == {keep}
    drop = import_files(ketch, tmp_path, {"d2": b"1"})
    ketch("image", "prune", "-f", "--filter", "label!=keep")
    assert ids(ketch) == {keep}
    assert drop not in ids(ketch)


def test_prune_filter_until_spares_newer_images(ketch: KetchCLI, tmp_path: Path) -> None:
    loose = import_files(ketch, tmp_path, {"x": b"1"})
    ketch("image", "prune", "-f", "--filter", "until=2000-01-01T00:00:00Z")
    assert ids(ketch) == {loose}
    ketch("image", "prune", "-f", "--filter", "until=2999-01-01T00:00:00Z")
    assert ids(ketch) == set()


def test_prune_rejects_unknown_filters(ketch: KetchCLI) -> None:
    proc = ketch("image", "prune", "-f", "--filter", "reference=x", check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "invalid filter 'reference'")


def test_prune_asks_first_and_does_nothing_on_no(ketch: KetchCLI, tmp_path: Path) -> None:
    loose = import_files(ketch, tmp_path, {"x": b"1"})
    proc = ketch("image", "prune", input="n\n")
    assert proc.stdout.startswith("WARNING! This will remove all dangling images.\n"
                                  "Are you sure you want to continue? [y/N] ")
    assert ids(ketch) == {loose}
    proc = ketch("image", "prune", "-a", input="y\n")
    assert "WARNING! This will remove all images without at least one container" in proc.stdout
    assert f"deleted: {loose}" in proc.stdout
    assert ids(ketch) == set()


# -- import ---------------------------------------------------------------------------------
def test_import_from_a_file_prints_the_new_image_id(ketch: KetchCLI, busybox_tar: Path) -> None:
    out = ketch("import", str(busybox_tar)).stdout
    image_id = out.strip()
    assert out == image_id + "\n" and image_id.startswith("sha256:")
    # no name: a dangling image
    assert ketch("images", "--format", "{{.Repository}}:{{.Tag}}").stdout == "<none>:<none>\n"


def test_import_from_stdin_with_a_tag(ketch: KetchCLI, tmp_path: Path) -> None:
    data = files_tar({"etc/hello": b"hi\n"})
    image_id = ketch("import", "-", "hello:1", input=data.decode("latin-1")).stdout.strip()
    assert ketch("image", "inspect", "-f", "{{.Id}}", "hello:1").stdout.strip() == image_id
    upper = ketch("image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}",
                  "hello:1").stdout.strip()
    assert (Path(upper) / "etc" / "hello").read_bytes() == b"hi\n"


def test_import_change_cmd_and_expose(ketch: KetchCLI, busybox_tar: Path) -> None:
    ketch("import", "--change", 'CMD ["/bin/httpd", "-f"]', "--change", "EXPOSE 80",
          "-c", "ENV PATH=/bin", str(busybox_tar), "web:1")
    cfg = json.loads(ketch("image", "inspect", "-f", "{{json .Config}}", "web:1").stdout)
    assert cfg["Cmd"] == ["/bin/httpd", "-f"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}}
    assert cfg["Env"] == ["PATH=/bin"]


def test_import_change_in_shell_form_wraps_in_sh_c(ketch: KetchCLI, tmp_path: Path) -> None:
    import_files(ketch, tmp_path, {"x": b"1"}, "app:1", "CMD echo hi")
    out = ketch("image", "inspect", "-f", "{{json .Config.Cmd}}", "app:1").stdout
    assert json.loads(out) == ["/bin/sh", "-c", "echo hi"]


def test_import_message_becomes_the_comment(ketch: KetchCLI, busybox_tar: Path) -> None:
    ketch("import", "-m", "from the test", str(busybox_tar), "m:1")
    assert ketch("image", "inspect", "-f", "{{.Comment}}", "m:1").stdout == "from the test\n"


def test_import_platform_becomes_the_images_platform(ketch: KetchCLI, busybox_tar: Path) -> None:
    ketch("import", "--platform", "linux/arm64/v8", str(busybox_tar), "arm:1")
    got = ketch("image", "inspect", "-f", "{{.Os}}/{{.Architecture}}/{{.Variant}}",
                "arm:1").stdout
    assert got == "linux/arm64/v8\n"
    ketch("import", str(busybox_tar), "host:1")
    assert ketch("image", "inspect", "-f", "{{.Architecture}}", "host:1").stdout == "amd64\n"
    p = ketch("import", "--platform", "a/b/c/d", str(busybox_tar), "bad:1", check=False)
    assert p.returncode == 1 and "invalid platform" in p.stderr
    assert ketch("images", "-q", "bad").stdout == ""


def test_import_accepts_a_gzip_compressed_tarball(ketch: KetchCLI, tmp_path: Path) -> None:
    src = tmp_path / "rootfs.tar.gz"
    raw = files_tar({"a/b": b"compressed"})
    src.write_bytes(gzip.compress(raw))
    ketch("import", str(src), "gz:1")
    layer = ketch("image", "inspect", "-f", "{{index .RootFS.Layers 0}}", "gz:1").stdout
    import hashlib

    assert layer.strip() == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_import_rejects_a_non_metadata_change(ketch: KetchCLI, busybox_tar: Path) -> None:
    proc = ketch("import", "--change", "RUN rm -rf /", str(busybox_tar), check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "RUN")
    assert ketch("images", "-q").stdout == ""


def test_import_rejects_an_invalid_name_before_reading(ketch: KetchCLI,
                                                       busybox_tar: Path) -> None:
    proc = ketch("import", str(busybox_tar), "Bad:Name", check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "invalid reference format")
    assert ketch("images", "-q").stdout == ""


def test_import_of_a_missing_file_is_a_clear_error(ketch: KetchCLI, tmp_path: Path) -> None:
    proc = ketch("import", str(tmp_path / "nope.tar"), check=False)
    # one line, the docker CLI's words as it prints them (it opens the file itself)
    assert (proc.returncode, proc.stderr) == (1, f"open {tmp_path / 'nope.tar'}: no such"
                                                 " file or directory\n")


def test_import_of_garbage_leaves_no_image_and_no_blob(ketch: KetchCLI, tmp_path: Path) -> None:
    src = tmp_path / "garbage.tar"
    src.write_bytes(b"this is not a tar archive at all" * 100)
    proc = ketch("import", str(src), "g:1", check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr)
    state = StoreState.of(ketch)
    assert state.images == [] and state.blobs == set() and state.layers == set()
