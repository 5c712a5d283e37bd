"""`ps` / `container ls`: columns, Docker's status texts, and every flag and filter."""

from __future__ import annotations

import json
import re

import pytest
from tests.containers.conftest import busybox_root

HEADER = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
UP = r"Up (Less than a second|\d+ seconds?)"
EXITED = r"Exited \((\d+)\) (Less than a second|\d+ seconds?) ago"


def columns(line: str) -> list[str]:
    return [c for c in re.split(r"\s{2,}", line.strip()) if c]


def make_three(ketch, sleep: str = "60") -> dict[str, str]:
    """One running, one exited (code 3), one created container."""
    up = ketch("run", "-d", "--name", "up1", "-l", "role=web", "busybox", "sleep", sleep
               ).stdout.strip()
    ketch("run", "--name", "ex1", "-l", "role=job", "busybox", "sh", "-c", "exit 3",
          check=False)
    ex = ketch("container", "inspect", "-f", "{{.Id}}", "ex1").stdout.strip()
    cr = ketch("create", "--name", "cr1", "busybox", "echo", "a long command line here"
               ).stdout.strip()
    return {"up": up, "ex": ex, "cr": cr}


@pytest.fixture
def three(ketch):
    """The three containers, made for this test (its status texts and times are read)."""
    return make_three(ketch)


@pytest.fixture(scope="module")
def three_shared(tmp_path_factory, busybox_tar, container_prereqs):
    """The three containers made once, in a root of their own, for the tests below that
    only read them; they go, and must leave nothing behind, after the last of those."""
    with busybox_root(tmp_path_factory, busybox_tar) as cli:
        yield cli, make_three(cli, sleep="3600")  # running for as long as the module runs


def test_ps_shows_running_containers_in_dockers_columns(ketch, three):
    lines = ketch("ps").stdout.splitlines()
    assert len(lines) == 2
    header = lines[0]
    for title in HEADER:
        assert title in header
    # columns line up with the header, as docker's tabwriter does
    row = lines[1]
    assert row.index(three["up"][:12]) == header.index("CONTAINER ID")
    assert row[header.index("NAMES"):].strip() == "up1"
    cols = columns(row)
    assert cols[0] == three["up"][:12]
    assert cols[1] == "busybox"
    assert cols[2] == '"sleep 60"'
    assert re.fullmatch(r"(Less than a second|\d+ seconds?) ago", cols[3])
    assert re.fullmatch(UP, cols[4])


def test_ps_all_shows_docker_status_texts_newest_first(ketch, three):
    rows = [columns(line) for line in ketch("ps", "-a").stdout.splitlines()[1:]]
    assert [r[-1] for r in rows] == ["cr1", "ex1", "up1"]
    status = {r[-1]: r[4] for r in rows}
    assert status["cr1"] == "Created"
    m = re.fullmatch(EXITED, status["ex1"])
    assert m and m.group(1) == "3"
    assert re.fullmatch(UP, status["up1"])
    # a long command is cut to 20 characters with an ellipsis
    assert rows[0][2] == '"echo \'a long comman…"'


def test_ps_paused_status(ketch, three):
    ketch("pause", "up1")
    status = ketch("ps", "--format", "{{.Status}}").stdout.strip()
    assert re.fullmatch(UP + r" \(Paused\)", status)
    ketch("unpause", "up1")


def test_ps_size(ketch, three):
    ketch("exec", "up1", "sh", "-c", "head -c 5000 /dev/zero > /tmp/five-k")
    lines = ketch("ps", "-s").stdout.splitlines()
    assert lines[0].rstrip().endswith("SIZE")
    # (the busybox image's size as dockerd counts it: 1.99MB)
    assert re.search(r"5kB \(virtual 1\.99MB\)$", lines[1].rstrip()), lines[1]


class TestReadingTheSameThreeContainers:
    """`ps` only reads: these tests share the three containers of `three_shared`
    (`ketch` here is the CLI on their root)."""

    @pytest.fixture
    def ketch(self, three_shared):
        return three_shared[0]

    @pytest.fixture
    def three(self, three_shared):
        return three_shared[1]

    def test_ps_quiet_no_trunc_last_latest(self, ketch, three):
        assert ketch("ps", "-q").stdout.split() == [three["up"][:12]]
        assert ketch("ps", "-aq", "--no-trunc").stdout.split() == [three["cr"], three["ex"],
                                                                   three["up"]]
        assert ketch("ps", "-q", "-n", "2").stdout.split() == [three["cr"][:12],
                                                               three["ex"][:12]]
        assert ketch("ps", "-q", "-l").stdout.split() == [three["cr"][:12]]
        full = ketch("ps", "-a", "--no-trunc").stdout
        # an argument with spaces in single quotes, as dockerd writes the command
        assert '"echo \'a long command line here\'"' in full
        assert three["cr"] in full

    @pytest.mark.parametrize("flt, expect", [
        ("status=exited", ["ex1"]),
        ("status=created", ["cr1"]),
        ("status=running", ["up1"]),
        ("name=1", ["cr1", "ex1", "up1"]),
        ("name=^/?ex", ["ex1"]),
        ("label=role", ["ex1", "up1"]),
        ("label=role=web", ["up1"]),
        ("exited=3", ["ex1"]),
        ("exited=0", []),
        ("ancestor=busybox", ["cr1", "ex1", "up1"]),
        ("ancestor=busybox:latest", ["cr1", "ex1", "up1"]),
    ])
    def test_ps_filters(self, ketch, three, flt, expect):
        names = ketch("ps", "-a", "--filter", flt, "--format", "{{.Names}}").stdout.split()
        assert names == expect

    def test_ps_filter_by_id_prefix(self, ketch, three):
        out = ketch("ps", "-a", "-f", f"id={three['ex'][:6]}", "-q").stdout.split()
        assert out == [three["ex"][:12]]

    def test_ps_filter_unknown_is_an_error(self, ketch, three):
        p = ketch("ps", "--filter", "colour=red", check=False)
        assert p.returncode == 1
        assert p.stderr.strip() == "Error: invalid filter 'colour'"
        # values dockerd refuses (they listed nothing)
        for flt, message in (("status=Running", "invalid filter 'status=Running'"),
                             ("exited=abc", 'strconv.Atoi: parsing "abc": invalid syntax')):
            p = ketch("ps", "-a", "--filter", flt, check=False)
            assert (p.returncode, p.stdout, p.stderr) == (1, "", f"Error: {message}\n")

    def test_ps_format_template_table_and_json(self, ketch, three):
        out = ketch("ps", "--format", "{{.ID}} {{.Names}} {{.State}}").stdout
        assert out == f"{three['up'][:12]} up1 running\n"
        table = ketch("ps", "-a", "--format", "table {{.Names}}\t{{.Image}}").stdout.splitlines()
        assert columns(table[0]) == ["NAMES", "IMAGE"]
        assert [columns(r)[0] for r in table[1:]] == ["cr1", "ex1", "up1"]
        docs = [json.loads(line) for line in ketch("ps", "-a", "--format", "json"
                                                   ).stdout.splitlines()]
        assert {d["Names"] for d in docs} == {"cr1", "ex1", "up1"}
        assert {"ID", "Image", "Command", "Status", "State", "Labels"} <= set(docs[0])
        # {{json .}} is what `--format json` is, as in the docker CLI
        again = [json.loads(line) for line in ketch("ps", "-a", "--format", "{{json .}}"
                                                    ).stdout.splitlines()]
        assert [list(d) for d in again] == [list(d) for d in docs]

    def test_container_ls_and_list_are_ps(self, ketch, three):
        assert ketch("container", "ls", "-q").stdout == ketch("ps", "-q").stdout
        assert ketch("container", "list", "-aq").stdout == ketch("container", "ps", "-aq").stdout


def test_ps_of_created_and_exited_containers_stays_on_the_lean_import_path(ketch):
    # `ps` is mostly start-up: its path must not grow back the heavy imports that made
    # it slower than docker's (bench/bench_containers.py measures the time itself).
    import os
    import subprocess
    import sys

    import ketch as ketch_pkg

    cid = ketch("create", "--name", "lean1", "-l", "k=v", "busybox", "true").stdout.strip()
    ketch.ids.add(cid)
    src = os.path.dirname(os.path.dirname(ketch_pkg.__file__))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ketch.cli.main import main;"
            " sys.exit(main(['ps', '-a', '--no-trunc']))")
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    proc = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", code, src],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert cid in proc.stdout and "lean1" in proc.stdout
    mods = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}
    assert {"ketch.containers.records", "_sqlite3"} <= mods
    # the SQLite extension alone: the sqlite3 package's dbapi2 imports datetime
    heavy = {"argparse", "re", "json", "pathlib", "threading", "typing", "dataclasses",
             "enum", "shlex", "ketch.runtime", "ketch.network", "ketch.fmt.gotemplate",
             "ketch.fmt.tabwriter", "sqlite3", "sqlite3.dbapi2", "datetime", "functools",
             "collections", "contextlib", "operator"}
    assert not mods & heavy, sorted(mods & heavy)


def test_ps_name_filter_is_a_regular_expression_and_a_bad_one_matches_nothing(ketch):
    """dockerd's filters.Args.Match: a value that is no valid expression matches only
    a name equal to it (`docker ps -f name=[` lists nothing, exit 0; ketch refused it)."""
    cid = ketch("create", "--name", "web-1", "busybox").stdout.strip()
    ketch.ids.add(cid)
    assert ketch("ps", "-aq", "--filter", "name=^w.b-[0-9]$").stdout.strip() == cid[:12]
    assert ketch("ps", "-aq", "--filter", "name=^eb").stdout == ""
    bad = ketch("ps", "-a", "--filter", "name=[", check=False)
    assert (bad.returncode, bad.stderr) == (0, "")
    assert bad.stdout.splitlines() == [
        "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES"]


@pytest.fixture
def connected(ketch, run_d, tmp_path):
    """Three running containers: `pub` on a network of its own with a named volume, a
    published and an exposed port; `bind` with a bind mount; `plain` with nothing."""
    ketch("network", "create", "psnet")
    run_d("--name", "pub", "--network", "psnet", "-v", "psvol:/data", "-p", "127.0.0.1::80",
          "--expose", "90", "busybox", "sleep", "60")
    run_d("--name", "bind", "-v", f"{tmp_path}:/hosttmp", "busybox", "sleep", "60")
    run_d("--name", "plain", "busybox", "sleep", "60")
    port = ketch("port", "pub", "80").stdout.strip().rsplit(":", 1)[1]
    yield port
    ketch("rm", "-f", "pub", "bind", "plain")
    ketch("network", "rm", "psnet")
    ketch("volume", "rm", "psvol")


def test_ps_network_volume_publish_expose_and_is_task_filters(ketch, connected, tmp_path):
    # dockerd's meanings: network by name or ID prefix, volume by name, bind source or
    # destination, publish a host port, expose a container port (tcp unless said)
    net_id = ketch("network", "inspect", "-f", "{{.Id}}", "psnet").stdout.strip()
    port = int(connected)
    cases = {
        "network=psnet": ["pub"], f"network={net_id[:10]}": ["pub"],
        "network=bridge": ["bind", "plain"], "volume=psvol": ["pub"], "volume=/data": ["pub"],
        f"volume={tmp_path}": ["bind"], "volume=/hosttmp": ["bind"], "volume=nope": [],
        f"publish={port}": ["pub"], "publish=80": [], f"publish={port}/udp": [],
        f"publish={port - 1}-{port + 1}": ["pub"], "expose=80": ["pub"], "expose=90": ["pub"],
        "expose=85-95/tcp": ["pub"], "expose=90/udp": [], "is-task=true": [],
        "is-task=false": ["bind", "plain", "pub"],
    }
    for flt, names in cases.items():
        got = ketch("ps", "--filter", flt, "--format", "{{.Names}}").stdout.split()
        assert sorted(got) == names, flt
    p = ketch("ps", "--filter", "publish=abc", check=False)
    assert (p.returncode, p.stderr) == (1, "Error: error while looking up for publish abc:"
                                           ' strconv.ParseUint: parsing "abc": invalid syntax\n')


def test_ps_ports_mounts_created_at_and_json_as_docker(ketch, connected, tmp_path):
    out = ketch("ps", "--filter", "name=pub", "--format", "{{.Ports}}|{{.Mounts}}").stdout
    assert out == f"90/tcp, 127.0.0.1:{connected}->80/tcp|psvol\n"
    mounts = ketch("ps", "--filter", "name=bind", "--format", "{{.Mounts}}").stdout.strip()
    assert mounts == (str(tmp_path) if len(str(tmp_path)) <= 15 else str(tmp_path)[:14] + "…")
    created = ketch("ps", "--filter", "name=plain", "--format", "{{.CreatedAt}}").stdout
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+\n", created)
    doc = json.loads(ketch("ps", "--filter", "name=pub", "--format", "json").stdout)
    assert list(doc) == sorted(["Command", "CreatedAt", "ID", "Image", "Labels",
                                "LocalVolumes", "Mounts", "Names", "Networks", "Platform",
                                "Ports", "RunningFor", "Size", "State", "Status"])
    assert (doc["LocalVolumes"], doc["Size"], doc["Networks"]) == ("1", "0B", "psnet")
    # a container that does not run has no ports, as dockerd lists it
    ketch("stop", "-t", "0", "pub")
    assert ketch("ps", "-a", "--filter", "name=pub", "--format", "[{{.Ports}}]").stdout \
        == "[]\n"
