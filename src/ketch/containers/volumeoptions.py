"""The flags of every `ketch volume` command and how each takes effect (the index is
ketch.optiontables; tests/containers/test_option_table.py keeps it, the declared flags
and the tests in step)."""

from __future__ import annotations

from ketch.containers.volumes import VOLUME_CREATE_OPTIONS

OPTIONS: dict[str, dict[str, str]] = {
    "create": VOLUME_CREATE_OPTIONS,
    "inspect": {"--format": "a Go template run on each volume, or 'json'"},
    "ls": {
        "--filter": "Docker's volume filters (dangling, driver, label, name)",
        "--format": "a Go template per row, 'table ...' or 'json'",
        "--quiet": "only names",
    },
    "prune": {
        "--all": "named volumes no container uses are removed too, not only anonymous ones",
        "--filter": "Docker's prune filters (label, all) select what is removed",
        "--force": "no confirmation prompt",
    },
    "rm": {"--force": "a volume that does not exist is no error (one in use is still"
                      " refused, as Docker)"},
}
