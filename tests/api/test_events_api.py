"""GET /events through real clients: the docker CLI 28 (`docker events`) and docker-py's
`client.events`, reading the journal the ketch CLI and the service both write."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from tests.api.conftest import Api
from tests.helpers.host import wait_for


def mark() -> str:
    ns = time.time_ns()
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def test_docker_events_since_until_shows_a_run(api: Api) -> None:
    t0 = mark()
    api.docker("run", "--rm", "--name", "dev-run", "busybox", "sh", "-c", "exit 5",
               check=False)
    t1 = mark()
    out = api.docker("events", "--since", t0, "--until", t1, "--filter",
                     "container=dev-run", "--format", "{{.Type}} {{.Action}}"
                     " {{.Actor.Attributes.name}}").stdout.splitlines()
    assert out == ["container create dev-run", "container attach dev-run",
                   "container start dev-run", "container die dev-run",
                   "container destroy dev-run"]
    # the docker CLI's own plain line for the same events
    plain = api.docker("events", "--since", t0, "--until", t1, "--filter", "event=die",
                       "--filter", "container=dev-run").stdout
    assert plain.count("\n") == 1
    assert " container die " in plain and "(exitCode=5, image=busybox, name=dev-run)" in plain


def test_docker_exec_is_journaled_with_its_exit_code(api: Api) -> None:
    t0 = mark()
    api.docker("run", "-d", "--name", "dev-exec", "busybox", "sleep", "60")
    try:
        assert api.docker("exec", "dev-exec", "sh", "-c", "exit 6", check=False
                          ).returncode == 6
        out = api.docker("events", "--since", t0, "--until", mark(), "--filter",
                         "container=dev-exec", "--filter", "event=exec_create",
                         "--filter", "event=exec_start", "--filter", "event=exec_die",
                         "--format", "{{.Action}}|{{.Actor.Attributes.exitCode}}"
                         ).stdout.splitlines()
        assert out == ["exec_create: sh -c exit 6|<no value>",
                       "exec_start: sh -c exit 6|<no value>", "exec_die|6"]
    finally:
        api.docker("rm", "-f", "dev-exec")


def test_docker_events_sees_what_the_ketch_cli_did(api: Api) -> None:
    t0 = mark()
    api.ketch("tag", "busybox", "dev-tagged:1")
    api.ketch("rmi", "dev-tagged:1")
    out = api.docker("events", "--since", t0, "--until", mark(), "--filter", "type=image",
                     "--format", "{{json .}}").stdout.splitlines()
    events = [json.loads(x) for x in out]
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in events] == [
        ("tag", "dev-tagged:1"), ("untag", "dev-tagged:1")]


def test_docker_events_refuses_an_unknown_filter(api: Api) -> None:
    proc = api.docker("events", "--until", "0s", "--filter", "colour=red", check=False)
    assert proc.returncode != 0
    assert "invalid filter 'colour'" in proc.stderr
    conn = api.http()
    conn.request("GET", "/v1.45/events?since=noon")
    resp = conn.getresponse()
    assert resp.status == 400
    assert "noon" in json.loads(resp.read())["message"]
    conn.close()


def _journal_readers(pid: int, root: Path) -> int:
    journal = str(root / "events")
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(journal):
                n += 1
        except OSError:
            continue
    return n


def test_docker_py_receives_a_live_start_and_leaving_frees_the_reader(api: Api) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=api.url, timeout=60)
    stream = client.events(decode=True, filters={"event": "start", "type": "container"})
    got: list[dict] = []

    def consume() -> None:
        for ev in stream:
            got.append(ev)
            return

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    wait_for(lambda: _journal_readers(api.proc.pid, api.root) == 1, timeout=10,
             what="the service to follow the journal")
    c = client.containers.run("busybox", ["sleep", "30"], detach=True, name="dpy-live")
    api.ketch.ids.add(c.id)
    reader.join(timeout=20)
    assert got, "no start event arrived"
    ev = got[0]
    assert (ev["Type"], ev["Action"], ev["status"]) == ("container", "start", "start")
    assert ev["Actor"]["ID"] == ev["id"] == c.id
    assert ev["Actor"]["Attributes"]["name"] == "dpy-live"
    stream.close()
    # the service notices the client left and closes its journal files, events or not
    wait_for(lambda: _journal_readers(api.proc.pid, api.root) == 0, timeout=10,
             what="the service to free the reader of a client that left")
    c.remove(force=True)
