"""Stats and update through the Engine API: the docker CLI 28 and docker-py 7."""

from __future__ import annotations

import json

import pytest
from tests.api.conftest import Api

MiB = 1 << 20


def test_docker_stats_no_stream_shows_the_containers_usage(api: Api) -> None:
    api.docker("run", "-d", "--name", "st1", "-m", "64m", "busybox", "sleep", "300")
    out = api.docker("stats", "--no-stream", "st1").stdout.splitlines()
    assert out[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert out[1].split()[1] == "st1"
    assert "/ 64MiB" in out[1]
    fmt = api.docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "st1").stdout
    assert fmt == "st1 1\n"


def test_docker_update_memory_changes_the_live_limit_and_the_host_config(api: Api) -> None:
    client = api.client()
    api.docker("run", "-d", "--name", "up1", "-m", "64m", "busybox", "sleep", "300")
    api.docker("update", "--memory", "128m", "--memory-swap", "256m", "up1")
    assert api.docker("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}",
                      "up1").stdout.strip() == f"{128 * MiB} {256 * MiB}"
    doc = client.api.stats("up1", stream=False)
    assert doc["memory_stats"]["limit"] == 128 * MiB  # the cgroup's, read back
    api.docker("update", "--restart", "on-failure:3", "up1")
    assert api.docker("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}"
                      " {{.HostConfig.RestartPolicy.MaximumRetryCount}}",
                      "up1").stdout.strip() == "on-failure 3"
    # a stopped container takes the new limits at its next start
    api.docker("stop", "-t", "0", "up1")
    api.docker("update", "--memory", "96m", "--memory-swap", "-1", "up1")
    api.docker("start", "up1")
    assert client.api.stats("up1", stream=False)["memory_stats"]["limit"] == 96 * MiB


def test_update_bad_input_is_refused_and_changes_nothing(api: Api) -> None:
    api.docker("run", "-d", "--name", "up2", "-m", "64m", "busybox", "sleep", "300")
    conn = api.http()
    for body, status in (('{"Memory": 1}', 400), ('{"Memory": "lots"}', 400),
                         ('{"Memory": 1', 400),
                         ('{"RestartPolicy": {"Name": "sometimes"}}', 400)):
        conn.request("POST", "/v1.45/containers/up2/update", body,
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == status, body
        assert json.loads(r.read())["message"]
    conn.request("POST", "/v1.45/containers/nosuch/update", "{}",
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 404
    r.read()
    conn.close()
    assert api.docker("inspect", "-f", "{{.HostConfig.Memory}}", "up2").stdout.strip() \
        == str(64 * MiB)
    # field names match without regard to case, as dockerd's JSON decoding
    conn = api.http()
    conn.request("POST", "/v1.45/containers/up2/update",
                 json.dumps({"memory": 80 * MiB, "memorySwap": 160 * MiB}),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read()) == {"Warnings": []}
    conn.close()
    assert api.docker("inspect", "-f", "{{.HostConfig.Memory}}", "up2").stdout.strip() \
        == str(80 * MiB)


def test_docker_py_stats_documents_one_shot_and_streamed(api: Api) -> None:
    client = api.client()
    # (a fifth of a core: its usage grows, without taking a core from the rest of the suite)
    c = client.containers.run("busybox", ["sh", "-c", "while :; do :; done"], detach=True,
                              name="st2", nano_cpus=200_000_000)
    doc = c.stats(stream=False)
    assert doc["id"] == c.id and doc["name"] == "/st2"
    assert doc["cpu_stats"]["online_cpus"] >= 1
    assert doc["cpu_stats"]["system_cpu_usage"] > doc["precpu_stats"]["system_cpu_usage"] > 0
    assert doc["cpu_stats"]["cpu_usage"]["total_usage"] > \
        doc["precpu_stats"]["cpu_usage"]["total_usage"]
    assert doc["memory_stats"]["usage"] > 0 and doc["pids_stats"]["current"] == 1
    assert "eth0" in doc["networks"]
    one = client.api.stats(c.id, stream=False, one_shot=True)
    assert one["preread"] == "0001-01-01T00:00:00Z" and one["read"] != one["preread"]
    stream = c.stats(stream=True, decode=True)
    first, second = next(stream), next(stream)
    stream.close()
    assert second["preread"] == first["read"]
    assert second["precpu_stats"] == first["cpu_stats"]


def test_stats_of_a_stopped_container_is_one_empty_document(api: Api) -> None:
    client = api.client()
    api.docker("create", "--name", "st3", "busybox", "true")
    docs = list(client.api.stats("st3", stream=True, decode=True))
    assert len(docs) == 1
    assert docs[0]["read"] == "0001-01-01T00:00:00Z" and docs[0]["memory_stats"] == {}
    with pytest.raises(Exception) as exc:
        client.api.stats("nosuch", stream=False)
    assert exc.value.response.status_code == 404  # type: ignore[attr-defined]
