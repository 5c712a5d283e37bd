"""How the client picks a scheme and reads auth challenges (no network involved)."""

from __future__ import annotations

import pytest

from ketch.distribution.transport import Transport, parse_challenge


@pytest.mark.parametrize("domain", ["localhost:5000", "127.0.0.1:5000", "[::1]:5000",
                                    "localhost", "127.0.0.2:80"])
def test_loopback_registries_use_plain_http(domain: str) -> None:
    assert Transport(domain).scheme == "http"


def test_other_registries_use_https_unless_listed_insecure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert Transport("registry.example.com:5000").scheme == "https"
    assert Transport("docker.io").base == "https://registry-1.docker.io"
    monkeypatch.setenv("KETCH_INSECURE_REGISTRIES", "lab.local:5000, other:1")
    assert Transport("lab.local:5000").scheme == "http"
    assert Transport("lab.local:5001").scheme == "https"


def test_bearer_challenge_parameters_are_parsed() -> None:
    kind, params = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:samalba/my-app:pull,push"')
    assert kind == "bearer"
    assert params == {"realm": "https://auth.example.com/token",
                      "service": "registry.example.com",
                      "scope": "repository:samalba/my-app:pull,push"}
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic",
                                                                {"realm": "Registry Realm"})
    assert parse_challenge("") is None
