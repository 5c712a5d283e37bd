"""Human-facing output: docker's units, timestamps and Go-template `--format` rendering.

Front doors (CLI, API server) format through here so that sizes, ages, tables and
`--format` templates read exactly as docker's do.
"""

from ketch.fmt.template import Template, render_table, tabwrite
from ketch.fmt.units import (
    human_duration,
    human_size,
    parse_duration,
    parse_size,
    parse_timestamp,
    rfc3339nano,
    time_ago,
)

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
