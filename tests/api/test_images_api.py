"""The image transfer endpoints driven by the stock docker CLI 28 and docker-py 7:
tag, save/load, import, prune, rmi conflicts, and login/push/pull/logout against
`ketch registry serve` on loopback with an htpasswd file."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.api.conftest import Api
from tests.distribution.conftest import Served, inproc_registry, write_htpasswd

docker = pytest.importorskip("docker")

__all__ = ["inproc_registry"]  # the fixture, for this module's tests


def _ids(api: Api) -> list[str]:
    return sorted(api.docker("images", "-aq", "--no-trunc").stdout.split())


def test_docker_tag_then_rmi_untags_only(api: Api) -> None:
    api.docker("tag", "busybox", "tagged/box:v1")
    out = api.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "tagged/box:v1" in out
    assert api.docker("rmi", "tagged/box:v1").stdout == "Untagged: tagged/box:v1\n"
    assert api.docker("image", "inspect", "busybox", check=False).returncode == 0


def test_docker_save_then_load_restores_the_image(api: Api, tmp_path: Path) -> None:
    api.docker("tag", "busybox", "saved:1")
    image_id = api.docker("image", "inspect", "-f", "{{.Id}}", "saved:1").stdout.strip()
    archive = tmp_path / "saved.tar"
    api.docker("save", "-o", str(archive), "saved:1")
    names = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True,
                           check=True).stdout.split()
    assert "manifest.json" in names
    api.docker("rmi", "saved:1")
    res = api.docker("load", "-i", str(archive))
    assert res.stdout == "Loaded image: saved:1\n"
    assert api.docker("image", "inspect", "-f", "{{.Id}}", "saved:1").stdout.strip() == image_id
    api.docker("rmi", "saved:1")


def test_docker_save_of_an_unknown_image_is_an_error(api: Api, tmp_path: Path) -> None:
    res = api.docker("save", "-o", str(tmp_path / "x.tar"), "nosuch:image", check=False)
    assert res.returncode == 1
    assert "No such image: nosuch:image" in res.stderr


def test_docker_import_makes_an_image_from_a_tarball(api: Api, busybox_tar: Path) -> None:
    res = api.docker("import", "--change", "CMD [\"echo\", \"imported\"]", str(busybox_tar),
                     "imported:1")
    image_id = api.docker("image", "inspect", "-f", "{{.Id}}", "imported:1").stdout.strip()
    assert res.stdout.strip() == image_id
    assert api.docker("run", "--rm", "imported:1").stdout == "imported\n"
    api.docker("rmi", "imported:1")


def test_docker_image_prune_all_removes_unused_images_only(api: Api, tmp_path: Path,
                                                          busybox_tar: Path) -> None:
    api.docker("tag", "busybox", "kept:1")
    keeper = api.docker("create", "kept:1", "true").stdout.strip()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo x > /x\n")
    api.docker("build", "-t", "unused", str(ctx), timeout=120)
    unused_id = api.docker("image", "inspect", "-f", "{{.Id}}", "unused").stdout.strip()
    res = api.docker("image", "prune", "-a", "-f")
    assert "untagged: unused:latest" in res.stdout
    assert f"deleted: {unused_id}" in res.stdout
    assert "Total reclaimed space:" in res.stdout
    # the image a container uses stays, with every tag
    remaining = api.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert sorted(remaining) == ["busybox:latest", "kept:1"]
    api.docker("rm", keeper)
    api.docker("rmi", "kept:1")


def test_docker_rmi_refuses_an_image_a_container_uses(api: Api, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL only=tag\n")
    api.docker("build", "-t", "inuse:1", str(tmp_path), timeout=120)
    image_id = api.docker("image", "inspect", "-f", "{{.Id}}", "inuse:1").stdout.strip()
    cid = api.docker("create", "inuse:1", "true").stdout.strip()
    res = api.docker("rmi", "inuse:1", check=False)
    assert res.returncode == 1
    assert res.stderr.startswith("Error response from daemon: conflict: unable to remove"
                                 " repository reference \"inuse:1\" (must force) - container"
                                 f" {cid[:12]} is using its referenced image"
                                 f" {image_id[7:19]}")
    assert api.docker("image", "inspect", "-f", "{{.Id}}", "inuse:1").stdout.strip() == image_id
    api.docker("rm", cid)
    api.docker("rmi", "inuse:1")


def test_images_search_is_an_honest_error(api: Api) -> None:
    res = api.docker("search", "busybox", check=False)
    assert res.returncode == 1
    assert "ketch has no index to search" in res.stderr


def _login_registry(inproc_registry: Callable[..., Served], tmp_path: Path) -> Served:
    return inproc_registry(htpasswd=write_htpasswd(tmp_path / "htpasswd", "alice", "s3cret"))


def test_docker_login_push_pull_logout_with_a_registry(
        api: Api, inproc_registry: Callable[..., Served], tmp_path: Path) -> None:
    reg = _login_registry(inproc_registry, tmp_path)
    bad = api.docker("login", "-u", "alice", "--password-stdin", reg.host, input="wrong\n",
                     check=False)
    assert bad.returncode == 1
    assert bad.stderr == (f"Error response from daemon: login attempt to http://{reg.host}/v2/"
                          " failed with status: 401 Unauthorized\n")
    conn = api.http()
    conn.request("POST", "/v1.45/auth", body=json.dumps(
        {"username": "alice", "password": "wrong", "serveraddress": reg.host}),
        headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 401
    assert json.loads(resp.read())["message"] == (
        f"login attempt to http://{reg.host}/v2/ failed with status: 401 Unauthorized")
    conn.close()
    ok = api.docker("login", "-u", "alice", "--password-stdin", reg.host, input="s3cret\n")
    assert "Login Succeeded" in ok.stdout
    name = f"{reg.host}/team/box:v1"
    api.docker("tag", "busybox", name)
    pushed = api.docker("push", name, timeout=120)
    assert f"The push refers to repository [{reg.host}/team/box]" in pushed.stdout
    assert "v1: digest: sha256:" in pushed.stdout
    local_id = api.docker("image", "inspect", "-f", "{{.Id}}", name).stdout.strip()
    api.docker("rmi", name)
    pulled = api.docker("pull", name, timeout=120)
    assert "v1: Pulling from team/box" in pulled.stdout
    assert f"Status: Downloaded newer image for {name}" in pulled.stdout
    assert api.docker("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == local_id
    api.docker("rmi", name)
    api.docker("logout", reg.host)
    denied = api.docker("pull", name, check=False, timeout=120)
    assert denied.returncode == 1
    assert api.docker("image", "inspect", name, check=False).returncode == 1


def test_pull_of_an_unknown_image_is_a_404(api: Api,
                                           inproc_registry: Callable[..., Served]) -> None:
    reg = inproc_registry()
    conn = api.http()
    conn.request("POST", f"/v1.45/images/create?fromImage={reg.host}/no/such&tag=latest",
                 headers={"X-Registry-Auth": base64.urlsafe_b64encode(b"{}").decode()})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 404
    assert "no/such" in body["message"]
    res = api.docker("pull", f"{reg.host}/no/such:latest", check=False)
    assert res.returncode == 1 and res.stderr.startswith("Error response from daemon:")


def test_docker_py_push_pull_list_remove_with_auth_config(
        api: Api, inproc_registry: Callable[..., Served], tmp_path: Path) -> None:
    reg = _login_registry(inproc_registry, tmp_path)
    client = api.client()
    creds = {"username": "alice", "password": "s3cret"}
    repo = f"{reg.host}/dpy/box"
    assert client.images.get("busybox").tag(repo, "v2")
    lines = list(client.images.push(repo, "v2", auth_config=creds, stream=True, decode=True))
    assert not [m for m in lines if "error" in m], lines
    assert [m["aux"]["Tag"] for m in lines if "aux" in m] == ["v2"]
    refused = list(client.images.push(repo, "v2", stream=True, decode=True,
                                      auth_config={"username": "alice", "password": "no"}))
    assert refused[-1]["error"] == refused[-1]["errorDetail"]["message"]
    assert "unauthorized" in refused[-1]["error"]
    client.images.remove(f"{repo}:v2")
    assert f"{repo}:v2" not in [t for i in client.images.list() for t in i.tags]
    image = client.images.pull(repo, tag="v2", auth_config=creds)
    assert f"{repo}:v2" in image.tags
    assert image.id == client.images.get("busybox").id
    client.images.remove(f"{repo}:v2")


def test_docker_build_pulls_its_base_with_the_clients_credentials(
        api: Api, inproc_registry: Callable[..., Served], tmp_path: Path) -> None:
    reg = _login_registry(inproc_registry, tmp_path)
    base = f"{reg.host}/base/box:1"
    api.docker("login", "-u", "alice", "--password-stdin", reg.host, input="s3cret\n")
    api.docker("tag", "busybox", base)
    api.docker("push", base, timeout=120)
    api.docker("rmi", base)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN echo on-base\n")
    # the build's X-Registry-Config carries the CLI's logins: the base is pulled with them
    built = api.docker("build", "-t", "on-base", str(ctx), timeout=120)
    assert f"Status: Downloaded newer image for {base}" in built.stdout
    assert "on-base\n" in built.stdout
    api.docker("rmi", "on-base", base)
    api.docker("logout", reg.host)
    refused = api.docker("build", "-t", "on-base", str(ctx), check=False, timeout=120)
    assert refused.returncode == 1
    assert f"failed to pull base image {base}" in refused.stderr
    assert api.docker("image", "inspect", base, check=False).returncode == 1


def test_docker_py_save_load_and_prune(api: Api) -> None:
    client = api.client()
    image = client.images.get("busybox")
    image.tag("dpy-saved", "1")
    archive = b"".join(client.images.get("dpy-saved:1").save(named="dpy-saved:1"))
    client.images.remove("dpy-saved:1")
    loaded = client.images.load(archive)
    assert [i.id for i in loaded] == [image.id]
    assert "dpy-saved:1" in client.images.get(image.id).tags
    client.images.remove("dpy-saved:1")
    report = client.images.prune(filters={"dangling": True})
    assert report == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    with pytest.raises(docker.errors.APIError, match="no index to search"):
        client.images.search("busybox")


def test_docker_py_pushes_anonymously_without_auth_config(
        api: Api, inproc_registry: Callable[..., Served]) -> None:
    reg = inproc_registry()  # no htpasswd: open to anyone
    client = api.client()
    repo = f"{reg.host}/open/box"
    client.images.get("busybox").tag(repo, "v3")
    lines = list(client.images.push(repo, "v3", stream=True, decode=True))
    assert not [m for m in lines if "error" in m], lines
    assert [m["aux"]["Tag"] for m in lines if "aux" in m] == ["v3"]
    client.images.remove(f"{repo}:v3")
    pulled = client.images.pull(repo, tag="v3")
    assert pulled.id == client.images.get("busybox").id
    client.images.remove(f"{repo}:v3")


def test_docker_push_of_a_missing_local_image_fails(
        api: Api, inproc_registry: Callable[..., Served]) -> None:
    reg = inproc_registry()
    res = api.docker("push", f"{reg.host}/not/here:v1", check=False)
    # as against dockerd: the stream names the repository, then ends with the error
    assert res.returncode == 1
    assert f"The push refers to repository [{reg.host}/not/here]" in res.stdout
    assert res.stderr == f"An image does not exist locally with the tag: {reg.host}/not/here\n"
