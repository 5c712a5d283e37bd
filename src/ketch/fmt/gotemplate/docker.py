"""docker/cli's formatter on top of the template engine: tables and headers."""

from __future__ import annotations

from ketch.fmt.gotemplate.exec import ERROR_PREFIX, Context, Template
from ketch.fmt.gotemplate.funcs import HEADER_FUNCS
from ketch.fmt.tabwriter import tabwrite_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any


# docker/cli's column headers, keyed by the field names its --format templates use.
CONTAINER_HEADERS: dict[str, str] = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "LocalVolumes": "LOCAL VOLUMES",
    "Networks": "NETWORKS",
    "Platform": "PLATFORM",
}


class _HeaderContext(dict[str, str]):
    """The data a table header is rendered from: field name -> column title. A field
    with no title heads an empty column (the rows, if any, have refused it already)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key, "")

    def Label(self, name: str) -> str:  # noqa: N802 - the name templates call it by
        """`{{.Label "com.example.vendor"}}` heads its column "vendor", as docker does."""
        last = name.split(".")[-1]
        return last.replace("-", " ").replace("_", " ")


class _Probe(Context):
    """An empty row that notes the fields a template reads."""

    def __init__(self, go_type: str, known: frozenset[str]) -> None:
        super().__init__({}, go_type, known, {})
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def probe_format(fmt: str, headers: Mapping[str, str], *, go_type: str,
                 fields: Mapping[str, str] | None = None) -> frozenset[str]:
    """docker ps's look at its --format before it lists anything: the template run once
    over an empty row, so that one that cannot work fails even when there is nothing to
    list ("failed to parse template: ..." / "failed to execute template: ..."), and the
    fields it reads are known (`.Size` turns on --size). Returns those fields."""
    from ketch.errors import InvalidArgument

    def reworded(e: InvalidArgument, prefix: str) -> InvalidArgument:
        # printed as it is, as the docker CLI prints it
        return InvalidArgument(prefix + e.message.removeprefix(ERROR_PREFIX), bare=True)

    try:
        template = Template(fmt)
    except InvalidArgument as e:
        raise reworded(e, "failed to parse template: ") from None
    probe = _Probe(go_type, frozenset({**(fields or {}), **headers}))
    try:
        template.execute(probe)
    except InvalidArgument as e:
        raise reworded(e, "failed to execute template: ") from None
    return frozenset(probe.read)


def render_table(fmt: str, rows: list[Any], headers: Mapping[str, str], *,
                 go_type: str = "*formatter.Context", fields: Mapping[str, str] | None = None,
                 labels: Sequence[Mapping[str, str]] | None = None) -> str:
    """Render rows with a docker `--format` value, the way docker/cli's formatter does.

    "table ..." adds a header row (the same template run over `headers`) and aligns the
    columns with docker's tabwriter settings; a bare "table" uses every header in order.
    "json" means `{{json .}}`. Literal `\\t` and `\\n` in the format become tab and newline.
    Every row ends with a newline.

    Dict rows are docker's typed contexts (`go_type`, e.g. "*formatter.ContainerContext"):
    the fields are the row's keys, the headers' and `fields` (more field -> title); any
    other is an error, as in docker. `labels` (one mapping per row) gives the rows docker's `Label` method.
    """
    text = fmt
    is_table = text.startswith("table")
    if is_table:
        text = text[len("table") :]
    elif text == "json":
        text = "{{json .}}"
    text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    if is_table and not text:
        text = "\t".join("{{." + name + "}}" for name in headers)
    body = Template(text)
    titles = {**(fields or {}), **headers}
    known = frozenset(titles)
    rows = [Context(r, go_type, known, labels[i] if labels is not None else None)
            if type(r) is dict else r for i, r in enumerate(rows)]
    rendered = "".join(body.execute(row) + "\n" for row in rows)
    if not is_table:
        return rendered
    header = Template(text, funcs=HEADER_FUNCS).execute(_HeaderContext(titles))
    return tabwrite_text(header + "\n" + rendered)


def may_reach(template: str, field: str) -> bool:
    """Whether a --format template can reach `field` of the row it is given: it names
    it, or it takes a bare dot or a variable, which may hold the whole row (`{{.}}`,
    `{{json .}}`, `range`). Errs on the side of yes: what it says no to is not looked
    at, so a row may leave that field empty (`ps` and its CreatedAt)."""
    if field in template or "$" in template:
        return True
    at = template.find(".")
    while at >= 0:
        after = template[at + 1:at + 2]
        if not (after.isalnum() or after == "_"):
            return True
        at = template.find(".", at + 1)
    return False
