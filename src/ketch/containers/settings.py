"""Container defaults from the state root's `ketch.toml` (Docker keeps them in
daemon.json): its `[containers]` table.

    [containers]
    init = true                          # as `--init` for every container (daemon.json "init")
    init_path = "/usr/bin/tini-static"   # the init binary (daemon.json "init-path")
    log_driver = "json-file"             # as --log-driver (daemon.json "log-driver")
    log_opts = { max-size = "10m", max-file = "3" }   # as --log-opt ("log-opts")

A container's own `--init` wins over `init`; its own `--log-driver` over `log_driver`, and
`log_opts` apply to containers of the default driver (containers/logconfig.py). Unknown keys are refused, so a misspelt
setting never goes unnoticed. The same file's `[registries."HOST"]` tables (registry
mirrors) are read by distribution/mirrors.py.
"""

from __future__ import annotations

import os

from ketch.errors import InvalidArgument
from ketch.values import value

CONFIG_FILE = "ketch.toml"
# Where the init is mounted in the container, and how it is called: as Docker does
INIT_TARGET = "/sbin/docker-init"
# A static binary: the init must run in images without a C library
_INIT_NAMES = ("tini-static", "docker-init")


@value
class ContainerSettings:
    init: bool = False
    init_path: str = ""
    log_driver: str = "json-file"
    log_opts: dict[str, str] | None = None

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> ContainerSettings:
        settings = cls()
        path = os.path.join(root, CONFIG_FILE)  # a string: `create` needs no pathlib
        if not os.path.isfile(path):
            return settings
        from ketch import tomlfile  # only when there is a file

        data = tomlfile.read(path, os.fspath(root))
        table = data.get("containers") or {}
        for key, val in table.items():
            if key == "init" and isinstance(val, bool):
                settings.init = val
            elif key == "init_path" and isinstance(val, str):
                settings.init_path = val
            elif key == "log_driver" and isinstance(val, str):
                settings.log_driver = val
            elif key == "log_opts" and isinstance(val, dict) and all(
                    isinstance(v, str) for v in val.values()):
                settings.log_opts = dict(val)
            else:
                raise InvalidArgument(f"{path}: unknown or malformed setting"
                                      f" [containers] {key} = {val!r}")
        return settings

    def init_binary(self) -> str:
        """The init binary to mount at /sbin/docker-init; a one-line error if missing."""
        if self.init_path:
            if not os.access(self.init_path, os.X_OK) or os.path.isdir(self.init_path):
                raise InvalidArgument(f"--init: the init binary {self.init_path} (init_path"
                                      f" in {CONFIG_FILE}) does not exist or is not"
                                      " executable")
            return self.init_path
        from ketch.runtime import which

        for name in _INIT_NAMES:
            found = which(name)
            if found:
                return found
        raise InvalidArgument("--init: no init binary found: install Debian's tini package"
                              " (/usr/bin/tini-static) or set init_path in"
                              f" {CONFIG_FILE}")
