"""The flags of every `ketch image` command and how each takes effect (the index is
ketch.optiontables; tests/containers/test_option_table.py keeps it, the declared flags
and the tests in step)."""

from __future__ import annotations

_FORMAT_ROWS = "a Go template per row, 'table ...' or 'json'"

OPTIONS: dict[str, dict[str, str]] = {
    "history": {
        "--format": _FORMAT_ROWS,
        "--human": "sizes and dates for people (=false: bytes and RFC 3339 times)",
        "--no-trunc": "full IDs and CREATED BY lines",
        "--quiet": "only the IDs of the entries that have one",
    },
    "import": {
        "--change": "Dockerfile instructions applied to the image's config",
        "--message": "the image's comment and its history entry's",
        "--platform": "the image's os/architecture/variant (default the host's)",
    },
    "inspect": {"--format": "a Go template run on each image, or 'json'"},
    "load": {
        "--input": "the archive is read from the file instead of standard input",
        "--platform": "only the host's platform, which load reads; another is refused",
        "--quiet": "no progress bars; the \"Loaded image\" lines still printed, as Docker",
    },
    "ls": {
        "--all": "intermediate images (build steps) listed too",
        "--digests": "the DIGEST column (repository digests)",
        "--filter": "Docker's image filters (dangling, label, before, since, until,"
                    " reference)",
        "--format": _FORMAT_ROWS,
        "--no-trunc": "full IDs",
        "--quiet": "only IDs",
    },
    "prune": {
        "--all": "every image no container uses, not only dangling ones",
        "--filter": "Docker's prune filters (until, label) select what is removed",
        "--force": "no confirmation prompt",
    },
    "rm": {
        "--force": "the image is removed though containers use it or it has several tags",
        "--no-prune": "untagged parent images are kept",
    },
    "save": {
        "--output": "the archive is written to the file (whole or not at all)",
        "--platform": "only that platform: an image of another platform is refused",
    },
    "tag": {},
}
