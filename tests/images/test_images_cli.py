"""The command line around images: help everywhere, version, info, system df, error
shapes, and what start-up imports (so `--version` and `images` stay fast)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, ketch_command
from tests.images.conftest import assert_one_line_error, import_files

ISSUE_2_COMMANDS = [
    ["images"], ["image", "ls"], ["image", "list"], ["tag"], ["image", "tag"], ["rmi"],
    ["image", "rm"], ["image", "remove"], ["image", "inspect"], ["history"],
    ["image", "history"], ["image", "prune"], ["save"], ["image", "save"], ["load"],
    ["image", "load"], ["import"], ["image", "import"], ["version"], ["system", "version"],
    ["info"], ["system", "info"], ["system", "df"], ["inspect"],
]


def test_top_level_help_lists_every_image_and_system_command(ketch: KetchCLI) -> None:
    out = ketch("--help").stdout
    assert out == ketch().stdout  # no command at all prints the same help
    listed = set(re.findall(r"^  ([a-z]+) ", out, re.M))
    assert {"images", "tag", "rmi", "save", "load", "import", "history", "version", "info",
            "inspect", "image", "system"} <= listed


@pytest.mark.parametrize("cmd", ISSUE_2_COMMANDS, ids=" ".join)
def test_every_command_has_help(ketch: KetchCLI, cmd: list[str]) -> None:
    proc = ketch(*cmd, "--help")
    assert proc.stderr == ""
    assert proc.stdout.lstrip().startswith("Usage:  ketch ")
    assert "Options:" in proc.stdout and "--help" in proc.stdout


@pytest.mark.parametrize("group", ["image", "system"])
def test_every_group_has_help_listing_its_commands(ketch: KetchCLI, group: str) -> None:
    out = ketch(group, "--help").stdout
    assert out == ketch(group).stdout
    assert f"Usage:  ketch {group} COMMAND" in out
    want = {"image": {"ls", "rm", "tag", "inspect", "history", "prune", "save", "load",
                      "import"},
            "system": {"df", "info", "version"}}[group]
    assert want <= set(re.findall(r"^  ([a-z]+) ", out, re.M))


def test_help_of_images_shows_dockers_flags(ketch: KetchCLI) -> None:
    out = ketch("images", "--help").stdout
    for flag in ("-a, --all", "--digests", "-f, --filter", "--format", "--no-trunc",
                 "-q, --quiet"):
        assert flag in out


def test_unknown_flag_is_a_usage_error(ketch: KetchCLI) -> None:
    proc = ketch("images", "--bogus", check=False)
    assert proc.returncode == 125
    assert "unknown flag" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_command_is_an_error(ketch: KetchCLI) -> None:
    proc = ketch("image", "frobnicate", check=False)
    assert proc.returncode == 1 and "is not a ketch command" in proc.stderr


@pytest.mark.parametrize("cmd", [["image", "inspect"], ["rmi"], ["history"], ["save"],
                                 ["tag", "-", "x:1"]], ids=" ".join)
def test_unknown_image_says_no_such_image_and_exits_1(ketch: KetchCLI, cmd: list[str]) -> None:
    args = [c if c != "-" else "ghost:1" for c in cmd]
    if "ghost:1" not in args:
        args.append("ghost:1")
    env = {"KETCH_ROOT": str(ketch.root)}
    proc = ketch(*args, check=False, env=env)
    assert proc.returncode == 1
    assert "Error: No such image: ghost:1" in proc.stderr
    assert_one_line_error(proc.stderr)


def test_version_prints_client_and_server(ketch: KetchCLI) -> None:
    out = ketch("version").stdout
    assert out.startswith("Client:\n Version:")
    assert "Server: ketch" in out and "API version:" in out
    assert ketch("--version").stdout.startswith("ketch version ")
    assert ketch("-v").stdout == ketch("--version").stdout
    data = json.loads(ketch("version", "--format", "{{json .}}").stdout)
    assert data["Client"]["Version"] == data["Server"]["Version"]


def test_info_counts_images_and_names_the_root(ketch: KetchCLI, busybox: str,
                                               tmp_path: Path) -> None:
    import_files(ketch, tmp_path, {"x": b"1"}, "x:1")
    out = ketch("info").stdout
    assert " Images: 2\n" in out
    assert f" Ketch Root Dir: {ketch.root}" in out
    assert ("\n Plugins:\n  Volume: local\n  Network: bridge host null\n"
            "  Log: journald json-file k8s-file local\n") in out
    init = next(filter(None, map(shutil.which, ("tini-static", "docker-init"))))
    assert f"\n Init Binary: {init}\n" in out
    assert ketch("info", "--format", "{{.Images}} {{.Driver}}").stdout == "2 overlay2\n"


def test_system_df_sums_images_and_marks_used_ones_active(ketch: KetchCLI, busybox: str,
                                                         tmp_path: Path) -> None:
    out = ketch("system", "df").stdout.splitlines()
    assert re.match(r"^TYPE +TOTAL +ACTIVE +SIZE +RECLAIMABLE$", out[0])
    assert re.match(r"^Images +1 +0 +1\.986MB +1\.986MB \(100%\)$", out[1])
    ketch("create", "busybox", "true")
    import_files(ketch, tmp_path, {"x": b"1" * 1000}, "x:1")
    out = ketch("system", "df").stdout.splitlines()
    m = re.match(r"^Images +2 +1 +(\S+) +(\S+) \((\d+)%\)$", out[1])
    assert m, out[1]
    assert int(m.group(3)) < 5  # only the small unused image can be reclaimed
    rows = [json.loads(x) for x in ketch("system", "df", "--format", "json").stdout.split("\n")
            if x]
    assert [r["Type"] for r in rows] == ["Images", "Containers", "Local Volumes",
                                         "Build Cache"]


def test_system_df_verbose_lists_each_image_container_and_volume(ketch: KetchCLI,
                                                                busybox: str) -> None:
    ketch("volume", "create", "dfvol")
    cid = ketch("create", "--name", "dfc", "-v", "dfvol:/data", "busybox", "true").stdout
    out = ketch("system", "df", "-v").stdout
    sections = out.split("\n\n")
    assert sections[0] == "Images space usage:"
    images = sections[1].splitlines()
    assert images[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE",
                                 "SHARED", "SIZE", "UNIQUE", "SIZE", "CONTAINERS"]
    assert images[1].split()[:3] == ["busybox", "latest", busybox[7:19]]
    assert images[1].split()[-1] == "1"
    assert sections[2] == "Containers space usage:"
    row = sections[3].splitlines()[1].split()
    assert (row[0], row[1], row[2], row[-1]) == (cid[:12], "busybox", '"true"', "dfc")
    assert sections[4] == "Local Volumes space usage:"
    assert sections[5].splitlines()[1].split() == ["dfvol", "1", "0B"]
    assert sections[6] == "Build cache usage: 0B"
    again = ketch("system", "df", "--verbose", "--format", "json").stdout
    assert again.split("\n\n")[::2] == sections[::2]  # the listing, not json rows
    ketch("rm", "dfc")


def test_root_flag_chooses_the_state_root(ketch: KetchCLI, busybox: str,
                                          tmp_path: Path) -> None:
    other = tmp_path / "other-root"
    env = dict(os.environ, KETCH_ROOT="/nonexistent-should-not-be-used")
    proc = subprocess.run([*ketch_command(), "--root", str(ketch.root), "images",
                           "-q"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.strip() == busybox[7:19]
    proc = subprocess.run([*ketch_command(), f"--root={other}", "images", "-q"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and proc.stdout == ""


# -- start-up cost --------------------------------------------------------------------------
def _imported_modules(ketch: KetchCLI, *args: str) -> set[str]:
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ketch", *args],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_version_flag_imports_nothing_heavy(ketch: KetchCLI) -> None:
    mods = _imported_modules(ketch, "--version")
    heavy = {"sqlite3", "argparse", "json", "tarfile", "ketch.engine", "ketch.cli.base",
             "ketch.store.db", "ketch.reference", "ketch.fmt.template", "ketch.fmt.gotemplate",
             "dataclasses"}
    assert not mods & heavy, mods & heavy


def test_images_does_not_load_the_container_or_archive_machinery(
        ketch: KetchCLI, busybox: str) -> None:
    mods = _imported_modules(ketch, "images")
    assert "ketch.images.service" in mods
    unwanted = {m for m in mods if m.startswith(("ketch.containers", "ketch.network",
                                                 "ketch.archive", "ketch.runtime",
                                                 "ketch.builder", "tarfile",
                                                 "ketch.fmt.gotemplate", "ketch.fmt.tabwriter"))}
    assert not unwanted, unwanted


def _lean_imports(ketch: KetchCLI, *args: str) -> tuple[str, set[str]]:
    """Stdout and the modules a command imports, started as the installed launcher starts
    it (`-I -S`: nothing from site-packages' .pth files)."""
    import ketch as ketch_pkg

    src = os.path.dirname(os.path.dirname(ketch_pkg.__file__))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ketch.cli.main import main;"
            " sys.exit(main(sys.argv[2:]))")
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    proc = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", code, src,
                           *args], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                         if line.startswith("import time:") and "|" in line}


# What `image inspect` may load of ketch: the image store and its service, nothing of
# containers, networks, archives or the builder (ketch.codebundle: the code bundle's
# writer, imported at exit by a run that found the bundle missing or stale).
IMAGE_INSPECT_KETCH_MODULES = {
    "ketch.codebundle",
    "ketch", "ketch.cli", "ketch.cli.main", "ketch.cli.gcpolicy", "ketch.errors",
    "ketch.cli.flags", "ketch.cli.base", "ketch.fmt", "ketch.fmt.table", "ketch.cli.image",
    "ketch.store", "ketch.store.db", "ketch.engine", "ketch.store.intents", "ketch.procstat",
    "ketch.images",
    "ketch.oci", "ketch.oci.digest", "ketch.oci.media", "ketch.values", "ketch.reference",
    "ketch.fastjson", "ketch.ids", "ketch.store.images", "ketch.images.service",
    "ketch.images.inspect",
    "ketch.store.content", "ketch.layers", "ketch.layers.store", "ketch.fmt.units",
    # the image's config alone, not the other documents of ketch.oci.model
    "ketch.oci.imageconfig", "ketch.fmt.jsonindent",
}


def test_image_inspect_stays_on_the_lean_import_path(ketch: KetchCLI, busybox: str) -> None:
    # `image inspect` is mostly start-up (bench/bench_images.py times it beside docker's)
    stdout, mods = _lean_imports(ketch, "image", "inspect", "busybox")
    doc = json.loads(stdout)[0]
    assert (doc["Id"], doc["RepoTags"]) == (busybox, ["busybox:latest"])
    extra = {m for m in mods if m.startswith("ketch")} - IMAGE_INSPECT_KETCH_MODULES
    assert not extra, sorted(extra)
    heavy = {"json", "typing", "dataclasses", "argparse", "tarfile", "shutil", "subprocess",
             "threading", "ctypes", "copy", "random",
             # pathlib (with fnmatch, re, enum, urllib.parse, ipaddress) and the sqlite3
             # package (whose dbapi2 imports datetime): milliseconds each
             "pathlib", "fnmatch", "re", "enum", "urllib.parse", "ipaddress", "datetime",
             "sqlite3", "sqlite3.dbapi2",
             # functools (collections, operator, types, reprlib behind it) and contextlib:
             # a fifth of the command's instructions, for two decorators
             "functools", "collections", "collections.abc", "contextlib", "operator",
             "types", "reprlib"}
    assert not mods & heavy, sorted(mods & heavy)


def test_history_reads_the_created_times_without_re(ketch: KetchCLI, busybox: str) -> None:
    # the RFC 3339 times of the history are read by hand: `re` (with enum) was a quarter
    # of the command's start-up
    stdout, mods = _lean_imports(ketch, "history", "--format", "{{.CreatedSince}}|{{.Size}}",
                                 "busybox")
    assert stdout.splitlines()[0].endswith(" ago|1.99MB"), stdout
    assert not mods & {"re", "enum", "pathlib", "functools"}, sorted(
        mods & {"re", "enum", "pathlib", "functools"})


@pytest.mark.parametrize(("text", "seconds"), [
    ("2023-11-14T22:13:20Z", 1700000000.0),
    ("2023-11-14T22:13:20.25Z", 1700000000.25),
    ("2023-11-15T00:13:20+02:00", 1700000000.0),
    ("2023-11-14T16:43:20.5-05:30", 1700000000.5),
    # not RFC 3339, or not a real time: missing (the epoch), as before for the first
    # kind; a month 13 ended the command in a ValueError
    ("2023-11-14T22:13:20", 0.0), ("2023-11-14 22:13:20Z", 0.0), ("2023-11-14T22:13:20.Z", 0.0),
    ("2023-11-14T22:13:20+0200", 0.0), ("2023-11-14T22:13:20Z\n", 0.0),
    ("2023-13-14T22:13:20Z", 0.0), ("", 0.0), (None, 0.0)])
def test_created_times_are_read_as_rfc_3339(text: str | None, seconds: float) -> None:
    from ketch.images.service import parse_created

    assert parse_created(text) == seconds


def test_info_and_version_read_the_host_without_platform(ketch: KetchCLI) -> None:
    # os.uname() is what platform's release(), machine() and node() read; platform itself
    # (re, collections) and the runtime driver's module were most of `info`'s start-up
    host = os.uname()
    stdout, mods = _lean_imports(ketch, "info", "--format",
                                 "{{.KernelVersion}}|{{.Architecture}}|{{.Name}}|"
                                 "{{.DockerRootDir}}|{{index .Runtimes \"runc\"}}")
    from shutil import which

    assert stdout == (f"{host.release}|{host.machine}|{host.nodename}|{ketch.root}|"
                      f"map[path:{which('runc')}]\n")
    assert not mods & {"platform", "re", "json", "pathlib", "subprocess",
                       "ketch.runtime.oci"}, sorted(mods & {"platform", "re", "json"})
    stdout, mods = _lean_imports(ketch, "version", "--format", "{{.Server.KernelVersion}}"
                                 " {{.Client.GoVersion}}")
    assert stdout == f"{host.release} python{sys.version.split()[0]}\n"
    assert "platform" not in mods
