"""Credentials in docker's `config.json` (`$DOCKER_CONFIG`, else `~/.docker`).

The file is shared with the docker CLI, so ketch keeps every key it does not own and
stores logins exactly as docker does: `auths[server].auth = base64("user:password")`.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ketch.errors import KetchError


def config_dir() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def config_path() -> Path:
    return config_dir() / "config.json"


def _load() -> dict[str, Any]:
    path = config_path()
    try:
        data = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise KetchError(f"loading config file {path}: {e}") from None
    if not isinstance(data, dict):
        raise KetchError(f"loading config file {path}: not a JSON object")
    return data


def _save(data: dict[str, Any]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written to a temp file and renamed: a crash must not truncate the user's logins.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="config.json.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent="\t")
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def get(server: str) -> tuple[str, str] | None:
    """(user, password) stored for `server` (a key as `registry_for_auth` gives it)."""
    entry = (_load().get("auths") or {}).get(server)
    if entry is None and not server.startswith(("http://", "https://")):
        # docker also matches keys stored with a scheme or path ("https://host/v2/").
        for key, value in (_load().get("auths") or {}).items():
            host = key.split("://", 1)[-1].split("/", 1)[0]
            if host == server:
                entry = value
                break
    if not entry:
        return None
    if entry.get("username") and entry.get("password"):
        return entry["username"], entry["password"]
    auth = entry.get("auth")
    if not auth:
        return None
    try:
        user, sep, password = base64.b64decode(auth).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise KetchError(f"invalid auth configuration for {server} in"
                         f" {config_path()}") from None
    return (user, password) if sep else None


def store(server: str, user: str, password: str) -> None:
    data = _load()
    auths = data.setdefault("auths", {})
    auths[server] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    _save(data)


def remove(server: str) -> bool:
    """Forget `server`'s credentials; False when there were none."""
    data = _load()
    auths = data.get("auths") or {}
    if server not in auths:
        return False
    del auths[server]
    _save(data)
    return True
