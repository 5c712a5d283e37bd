"""The CRI's RuntimeService basics and ImageService, driven with the generated gRPC
stubs as a kubelet drives a node's runtime."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from tests.conftest import ketch_command
from tests.cri.conftest import Cri
from tests.distribution.conftest import write_htpasswd


def test_version_status_and_runtime_config_answer_as_a_kubelet_expects(
        cri_server: Cri) -> None:
    cri = cri_server.cri
    v = cri_server.runtime.Version(cri.VersionRequest(version="v1"))
    assert (v.version, v.runtime_name, v.runtime_api_version) == ("0.1.0", "ketch", "v1")
    assert v.runtime_version
    status = cri_server.runtime.Status(cri.StatusRequest()).status
    ready = {c.type: c.status for c in status.conditions}
    assert ready == {"RuntimeReady": True, "NetworkReady": True}
    config = cri_server.runtime.RuntimeConfig(cri.RuntimeConfigRequest())
    assert config.linux.cgroup_driver == cri.CGROUPFS
    cri_server.runtime.UpdateRuntimeConfig(cri.UpdateRuntimeConfigRequest(
        runtime_config=cri.RuntimeConfig(network_config=cri.NetworkConfig(
            pod_cidr="10.244.0.0/24"))))


def _push_busybox(busybox_tar: Path, tmp_path: Path, name: str) -> None:
    import subprocess

    other = tmp_path / "pusher"
    base = [*ketch_command(), "--root", str(other), "--run-root", str(other / "run")]
    subprocess.run([*base, "import", "--change", 'CMD ["sh"]', str(busybox_tar), name],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*base, "push", name], check=True, capture_output=True, timeout=120)


def test_pull_list_status_and_remove_an_image_from_a_loopback_registry(
        cri_server: Cri, busybox_tar: Path, ketch_registry, tmp_path: Path) -> None:
    cri = cri_server.cri
    reg = ketch_registry()
    name = f"{reg.host}/cri/busybox:1"
    _push_busybox(busybox_tar, tmp_path, name)

    missing = cri_server.images.ImageStatus(cri.ImageStatusRequest(
        image=cri.ImageSpec(image=name)))
    assert not missing.HasField("image")  # absent: no image and no error

    ref = cri_server.images.PullImage(cri.PullImageRequest(
        image=cri.ImageSpec(image=name))).image_ref
    assert ref.startswith("sha256:") and len(ref) == 71
    local_id = cri_server.ketch("image", "inspect", "--format", "{{.Id}}", name).stdout
    assert ref == local_id.strip()  # the same image `ketch images` shows

    listed = cri_server.images.ListImages(cri.ListImagesRequest()).images
    assert [i.id for i in listed] == [ref]
    assert list(listed[0].repo_tags) == [name]
    assert listed[0].size > 0
    status = cri_server.images.ImageStatus(cri.ImageStatusRequest(
        image=cri.ImageSpec(image=ref))).image
    assert status.id == ref and list(status.repo_tags) == [name]

    usage = cri_server.images.ImageFsInfo(cri.ImageFsInfoRequest()).image_filesystems
    assert usage[0].used_bytes.value > 0
    assert usage[0].fs_id.mountpoint == str(cri_server.root / "layers")

    cri_server.images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=ref)))
    assert list(cri_server.images.ListImages(cri.ListImagesRequest()).images) == []
    assert "sha256" not in cri_server.ketch("images", "-q", "--no-trunc").stdout
    # removing it again is no error in the CRI
    cri_server.images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=ref)))


def test_pull_uses_the_kubelets_credentials_and_fails_without_them(
        cri_server: Cri, busybox_tar: Path, ketch_registry, tmp_path: Path) -> None:
    cri = cri_server.cri
    open_reg = ketch_registry()
    name = f"{open_reg.host}/cri/auth:1"
    _push_busybox(busybox_tar, tmp_path, name)
    # the same storage behind a server that wants a password
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "kube", "s3cret")
    locked = ketch_registry(htpasswd=htpasswd, extra=("--root", str(open_reg.root)))
    locked_name = f"{locked.host}/cri/auth:1"

    with pytest.raises(grpc.RpcError) as denied:
        cri_server.images.PullImage(cri.PullImageRequest(
            image=cri.ImageSpec(image=locked_name)))
    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert denied.value.details() == "no basic auth credentials"  # Docker's words
    assert list(cri_server.images.ListImages(cri.ListImagesRequest()).images) == []

    ref = cri_server.images.PullImage(cri.PullImageRequest(
        image=cri.ImageSpec(image=locked_name),
        auth=cri.AuthConfig(username="kube", password="s3cret"))).image_ref
    assert ref.startswith("sha256:")


def test_an_image_that_is_not_there_fails_the_pull_with_not_found_or_a_message(
        cri_server: Cri, ketch_registry) -> None:
    cri = cri_server.cri
    reg = ketch_registry()
    with pytest.raises(grpc.RpcError) as err:
        cri_server.images.PullImage(cri.PullImageRequest(
            image=cri.ImageSpec(image=f"{reg.host}/no/such:1")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no/such" in err.value.details()
