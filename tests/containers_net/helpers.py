"""Helpers for the container networking tests. Traffic goes only to loopback, to the
test's own bridge gateways and to the test's own containers."""

from __future__ import annotations

import time
import urllib.request

from tests.conftest import KetchCLI
from tests.helpers.ports import free_port as free_port  # re-exported for the tests

PAGE = "hello from busybox httpd"


def fetch(url: str, timeout: float = 5.0) -> str:
    last: Exception | None = None
    for _ in range(25):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310
                return r.read().decode()
        except OSError as e:  # the server may take a moment to listen
            last = e
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer: {last}")


def unreachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)  # noqa: S310
    except OSError:
        return True
    return False


def gateway(ketch: KetchCLI, network: str = "bridge") -> str:
    return ketch("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
                 network).stdout.strip()


def httpd(ketch: KetchCLI, *flags: str, port: int = 80, name: str = "web") -> str:
    return ketch("run", "-d", "--name", name, *flags, "busybox", "httpd", "-f", "-p",
                 str(port), "-h", "/www").stdout.strip()


