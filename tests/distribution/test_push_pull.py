"""End-to-end: `ketch push` to a registry and `ketch pull` back into another state root."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, require_root, require_tool


@pytest.fixture(autouse=True)
def _as_root() -> None:
    # Unpacking layers keeps ownership and device nodes, which only root can do.
    require_root()


def _import(ketch: KetchCLI, tar: Path, name: str) -> str:
    return ketch("import", str(tar), name).stdout.strip()


def _image_id(ketch: KetchCLI, name: str) -> str:
    return ketch("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()


def test_push_then_pull_keeps_image_id_and_runs(ketch: KetchCLI, tmp_path: Path,
                                                busybox_tar: Path, inproc_registry, other_root) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/busybox"
    image_id = _import(ketch, busybox_tar, f"{name}:latest")
    pushed = ketch("push", name).stdout
    assert "Using default tag: latest" in pushed
    assert f"The push refers to repository [{name}]" in pushed
    assert ": Pushed" in pushed
    digest = pushed.strip().splitlines()[-1].split("digest: ")[1].split()[0]

    again = ketch("push", f"{name}:latest").stdout
    assert ": Layer already exists" in again

    other = other_root("other-root")
    pulled = other("pull", name).stdout
    assert "latest: Pulling from busybox" in pulled
    assert ": Pull complete" in pulled
    assert f"Digest: {digest}" in pulled
    assert f"Status: Downloaded newer image for {name}:latest" in pulled
    assert _image_id(other, name) == image_id
    repo_digests = json.loads(other("image", "inspect", "--format",
                                    "{{json .RepoDigests}}", name).stdout)
    assert repo_digests == [f"{name}@{digest}"]

    second = other("pull", name).stdout
    assert f"Status: Image is up to date for {name}:latest" in second

    out = other("run", "--rm", "--network", "none", name, "echo", "hello-from-registry")
    assert out.stdout.strip() == "hello-from-registry"


def test_pull_platform_takes_the_hosts_platform_and_refuses_another(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/plat"
    image_id = _import(ketch, busybox_tar, f"{name}:1")
    ketch("push", name + ":1")
    other = other_root("plat-root")
    p = other("pull", "--platform", "linux/arm64", f"{name}:1", check=False)
    assert p.returncode == 1
    assert p.stderr == "Error: --platform linux/arm64: ketch pulls only the host platform\n"
    assert other("images", "-q").stdout == ""
    other("pull", "--platform", "linux/amd64", f"{name}:1")
    assert _image_id(other, f"{name}:1") == image_id


def test_push_and_pull_disable_content_trust_move_the_image_unsigned(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/unsigned:1"
    image_id = _import(ketch, busybox_tar, name)
    assert ": Pushed" in ketch("push", "--disable-content-trust", name).stdout
    other = other_root("unsigned-root")
    other("pull", "--disable-content-trust=true", name)
    assert _image_id(other, name) == image_id


def test_pull_by_digest_then_rmi(ketch: KetchCLI, tmp_path: Path, busybox_tar: Path,
                                 inproc_registry, other_root) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/tools/bb"
    image_id = _import(ketch, busybox_tar, f"{name}:v1")
    digest = ketch("push", f"{name}:v1").stdout.strip().split("digest: ")[1].split()[0]

    other = other_root("other-root")
    pulled = other("pull", f"{name}@{digest}").stdout
    assert f"Status: Downloaded newer image for {name}@{digest}" in pulled
    assert _image_id(other, f"{name}@{digest}") == image_id
    # Pulled by digest: no tag is created.
    tags = json.loads(other("image", "inspect", "--format", "{{json .RepoTags}}",
                            image_id).stdout)
    assert tags == []

    removed = other("rmi", f"{name}@{digest}").stdout
    assert f"Untagged: {name}@{digest}" in removed
    assert f"Deleted: {image_id}" in removed
    assert other("images", "-q").stdout.strip() == ""


def test_pull_of_an_up_to_date_image_loads_no_stores_tls_or_parsers(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root) -> None:
    """A re-pull is one manifest request: it must not grow back the imports that made it
    slower than docker's (OpenSSL's hashlib, pathlib and the re it loads, json, the
    content and layer stores, threads)."""
    import os
    import subprocess
    import sys

    import ketch as ketch_pkg

    reg = inproc_registry()
    name = f"{reg.host}/lean/bb:1"
    _import(ketch, busybox_tar, name)
    ketch("push", name)
    other = other_root("other-root")
    other("pull", name)
    src = os.path.dirname(os.path.dirname(ketch_pkg.__file__))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ketch.cli.main import main;"
            " sys.exit(main(sys.argv[2:]))")
    env = dict(os.environ, KETCH_ROOT=str(other.root), KETCH_RUN_ROOT=str(other.root / "run"))
    proc = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", code, src,
                           "pull", name], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"Status: Image is up to date for {name}" in proc.stdout
    mods = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}
    heavy = {"hashlib", "_hashlib", "ssl", "http.client", "pathlib", "re", "json",
             "urllib.parse", "base64", "threading", "typing", "dataclasses",
             "ketch.store.content", "ketch.layers.store", "ketch.images.service",
             "ketch.distribution.pipeline", "ketch.archive",
             # a fifth of the command's instructions, for two decorators
             "functools", "collections", "contextlib", "operator"}
    assert not mods & heavy, sorted(mods & heavy)


def test_cross_repository_push_mounts_blobs(ketch: KetchCLI, busybox_tar: Path,
                                            inproc_registry) -> None:
    reg = inproc_registry()
    _import(ketch, busybox_tar, f"{reg.host}/first:latest")
    ketch("push", f"{reg.host}/first:latest")
    ketch("tag", f"{reg.host}/first:latest", f"{reg.host}/second:latest")
    out = ketch("push", f"{reg.host}/second:latest").stdout
    assert ": Mounted from first" in out


def test_pull_of_unknown_image_reports_manifest_or_name_unknown(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry) -> None:
    # dockerd's words for each: a repository the registry does not know (its
    # NAME_UNKNOWN message quoted), and a tag missing from one it knows
    reg = inproc_registry()
    proc = ketch("pull", f"{reg.host}/missing:1.0", check=False)
    assert proc.returncode == 1
    assert proc.stderr == (f"Error: repository {reg.host}/missing not found: name unknown:"
                           " repository name not known to registry\n")
    _import(ketch, busybox_tar, f"{reg.host}/known:1")
    ketch("push", f"{reg.host}/known:1")
    proc = ketch("pull", f"{reg.host}/known:2", check=False)
    assert proc.returncode == 1
    assert proc.stderr == (f"Error: manifest for {reg.host}/known:2 not found:"
                           " manifest unknown: manifest unknown\n")


def test_push_of_missing_image_fails(ketch: KetchCLI, busybox_tar: Path,
                                     inproc_registry) -> None:
    reg = inproc_registry()
    proc = ketch("push", f"{reg.host}/ghost", check=False)
    # as docker push: the repository is named, then the image found missing (the error
    # said "No such image: An image does not exist ...")
    assert proc.returncode == 1
    assert proc.stdout == ("Using default tag: latest\n"
                           f"The push refers to repository [{reg.host}/ghost]\n")
    # (printed as it comes in the push's stream: the docker CLI adds no "Error")
    assert proc.stderr == f"An image does not exist locally with the tag: {reg.host}/ghost\n"
    _import(ketch, busybox_tar, f"{reg.host}/ghost:1")
    proc = ketch("push", f"{reg.host}/ghost", check=False)  # the repository, not the tag
    assert (proc.returncode, proc.stderr) == (1, f"tag does not exist: {reg.host}/ghost:latest\n")


def test_pull_from_an_unreachable_registry_fails_fast_in_one_line(ketch: KetchCLI) -> None:
    # Only loopback: a port nothing listens on stands in for a registry out of reach.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    proc = ketch("pull", f"127.0.0.1:{port}/busybox", check=False, timeout=60)
    assert time.monotonic() - start < 30
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert f"127.0.0.1:{port}" in lines[0]


def test_skopeo_copies_an_image_out_of_ketch_registry(ketch: KetchCLI, tmp_path: Path,
                                                      busybox_tar: Path,
                                                      inproc_registry, other_root) -> None:
    skopeo = require_tool("skopeo")
    import subprocess

    reg = inproc_registry()
    image_id = _import(ketch, busybox_tar, f"{reg.host}/x:latest")
    ketch("push", f"{reg.host}/x:latest")
    archive = tmp_path / "x.tar"
    subprocess.run([skopeo, "copy", "--src-tls-verify=false",
                    f"docker://{reg.host}/x:latest", f"docker-archive:{archive}"],
                   check=True, capture_output=True, timeout=120)
    # The archive loads back as the same image: skopeo read config and layers intact.
    other = other_root("other-root")
    other("load", "-i", str(archive))
    assert other("images", "-q", "--no-trunc").stdout.split() == [image_id]

    # And the other direction: skopeo pushes (chunked PATCH uploads), ketch pulls.
    subprocess.run([skopeo, "copy", "--dest-tls-verify=false", f"docker-archive:{archive}",
                    f"docker://{reg.host}/from-skopeo:v2"],
                   check=True, capture_output=True, timeout=120)
    third = other_root("third-root")
    third("pull", f"{reg.host}/from-skopeo:v2")
    assert _image_id(third, f"{reg.host}/from-skopeo:v2") == image_id


def test_push_and_pull_against_debian_docker_registry(ketch: KetchCLI, tmp_path: Path,
                                                      busybox_tar: Path,
                                                      docker_registry, other_root) -> None:
    name = f"{docker_registry.host}/interop/busybox:1"
    image_id = _import(ketch, busybox_tar, name)
    pushed = ketch("push", name).stdout
    assert ": Pushed" in pushed
    other = other_root("other-root")
    pulled = other("pull", name).stdout
    assert f"Status: Downloaded newer image for {name}" in pulled
    assert _image_id(other, name) == image_id
    out = other("run", "--rm", "--network", "none", name, "cat", "/etc/hostname",
                check=False)
    assert out.returncode == 0, out.stderr


def test_pull_through_an_index_picks_the_host_platform(ketch: KetchCLI, busybox_tar: Path,
                                                       inproc_registry, other_root) -> None:
    from tests.distribution.test_registry_server import call, sha

    from ketch.oci.model import host_platform

    reg = inproc_registry()
    name = f"{reg.host}/multi"
    image_id = _import(ketch, busybox_tar, f"{name}:single")
    ketch("push", f"{name}:single")
    manifest = call(reg.host, "GET", "/v2/multi/manifests/single").body
    plat = host_platform()
    other_arch = "s390x" if plat.architecture != "s390x" else "arm64"
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": sha(manifest), "size": len(manifest),
             "platform": {"architecture": other_arch, "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": sha(manifest), "size": len(manifest),
             "platform": {"architecture": plat.architecture, "os": plat.os}},
        ]}).encode()
    r = call(reg.host, "PUT", "/v2/multi/manifests/latest", index,
             {"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert r.status == 201
    puller = other_root("puller")
    out = puller("pull", name).stdout
    # The RepoDigest is the index's digest, as docker records it.
    assert f"Digest: {sha(index)}" in out
    assert _image_id(puller, name) == image_id


def _tar_with(files: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_pull_of_multi_layer_gzip_image_unpacks_layers_in_order(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry) -> None:
    import gzip

    from tests.distribution.test_registry_server import call, push_blob, sha

    from ketch.oci.model import host_platform

    reg = inproc_registry()
    base = busybox_tar.read_bytes()
    layers = [base,
              _tar_with({"etc/motd": b"first\n", "data/one": b"1\n"}),
              _tar_with({"etc/motd": b"second\n", "data/two": b"2\n"}),
              _tar_with({"data/three": b"3\n"})]
    blobs = [layers[0]] + [gzip.compress(x, mtime=0) for x in layers[1:]]
    plat = host_platform()
    config = json.dumps({
        "architecture": plat.architecture, "os": plat.os,
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin:/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": push_blob(reg.host, "layered", config), "size": len(config)},
        "layers": [{"mediaType": ("application/vnd.oci.image.layer.v1.tar" if i == 0 else
                                  "application/vnd.docker.image.rootfs.diff.tar.gzip"),
                    "digest": push_blob(reg.host, "layered", b), "size": len(b)}
                   for i, b in enumerate(blobs)],
    }).encode()
    r = call(reg.host, "PUT", "/v2/layered/manifests/v1", manifest,
             {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.status == 201
    out = ketch("pull", f"{reg.host}/layered:v1").stdout
    assert out.count(": Pull complete") == 4
    assert _image_id(ketch, f"{reg.host}/layered:v1") == sha(config)
    run = ketch("run", "--rm", "--network", "none", f"{reg.host}/layered:v1", "cat",
                "/etc/motd", "/data/one", "/data/two", "/data/three")
    assert run.stdout == "second\n1\n2\n3\n"
    # Pushed back elsewhere, the same compressed blobs and image ID arrive.
    ketch("tag", f"{reg.host}/layered:v1", f"{reg.host}/copy:v1")
    assert ": Mounted from layered" in ketch("push", f"{reg.host}/copy:v1").stdout


def test_pull_refuses_a_blob_whose_bytes_do_not_match_its_digest(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/tampered:1"
    _import(ketch, busybox_tar, name)
    ketch("push", name)
    # Corrupt the layer on the registry's disk: the client must notice by itself.
    layer = max((reg.root / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    layer.write_bytes(b"not the layer you are looking for")
    puller = other_root("puller")
    proc = puller("pull", name, check=False)
    assert proc.returncode != 0
    assert proc.stderr.startswith("Error: content") and "mismatch" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert puller("images", "-q").stdout.strip() == ""
    assert f"sha256:{layer.name}" not in {
        "sha256:" + p.name for p in (puller.root / "blobs" / "sha256").iterdir()}


def test_pull_all_tags_follows_tag_list_pages(ketch: KetchCLI, busybox_tar: Path,
                                              inproc_registry, other_root) -> None:
    from ketch import reference
    from ketch.distribution.pull import list_tags

    reg = inproc_registry()
    repo = f"{reg.host}/many"
    _import(ketch, busybox_tar, f"{repo}:a")
    for tag in ("b", "c", "d", "e"):
        ketch("tag", f"{repo}:a", f"{repo}:{tag}")
    pushed = ketch("push", "--all-tags", repo).stdout
    # one stream, as dockerd pushes a repository: the repository named once, a digest
    # line per tag
    assert pushed.count("The push refers to repository") == 1
    assert [line.split(":")[0] for line in pushed.splitlines() if ": digest: " in line
            ] == list("abcde")
    assert list_tags(reference.parse(repo, default_tag=None), page_size=2) == [
        "a", "b", "c", "d", "e"]
    puller = other_root("puller")
    out = puller("pull", "--all-tags", repo).stdout
    # one stream: a "Pulling from" and a digest per tag, one status for the repository
    assert [line.split(":")[0] for line in out.splitlines() if "Pulling from" in line
            ] == list("abcde")
    assert out.count("Digest: ") == 5
    assert out.endswith(f"Status: Downloaded newer image for {repo}\n{repo}\n")
    tags = json.loads(puller("image", "inspect", "--format", "{{json .RepoTags}}",
                             f"{repo}:a").stdout)
    assert tags == [f"{repo}:{t}" for t in "abcde"]


def test_run_pulls_a_missing_image_as_docker_does(ketch: KetchCLI, busybox_tar: Path,
                                                  inproc_registry, other_root) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/runme"
    _import(ketch, busybox_tar, f"{name}:latest")
    ketch("push", name)
    other = other_root("runner")
    never = other("run", "--rm", "--pull", "never", "--network", "none", name, "true",
                  check=False)
    assert never.returncode == 125
    assert never.stderr.strip() == f"Error: No such image: {name}"
    r = other("run", "--rm", "--network", "none", name, "echo", "pulled-and-ran")
    assert r.stdout.strip() == "pulled-and-ran"
    assert f"Unable to find image '{name}:latest' locally" in r.stderr
    assert "Pull complete" in r.stderr
    assert _image_id(other, name) == _image_id(ketch, name)
    bad = other("run", "--rm", "--pull", "sometimes", name, "true", check=False)
    assert bad.returncode == 125 and "invalid pull option" in bad.stderr


def test_build_pulls_a_missing_base_image_and_pull_flag_pulls_again(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root, tmp_path: Path) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/base"
    _import(ketch, busybox_tar, f"{name}:1")
    ketch("push", f"{name}:1")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {name}:1\nCOPY --from={name}:1 /bin/busybox /copied/busybox\nCMD [\"true\"]\n")
    other = other_root("builder")
    r = other("build", "-t", "app", str(ctx))
    assert "Pull complete" in r.stdout, r.stdout
    assert _image_id(other, f"{name}:1") == _image_id(ketch, f"{name}:1")
    assert other("run", "--rm", "--network", "none", "app", "/copied/busybox", "echo", "ok"
                 ).stdout.strip() == "ok"
    # present now: no pull without --pull; with it, the registry is asked again
    again = other("build", "-t", "app", str(ctx))
    assert "Pulling" not in again.stdout and "Using cache" in again.stdout
    forced = other("build", "--pull", "-t", "app", str(ctx))
    assert f"Status: Image is up to date for {name}:1" in forced.stdout, forced.stdout


def test_pull_of_an_image_held_under_another_name_only_names_it(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry) -> None:
    # dockerd pulls nothing when the image (its config) is already here: no layer is
    # fetched or shown, the name and digest are recorded, "Downloaded newer image"
    reg = inproc_registry()
    image_id = _import(ketch, busybox_tar, f"{reg.host}/held:1")
    ketch("push", f"{reg.host}/held:1")
    ketch("tag", f"{reg.host}/held:1", "kept:1")
    ketch("rmi", f"{reg.host}/held:1")
    out = ketch("pull", f"{reg.host}/held:1").stdout.splitlines()
    assert out[0] == "1: Pulling from held"
    assert out[1].startswith("Digest: sha256:")
    assert out[2:] == [f"Status: Downloaded newer image for {reg.host}/held:1",
                       f"{reg.host}/held:1"]
    assert ketch("image", "inspect", "-f", "{{.Id}}", f"{reg.host}/held:1"
                 ).stdout.strip() == image_id
    digests = ketch("images", "--digests", "--format", "{{.Digest}}", f"{reg.host}/held"
                    ).stdout.split()
    assert digests == [out[1].removeprefix("Digest: ")]


def test_search_is_an_honest_error(ketch: KetchCLI) -> None:
    # docker's flags are taken; there is no index behind them (Docker Hub's search is a
    # service of Docker's, registries offer none)
    for flags in ([], ["--limit", "5"], ["--filter", "is-official=true"],
                  ["--format", "{{.Name}}"], ["--no-trunc"]):
        proc = ketch("search", *flags, "busybox", check=False)
        assert proc.returncode == 1
        assert proc.stderr.startswith("Error: cannot search for 'busybox': ketch has no"
                                      " index")
    assert ketch("search", "--limit", "x", "busybox", check=False).returncode == 125
