"""docker-py 7 against `ketch system service`."""

from __future__ import annotations

import pytest
from tests.api.conftest import Api

docker = pytest.importorskip("docker")


def test_docker_py_negotiates_the_api_version(api: Api) -> None:
    client = api.client()
    assert client.api.api_version == "1.45"
    assert client.version()["Components"][0]["Name"] == "Engine"
    assert client.ping() is True


def test_docker_py_run_detached_then_wait_logs_and_remove(api: Api) -> None:
    client = api.client()
    c = client.containers.run("busybox", ["sh", "-c", "echo hello; echo oops >&2; exit 4"],
                              detach=True, name="dpy")
    assert c.wait(timeout=30) == {"StatusCode": 4, "Error": None}
    assert c.logs(stderr=False) == b"hello\n"
    assert c.logs(stdout=False) == b"oops\n"
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 4
    assert c.attrs["Name"] == "/dpy"
    c.remove()
    assert [x.name for x in client.containers.list(all=True)] == []


def test_docker_py_run_attached_returns_the_output(api: Api) -> None:
    client = api.client()
    out = client.containers.run("busybox", ["echo", "attached"], remove=True)
    assert out == b"attached\n"
    with pytest.raises(docker.errors.ContainerError) as exc:
        client.containers.run("busybox", ["sh", "-c", "exit 2"], remove=True)
    assert exc.value.exit_status == 2


def test_docker_py_lists_containers_with_their_network_mode(api: Api) -> None:
    client = api.client()
    client.containers.run("busybox", ["sleep", "30"], detach=True, name="listed")
    summary = client.api.containers()
    assert [c["Names"] for c in summary] == [["/listed"]]
    assert summary[0]["HostConfig"]["NetworkMode"] in ("bridge", "default")
    assert summary[0]["State"] == "running"
    client.containers.get("listed").stop(timeout=1)
    assert client.api.containers() == []
    assert len(client.api.containers(all=True)) == 1


def test_docker_py_attach_socket_streams_multiplexed_frames(api: Api) -> None:
    client = api.client()
    c = client.containers.create("busybox", ["sh", "-c", "echo framed; echo err >&2"])
    sock = client.api.attach_socket(c.id, params={"stdout": 1, "stderr": 1, "stream": 1})
    c.start()
    from docker.utils.socket import frames_iter

    frames = list(frames_iter(sock, tty=False))
    sock.close()
    assert sorted(frames) == [(1, b"framed\n"), (2, b"err\n")]
    assert c.wait(timeout=30)["StatusCode"] == 0


def test_docker_py_images_list_inspect_and_not_found(api: Api) -> None:
    client = api.client()
    images = client.images.list()
    assert [i.tags for i in images] == [["busybox:latest"]]
    assert client.images.get("busybox").id == images[0].id
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("nosuch:image")
    with pytest.raises(docker.errors.NotFound) as exc:
        client.containers.get("nosuch")
    assert exc.value.explanation == "No such container: nosuch"



def test_docker_py_errors_and_empty_answers_as_dockerd_gives_them(api: Api) -> None:
    client = api.client()
    # the status line has its phrase, which docker-py prints in its errors
    with pytest.raises(docker.errors.NotFound) as missing:
        client.containers.get("nosuch")
    assert missing.value.response.reason == "Not Found"
    assert "404 Client Error for" in str(missing.value)
    assert str(missing.value).endswith(': Not Found ("No such container: nosuch")')
    # a command that cannot be found is the request's fault: 400, as dockerd
    c = client.containers.create("busybox", ["no-such-command"], name="dpy-bad")
    with pytest.raises(docker.errors.APIError) as bad:
        c.start()
    assert bad.value.status_code == 400
    assert "executable file not found" in str(bad.value)
    c.remove()
    # a container with no change on its filesystem: null, as dockerd's
    c = client.containers.create("busybox", ["true"], name="dpy-same")
    assert c.diff() is None
    c.remove()
