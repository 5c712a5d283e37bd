"""The CRI's RuntimeService basics and ImageService, driven with the generated gRPC
stubs as a kubelet drives a node's runtime."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from tests.cri.conftest import Cri, Served
from tests.distribution.conftest import Served as Registry
from tests.distribution.conftest import write_htpasswd

pytestmark = pytest.mark.xdist_group("cri")  # one worker, one set of servers


def test_version_and_status_answer_as_a_kubelet_expects(any_runtime: Served) -> None:
    cri = any_runtime.cri
    v = any_runtime.runtime.Version(cri.VersionRequest(version="v1"))
    assert (v.version, v.runtime_name, v.runtime_api_version) == (
        "0.1.0", any_runtime.name, "v1")
    assert v.runtime_version
    status = any_runtime.runtime.Status(cri.StatusRequest()).status
    ready = {c.type: c.status for c in status.conditions}
    assert ready == {"RuntimeReady": True, "NetworkReady": True}


def test_runtime_config_names_the_cgroupfs_driver(cri_server: Cri) -> None:
    # RuntimeConfig came with CRI 1.28: containerd 1.6 does not have it
    cri = cri_server.cri
    config = cri_server.runtime.RuntimeConfig(cri.RuntimeConfigRequest())
    assert config.linux.cgroup_driver == cri.CGROUPFS
    cri_server.runtime.UpdateRuntimeConfig(cri.UpdateRuntimeConfigRequest(
        runtime_config=cri.RuntimeConfig(network_config=cri.NetworkConfig(
            pod_cidr="10.244.0.0/24"))))


def test_pull_list_status_and_remove_an_image_from_a_loopback_registry(
        any_runtime: Served, cri_images: dict[str, str]) -> None:
    cri = any_runtime.cri
    images = any_runtime.images
    name = cri_images["busybox"]
    spec = cri.ImageSpec(image=name)

    missing = images.ImageStatus(cri.ImageStatusRequest(image=spec))
    assert not missing.HasField("image")  # absent: no image and no error

    ref = images.PullImage(cri.PullImageRequest(image=spec)).image_ref
    assert ref.startswith("sha256:") and len(ref) == 71

    listed = images.ListImages(cri.ListImagesRequest(
        filter=cri.ImageFilter(image=spec))).images
    assert [i.id for i in listed] == [ref]
    assert list(listed[0].repo_tags) == [name]
    assert listed[0].size > 0
    assert ref in [i.id for i in images.ListImages(cri.ListImagesRequest()).images]
    status = images.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=ref))).image
    assert status.id == ref and list(status.repo_tags) == [name]
    usage = images.ImageFsInfo(cri.ImageFsInfoRequest()).image_filesystems
    # containerd refreshes its figure every few seconds: it may still say 0 here
    assert usage[0].HasField("used_bytes") and usage[0].fs_id.mountpoint

    images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=ref)))
    assert ref not in [i.id for i in images.ListImages(cri.ListImagesRequest()).images]
    assert not images.ImageStatus(cri.ImageStatusRequest(image=spec)).HasField("image")
    # removing it again is no error in the CRI
    images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=ref)))


def test_ketch_lists_cri_images_as_its_own(cri_server: Cri, cri_images: dict[str, str]
                                           ) -> None:
    cri = cri_server.cri
    name = cri_images["busybox"]
    ref = cri_server.images.PullImage(cri.PullImageRequest(
        image=cri.ImageSpec(image=name))).image_ref
    local_id = cri_server.ketch("image", "inspect", "--format", "{{.Id}}", name).stdout
    assert ref == local_id.strip()  # the same image `ketch images` shows
    usage = cri_server.images.ImageFsInfo(cri.ImageFsInfoRequest()).image_filesystems
    assert usage[0].fs_id.mountpoint == str(cri_server.root / "layers")
    assert usage[0].used_bytes.value > 0
    cri_server.images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=ref)))
    assert "sha256" not in cri_server.ketch("images", "-q", "--no-trunc").stdout


def test_pull_uses_the_kubelets_credentials_and_fails_without_them(
        cri_server: Cri, cri_registry: Registry, cri_images: dict[str, str], ketch_registry,
        tmp_path: Path) -> None:
    cri = cri_server.cri
    # the session registry's storage (holding cri/busybox:1) behind a server that wants
    # a password
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "kube", "s3cret")
    locked = ketch_registry(htpasswd=htpasswd, extra=("--root", str(cri_registry.root)))
    locked_name = f"{locked.host}/cri/busybox:1"

    with pytest.raises(grpc.RpcError) as denied:
        cri_server.images.PullImage(cri.PullImageRequest(
            image=cri.ImageSpec(image=locked_name)))
    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # dockerd's words (the request, then the reason)
    assert denied.value.details() == (f'Head "http://{locked.host}/v2/cri/busybox/manifests/1":'
                                      " no basic auth credentials")
    assert list(cri_server.images.ListImages(cri.ListImagesRequest()).images) == []

    ref = cri_server.images.PullImage(cri.PullImageRequest(
        image=cri.ImageSpec(image=locked_name),
        auth=cri.AuthConfig(username="kube", password="s3cret"))).image_ref
    assert ref.startswith("sha256:")


def test_an_image_that_is_not_there_fails_the_pull_naming_it(
        any_runtime: Served, cri_images: dict[str, str]) -> None:
    cri = any_runtime.cri
    with pytest.raises(grpc.RpcError) as err:
        any_runtime.images.PullImage(cri.PullImageRequest(
            image=cri.ImageSpec(image=f"{cri_images['registry']}/no/such:1")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no/such" in err.value.details()


def test_pull_image_of_registry_k8s_io_comes_from_its_loopback_mirror(
        cri_server: Cri, cri_images: dict[str, str]) -> None:
    # mirror_only: registry.k8s.io itself is never asked, the loopback mirror serves
    (cri_server.root / "ketch.toml").write_text(
        '[registries."registry.k8s.io"]\n'
        f'mirrors = ["http://{cri_images["registry"]}"]\nmirror_only = true\n')
    cri = cri_server.cri
    images = cri_server.images
    name = "registry.k8s.io/cri/busybox:1"
    ref = images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=name))).image_ref
    status = images.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=ref))).image
    assert list(status.repo_tags) == [name]
    with pytest.raises(grpc.RpcError) as err:  # the mirror lacks it: no fallback
        images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(
            image="registry.k8s.io/cri/absent:1")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "mirrors only" in (err.value.details() or "")
