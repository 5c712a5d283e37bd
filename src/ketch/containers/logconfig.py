"""A container's log driver: `--log-driver`/`--log-opt`, with defaults from the state
root's `ketch.toml` (`[containers] log_driver`, `log_opts`: containers/settings.py).
As in Docker, the default options apply to a container that uses the default driver.
"""

from __future__ import annotations

import os

from ketch.errors import InvalidArgument

# typing only for annotations: `logs` loads this module for `reads_back`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, TypeVar

    from ketch.runtime.logs import LogPolicy

    P = TypeVar("P", str, Path)

DEFAULT_DRIVER = "json-file"
# One unrotated file: conmon's default, nothing to check or set up. ketch.runtime.logs
# (and typing, pathlib and datetime, which it imports) stays off the create/start path then.
_PLAIN_DRIVERS = ("json-file", "k8s-file")


def _check(driver: str, opts: dict[str, str]) -> None:
    if driver not in _PLAIN_DRIVERS or opts:
        from ketch.runtime.logs import log_policy

        log_policy(driver, opts)


def root_defaults(root: str | os.PathLike[str]) -> tuple[str, dict[str, str]]:
    """(driver, options) from `<root>/ketch.toml` (containers/settings.py); Docker's
    json-file, no options, when the file or its keys are absent."""
    from ketch.containers.settings import CONFIG_FILE, ContainerSettings

    settings = ContainerSettings.load(root)
    driver, opts = settings.log_driver, dict(settings.log_opts or {})
    try:
        _check(driver, opts)
    except InvalidArgument as e:
        raise InvalidArgument(f"{os.path.join(root, CONFIG_FILE)}: [containers] log settings: {e}"
                              ) from None
    return driver, opts


def resolve(hc: dict[str, Any], root: str | os.PathLike[str]) -> dict[str, Any]:
    """The LogConfig a new container gets ({"Type", "Config"}), checked: InvalidArgument
    with Docker's message for an unknown driver or option or a bad value."""
    given = hc.get("LogConfig") or {}
    driver = given.get("Type") or ""
    opts = dict(given.get("Config") or {})
    default_driver, default_opts = root_defaults(root)
    if not driver:
        driver = default_driver
    if driver == default_driver:
        opts = {**default_opts, **opts}
    _check(driver, opts)
    return {"Type": driver, "Config": dict(sorted(opts.items()))}  # as Go's JSON shows maps


def policy(hc: dict[str, Any]) -> LogPolicy | None:
    """A created container's policy; None for one plain file (and for records from
    before LogConfig)."""
    cfg = hc.get("LogConfig") or {}
    driver = cfg.get("Type") or DEFAULT_DRIVER
    opts = dict(cfg.get("Config") or {})
    if driver in _PLAIN_DRIVERS and not opts:
        return None
    from ketch.runtime.logs import log_policy

    try:
        return log_policy(driver, opts)
    except InvalidArgument:
        return None


def reads_back(hc: dict[str, Any]) -> bool:
    """Whether `logs` can show this container's output (its driver keeps a file)."""
    driver = (hc.get("LogConfig") or {}).get("Type") or DEFAULT_DRIVER
    return driver in ("json-file", "local", "k8s-file")


def log_file(hc: dict[str, Any], default: P) -> P:
    """Where conmon writes this container's log: the k8s-file driver's `path` option
    (as Podman's), else `default` (the container's own ctr.log), as the same type."""
    cfg = hc.get("LogConfig") or {}
    path = (cfg.get("Config") or {}).get("path") if cfg.get("Type") == "k8s-file" else None
    return type(default)(path) if path else default
