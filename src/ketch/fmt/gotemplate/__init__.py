"""Go text/template, as far as `docker ... --format` needs it, plus docker's table output.

Users bring format strings written for docker (`{{.Names}}`, `{{json .Config}}`,
`{{range $k, $v := .Labels}}...{{end}}`, `table {{.ID}}\\t{{.Image}}`), so this package
implements Go's template language with Go's semantics: the same actions, builtins,
whitespace trimming, variable scoping, printing of values (`map[a:1 b:2]`, `[x y]`,
`<no value>`) and the same error messages, plus the functions docker/cli adds (json,
join, split, upper, lower, title, pad, truncate) and docker/cli's tabwriter alignment.

Data is plain Python: dicts are Go maps (field access is a key lookup, and a missing key
prints `<no value>`, or is an error under `missingkey_error`, Go's `missingkey=error`),
lists and tuples are slices, and other objects (dataclasses) are structs whose public
attributes and methods are fields. A `Context` is a dict that behaves as one of
docker/cli's typed formatter contexts: a field it does not have is an error.

The package follows Go's own layout: `lex` turns the source into items, `parse` builds
the tree, `exec` walks it (`funcs` holds the builtins and docker's additions), and
`docker` is docker/cli's formatter on top (typed contexts, `table` output and headers).
Printing values as Go does lives in `ketch.fmt.gofmt`, the tabwriter in
`ketch.fmt.tabwriter`; neither imports this package.
"""

from ketch.fmt.gotemplate.docker import CONTAINER_HEADERS, probe_format, render_table
from ketch.fmt.gotemplate.exec import (
    Context,
    GoMap,
    GoSet,
    NilGoMap,
    NilGoPointer,
    NilGoSlice,
    Template,
)

__all__ = ["CONTAINER_HEADERS", "Context", "GoMap", "GoSet", "NilGoMap", "NilGoPointer",
           "NilGoSlice", "Template",
           "probe_format", "render_table"]
