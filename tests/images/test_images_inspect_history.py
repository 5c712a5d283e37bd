"""`ketch image inspect` (Docker's JSON shape and Go-template --format) and
`ketch image history`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import KetchCLI
from tests.images.conftest import assert_one_line_error, child_image, import_files


def unpacked_size(tar: Path) -> int:
    """A layer's size as dockerd counts it (its directory's regular files, each inode
    once, and symlink targets), from the tar: hardlinks add nothing."""
    import tarfile

    with tarfile.open(tar) as tf:
        return sum(m.size if m.isreg() else len(m.linkname.encode()) if m.issym() else 0
                   for m in tf)


def test_inspect_prints_a_docker_shaped_json_array(ketch: KetchCLI, busybox: str,
                                                   busybox_tar: Path) -> None:
    data = json.loads(ketch("image", "inspect", "busybox").stdout)
    assert isinstance(data, list) and len(data) == 1
    img = data[0]
    assert list(img) == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created",
                         "DockerVersion", "Author", "Config", "Architecture", "Os", "Size",
                         "GraphDriver", "RootFS", "Metadata"]
    assert img["Id"] == busybox
    assert img["RepoTags"] == ["busybox:latest"] and img["RepoDigests"] == []
    assert img["Config"]["Cmd"] == ["sh"]
    assert img["Config"]["Entrypoint"] is None and img["Config"]["Env"] is None
    assert img["Config"]["WorkingDir"] == "" and img["Config"]["Labels"] is None
    assert img["Os"] == "linux" and img["Architecture"] in ("amd64", "arm64")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", img["Created"])
    assert img["RootFS"]["Type"] == "layers"
    assert len(img["RootFS"]["Layers"]) == 1 and img["RootFS"]["Layers"][0].startswith(
        "sha256:")
    # dockerd's size: what the unpacked layer holds, not the length of its tar
    assert img["Size"] == unpacked_size(busybox_tar) < busybox_tar.stat().st_size
    assert img["Comment"] == "Imported from -"
    assert img["GraphDriver"]["Name"] == "overlay2"
    assert Path(img["GraphDriver"]["Data"]["UpperDir"]).is_dir()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", img["Metadata"]["LastTagTime"])


def test_inspect_format_id(ketch: KetchCLI, busybox: str) -> None:
    assert ketch("image", "inspect", "--format", "{{.Id}}", "busybox").stdout == busybox + "\n"


def test_inspect_format_json_of_config(ketch: KetchCLI, tmp_path: Path) -> None:
    import_files(ketch, tmp_path, {"x": b"1"}, "app:1", 'CMD ["run", "it"]',
                 "ENV A=1 B=two", "WORKDIR /srv", "EXPOSE 8080/udp", "LABEL k=v")
    cfg = json.loads(ketch("image", "inspect", "-f", "{{json .Config}}", "app:1").stdout)
    assert cfg["Cmd"] == ["run", "it"]
    assert cfg["Env"] == ["A=1", "B=two"]
    assert cfg["WorkingDir"] == "/srv"
    assert cfg["ExposedPorts"] == {"8080/udp": {}}
    assert cfg["Labels"] == {"k": "v"}


def test_inspect_format_range_and_index(ketch: KetchCLI, tmp_path: Path) -> None:
    import_files(ketch, tmp_path, {"x": b"1"}, "app:1", "ENV A=1 B=2")
    ketch("tag", "app:1", "app:2")
    out = ketch("image", "inspect", "-f", "{{range .Config.Env}}[{{.}}]{{end}}", "app:1")
    assert out.stdout == "[A=1][B=2]\n"
    out = ketch("image", "inspect", "-f", "{{index .RepoTags 1}}", "app:1")
    assert out.stdout == "app:2\n"
    out = ketch("image", "inspect", "-f", '{{index .Config.Labels "nope"}}', "app:1")
    assert out.stdout == "\n"  # index of a nil map[string]string is "" in Go


def test_inspect_several_images_one_object_each(ketch: KetchCLI, busybox: str,
                                                tmp_path: Path) -> None:
    other = import_files(ketch, tmp_path, {"x": b"1"}, "other:1")
    out = ketch("image", "inspect", "-f", "{{.Id}}", "busybox", "other:1").stdout
    assert out.split() == [busybox, other]


def test_inspect_of_a_missing_image_prints_empty_array_and_fails(
        ketch: KetchCLI, busybox: str) -> None:
    proc = ketch("image", "inspect", "ghost", check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == []
    assert_one_line_error(proc.stderr, "No such image: ghost")
    proc = ketch("image", "inspect", "-f", "{{.Id}}", "busybox", "ghost", check=False)
    assert proc.returncode == 1 and proc.stdout == busybox + "\n"


def test_generic_inspect_finds_images(ketch: KetchCLI, busybox: str) -> None:
    out = ketch("inspect", "--type", "image", "-f", "{{.Id}}", "busybox").stdout
    assert out == busybox + "\n"


def test_inspect_of_a_child_names_its_parent_and_all_layers(
        ketch: KetchCLI, busybox: str) -> None:
    child_image(ketch, busybox, {"c": b"1"}, "child:1")
    out = ketch("image", "inspect", "-f", "{{.Parent}} {{len .RootFS.Layers}}", "child:1")
    assert out.stdout == f"{busybox} 2\n"


def test_history_of_an_imported_image_has_one_row(ketch: KetchCLI, busybox: str) -> None:
    out = ketch("history", "busybox").stdout.splitlines()
    assert re.match(r"^IMAGE +CREATED +CREATED BY +SIZE +COMMENT$", out[0])
    assert len(out) == 2
    assert out[1].startswith(busybox[7:19])
    assert out[1].rstrip().endswith("1.99MB    Imported from -")


def test_history_names_local_parents_and_says_missing_for_the_rest(
        ketch: KetchCLI, tmp_path: Path) -> None:
    base = import_files(ketch, tmp_path, {"x": b"1"}, "base:1")
    child = child_image(ketch, base, {"c": b"1" * 3000}, "child:1")
    lines = ketch("image", "history", "--no-trunc", "child:1").stdout.splitlines()[1:]
    assert [line.split()[0] for line in lines] == [child, base]
    assert "/bin/sh -c #(nop) ADD files" in lines[0]
    out = ketch("image", "history", "-q", "child:1").stdout
    assert out.split() == [child[7:19], base[7:19]]
    rows = ketch("history", "--format", "{{.ID}}|{{.Size}}", "--human=false",
                 "child:1").stdout.split()
    assert rows[0] == f"{child[7:19]}|3000"  # the one file it adds, as dockerd counts
    # once the parent is gone from the store, its row says <missing>
    from ketch.engine import Engine

    with Engine(ketch.root, ketch.root / "run") as engine:
        with engine.db.transaction() as conn:
            conn.execute("UPDATE images SET parent=NULL WHERE id=?", (child,))
    assert ketch("history", "-q", "child:1").stdout.split() == [child[7:19], "<missing>"]


def test_history_with_human_false_prints_dates_and_bytes(
        ketch: KetchCLI, busybox: str, busybox_tar: Path) -> None:
    out = ketch("history", "--human=false", "busybox").stdout.splitlines()
    assert re.match(r"^IMAGE +CREATED AT +CREATED BY +SIZE +COMMENT$", out[0])
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", out[1])
    assert f" {unpacked_size(busybox_tar)} " in out[1]
    # -H alone (Docker's default) does not swallow the image name
    assert ketch("history", "-H", "busybox").stdout.splitlines()[1].startswith(busybox[7:19])


def test_history_truncates_created_by_to_45_characters(ketch: KetchCLI, busybox: str) -> None:
    child_image(ketch, busybox, {"c": b"1"}, "child:1")
    row = ketch("history", "--format", "{{.CreatedBy}}", "child:1").stdout.splitlines()[0]
    assert row == "/bin/sh -c #(nop) ADD files"
    long = "x" * 60
    from ketch.engine import Engine  # a history entry as long as a real RUN line

    with Engine(ketch.root, ketch.root / "run") as engine:
        rec = engine.images.resolve("busybox")
        cfg = engine.images.get_config(rec).raw
        cfg["history"][0]["created_by"] = long
        layers = engine.images.get_manifest(rec).layers
        from ketch.images.service import NewLayer

        engine.images.commit(cfg, [NewLayer(d.digest, d.media_type, d.size, i, 0)
                                   for d, i in zip(layers, cfg["rootfs"]["diff_ids"],
                                                   strict=True)], tags=["docker.io/library/long:1"])
    out = ketch("history", "--format", "{{.CreatedBy}}", "long:1").stdout.strip()
    assert out == "x" * 44 + "…"
    out = ketch("history", "--no-trunc", "--format", "{{.CreatedBy}}", "long:1").stdout
    assert out.strip() == long


def test_history_of_a_missing_image_says_no_such_image(ketch: KetchCLI) -> None:
    proc = ketch("history", "ghost", check=False)
    assert proc.returncode == 1
    assert proc.stderr == "Error: No such image: ghost:latest\n"
