"""Registry mirrors per registry host (`[registries."HOST"]` in the state root's
ketch.toml): the mirror is asked first, the host itself only when no mirror serves the
image and `mirror_only` is false. All registries and listeners are on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, require_root
from tests.helpers.ports import free_port


@pytest.fixture(autouse=True)
def _as_root() -> None:
    require_root()  # unpacking layers keeps ownership


class Counter:
    """A loopback listener that only counts the connections made to it (a registry
    host that must not be contacted)."""

    def __init__(self) -> None:
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def counter() -> Iterator[Counter]:
    c = Counter()
    yield c
    c.close()


def _mirrors(root: Path, host: str, mirrors: list[str], only: bool) -> None:
    listed = ", ".join(f'"{m}"' for m in mirrors)
    (root / "ketch.toml").write_text(f'[registries."{host}"]\nmirrors = [{listed}]\n'
                                     f"mirror_only = {'true' if only else 'false'}\n")


def _push(ketch: KetchCLI, tar: Path, name: str) -> str:
    image_id = ketch("import", str(tar), name).stdout.strip()
    ketch("push", name)
    return image_id


def test_pull_takes_an_image_that_only_the_mirror_has_through_the_mirror(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root) -> None:
    origin, mirror = inproc_registry(), inproc_registry()
    image_id = _push(ketch, busybox_tar, f"{mirror.host}/team/busybox:1")
    puller = other_root("puller")
    name = f"{origin.host}/team/busybox:1"
    assert puller("pull", name, check=False).returncode == 1  # the host lacks it
    _mirrors(puller.root, origin.host, [f"http://{mirror.host}"], only=False)
    out = puller("pull", name).stdout
    assert f"Status: Downloaded newer image for {name}" in out
    assert puller("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == image_id


def test_pull_falls_back_to_the_host_when_the_mirror_is_down(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root) -> None:
    origin = inproc_registry()
    name = f"{origin.host}/team/busybox:1"
    image_id = _push(ketch, busybox_tar, name)
    puller = other_root("puller")
    _mirrors(puller.root, origin.host, [f"127.0.0.1:{free_port('127.0.0.1')}"], only=False)
    puller("pull", name)
    assert puller("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == image_id


def test_mirror_only_with_the_mirror_down_fails_without_contacting_the_host(
        counter: Counter, other_root) -> None:
    puller = other_root("puller")
    down = f"127.0.0.1:{free_port('127.0.0.1')}"
    _mirrors(puller.root, counter.host, [f"http://{down}"], only=True)
    p = puller("pull", f"{counter.host}/team/busybox:1", check=False)
    assert p.returncode == 1
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{counter.host} is pulled from its mirrors only" in err and down in err, err
    assert counter.connections == 0
    assert puller("images", "-q").stdout == ""
    # without mirror_only the host is asked after the mirror
    _mirrors(puller.root, counter.host, [f"http://{down}"], only=False)
    assert puller("pull", f"{counter.host}/team/busybox:1", check=False).returncode == 1
    assert counter.connections >= 1


@pytest.mark.parametrize(("config", "message"), [
    ('[registries."{host}"]\nmirror = ["http://127.0.0.1:1"]\n', "unknown setting 'mirror'"),
    ('[registries."{host}"]\nmirrors = "http://127.0.0.1:1"\n',
     "mirrors must be a list of strings"),
    ('[registries."{host}"]\nmirrors = ["ftp://127.0.0.1:1"]\n',
     "the scheme must be http or https"),
    ('[registries."{host}"]\nmirrors = ["http://127.0.0.1:1/v2/x"]\n',
     "must be [http://|https://]host[:port]"),
    ('[registries."{host}"]\nmirror_only = true\n', "mirror_only without mirrors"),
])
def test_a_malformed_mirror_setting_is_a_one_line_error(counter: Counter, other_root,
                                                        config: str, message: str) -> None:
    puller = other_root("puller")
    (puller.root / "ketch.toml").write_text(config.replace("{host}", counter.host))
    p = puller("pull", f"{counter.host}/team/busybox:1", check=False)
    assert p.returncode == 1
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert counter.connections == 0
