"""Where the table of options of each CLI group lives: one module per group, next to the
service that gives the options their effect, each with `OPTIONS` (command → flag → how
it takes effect, or "refused: why"). Nothing on a command's path imports these tables:
they are read by tests/containers/test_option_table.py (every declared flag has an entry,
every entry is a declared flag, every flag is used by a test of its command) and by
whoever wants to know what a flag does."""

from __future__ import annotations

# CLI group (ketch.cli.main GROUPS and HIDDEN_GROUPS) → module with its OPTIONS table
TABLE_MODULES: dict[str, str] = {
    "builder": "ketch.builder.options",
    "container": "ketch.containers.optiontable",
    "distribution": "ketch.distribution.options",
    "image": "ketch.images.optiontable",
    "kube": "ketch.kube.options",
    "network": "ketch.network.options",
    "pod": "ketch.pods.options",
    "system": "ketch.systemoptions",
    "volume": "ketch.containers.volumeoptions",
}


def table(group: str, command: str) -> dict[str, str] | None:
    """The flags of `ketch <group> <command>` and how each takes effect (None: no table)."""
    import importlib

    module = TABLE_MODULES.get(group)
    if module is None:
        return None
    return importlib.import_module(module).OPTIONS.get(command)
