"""The names `ketch.fmt.template` has always offered, from where they now live.

The Go template engine is the `ketch.fmt.gotemplate` package, Go's value printing is
`ketch.fmt.gofmt` and the tabwriter is `ketch.fmt.tabwriter`; new code imports those.
"""

from ketch.fmt.gofmt import MISSING, go_string
from ketch.fmt.gotemplate import CONTAINER_HEADERS, Context, Template, render_table
from ketch.fmt.tabwriter import tabwrite, tabwrite_text

__all__ = [
    "CONTAINER_HEADERS",
    "Context",
    "MISSING",
    "Template",
    "go_string",
    "render_table",
    "tabwrite",
    "tabwrite_text",
]
