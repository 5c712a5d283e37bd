"""The service's HTTP surface seen raw: status codes, headers, framing, error bodies."""

from __future__ import annotations

import json
import struct

from tests.api.conftest import Api


def request(api: Api, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = api.http()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_ping_answers_head_and_get_with_the_api_version(api: Api) -> None:
    for method in ("HEAD", "GET"):
        status, headers, body = request(api, method, "/_ping")
        assert status == 200
        assert headers["Api-Version"] == "1.45"
        assert headers["Ostype"] == "linux"
        assert headers["Docker-Experimental"] == "false"
        assert headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
        assert headers["Server"].startswith("ketch/")
        assert body == (b"OK" if method == "GET" else b"")


def test_versioned_paths_up_to_1_45_and_refused_above(api: Api) -> None:
    for prefix in ("", "/v1.24", "/v1.41", "/v1.45"):
        status, _, body = request(api, "GET", prefix + "/version")
        assert status == 200, prefix
        assert json.loads(body)["ApiVersion"] == "1.45"
    status, _, body = request(api, "GET", "/v1.46/version")
    assert status == 400
    assert json.loads(body) == {
        "message": "client version 1.46 is too new. Maximum supported API version is 1.45"}
    status, _, body = request(api, "GET", "/v1.23/containers/json")
    assert status == 400
    assert "too old" in json.loads(body)["message"]


def test_unknown_container_is_404_with_a_message(api: Api) -> None:
    for method, path in (("GET", "/v1.45/containers/nope/json"),
                         ("POST", "/v1.45/containers/nope/start"),
                         ("DELETE", "/v1.45/containers/nope"),
                         ("POST", "/v1.45/containers/nope/wait")):
        status, headers, body = request(api, method, path)
        assert status == 404, path
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"message": "No such container: nope"}


def test_unknown_path_is_404_json(api: Api) -> None:
    status, _, body = request(api, "GET", "/v1.45/nothing/here")
    assert status == 404
    assert json.loads(body) == {"message": "page not found"}


def test_create_with_malformed_json_is_400_and_creates_nothing(api: Api) -> None:
    status, _, body = request(api, "POST", "/v1.45/containers/create?name=bad",
                              b'{"Image": "busybox",', {"Content-Type": "application/json"})
    assert status == 400
    assert json.loads(body)["message"].startswith("invalid JSON in the request body")
    status, _, body = request(api, "POST", "/v1.45/containers/create", b'["a list"]',
                              {"Content-Type": "application/json"})
    assert status == 400
    assert api.ketch("ps", "-aq").stdout == ""


def test_create_with_an_exposed_port_that_is_not_one_is_400_and_ps_still_lists(
        api: Api) -> None:
    status, _, body = request(api, "POST", "/v1.45/containers/create?name=badport",
                              json.dumps({"Image": "busybox", "Cmd": ["true"],
                                          "ExposedPorts": {"abc": {}}}).encode(),
                              {"Content-Type": "application/json"})
    assert (status, json.loads(body)) == (400, {"message": 'invalid port specification:'
                                                           ' "abc"'})
    assert api.ketch("ps", "-a", "--format", "{{.Names}}").stdout == ""


def test_create_of_a_missing_image_is_404_no_such_image(api: Api) -> None:
    status, _, body = request(api, "POST", "/v1.45/containers/create",
                              json.dumps({"Image": "ghost:2", "Cmd": ["true"]}).encode(),
                              {"Content-Type": "application/json"})
    assert status == 404
    assert json.loads(body) == {"message": "No such image: ghost:2"}


def test_create_honours_platform_and_answers_the_warnings(api: Api) -> None:
    hdr = {"Content-Type": "application/json"}
    spec = json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode()
    # busybox here is linux/amd64 only: another platform is an image to pull, as dockerd
    # answers it (the docker CLI then pulls); it was ignored and the container made
    status, _, body = request(api, "POST", "/containers/create?name=arm&platform=linux/arm64",
                              spec, hdr)
    assert status == 404 and json.loads(body)["message"].startswith("No such image")
    assert api.ketch("ps", "-a", "--format", "{{.Names}}").stdout == ""
    # what create discards it says in Warnings, which the docker CLI prints
    spec = json.dumps({"Image": "busybox", "Cmd": ["true"],
                       "HostConfig": {"KernelMemory": 10 << 20}}).encode()
    status, _, body = request(api, "POST", "/containers/create?name=kmem&platform=linux/amd64",
                              spec, hdr)
    assert status == 201
    warnings = json.loads(body)["Warnings"]
    assert any("kernel memory limit" in w for w in warnings), warnings
    api.ketch("rm", "kmem")


def test_create_of_a_taken_name_is_409(api: Api) -> None:
    spec = json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode()
    hdr = {"Content-Type": "application/json"}
    status, _, body = request(api, "POST", "/containers/create?name=twice", spec, hdr)
    assert status == 201
    created = json.loads(body)
    assert set(created) == {"Id", "Warnings"} and len(created["Id"]) == 64
    status, _, body = request(api, "POST", "/containers/create?name=twice", spec, hdr)
    assert status == 409
    assert "is already in use" in json.loads(body)["message"]


def test_start_and_stop_that_change_nothing_answer_304(api: Api) -> None:
    spec = json.dumps({"Image": "busybox", "Cmd": ["sleep", "30"]}).encode()
    status, _, body = request(api, "POST", "/containers/create?name=s304", spec,
                              {"Content-Type": "application/json"})
    assert status == 201
    assert request(api, "POST", "/containers/s304/stop")[0] == 304
    assert request(api, "POST", "/containers/s304/start")[0] == 204
    assert request(api, "POST", "/containers/s304/start")[0] == 304
    assert request(api, "POST", "/containers/s304/stop?t=1")[0] == 204
    assert request(api, "POST", "/containers/s304/stop")[0] == 304
    status, _, body = request(api, "POST", "/containers/s304/kill")
    assert status == 409
    assert "is not running" in json.loads(body)["message"]


def test_wait_sends_its_headers_before_the_container_exits(api: Api) -> None:
    spec = json.dumps({"Image": "busybox", "Cmd": ["sh", "-c", "exit 5"]}).encode()
    status, _, body = request(api, "POST", "/containers/create?name=waited", spec,
                              {"Content-Type": "application/json"})
    assert status == 201
    conn = api.http()
    conn.request("POST", "/v1.45/containers/waited/wait?condition=next-exit")
    resp = conn.getresponse()  # returns once the headers are in: the container is not started
    assert resp.status == 200
    assert request(api, "POST", "/containers/waited/start")[0] == 204
    assert json.loads(resp.read()) == {"StatusCode": 5, "Error": None}
    conn.close()
    status, _, body = request(api, "POST", "/containers/waited/wait")
    assert json.loads(body) == {"StatusCode": 5, "Error": None}
    status, _, body = request(api, "POST", "/containers/waited/wait?condition=sometime")
    assert status == 400


def test_wait_removed_returns_the_exit_code_of_an_auto_removed_container(api: Api) -> None:
    spec = json.dumps({"Image": "busybox", "Cmd": ["sh", "-c", "exit 3"],
                       "HostConfig": {"AutoRemove": True}}).encode()
    status, _, body = request(api, "POST", "/containers/create", spec,
                              {"Content-Type": "application/json"})
    cid = json.loads(body)["Id"]
    conn = api.http()
    conn.request("POST", f"/containers/{cid}/wait?condition=removed")
    resp = conn.getresponse()
    assert request(api, "POST", f"/containers/{cid}/start")[0] == 204
    assert json.loads(resp.read()) == {"StatusCode": 3, "Error": None}
    conn.close()
    assert request(api, "GET", f"/containers/{cid}/json")[0] == 404


def test_logs_are_multiplexed_frames_without_a_tty(api: Api) -> None:
    api.docker("run", "--name", "frames", "busybox", "sh", "-c",
               "echo out; sleep 0.2; echo err >&2")
    status, headers, body = request(api, "GET",
                                    "/containers/frames/logs?stdout=1&stderr=1")
    assert status == 200
    assert headers["Content-Type"] == "application/vnd.docker.multiplexed-stream"
    frames = []
    while body:
        kind, size = struct.unpack(">BxxxL", body[:8])
        frames.append((kind, body[8:8 + size]))
        body = body[8 + size:]
    assert frames == [(1, b"out\n"), (2, b"err\n")]
    status, _, body = request(api, "GET", "/containers/frames/logs")
    assert status == 400
    assert json.loads(body)["message"] == ("Bad parameters: you must choose at least one"
                                           " stream")


def test_image_delete_and_tag_answer_dockers_shapes(api: Api) -> None:
    assert request(api, "POST", "/images/busybox/tag?repo=shaped&tag=v1")[0] == 201
    status, _, body = request(api, "DELETE", "/images/shaped:v1")
    assert status == 200
    assert json.loads(body) == [{"Untagged": "shaped:v1"}]
    status, _, body = request(api, "DELETE", "/images/shaped:v1")
    assert status == 404
    assert json.loads(body) == {"message": "No such image: shaped:v1"}
    status, _, body = request(api, "GET", "/images/busybox/json")
    assert status == 200
    assert json.loads(body)["RepoTags"] == ["busybox:latest"]


def test_create_with_wrong_field_types_is_400_and_creates_nothing(api: Api) -> None:
    hdr = {"Content-Type": "application/json"}
    for body, message in (
            ({"Image": 5}, "invalid Image: expected a string, got number"),
            ({"Image": "busybox", "Env": "A=1"},
             "invalid Env: expected an array of strings, got string"),
            ({"Image": "busybox", "Cmd": ["true"], "Labels": ["x"]},
             "invalid Labels: expected an object, got array"),
            ({"Image": "busybox", "Cmd": ["true"], "Tty": 1},
             "invalid Tty: expected a boolean, got number"),
            ({"Image": "busybox", "Cmd": ["true"], "HostConfig": []},
             "invalid HostConfig: expected an object"),
            # the HostConfig fields the engine reads as lists, maps and objects (each of
            # these was a 500 with a Python error: "'int' object is not iterable")
            ({"Image": "busybox", "HostConfig": {"Binds": 5}},
             "invalid Binds: expected an array of strings, got number"),
            ({"Image": "busybox", "HostConfig": {"Tmpfs": ["/x"]}},
             "invalid Tmpfs: expected an object of strings, got array"),
            ({"Image": "busybox", "HostConfig": {"Mounts": [5]}},
             "invalid Mounts: expected an array of objects, got array"),
            ({"Image": "busybox", "HostConfig": {"RestartPolicy": "always"}},
             "invalid RestartPolicy: expected an object, got string"),
            ({"Image": "busybox", "HostConfig": {"LogConfig": {"Type": ["json-file"]}}},
             "invalid LogConfig.Type: expected a string, got array"),
            ({"Image": "busybox", "HostConfig": {"LogConfig": {"Config": {"max-size": 5}}}},
             "invalid LogConfig.Config: expected an object of strings, got object"),
            ({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": 1}}},
             "invalid RestartPolicy.Name: expected a string, got number"),
            ({"Image": "busybox", "HostConfig": {"CpusetCpus": 1}},
             "invalid CpusetCpus: expected a string, got number")):
        status, _, data = request(api, "POST", "/containers/create", json.dumps(body).encode(),
                                  hdr)
        assert (status, json.loads(data)["message"]) == (400, message)
    assert api.ketch("ps", "-aq").stdout == ""


def test_create_takes_a_string_cmd_as_one_argument_as_docker_does(api: Api) -> None:
    status, _, data = request(api, "POST", "/containers/create?name=strcmd",
                              json.dumps({"Image": "busybox", "Cmd": "echo hi"}).encode(),
                              {"Content-Type": "application/json"})
    assert status == 201
    status, _, data = request(api, "GET", "/containers/strcmd/json")
    assert json.loads(data)["Config"]["Cmd"] == ["echo hi"]


def test_two_creates_of_one_name_at_once_one_wins_one_gets_409(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    body = json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode()

    def create(_: int) -> int:
        return request(api, "POST", "/containers/create?name=contested", body,
                       {"Content-Type": "application/json"})[0]

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(create, range(2)))
    assert statuses == [201, 409]
    assert api.ketch("ps", "-a", "--format", "{{.Names}}").stdout == "contested\n"


def _raw_attach(api: Api, path: str) -> tuple[bytes, bytes]:
    """An attach request over a plain socket, read to EOF: (head, body). (http.client
    and docker-py buffer past the 101's headers: what arrives with them would be lost.)"""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(api.sock))
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
              "Upgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode())
    data = bytearray()
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return head, body


def _frames(body: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while body:
        kind, size = struct.unpack(">BxxxL", body[:8])
        frames.append((kind, body[8:8 + size]))
        body = body[8 + size:]
    return frames


def test_attach_upgrades_and_replays_the_log_with_logs_1(api: Api) -> None:
    api.docker("run", "--name", "replayed", "busybox", "sh", "-c",
               "echo early; sleep 0.2; echo oops >&2")
    head, body = _raw_attach(api, "/v1.45/containers/replayed/attach?logs=1&stdout=1&stderr=1")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 101 UPGRADED"
    assert "Content-Type: application/vnd.docker.multiplexed-stream" in lines
    assert "Upgrade: tcp" in lines
    assert _frames(body) == [(1, b"early\n"), (2, b"oops\n")]
    _, body = _raw_attach(api, "/containers/replayed/attach?logs=1&stdout=1")
    assert _frames(body) == [(1, b"early\n")]
    _, body = _raw_attach(api, "/containers/replayed/attach?stdout=1&stderr=1")
    assert body == b""


def test_create_reads_field_names_without_regard_to_case_and_keeps_map_keys(
        api: Api) -> None:
    # dockerd decodes with Go's encoding/json: `cmd` fills Cmd, `hostconfig.memory` fills
    # Memory; the keys of Labels, PortBindings and Sysctls are data and stay as sent
    doc = {"image": "busybox", "cmd": ["true"], "labels": {"MyKey": "v"},
           "exposedPorts": {"80/tcp": {}},
           "hostConfig": {"memory": 33554432, "restartPolicy": {"name": "on-failure",
                                                              "maximumRetryCount": 2},
                          "portBindings": {"80/tcp": [{"hostIp": "127.0.0.1",
                                                       "hostPort": ""}]},
                          "sysctls": {"net.ipv4.ip_forward": "1"}}}
    status, _, body = request(api, "POST", "/v1.45/containers/create?name=folded",
                              json.dumps(doc).encode(), {"Content-Type": "application/json"})
    assert status == 201, body
    status, _, body = request(api, "GET", "/v1.45/containers/folded/json")
    info = json.loads(body)
    assert info["Config"]["Cmd"] == ["true"]
    assert info["Config"]["Labels"] == {"MyKey": "v"}
    assert "80/tcp" in info["Config"]["ExposedPorts"]
    hc = info["HostConfig"]
    assert hc["Memory"] == 33554432
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert hc["Sysctls"] == {"net.ipv4.ip_forward": "1"}
    status, _, _ = request(api, "DELETE", "/v1.45/containers/folded")
    assert status == 204
