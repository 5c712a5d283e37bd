"""Go text/template as `docker --format` uses it, and docker's table output.

Expected strings are what Go's text/template and docker/cli print for the same template
and data (Go maps stand in as dicts, slices as lists, structs as dataclasses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ketch.errors import InvalidArgument
from ketch.fmt import Template, render_table, tabwrite
from ketch.fmt.gotemplate import CONTAINER_HEADERS
from ketch.fmt.tabwriter import tabwrite_text

INSPECT: dict[str, Any] = {
    "Id": "4fa6e0f0c678",
    "Name": "/web",
    "Config": {
        "Env": ["PATH=/usr/bin", "LANG=C"],
        "Labels": {"com.example.vendor": "ACME", "app": "web"},
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Tty": False,
        "Entrypoint": None,
    },
    "State": {"Running": True, "Pid": 4242, "ExitCode": 0},
    "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
    "SizeRw": 1234567.0,
    "Ports": [80, 443],
    "Empty": [],
}


def render(text: str, data: Any = INSPECT) -> str:
    return Template(text).execute(data)


@pytest.mark.parametrize(
    ("text", "out"),
    [
        # fields, nested fields, dot and $
        ("{{.Id}}", "4fa6e0f0c678"),
        ("{{.State.Pid}}", "4242"),
        ("{{.NetworkSettings.Networks.bridge.IPAddress}}", "172.17.0.2"),
        ("{{.Config.Env}}", "[PATH=/usr/bin LANG=C]"),
        ("{{$.Name}}", "/web"),
        ("{{with .State}}{{$.Name}} {{.Pid}}{{end}}", "/web 4242"),
        # Go's printing of values
        ("{{.Config.Labels}}", "map[app:web com.example.vendor:ACME]"),
        ("{{.State.Running}} {{.Config.Tty}}", "true false"),
        ("{{.SizeRw}}", "1.234567e+06"),
        ("{{.Missing}}", "<no value>"),
        ("{{.Missing.Deeper}}", "<no value>"),
        ("{{.Config.Entrypoint}}", "<no value>"),
        ("{{.Empty}}", "[]"),
        ("{{1.5}} {{1e3}} {{0x1F}} {{-7}} {{'a'}} {{true}}", "1.5 1000 31 -7 97 true"),
        # json
        ("{{json .Config.Env}}", '["PATH=/usr/bin","LANG=C"]'),
        ("{{json .State}}", '{"Running":true,"Pid":4242,"ExitCode":0}'),
        ("{{json .Config.Entrypoint}}", "null"),
        ('{{json "a<b>&\\"c"}}', '"a<b>&\\"c"'),
        ("{{json .SizeRw}}", "1234567"),
        ("{{.State | json}}", '{"Running":true,"Pid":4242,"ExitCode":0}'),
        # range over lists and maps
        ("{{range .Config.Env}}[{{.}}]{{end}}", "[PATH=/usr/bin][LANG=C]"),
        ("{{range $i, $e := .Config.Cmd}}{{$i}}={{$e}};{{end}}", "0=nginx;1=-g;2=daemon off;;"),
        ("{{range $e := .Ports}}{{$e}},{{end}}", "80,443,"),
        ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}", "app=web com.example.vendor=ACME "),
        ("{{range .Config.Labels}}{{.}} {{end}}", "web ACME "),
        ("{{range .Empty}}x{{else}}none{{end}}", "none"),
        ("{{range .Missing}}x{{else}}none{{end}}", "none"),
        ("{{range .Ports}}{{if eq . 443}}{{break}}{{end}}{{.}}{{end}}", "80"),
        ("{{range .Ports}}{{if eq . 80}}{{continue}}{{end}}{{.}}{{end}}", "443"),
        ("{{range 3}}{{.}}{{end}}", "012"),
        # index, len, slice
        ('{{index .Config.Labels "app"}}', "web"),
        ('{{index .Config.Labels "com.example.vendor"}}', "ACME"),
        ('[{{index .Config.Labels "absent"}}]', "[]"),
        ("{{index .Config.Cmd 1}}", "-g"),
        ('{{index .NetworkSettings.Networks "bridge" "IPAddress"}}', "172.17.0.2"),
        ('{{(index .NetworkSettings.Networks "bridge").IPAddress}}', "172.17.0.2"),
        ("{{len .Config.Env}} {{len .Config.Labels}} {{len .Name}}", "2 2 4"),
        ("{{slice .Id 0 4}}", "4fa6"),
        # if / else / else if, and truth
        ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
        ("{{if .Config.Tty}}tty{{else if .State.Running}}running{{else}}no{{end}}", "running"),
        ("{{if .Empty}}a{{else}}b{{end}}{{if .Missing}}c{{else}}d{{end}}", "bd"),
        ("{{if and .State.Running (gt .State.Pid 0)}}ok{{end}}", "ok"),
        ('{{if or .Config.Tty .Missing}}y{{else}}n{{end}}', "n"),
        ("{{if not .Config.Tty}}no tty{{end}}", "no tty"),
        ('{{if eq .Name "/db" "/web"}}match{{end}}', "match"),
        ('{{if ne .State.ExitCode 0}}failed{{else}}fine{{end}}', "fine"),
        ("{{with .Missing}}x{{else}}empty{{end}}", "empty"),
        # docker's functions
        ('{{join .Config.Cmd " "}}', "nginx -g daemon off;"),
        ('{{split "a,b,c" ","}}', "[a b c]"),
        ("{{upper .Name}} {{lower \"ABC\"}} {{title \"hello wide-world\"}}", "/WEB abc Hello Wide-World"),
        ('{{pad .Name 2 1}}|{{pad "" 2 1}}|', "  /web ||"),
        ('{{truncate .Id 4}}', "4fa6"),
        ("{{.Name | upper | printf \"%q\"}}", '"/WEB"'),
        # print functions
        ("{{println}}", "\n"),
        ("{{println .Name .State.Pid}}", "/web 4242\n"),
        ('{{print 1 2 "a" 3}}', "1 2a3"),
        ('{{printf "%s has %d ports (%v)" .Name (len .Ports) .Ports}}', "/web has 2 ports ([80 443])"),
        ('{{printf "%-6s|%5.1f|%x|%t" "ab" 3.14159 255 true}}', "ab    |  3.1|ff|true"),
        ('{{printf "%d" "x"}}', "%!d(string=x)"),
        # variables and scope
        ("{{$n := .Name}}{{$n}}", "/web"),
        ("{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}", "21"),
        ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
        ("{{if $p := .State.Pid}}pid {{$p}}{{end}}", "pid 4242"),
        # literals and comments
        ('{{"a\\tb\\n"}}', "a\tb\n"),
        ('{{"\\u00e9\\x41\\101"}}', "\u00e9AA"),
        ("{{`raw\\n`}}", "raw\\n"),
        ("a{{/* a comment */}}b", "ab"),
        # whitespace trimming
        ("x  \n {{- .Name -}} \n  y", "x/webY".replace("Y", "y")),
        ("{{- .Name}}  \n", "/web  \n"),
        ("a {{- /* gone */ -}} b", "ab"),
        ("{{range .Ports -}}\n  {{.}}\n{{- end}}", "80443"),
        # define / template
        ('{{define "p"}}<{{.}}>{{end}}{{template "p" .Name}}{{template "p" 1}}', "</web><1>"),
        ('{{block "b" .Id}}[{{.}}]{{end}}', "[4fa6e0f0c678]"),
        # builtins for escaping
        ('{{html "<a href=\'x\'>&</a>"}}', "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"),
        ('{{urlquery "a b&c"}}', "a+b%26c"),
        ('{{js "it\'s <b>"}}', "it\\'s \\u003Cb\\u003E"),
    ],
)  # fmt: skip
def test_template_renders_like_go(text: str, out: str) -> None:
    assert render(text) == out


@dataclass
class Port:
    Private: int
    Public: int


@dataclass
class Container:
    ID: str
    Names: list[str]
    Ports: list[Port] = field(default_factory=list)

    def Label(self, name: str) -> str:  # noqa: N802 - Go method names are capitalised
        return {"app": "web"}.get(name, "")

    @property
    def Short(self) -> str:  # noqa: N802
        return self.ID[:3]


CTR = Container("abcdef", ["web"], [Port(80, 8080)])


def test_struct_fields_methods_and_properties() -> None:
    assert render('{{.ID}} {{.Short}} {{.Label "app"}} {{.Names}}', CTR) == "abcdef abc web [web]"
    assert render("{{range .Ports}}{{.Public}}->{{.Private}}{{end}}", CTR) == "8080->80"


def test_struct_prints_as_go_struct() -> None:
    assert render("{{.Ports}}", CTR) == "[{80 8080}]"
    assert render("{{json .Ports}}", CTR) == '[{"Private":80,"Public":8080}]'


def test_value_records_print_as_go_structs_too() -> None:
    # ketch's records are `ketch.values.value` classes, not dataclasses
    from ketch.values import value

    @value
    class VPort:
        Private: int
        Public: int

    ports = {"Ports": [VPort(80, 8080)]}
    assert render("{{.Ports}}", ports) == "[{80 8080}]"
    assert render("{{json .Ports}}", ports) == '[{"Private":80,"Public":8080}]'


def test_missing_struct_field_is_an_error_unlike_a_missing_map_key() -> None:
    with pytest.raises(InvalidArgument) as e:
        render("{{.Nope}}", CTR)
    assert str(e.value) == (
        'template parsing error: template: :1:2: executing "" at <.Nope>: '
        "can't evaluate field Nope in type Container"
    )


def test_field_on_a_string_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="can't evaluate field Foo in type string"):
        render("{{.Name.Foo}}")


def test_custom_functions_extend_and_override() -> None:
    tmpl = Template("{{shout .Name}} {{upper .Name}}", funcs={"shout": lambda s: s + "!"})
    assert tmpl.execute(INSPECT) == "/web! /WEB"
    assert Template("{{upper .}}", funcs={"upper": lambda s: "U"}).execute("x") == "U"


def test_template_compiles_once_and_runs_many_times() -> None:
    tmpl = Template("{{.n}},")
    assert "".join(tmpl.execute({"n": i}) for i in range(3)) == "0,1,2,"


def test_unknown_function_is_reported_as_docker_does() -> None:
    with pytest.raises(InvalidArgument) as e:
        Template("{{foo .X}}")
    assert str(e.value) == 'template parsing error: template: :1: function "foo" not defined'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{.X", "template: :1: unclosed action"),
        ("{{if .X}}open", "template: :1: unexpected EOF"),
        ("{{end}}", "template: :1: unexpected {{end}}"),
        ("{{else}}", "template: :1: unexpected {{else}}"),
        ("a\n{{$y}}", 'template: :2: undefined variable "$y"'),
        ("{{if true}}{{$v := 1}}{{end}}{{$v}}", 'template: :1: undefined variable "$v"'),
        ("{{}}", "template: :1: missing value for command"),
        ('{{"open}}', "template: :1: unterminated quoted string"),
        ("{{break}}", "template: :1: {{break}} outside {{range}}"),
        ("{{.X | }}", "template: :1: missing command"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        Template(text)
    assert str(e.value) == "template parsing error: " + message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{join .Name}}", 'at <join>: wrong number of args for join: want 2 got 1'),
        ("{{index .Ports 5}}", "at <index .Ports 5>: error calling index: index out of range: 5"),
        ("{{.Name 1}}", "at <.Name>: Name is not a method but has arguments"),
        ("{{nil}}", "at <nil>: nil is not a command"),
        ('{{"x" | "y"}}', 'at <"y">: can\'t give argument to non-function "y"'),
        ("{{range .Name}}{{end}}", "range can't iterate over /web"),
        ("{{lt .Name 1}}", "error calling lt: incompatible types for comparison"),
        ("{{len 3}}", "error calling len: len of type int"),
    ],
)  # fmt: skip
def test_execution_errors_name_the_failing_node(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        render(text)
    assert str(e.value).startswith("template parsing error: template: :1:")
    assert message in str(e.value)


def test_piped_value_is_the_last_argument() -> None:
    assert render('{{"," | join .Config.Env}}') == "PATH=/usr/bin,LANG=C"
    assert render('{{.Missing | printf "%v"}}') == "<nil>"


# --- tables ------------------------------------------------------------------------------

ROWS = [
    {"ID": "4fa6e0f0c678", "Image": "nginx:latest", "Command": '"nginx -g…"',
     "RunningFor": "2 hours ago", "Status": "Up 2 hours", "Ports": "0.0.0.0:8080->80/tcp",
     "Names": "web"},
    {"ID": "9c1d", "Image": "busybox", "Command": '"sh"', "RunningFor": "3 days ago",
     "Status": "Exited (0) 3 days ago", "Ports": "", "Names": "a-long-container-name"},
]  # fmt: skip


def test_ps_table_matches_docker_layout() -> None:
    fmt = "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}"
    assert render_table(fmt, ROWS, CONTAINER_HEADERS) == (
        "CONTAINER ID   IMAGE          COMMAND       CREATED       STATUS                  PORTS                  NAMES\n"
        '4fa6e0f0c678   nginx:latest   "nginx -g…"   2 hours ago   Up 2 hours              0.0.0.0:8080->80/tcp   web\n'
        '9c1d           busybox        "sh"          3 days ago    Exited (0) 3 days ago                          a-long-container-name\n'
    )  # fmt: skip


def test_table_columns_are_at_least_ten_wide_plus_three_padding() -> None:
    out = render_table("table {{.Repository}}\t{{.Tag}}\t{{.Size}}",
                       [{"Repository": "a", "Tag": "b", "Size": "1MB"}],
                       {"Repository": "REPOSITORY", "Tag": "TAG", "Size": "SIZE"})
    assert out == "REPOSITORY   TAG       SIZE\na            b         1MB\n"


def test_table_header_ignores_json_and_case_functions() -> None:
    out = render_table("table {{json .ID}}\t{{.Names | upper}}", ROWS[:1], CONTAINER_HEADERS)
    assert out.splitlines() == ["CONTAINER ID     NAMES", '"4fa6e0f0c678"   WEB']


def test_table_header_of_a_label_column_is_its_last_name_part() -> None:
    out = render_table('table {{.ID}}\t{{.Label "com.example.vendor"}}', [], CONTAINER_HEADERS)
    assert out == "CONTAINER ID   vendor\n"


def test_table_without_rows_still_prints_the_header() -> None:
    assert render_table("table {{.ID}}", [], CONTAINER_HEADERS) == "CONTAINER ID\n"


def test_bare_table_uses_every_header_in_order() -> None:
    out = render_table("table", [{"ID": "x", "Image": "y"}], {"ID": "ID", "Image": "IMAGE"})
    assert out == "ID        IMAGE\nx         y\n"


def test_plain_format_prints_one_line_per_row_without_header_or_alignment() -> None:
    assert render_table("{{.ID}}: {{.Names}}", ROWS, CONTAINER_HEADERS) == (
        "4fa6e0f0c678: web\n9c1d: a-long-container-name\n"
    )
    assert render_table("{{.ID}}\\t{{.Names}}", ROWS[:1], {}) == "4fa6e0f0c678\tweb\n"


def test_json_format_prints_each_row_as_json() -> None:
    assert render_table("json", [{"ID": "x", "N": 1}], {}) == '{"ID":"x","N":1}\n'


def test_tabwrite_uses_dockers_settings() -> None:
    assert tabwrite([["NAME", "DRIVER", "SCOPE"], ["bridge", "bridge", "local"],
                     ["a-longer-network-name", "host", "local"]]) == (
        "NAME                    DRIVER    SCOPE\n"
        "bridge                  bridge    local\n"
        "a-longer-network-name   host      local\n"
    )  # fmt: skip


# Cases from Go's text/tabwriter tests, which docker/cli's fork keeps.
@pytest.mark.parametrize(
    ("minwidth", "padding", "padchar", "src", "expected"),
    [
        (8, 1, ".", "", ""),
        (8, 1, ".", "\n\n\n", "\n\n\n"),
        (8, 1, ".", "a\nb\nc", "a\nb\nc"),
        (8, 1, ".", "*\t*", "*.......*"),
        (8, 1, ".", "*\t*\t", "*.......*"),
        (8, 1, ".", "\t\n", "........\n"),
        (8, 1, ".", "e) foo\tbar\t\n", "e) foo..bar.....\n"),
        (1, 0, ".", "1\t2\t3\t4\n11\t222\t3333\t44444\n", "1.2..3...4\n11222333344444\n"),
        (1, 0, ".", "1\t2\t3\t4\f11\t222\t3333\t44444\n", "1234\n11222333344444\n"),
        (5, 0, ".", "1\t2\t3\t4\t\n", "1....2....3....4....\n"),
        (2, 0, " ", "a\tb\tc\naa\tbbb\tcccc\naaa\tbbbb\n", "a  b  c\naa bbbcccc\naaabbbb\n"),
        (8, 1, ".", "本\tb\tc\naa\t本本本\tcccc\tddddd\naaa\tbbbb\n",
         "本......b.......c\naa......本本本..cccc....ddddd\naaa.....bbbb\n"),
        (4, 1, "-",
         "4444\t日本語\t22\t1\t333\n999999999\t22\n7\t22\n\t\t\t88888888\n\n"
         "666666\t666666\t666666\t4444\n1\t1\t999999999\t0000000000\n",
         "4444------日本語-22--1---333\n999999999-22\n7---------22\n------------------88888888\n\n"
         "666666-666666-666666----4444\n1------1------999999999-0000000000\n"),
        (4, 3, ".",
         "4444\t333\t22\t1\t333\n999999999\t22\n7\t22\n\t\t\t88888888\n\n"
         "666666\t666666\t666666\t4444\n1\t1\t999999999\t0000000000\n",
         "4444........333...22...1...333\n999999999...22\n7...........22\n"
         "....................88888888\n\n"
         "666666...666666...666666......4444\n1........1........999999999...0000000000\n"),
    ],
)  # fmt: skip
def test_tabwriter_matches_go(
    minwidth: int, padding: int, padchar: str, src: str, expected: str
) -> None:
    assert tabwrite_text(src, minwidth, padding, padchar) == expected


# -- missing fields and keys are errors where docker makes them errors ----------------------
def strict(text: str, data: Any = INSPECT) -> str:
    return Template(text, missingkey_error=True).execute(data)


@pytest.mark.parametrize(("text", "message"), [
    ("{{.Nope}}", 'template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"'),
    # a chain of fields is one node placed at its second field, as Go's parser makes it
    # (the docker CLI 28 says :1:8 for {{.State.Health.Status}})
    ("x {{.State.Health.Status}}",
     'template: :1:10: executing "" at <.State.Health.Status>: map has no entry for key'
     ' "Health"'),
    ("{{.Config.Entrypoint.X}}",
     'template: :1:9: executing "" at <.Config.Entrypoint.X>: nil pointer evaluating'
     " interface {}.X"),
    ("{{$.State.Nope}}",
     'template: :1:3: executing "" at <$.State.Nope>: map has no entry for key "Nope"'),
])
def test_missingkey_error_refuses_a_missing_key_as_docker_inspect_does(text, message):
    with pytest.raises(InvalidArgument) as e:
        strict(text)
    assert str(e.value) == "template parsing error: " + message


def test_missingkey_error_still_prints_present_keys_and_index_of_missing_keys():
    assert strict('{{.State.Pid}} {{index .Config.Labels "absent"}}|{{.Config.Entrypoint}}'
                  ) == "4242 |<no value>"


LABELLED_ROWS = [{"ID": "abc", "Names": "web", "Labels": "role=db"}]


@pytest.mark.parametrize("fmt", ["{{.Nope}}", "table {{.ID}}\t{{.Nope}}", "{{.ID.Nope}}"])
def test_a_field_the_listing_lacks_is_an_error_naming_dockers_type(fmt):
    with pytest.raises(InvalidArgument) as e:
        render_table(fmt, LABELLED_ROWS, CONTAINER_HEADERS,
                     go_type="*formatter.ContainerContext")
    assert "can't evaluate field Nope in type" in str(e.value)
    assert str(e.value).startswith('template parsing error: template: :1:')
    if fmt == "{{.Nope}}":
        assert str(e.value).endswith(
            "at <.Nope>: can't evaluate field Nope in type *formatter.ContainerContext")


def test_a_field_docker_has_but_the_row_omits_prints_empty():
    out = render_table("{{.ID}}|{{.Platform}}|", LABELLED_ROWS, CONTAINER_HEADERS)
    assert out == "abc||\n"


def test_label_method_reads_the_rows_labels():
    out = render_table('table {{.Names}}\t{{.Label "role"}}\t{{.Label "com.x.tier"}}',
                       LABELLED_ROWS, CONTAINER_HEADERS, labels=[{"role": "db", "com.x.tier": "back"}])
    assert out.splitlines() == ["NAMES     role      tier", "web       db        back"]


def test_label_is_no_field_of_a_listing_without_labels():
    with pytest.raises(InvalidArgument, match="can't evaluate field Label in type"):
        render_table('{{.Label "x"}}', LABELLED_ROWS, CONTAINER_HEADERS)


def test_a_field_given_apart_from_the_headers_gets_its_title():
    out = render_table("table {{.ID}}\t{{.LocalVolumes}}", LABELLED_ROWS, {"ID": "ID"},
                       fields={"LocalVolumes": "LOCAL VOLUMES"})
    assert out.splitlines() == ["ID        LOCAL VOLUMES", "abc       "]


def test_identifiers_may_hold_letters_beyond_ascii_as_in_go() -> None:
    # Go's lexer reads letters and digits of any script in field names, variables and
    # function names; a field like `.Café` ended in an AssertionError ("internal error")
    doc = {"Café": {"Größe": 3}, "Labels": {"名前": "x"}}
    assert Template("{{.Café.Größe}} {{$n := .Café}}{{$n.Größe}} {{.Labels.名前}}").execute(
        doc) == "3 3 x"
    assert Template("{{ 1.5e-7 | json }} {{ 2e-12 | json }} {{ -3e-5 | json }}").execute(
        {}) == "1.5e-7 2e-12 -0.00003"
    with pytest.raises(InvalidArgument, match=r'bad number syntax: "1x"'):
        Template("{{ 1x }}").execute({})


@pytest.mark.parametrize(("template", "reaches"), [
    ("{{.Names}}", False), ("table {{.Names}}\t{{.Status}}", False),
    ("{{.Names}} {{.CreatedAt}}", True), ("{{.}}", True), ("{{ json . }}", True),
    ("{{range $k, $v := .}}{{$k}}{{end}}", True), ("{{index . \"Names\"}}", True),
    ("{{with .Names}}{{.}}{{end}}", True)])  # (the last one errs on the side of yes)
def test_may_reach_says_whether_a_template_can_get_at_a_field(template: str,
                                                              reaches: bool) -> None:
    from ketch.fmt.gotemplate.docker import may_reach

    assert may_reach(template, "CreatedAt") is reaches
