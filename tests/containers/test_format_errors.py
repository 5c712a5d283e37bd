"""`--format` with a field that does not exist is an error (exit 1, docker's one-line
message), never `<no value>`; `ps --format '{{.Label "k"}}'` reads a label."""

from __future__ import annotations

import pytest

PREFIX = 'template parsing error: template: :1:2: executing "" at <.Nope>: '


@pytest.fixture
def objects(ketch):
    """One labelled container and one labelled volume to list and inspect."""
    ketch("create", "--name", "fmt-ctr", "-l", "role=web", "-l", "com.example.tier=front",
          "busybox", "true")
    ketch("volume", "create", "--label", "owner=qa", "fmt-vol")
    yield
    ketch("rm", "-f", "fmt-ctr")
    ketch("volume", "rm", "-f", "fmt-vol")


LISTING = PREFIX  # the docker CLI 28 prints template errors as they are: no "Error:"


@pytest.mark.parametrize(("command", "message"), [
    (["images"], "can't evaluate field Nope in type *formatter.imageContext"),
    (["history", "busybox"], "can't evaluate field Nope in type *image.historyContext"),
    (["network", "ls"], "can't evaluate field Nope in type *network.networkContext"),
    (["volume", "ls"], "can't evaluate field Nope in type *formatter.volumeContext"),
])
def test_unknown_field_in_a_listing_format_is_an_error_with_dockers_message(
        ketch, objects, command, message):
    p = ketch(*command, "--format", "{{.Nope}}", check=False)
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr == LISTING + message + "\n"


@pytest.mark.parametrize(("command", "message"), [
    # the docker CLI 28's inspect: the template's own words (no "Error:"), one empty
    # line out for no output; the raw document's error where there is one, the typed
    # object's for a volume, which has none
    (["inspect", "fmt-ctr"], PREFIX + 'map has no entry for key "Nope"'),
    (["container", "inspect", "fmt-ctr"], PREFIX + 'map has no entry for key "Nope"'),
    (["image", "inspect", "busybox"], PREFIX + 'map has no entry for key "Nope"'),
    (["network", "inspect", "bridge"], PREFIX + 'map has no entry for key "Nope"'),
    (["volume", "inspect", "fmt-vol"], PREFIX + "can't evaluate field Nope in type"
                                                " volume.Volume"),
    (["version"], 'template: version:1:2: executing "version" at <.Nope>: can\'t evaluate'
                  " field Nope in type system.versionInfo"),
    (["info"], 'template: :1:2: executing "" at <.Nope>: can\'t evaluate field Nope in type'
               " system.dockerInfo"),
])
def test_unknown_field_in_an_inspect_format_is_an_error_with_dockers_message(
        ketch, objects, command, message):
    p = ketch(*command, "--format", "{{.Nope}}", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (1, "\n", message + "\n")


def test_inspect_prints_the_items_a_template_works_on(ketch, objects):
    p = ketch("inspect", "--format", "{{.Name}}", "fmt-ctr", "busybox", check=False)
    assert (p.returncode, p.stdout) == (1, "/fmt-ctr\n")
    assert p.stderr == PREFIX.replace("<.Nope>", "<.Name>") + 'map has no entry for key "Name"\n'


def test_a_container_template_sees_dockers_typed_nils(ketch, objects):
    # the typed object: a nil pointer prints <nil>, a nil slice [], an omitted string
    # is empty; selecting through a nil pointer is the raw document's error
    fmt = ("{{.State.Health}}|{{json .State.Health}}|{{if .State.Health}}h{{end}}|"
           "{{.ExecIDs}}|{{json .ExecIDs}}|{{.Config.StopSignal}}|{{.Config.StopTimeout}}|"
           "{{.Config.Entrypoint}}")
    assert ketch("inspect", "--format", fmt, "fmt-ctr").stdout == \
        "<nil>|null||[]|null||<nil>|[]\n"
    p = ketch("inspect", "--format", "{{.State.Health.Status}}", "fmt-ctr", check=False)
    assert (p.returncode, p.stdout) == (1, "\n")
    assert p.stderr == ('template parsing error: template: :1:8: executing "" at'
                        ' <.State.Health.Status>: map has no entry for key "Health"\n')


PS_PREFIX = 'failed to execute template: template: :1:2: executing "" at <.Nope>: '


@pytest.mark.parametrize("listed", [True, False])
def test_ps_checks_its_template_before_listing_with_or_without_containers(
        ketch, request, listed):
    # docker ps runs the template once over an empty container before it lists: an
    # unknown field fails even when there is nothing to list, in that step's words
    if listed:
        request.getfixturevalue("objects")
    p = ketch("ps", "-a", "--format", "{{.Nope}}", check=False)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == PS_PREFIX + "can't evaluate field Nope in type"\
        " *formatter.ContainerContext\n"
    p = ketch("ps", "--format", "{{.ID", check=False)
    assert (p.returncode, p.stderr) == (
        1, "failed to parse template: template: :1: unclosed action\n")


def test_ps_format_reading_size_turns_size_on(ketch, objects):
    p = ketch("ps", "-a", "--format", "{{.Names}}: {{.Size}}")
    assert p.stdout.startswith("fmt-ctr: 0B (virtual ")
    assert p.stdout.endswith("MB)\n")


def test_inspect_of_an_unknown_type_is_refused(ketch, objects):
    p = ketch("inspect", "--type", "bogus", "fmt-ctr", check=False)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == ('unknown type: "bogus": must be one of "container", "image",'
                        ' "network", "volume"\n')  # the docker CLI's own check: no "Error:"
    p = ketch("inspect", "--type", "image", "fmt-ctr", check=False)  # that type's words
    assert (p.returncode, p.stderr) == (1, "Error: No such image: fmt-ctr:latest\n")


def test_inspect_missing_nested_key_is_an_error_not_no_value(ketch, objects):
    p = ketch("inspect", "--format", "{{.State.Health.Status}}", "fmt-ctr", check=False)
    assert p.returncode == 1
    assert "<no value>" not in p.stdout
    assert p.stderr.strip().endswith('map has no entry for key "Health"')


def test_ps_label_method_prints_the_label(ketch, objects):
    p = ketch("ps", "-a", "--format", '{{.Names}} {{.Label "role"}} {{.Label "none"}}|')
    assert p.stdout == "fmt-ctr web |\n"
    p = ketch("ps", "-a", "--format", 'table {{.Names}}\t{{.Label "com.example.tier"}}')
    assert p.stdout.split("\n")[:2] == ["NAMES     tier", "fmt-ctr   front"]


def test_volume_ls_label_method_prints_the_label(ketch, objects):
    p = ketch("volume", "ls", "--format", '{{.Name}} {{.Label "owner"}}')
    assert p.stdout == "fmt-vol qa\n"


def test_inspect_prints_each_item_through_the_template(ketch, objects):
    ketch("volume", "create", "fmt-plain")
    try:
        p = ketch("volume", "inspect", "-f", "{{.Labels.owner}}", "fmt-vol", "fmt-plain",
                  check=False)
        # a volume without the label prints <no value>, as docker volume inspect
        assert (p.returncode, p.stdout, p.stderr) == (0, "qa\n<no value>\n", "")
        p = ketch("volume", "inspect", "-f", "{{.Labels.owner}}", "fmt-vol", "nosuch",
                  "fmt-plain", check=False)
    finally:
        ketch("volume", "rm", "fmt-plain")
    # one that is not there is an error line; the others are still printed
    assert (p.returncode, p.stdout) == (1, "qa\n<no value>\n")
    assert p.stderr == "Error: get nosuch: no such volume\n"


def test_inspect_labels_and_options_are_go_maps_a_missing_key_prints_no_value(ketch, objects):
    # docker's inspect runs the template on its typed object first, where labels and
    # options are Go maps: a key they lack (or a nil map) prints <no value>, not an error
    p = ketch("inspect", "--format", "{{.Config.Labels.role}}|{{.Config.Labels.nope}}|"
              "{{index .Config.Labels \"nope\"}}|{{.State.Pid | printf \"%T\"}}", "fmt-ctr")
    assert p.stdout == "web|<no value>||int\n"
    p = ketch("volume", "inspect", "--format", "{{.Options.x}}|{{json .Options}}|"
              "{{.Options}}|{{len .Options}}|{{.Labels.owner}}", "fmt-vol")
    assert p.stdout == "<no value>|null|map[]|0|qa\n"
    p = ketch("image", "inspect", "--format", "{{.Config.Labels.x}}|{{json .Config.Labels}}",
              "busybox")
    assert p.stdout == "<no value>|null\n"
    # a set's values are Go's struct{}: printed {} (they printed map[])
    ketch("create", "--name", "fmt-set", "--expose", "80", "-v", "/data", "busybox")
    try:
        p = ketch("inspect", "--format", "{{.Config.ExposedPorts}}|{{.Config.Volumes}}|"
                  "{{json .Config.ExposedPorts}}", "fmt-set")
    finally:
        ketch("rm", "-v", "fmt-set")
    assert p.stdout == 'map[80/tcp:{}]|map[/data:{}]|{"80/tcp":{}}\n'


@pytest.mark.parametrize("command", [["inspect", "fmt-ctr"], ["volume", "inspect", "fmt-vol"],
                                     ["version"], ["info"]])
def test_an_inspect_template_that_does_not_parse_exits_64(ketch, objects, command):
    p = ketch(*command, "--format", "{{.ID", check=False)  # as the docker CLI's inspect
    assert (p.returncode, p.stdout) == (64, "")
    name = "version" if command == ["version"] else ""  # docker names version's template
    assert p.stderr == f"template parsing error: template: {name}:1: unclosed action\n"
