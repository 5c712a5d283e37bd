"""Human-facing output: docker's units, timestamps and Go-template `--format` rendering.

Front doors (CLI, API server) format through here so that sizes, ages, tables and
`--format` templates read exactly as docker's do.
"""

# Exports load on first use: importing fmt.units must not pull in the template engine.
_EXPORTS = {
    "Template": "ketch.fmt.gotemplate", "render_table": "ketch.fmt.gotemplate",
    "tabwrite": "ketch.fmt.tabwriter", "human_duration": "ketch.fmt.units",
    "human_size": "ketch.fmt.units", "parse_duration": "ketch.fmt.units",
    "parse_size": "ketch.fmt.units", "parse_timestamp": "ketch.fmt.units",
    "rfc3339nano": "ketch.fmt.units", "time_ago": "ketch.fmt.units",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "Template",
    "human_duration",
    "human_size",
    "parse_duration",
    "parse_size",
    "parse_timestamp",
    "render_table",
    "rfc3339nano",
    "tabwrite",
    "time_ago",
]
