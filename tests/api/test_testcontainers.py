"""testcontainers-python against `ketch system service`: a DockerContainer of a locally
made image with a published port and a log wait strategy, reached over HTTP, stopped.

testcontainers starts its "ryuk" reaper from Docker Hub by default; no test reaches
Docker Hub, so the reaper is disabled (TESTCONTAINERS_RYUK_DISABLED) and the container
is removed by `stop()` itself, which the test checks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.api.conftest import Api
from tests.conftest import import_image, require
from tests.containers_net.helpers import fetch


def test_testcontainers_runs_a_local_image_waits_for_its_log_and_stops_it(
        api: Api, busybox_tar: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        from testcontainers.core import utils
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy
    except ImportError:
        require(False, "testcontainers is not installed (pip install -e '.[test]')")
        raise
    import_image(api.root, busybox_tar, "tc-httpd:1", "EXPOSE 80",
                 'CMD ["sh", "-c", "mkdir -p /www; echo tc page > /www/index.html;'
                 ' echo serving now; exec httpd -f -p 80 -h /www"]')
    monkeypatch.setenv("DOCKER_HOST", api.url)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)
    try:
        container = (DockerContainer("tc-httpd:1").with_exposed_ports(80)
                     .waiting_for(LogMessageWaitStrategy("serving now")))
        with container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(80)
            cid = container.get_wrapped_container().id
            # Inside a container (as CI runs) testcontainers takes the container's
            # gateway from HostConfig.NetworkMode and NetworkSettings.Networks (the test
            # root's own bridge); elsewhere the docker host, localhost.
            gateway = api.docker("inspect", "-f", "{{.HostConfig.NetworkMode}} {{range"
                                 " .NetworkSettings.Networks}}{{.Gateway}}{{end}}",
                                 cid).stdout.split()
            assert gateway[0] == "bridge"
            assert host == (gateway[1] if utils.inside_container() else "localhost")
            assert fetch(f"http://{host}:{port}/") == "tc page\n"
            assert fetch(f"http://127.0.0.1:{port}/") == "tc page\n"
            ours = api.docker("ps", "--format", "{{.ID}} {{.Image}}").stdout.split()
            assert ours == [cid[:12], "tc-httpd:1"]
        # stop() removed the container: nothing of it is left, no reaper was started
        assert api.docker("ps", "-aq").stdout == ""
    finally:
        api.docker("rmi", "tc-httpd:1", check=False)


def test_testcontainers_network_lets_one_container_reach_another_by_alias(
        api: Api, busybox_tar: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.network import Network
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy
    except ImportError:
        require(False, "testcontainers is not installed (pip install -e '.[test]')")
        raise
    monkeypatch.setenv("DOCKER_HOST", api.url)
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)
    with Network() as network:
        server = (DockerContainer("busybox")
                  .with_command(["sh", "-c", "mkdir -p /www; echo via alias >"
                                 " /www/index.html; echo up; exec httpd -f -p 80 -h /www"])
                  .with_network(network).with_network_aliases("backend")
                  .waiting_for(LogMessageWaitStrategy("up")))
        client = (DockerContainer("busybox")
                  # stays up after its line: testcontainers reads the logs and then the
                  # status, so a client that exited in between would be taken for a crash
                  .with_command(["sh", "-c", "until wget -qO- http://backend/; do sleep 0.2;"
                                 " done; echo fetched; exec sleep 300"])
                  .with_network(network)
                  .waiting_for(LogMessageWaitStrategy("fetched")))
        with server, client:
            out, _err = client.get_logs()
            assert out.decode().splitlines() == ["via alias", "fetched"]
            nets = api.docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}"
                              "{{$k}}{{end}}", server.get_wrapped_container().id).stdout
            assert nets.strip() == network.name
        assert api.docker("ps", "-aq").stdout == ""
    assert api.docker("network", "ls", "-q", "--filter", "type=custom").stdout == ""
