"""The flags of the registry commands (pull, push, login, logout, search and `ketch registry`)
and how each takes effect (the index is ketch.optiontables; tests/containers/
test_option_table.py keeps it, the declared flags and the tests in step)."""

from __future__ import annotations

_GC = "garbage-collect only (refused with serve): "
_NO_INDEX = "accepted as docker's; the search fails for want of an index to search "

OPTIONS: dict[str, dict[str, str]] = {
    "login": {
        "--password": "the password (a warning says --password-stdin is safer, as Docker)",
        "--password-stdin": "the password is read from standard input",
        "--username": "the user name",
    },
    "logout": {},
    "pull": {
        "--all-tags": "every tag of the repository is pulled",
        "--disable-content-trust": "accepted (Docker's default too); ketch verifies no"
                                   " signatures",
        "--platform": "only the host's platform (its entry of a multi-platform image);"
                      " another is refused",
        "--quiet": "only the image's name is printed",
    },
    "push": {
        "--all-tags": "every local tag of the repository is pushed",
        "--disable-content-trust": "accepted (Docker's default too); ketch signs nothing",
        "--compression-format": "layers stored uncompressed are pushed gzip (default), zstd"
                                " or uncompressed",
        "--compression-level": "the gzip (0-9) or zstd (1-22) level of those layers",
        "--quiet": "only the image's name is printed",
    },
    "search": {
        "--filter": _NO_INDEX + "(no results to filter)",
        "--format": _NO_INDEX + "(no results to format)",
        "--limit": _NO_INDEX + "(a value that is not a number is refused first)",
        "--no-trunc": _NO_INDEX + "(no results to truncate)",
    },
    "serve": {
        "--addr": "the address the registry listens on (default 127.0.0.1:5000)",
        "--auth": "with --htpasswd: basic auth on each request, or bearer tokens",
        "--delete-untagged": _GC + "manifests no tag points at are deleted too",
        "--dry-run": _GC + "what would be removed is listed, nothing removed",
        "--htpasswd": "requests need a user of this bcrypt htpasswd file",
        "--quiet": "no request log",
        "--root": "the storage directory (default <ketch root>/registry)",
        "--sparse-indexes": "image indexes naming manifests the registry lacks are accepted",
    },
}
