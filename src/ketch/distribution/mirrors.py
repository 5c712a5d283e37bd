"""Registry mirrors per registry host, from the state root's `ketch.toml`:

    [registries."registry.k8s.io"]
    mirrors = ["http://127.0.0.1:5000"]   # tried in order, before the host itself
    mirror_only = true                    # never fall back to registry.k8s.io

The key is the domain of an image name as written (`docker.io` for Docker Hub). A
mirror is `[http://|https://]host[:port]` and serves the same repository paths (as
containerd's hosts.toml mirrors and the locations in Podman's registries.conf). A pull
asks the mirrors for the manifest in order and takes the image (manifest and blobs)
from the first that serves it; when none does, the host itself unless `mirror_only`.
`ketch pull`, the Engine API and the CRI's PullImage all pull through here.
"""

from __future__ import annotations

from ketch.errors import InvalidArgument, KetchError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ketch import reference
    from ketch.distribution.transport import Transport

_KEYS = ("mirrors", "mirror_only")
CONFIG_FILE = "ketch.toml"  # containers/settings.py's; not imported: it loads pathlib


class Mirrors:
    """One registry host's mirrors: (scheme or "", host[:port]) in order."""

    def __init__(self, endpoints: list[tuple[str, str]], mirror_only: bool) -> None:
        self.endpoints = endpoints
        self.mirror_only = mirror_only


def _endpoint(where: str, text: str) -> tuple[str, str]:
    from urllib.parse import urlsplit

    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if scheme not in ("", "http", "https"):
        raise InvalidArgument(f"{where}: mirror {text!r}: the scheme must be http or https")
    parts = urlsplit(f"//{rest}")
    if not parts.netloc or parts.path.strip("/") or parts.query or parts.fragment:
        raise InvalidArgument(f"{where}: mirror {text!r} must be [http://|https://]host[:port]"
                              " (a mirror serves the same repository paths)")
    return scheme, parts.netloc


def load(root: str) -> dict[str, Mirrors]:
    """The `[registries]` table of `<root>/ketch.toml`; {} without the file or table.
    A misspelt key or a malformed value is an error, as in `[containers]`. A re-pull
    reads this too: nothing heavier than os without the file."""
    import os

    path = os.path.join(root, CONFIG_FILE)
    if not os.path.isfile(path):
        return {}
    from ketch import tomlfile  # only when there is a file

    table: Any = tomlfile.read(path, root).get("registries") or {}
    if not isinstance(table, dict):
        raise InvalidArgument(f"{path}: [registries] must be a table of registry hosts")
    out: dict[str, Mirrors] = {}
    for host, entry in table.items():
        where = f'{path}: [registries."{host}"]'
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where} must be a table (mirrors, mirror_only)")
        for key in entry:
            if key not in _KEYS:
                raise InvalidArgument(f"{where}: unknown setting {key!r}")
        given = entry.get("mirrors", [])
        if not isinstance(given, list) or not all(isinstance(m, str) for m in given):
            raise InvalidArgument(f"{where}: mirrors must be a list of strings")
        only = entry.get("mirror_only", False)
        if not isinstance(only, bool):
            raise InvalidArgument(f"{where}: mirror_only must be true or false")
        if only and not given:
            raise InvalidArgument(f"{where}: mirror_only without mirrors would pull from"
                                  " nowhere")
        out[host] = Mirrors([_endpoint(where, m) for m in given], only)
    return out


def first_serving(root: str, ref: reference.Reference, default: Callable[[], Transport],
                  fetch: Callable[[Transport], Any]) -> tuple[Transport, Any]:
    """(transport, fetch's result) from the first endpoint of `ref`'s registry whose
    `fetch` succeeds: its mirrors in order, then `default()` unless mirror_only. The
    transport returned is open (the caller closes it); the others are closed."""
    from ketch.distribution import credentials
    from ketch.distribution.transport import Transport

    mirrors = load(root).get(ref.domain)
    if mirrors is None:
        return _first(default(), fetch)
    last: KetchError | None = None
    last_mirror = ""
    for scheme, host in mirrors.endpoints:
        t = Transport(host, credentials.get(host), scheme)
        try:
            return t, fetch(t)
        except KetchError as e:
            last, last_mirror = e, host  # failing or lacking the image: the next one
            t.close()
        except BaseException:
            t.close()
            raise
    if mirrors.mirror_only:
        assert last is not None
        message = (f"{ref.domain} is pulled from its mirrors only ({len(mirrors.endpoints)}"
                   f" in ketch.toml) and none served {ref.familiar()}: {last_mirror}: {last}")
        raise (NotFound if isinstance(last, NotFound) else KetchError)(message) from None
    return _first(default(), fetch)


def _first(t: Any, fetch: Any) -> tuple[Any, Any]:
    """(t, fetch(t)), with `t` closed if the fetch fails."""
    try:
        return t, fetch(t)
    except BaseException:
        t.close()
        raise
