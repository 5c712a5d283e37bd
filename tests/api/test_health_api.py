"""Health checks through the Engine API with the docker CLI 28: `docker run --health-*`
sends Config.Healthcheck, and `docker inspect`, `docker ps` (its Status column and
`--filter health=`) and `docker events` show what the health timer recorded."""

from __future__ import annotations

import json
import time

from tests.api.conftest import Api
from tests.helpers.host import wait_for


def mark() -> str:
    ns = time.time_ns()
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def test_docker_cli_sees_a_container_turn_healthy_then_unhealthy(api: Api) -> None:
    t0 = mark()
    api.docker("run", "-d", "--name", "dh-web", "--health-cmd", "test ! -e /tmp/broken",
               "--health-interval", "200ms", "--health-retries", "1", "busybox",
               "sleep", "300")

    def state() -> dict:
        out = api.docker("inspect", "-f", "{{json .State.Health}}", "dh-web").stdout
        return json.loads(out) or {}

    wait_for(lambda: state().get("Status") == "healthy", timeout=30, what="healthy")
    status = api.docker("ps", "--filter", "name=dh-web", "--format", "{{.Status}}").stdout
    assert status.strip().endswith("(healthy)"), status
    assert api.docker("ps", "--filter", "health=healthy", "--format", "{{.Names}}"
                      ).stdout.split() == ["dh-web"]

    api.docker("exec", "dh-web", "touch", "/tmp/broken")
    wait_for(lambda: state().get("Status") == "unhealthy", timeout=30, what="unhealthy")
    h = state()
    assert h["FailingStreak"] >= 1 and h["Log"][-1]["ExitCode"] == 1
    assert api.docker("ps", "--filter", "health=unhealthy", "--format", "{{.Names}}"
                      ).stdout.split() == ["dh-web"]
    out = api.docker("events", "--since", t0, "--until", mark(), "--filter",
                     "container=dh-web", "--filter", "event=health_status", "--format",
                     "{{.Action}}").stdout.splitlines()
    assert out == ["health_status: healthy", "health_status: unhealthy"]
