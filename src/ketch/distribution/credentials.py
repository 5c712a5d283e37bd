"""Credentials in docker's `config.json` (`$DOCKER_CONFIG`, else `~/.docker`).

The file is shared with the docker CLI, so ketch keeps every key it does not own and
stores logins exactly as docker does: `auths[server].auth = base64("user:password")`,
or through a credential helper (`credHelpers[server]`, else `credsStore`) speaking the
docker-credential-helpers protocol (`docker-credential-NAME get|store|erase`).
"""

from __future__ import annotations

import os
from contextvars import ContextVar

from ketch.errors import KetchError
from ketch.fastjson import loads
from ketch.values import contextmanager  # contextlib's imports functools and collections

# A pull only reads the config: no `typing`, no `tempfile`, and no `pathlib`, `json` or
# `base64` (with what they import, milliseconds of a re-pull's one request).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any


def _config_dir() -> str:
    return os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"),
                                                           ".docker")


def config_dir() -> Path:
    from pathlib import Path

    return Path(_config_dir())


def config_path() -> Path:
    return config_dir() / "config.json"


def _load() -> dict[str, Any]:
    path = os.path.join(_config_dir(), "config.json")
    try:
        with open(path, "rb") as f:
            data = loads(f.read().decode() or "{}")
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
    import contextlib
    import json
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="config.json.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent="\t")
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _helper_for(data: dict[str, Any], server: str) -> str | None:
    name = (data.get("credHelpers") or {}).get(server) or data.get("credsStore")
    return f"docker-credential-{name}" if name else None


def _run_helper(helper: str, action: str, payload: str) -> str:
    import shutil
    import subprocess

    path = shutil.which(helper)
    if path is None:
        raise KetchError(f"credential helper {helper} is configured in {config_path()} but"
                         " not installed")
    try:
        proc = subprocess.run([path, action], input=payload, capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise KetchError(f"credential helper {helper} {action}: {e}") from None
    if proc.returncode != 0:
        message = (proc.stdout or proc.stderr).strip()
        if action == "get" and "credentials not found" in message.lower():
            return ""
        raise KetchError(f"credential helper {helper} {action}: {message}")
    return proc.stdout


# Credentials a client sent with its request (the Engine API's X-Registry-Auth and
# X-Registry-Config): while set, they are the only ones, as for dockerd, which never
# reads the client's config.json. Per thread (a context variable).
_given: ContextVar[dict[str, tuple[str, str]] | None] = ContextVar("ketch_given_auth",
                                                                   default=None)


@contextmanager
def given(auths: dict[str, tuple[str, str]]) -> Iterator[None]:
    """Use `auths` (registry key -> (user, password)) instead of the stored logins in
    this thread while the block runs; an empty map means anonymous everywhere."""
    token = _given.set(dict(auths))
    try:
        yield
    finally:
        _given.reset(token)


def get(server: str) -> tuple[str, str] | None:
    """(user, password) stored for `server` (a key as `registry_for_auth` gives it)."""
    override = _given.get()
    if override is not None:
        return override.get(server)
    data = _load()
    helper = _helper_for(data, server)
    if helper is not None:
        answer = _run_helper(helper, "get", server)
        if not answer:
            return None
        try:
            creds = loads(answer)
            return str(creds["Username"]), str(creds["Secret"])
        except (ValueError, KeyError, TypeError):
            raise KetchError(f"credential helper {helper} sent an invalid answer") from None
    auths = data.get("auths") or {}
    entry = auths.get(server)
    if entry is None and not server.startswith(("http://", "https://")):
        # docker also matches keys stored with a scheme or path ("https://host/v2/").
        for key, value in auths.items():
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
    import base64

    try:
        user, sep, password = base64.b64decode(auth).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise KetchError(f"invalid auth configuration for {server} in"
                         f" {config_path()}") from None
    return (user, password) if sep else None


def store(server: str, user: str, password: str) -> str | None:
    """Keep the credentials (through the configured helper, else base64 in the config
    file). Returns the config file's path when it now holds the password unencrypted
    and did not hold this one before (what the docker CLI warns about), else None."""
    data = _load()
    helper = _helper_for(data, server)
    if helper is not None:
        import json

        _run_helper(helper, "store", json.dumps(
            {"ServerURL": server, "Username": user, "Secret": password}))
        # docker keeps an empty entry so `auths` still lists the registry.
        data.setdefault("auths", {})[server] = {}
        _save(data)
        return None
    import base64

    auths = data.setdefault("auths", {})
    entry = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    changed = (auths.get(server) or {}).get("auth") != entry["auth"]
    auths[server] = entry
    _save(data)
    return str(config_path()) if changed else None


def remove(server: str) -> bool:
    """Forget `server`'s credentials; False when there were none."""
    data = _load()
    auths = data.get("auths") or {}
    helper = _helper_for(data, server)
    if helper is not None:
        known = server in auths or get(server) is not None
        if known:
            _run_helper(helper, "erase", server)
    else:
        known = server in auths
    if server in auths:
        del auths[server]
        _save(data)
    return known
