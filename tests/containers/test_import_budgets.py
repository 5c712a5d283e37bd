"""What `create`, `rm` and `logs --tail` load at start-up. Each is mostly start-up
(bench/bench_containers.py times them beside docker's), so their paths must not grow
back the imports that made them slower: the ketch modules each may load are listed,
and the heavy standard-library modules it must not load."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

from tests.containers.conftest import wait_for_pid1
from tests.helpers.host import wait_for

import ketch as ketch_pkg

# ketch.codebundle: the code bundle's writer, imported at exit by a run that found the
# bundle missing or stale (the first run after an edit)
CORE = {"ketch", "ketch.cli", "ketch.cli.main", "ketch.cli.gcpolicy", "ketch.errors",
        "ketch.cli.flags", "ketch.cli.base", "ketch.cli.container", "ketch.store",
        "ketch.store.db", "ketch.engine", "ketch.store.intents", "ketch.procstat",
        "ketch.fastjson", "ketch.ids",
        "ketch.values", "ketch.containers", "ketch.containers.records",
        "ketch.containers.service", "ketch.codebundle"}
CREATE = CORE | {
    "ketch.cli.container_opts", "ketch.containers.security", "ketch.containers.restart",
    "ketch.containers.hostconfig", "ketch.containers.logconfig", "ketch.containers.settings",
    "ketch.images", "ketch.oci", "ketch.oci.digest", "ketch.oci.media", "ketch.reference",
    "ketch.store.images", "ketch.images.service", "ketch.store.content", "ketch.layers",
    "ketch.layers.store", "ketch.oci.model", "ketch.oci.imageconfig",
    "ketch.containers.options", "ketch.runtime",
    "ketch.runtime.spec", "ketch.containers.mounts", "ketch.containers.volumes",
    "ketch.containers.names", "ketch.containers.create", "ketch.events"}
LOGS = CORE | {"ketch.fmt", "ketch.fmt.units", "ketch.containers.logconfig", "ketch.runtime",
               "ketch.runtime.logs", "ketch.containers.logs"}
# never on these paths: each costs milliseconds, or pulls in much more
HEAVY = {"json", "typing", "dataclasses", "argparse", "tarfile", "subprocess", "threading",
         "ctypes", "socket", "copy", "random", "shutil", "ketch.containers.lifecycle",
         "ketch.runtime.monitor", "ketch.network.service"}
# Nor these: pathlib brings fnmatch, re (and enum) and urllib.parse (and ipaddress); the
# sqlite3 package's dbapi2 brings datetime (ketch uses the _sqlite3 extension itself);
# functools brings collections, operator, types, reprlib and keyword, and contextlib
# brings functools (ketch.values has the two decorators these paths use, store/db gives
# _sqlite3 the one name it takes from functools).
SLOW_STDLIB = {"pathlib", "fnmatch", "re", "enum", "urllib.parse", "ipaddress", "datetime",
               "sqlite3", "sqlite3.dbapi2", "functools", "collections", "collections.abc",
               "contextlib", "operator", "types", "reprlib"}
PATHLIB_CHAIN = {"pathlib", "fnmatch", "re", "enum", "urllib.parse"}


def importtime(ketch, *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    """`ketch ARGS` started as the installed launcher starts it (`-I -S`), under `-X
    importtime` (its tree on stderr), which must exit with `status`."""
    src = os.path.dirname(os.path.dirname(ketch_pkg.__file__))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ketch.cli.main import main;"
            " sys.exit(main(sys.argv[2:]))")
    env = dict(os.environ, KETCH_ROOT=str(ketch.root), KETCH_RUN_ROOT=str(ketch.root / "run"))
    proc = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", code, src,
                           *args], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == status, proc.stderr
    return proc


def imports(ketch, *args: str) -> tuple[str, set[str]]:
    """Stdout and the modules of `ketch ARGS`."""
    proc = importtime(ketch, *args)
    return proc.stdout, {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                         if line.startswith("import time:") and "|" in line}


def check(mods: set[str], allowed: set[str], heavy: set[str] = HEAVY | SLOW_STDLIB) -> None:
    extra = {m for m in mods if m.startswith("ketch")} - allowed
    assert not extra, sorted(extra)
    assert not mods & heavy, sorted(mods & heavy)


def test_create_stays_on_the_lean_import_path(ketch) -> None:
    out, mods = imports(ketch, "create", "-l", "k=v", "busybox", "true")
    cid = out.strip()
    ketch.ids.add(cid)
    assert ketch("inspect", "-f", "{{.State.Status}} {{.Config.Labels.k}}",
                 cid).stdout.split() == ["created", "v"]
    check(mods, CREATE)
    assert "_sqlite3" in mods  # the binding store/db chose, without the package


def test_create_and_pod_create_publishing_a_port_load_no_re_or_ipaddress(ketch) -> None:
    # the port grammar (network/ports) needs neither for a port without a host address
    out, mods = imports(ketch, "create", "-p", "8080:80", "busybox", "true")
    ketch.ids.add(out.strip())
    assert ketch("inspect", "-f", "{{json .HostConfig.PortBindings}}", out.strip()
                 ).stdout.strip() == '{"80/tcp":[{"HostIp":"","HostPort":"8080"}]}'
    assert not mods & SLOW_STDLIB, sorted(mods & SLOW_STDLIB)
    ketch("pod", "create", "--name", "first")  # (the first one makes the pause image)
    out, mods = imports(ketch, "pod", "create", "--name", "web", "-p", "8081:80")
    assert ketch("pod", "inspect", "-f", "{{.Name}}", "web").stdout.strip() == "web"
    # nor ctypes: the infra's seccomp filter leaves x32 out without asking the kernel
    slow = SLOW_STDLIB | {"ctypes"}
    assert not mods & slow, sorted(mods & slow)
    ketch("pod", "rm", "first", "web")


def test_rm_of_a_created_container_stays_on_the_lean_import_path(ketch) -> None:
    cid = ketch("create", "busybox", "true").stdout.strip()
    ketch.ids.add(cid)
    out, mods = imports(ketch, "rm", cid)
    assert out.strip() == cid
    assert ketch("ps", "-aq", "--no-trunc").stdout.split() == []
    assert not (ketch.root / "containers" / cid).exists()
    check(mods, CORE | {"ketch.events", "ketch.network", "ketch.network.lookup"})


def test_rm_of_an_exited_container_stays_on_the_lean_import_path(ketch, tmp_path) -> None:
    # the exit was finished (`wait`): runtime state, network and overlay are released,
    # and `rm` only forgets the record and deletes the directory (docker's `rm` of an
    # exited container took half the time ketch's did while rm released them again).
    # The directory's deletion removes the container's symlinks, never follows them.
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "keep").write_text("host data\n")
    script = (f"echo hi > /f; ln -s {victim} /escape; mkdir -p /ro/d;"
              f" ln -s {victim}/sub /ro/d/esc; chmod 555 /ro/d /ro")
    cid = ketch("run", "-d", "-p", "80", "busybox", "sh", "-c", script).stdout.strip()
    ketch.ids.add(cid)
    assert ketch("wait", cid).stdout.strip() == "0"
    out, mods = imports(ketch, "rm", cid)
    assert out.strip() == cid
    assert ketch("ps", "-aq", "--no-trunc").stdout.split() == []
    assert not (ketch.root / "containers" / cid).exists()
    assert ketch("network", "inspect", "-f", "{{len .Containers}}", "bridge").stdout == "0\n"
    assert (victim / "sub" / "keep").read_text() == "host data\n"
    # (the log keeper is stopped through ketch.procstat: not the log reader's module)
    check(mods, CORE | {"ketch.events", "ketch.network", "ketch.network.lookup",
                        "ketch.containers.logconfig", "ketch.store.trash",
                        "ketch.mountinfo"})
    assert "signal" not in mods  # its enums (the keeper is stopped through _signal)


def test_rm_of_an_exited_container_that_still_holds_its_network_releases_it(ketch) -> None:
    # a record that says exited while the host still holds the container (a release
    # that failed part-way records the exit all the same): `rm` looks at the host, not
    # only at the record, and releases the runtime's state and the network's sandbox
    from ketch.engine import Engine

    cid = ketch("run", "-d", "-p", "80", "busybox", "sleep", "60").stdout.strip()
    ketch.ids.add(cid)
    with Engine(ketch.root, ketch.root / "run") as engine:
        engine.containers.records.update(cid, state="exited", pid=0)
    assert ketch("network", "inspect", "-f", "{{len .Containers}}", "bridge").stdout == "1\n"
    assert (ketch.root / "run" / "runc" / cid).exists()
    _, mods = imports(ketch, "rm", cid)
    assert "ketch.containers.lifecycle" in mods
    assert ketch("network", "inspect", "-f", "{{len .Containers}}", "bridge").stdout == "0\n"
    assert not (ketch.root / "run" / "runc" / cid).exists()
    assert not (ketch.root / "containers" / cid).exists()


def test_logs_tail_stays_on_the_lean_import_path(ketch) -> None:
    cid = ketch("run", "-d", "busybox", "seq", "1", "5000").stdout.strip()
    ketch.ids.add(cid)
    assert ketch("wait", cid).stdout.strip() == "0"
    out, mods = imports(ketch, "logs", "--tail", "2", cid)
    assert out.split() == ["4999", "5000"]
    check(mods, LOGS)


def test_rm_f_of_a_running_container_loads_no_subprocess(ketch) -> None:
    # the container is killed (a pidfd), runc's state deleted (ketch.runtime.spawn), its
    # veth and namespace removed (netlink); a sandbox without published ports has no
    # rules, so no iptables process (nor `subprocess`, which the firewall's module loads
    # only to run one), no host-port module, and nothing of the monitor's start side
    cid = ketch("run", "-d", "busybox", "sleep", "60").stdout.strip()
    ketch.ids.add(cid)
    out, mods = imports(ketch, "rm", "-f", cid)
    assert out.strip() == cid
    assert ketch("ps", "-aq", "--no-trunc").stdout.split() == []
    assert not (ketch.root / "run" / "runc" / cid).exists()
    assert ketch("network", "inspect", "-f", "{{len .Containers}}", "bridge").stdout == "0\n"
    assert "ketch.containers.lifecycle" in mods  # (a running container: its state machine)
    loaded = mods & {"subprocess", "json", "socket", "signal", "ketch.network.hostports"}
    assert not loaded, sorted(loaded)
    # nor pathlib: a stop finishes the container (its health timer's pid file, its
    # mounts and network) with paths as text
    cid = ketch("run", "-d", "busybox", "sleep", "60").stdout.strip()
    ketch.ids.add(cid)
    out, mods = imports(ketch, "stop", "-t", "0", cid)
    assert ketch("inspect", "-f", "{{.State.Status}}", cid).stdout == "exited\n"
    assert "ketch.containers.lifecycle" in mods
    assert not mods & PATHLIB_CHAIN, sorted(mods & PATHLIB_CHAIN)
    out, mods = imports(ketch, "rm", cid)
    assert not mods & PATHLIB_CHAIN, sorted(mods & PATHLIB_CHAIN)


def test_top_runs_ps_without_subprocess(ketch) -> None:
    # the container's processes from runc's recorded cgroup, the host's `ps` started
    # through ketch.runtime.spawn: no subprocess, signal or enum for a table of processes
    cid = ketch("run", "-d", "busybox", "sleep", "61").stdout.strip()
    ketch.ids.add(cid)
    wait_for_pid1(ketch, cid, "sleep")  # (else `ps` may still show "runc init")
    out, mods = imports(ketch, "top", cid, "-o", "pid,args")
    lines = out.splitlines()
    assert lines[0].split() == ["PID", "COMMAND"]
    assert [line.split(None, 1)[1] for line in lines[1:]] == ["sleep 61"]
    loaded = mods & {"subprocess", "signal", "enum", "json", "pathlib", "ketch.runtime.monitor"}
    assert not loaded, sorted(loaded)


def test_exec_loads_neither_socket_json_nor_shutil(ketch) -> None:
    # conmon's pipes and attach socket through `_socket` (the `socket` module's enums
    # are ~1 ms), the session's process spec through ketch.fastjson, and its directory
    # removed without shutil's walk: ~3.5 ms of an exec's ~30 ms of CPU. Its session's
    # files are named as text (no pathlib, fnmatch, re), and the attached streams'
    # signal handlers are set through `_signal` (no enum)
    cid = ketch("run", "-d", "busybox", "sleep", "60").stdout.strip()
    ketch.ids.add(cid)
    out, mods = imports(ketch, "exec", cid, "sh", "-c", "echo hi; echo err >&2")
    assert out == "hi\n"
    loaded = mods & ({"socket", "json", "shutil", "signal"} | PATHLIB_CHAIN)
    assert not loaded, sorted(loaded)
    # what is left of the ended session is its record, not conmon's directory
    left = os.listdir(ketch.root / "run" / "containers" / cid / "exec")
    assert len(left) == 3 and {n.rsplit(".", 1)[1] for n in left} == {"json", "lock",
                                                                      "started"}


def test_cp_hashes_nothing(ketch, tmp_path) -> None:
    # the tar streams of `cp` are unpacked without a diff ID, so neither side (nor the
    # child in the container's mounts) loads hashlib and OpenSSL's libcrypto (~2.5 ms)
    cid = ketch("run", "-d", "busybox", "sleep", "60").stdout.strip()
    ketch.ids.add(cid)
    (tmp_path / "in.txt").write_text("in\n")
    _, into = imports(ketch, "cp", str(tmp_path / "in.txt"), f"{cid}:/tmp/")
    _, out_of = imports(ketch, "cp", f"{cid}:/tmp/in.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "in\n"
    hashing = (into | out_of) & {"hashlib", "_hashlib"}
    assert not hashing, sorted(hashing)


# `pause` and `unpause` go through the state machine to the runtime's driver, without the
# monitor, the container's mounts and network, or `subprocess` (ketch.runtime.spawn)
PAUSE = CORE | {"ketch.containers.lifecycle", "ketch.runtime", "ketch.runtime.conmonfiles",
                "ketch.runtime.oci", "ketch.runtime.spawn", "ketch.runtime.spec", "ketch.oci",
                "ketch.events"}


def test_pause_and_unpause_stay_on_the_lean_import_path(ketch) -> None:
    cid = ketch("run", "-d", "busybox", "sleep", "60").stdout.strip()
    ketch.ids.add(cid)
    assert (ketch.root / "run" / "runc" / cid / "state.json").exists()
    for verb, status, paused in (("pause", "paused", "true"), ("unpause", "running", "false")):
        out, mods = imports(ketch, verb, cid[:12])
        assert out.strip() == cid[:12]
        assert ketch("inspect", "-f", "{{.State.Status}} {{.State.Paused}}",
                     cid).stdout.split() == [status, paused]
        # the runtime's own view: runc reads the container's freezer
        assert f'"status": "{status}"' in subprocess.run(
            ["runc", "--root", str(ketch.root / "run" / "runc"), "state", cid],
            capture_output=True, text=True, check=True).stdout
        check(mods, PAUSE, (HEAVY - {"ketch.containers.lifecycle"}) | SLOW_STDLIB | {"signal"})
    # a refusal comes from the same lean path: one line, exit 1
    proc = subprocess.run([*ketch.argv("unpause", cid)], capture_output=True, text=True,
                          env=ketch.env(), timeout=60)
    assert (proc.returncode, proc.stderr) == (
        1, f"Error: Container {cid} is not paused\n")


INSPECT = CORE | {"ketch.cli.system", "ketch.containers.inspect", "ketch.oci",
                  "ketch.oci.digest", "ketch.store.images", "ketch.layers",
                  "ketch.layers.store", "ketch.store.content", "ketch.fmt", "ketch.fmt.units",
                  "ketch.containers.logconfig", "ketch.containers.netglue",
                  "ketch.network", "ketch.network.lookup", "ketch.containers.health",
                  "ketch.fmt.jsonindent"}


def test_inspect_of_a_created_container_stays_on_the_lean_import_path(ketch) -> None:
    # what compose and IDEs ask for constantly: no network service (netlink, iptables,
    # ipaddress, socket, subprocess), no image service, no volumes, no pathlib
    cid = ketch("create", "--name", "lean", "busybox", "true").stdout.strip()
    ketch.ids.add(cid)
    bridge = ketch("network", "inspect", "-f", "{{.Id}}", "bridge").stdout.strip()
    for argv in (["inspect", "lean"], ["container", "inspect", "lean"]):
        out, mods = imports(ketch, *argv)
        doc = json.loads(out)[0]
        assert doc["Id"] == cid
        assert doc["State"]["Status"] == "created"
        assert doc["NetworkSettings"]["Networks"]["bridge"]["NetworkID"] == bridge
        assert doc["HostsPath"] == str(ketch.root / "containers" / cid / "hosts")
        allowed = (INSPECT | {"ketch.cli.container"}) - {"ketch.cli.system"} \
            if argv[0] == "container" else INSPECT
        # the network package alone (its names load on use), not its service
        check(mods, allowed)



def _importer(stderr: str, module: str) -> str | None:
    """The module whose import made `module` load, from `-X importtime`'s tree (a child
    is printed before its parent, one level of indentation deeper); None if not loaded."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1]
            rows.append((len(name) - len(name.lstrip()), name.strip()))
    for i, (depth, name) in enumerate(rows):
        if name == module:
            return next((n for d, n in rows[i + 1:] if d < depth), "<top level>")
    return None


def test_the_way_to_a_running_container_loads_no_typing_socket_or_json(ketch) -> None:
    # no module of ketch's on the way to a running container loads `typing` or
    # `dataclasses` for its annotations (ARCHITECTURE.md, start-up policy; `typing`
    # alone was ~2 ms of every `run -d`). The standard library's tomllib, which reads
    # ketch.toml, does load typing. Nor, for a container on the default bridge that
    # publishes nothing, the `socket` module (netlink and conmon's pipes go through
    # `_socket`; its enums were ~6 ms of a `run -d`) or json (config.json is written by
    # ketch.fastjson), also when network.toml changed and its parse is kept again
    # (ketch.tomlfile). Nor subprocess, and with it signal: conmon is started through
    # ketch.runtime.spawn (3.4 ms of a `run -d`). The bridge is made first: the first
    # container of a state root installs its firewall chains, through iptables-restore
    # (whether that was this test's run depended on which tests of the module the worker
    # ran before it).
    ketch("run", "--rm", "busybox", "true")
    os.utime(ketch.root / "network.toml")
    proc = importtime(ketch, "run", "-d", "busybox", "true")
    cid = proc.stdout.strip()
    ketch.ids.add(cid)
    assert ketch("wait", cid).stdout.strip() == "0"
    assert _importer(proc.stderr, "ketch.runtime.monitor") is not None  # it did start one
    assert _importer(proc.stderr, "ketch.network.netlink") is not None  # and its network
    for module in ("typing", "dataclasses", "argparse"):
        importer = _importer(proc.stderr, module)
        assert not (importer or "").startswith("ketch"), (module, importer)
    for module in ("socket", "json", "ketch.network.hostports", "subprocess", "signal"):
        assert _importer(proc.stderr, module) is None, (module, _importer(proc.stderr, module))


def test_run_and_a_pods_members_load_no_pathlib_or_re(ketch) -> None:
    # A container's start keeps its paths as text (ContainerPaths, the services' dirs,
    # the network's namespaces and run files): pathlib and what it brings (fnmatch, re,
    # enum, urllib.parse) were ~7 ms of every `run`. The pod's first member starts its
    # infra, whose start publishes the pod's port (through `_socket`, not `socket`); the
    # second joins the namespaces and builds no network, so no ipaddress either.
    ketch("run", "--rm", "busybox", "true")  # (the bridge and its chains first)
    proc = importtime(ketch, "run", "-d", "busybox", "true")
    ketch.ids.add(proc.stdout.strip())
    assert ketch("wait", proc.stdout.strip()).stdout.strip() == "0"
    mods = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}
    assert "ketch.runtime.monitor" in mods and "ketch.network.netns" in mods
    assert not mods & PATHLIB_CHAIN, sorted(mods & PATHLIB_CHAIN)
    ketch("pod", "create", "--name", "budget-first")  # (the first one makes the pause image)
    ketch("pod", "rm", "budget-first")
    _out, mods = imports(ketch, "pod", "create", "--name", "budget", "-p", "127.0.0.1::80")
    try:
        # (a dotted-quad host address is read without ipaddress, and its functools)
        slow = PATHLIB_CHAIN | {"ipaddress", "functools"}
        assert not mods & slow, sorted(mods & slow)
        # (the second starts no thread: no network plumbing of its own, no health timer)
        for member, not_loaded in (("first", PATHLIB_CHAIN | {"socket"}),
                                   ("second", PATHLIB_CHAIN | {"socket", "ipaddress",
                                                               "threading", "functools",
                                                               "ketch.containers.health"})):
            out, mods = imports(ketch, "run", "-d", "--pod", "budget", "--name",
                                f"budget-{member}", "busybox", "sleep", "60")
            assert "ketch.runtime.monitor" in mods, member
            assert not mods & not_loaded, (member, sorted(mods & not_loaded))
        ps = ketch("ps", "--filter", "pod=budget", "--format",
                   "{{.Names}} {{.State}} {{.Ports}}")
        rows = dict(line.split(" ", 1) for line in ps.stdout.split("\n")[:-1])
        infra = next(name for name in rows if name.endswith("-infra"))
        assert sorted(rows) == sorted([infra, "budget-first", "budget-second"]), rows
        # all three running, the pod's port published on the loopback address
        assert len(set(rows.values())) == 1, rows
        assert re.fullmatch(r"running 127\.0\.0\.1:\d+->80/tcp", rows[infra]), rows
    finally:
        ketch("pod", "rm", "-f", "budget")


def test_a_format_template_loads_neither_inspect_nor_typing(ketch) -> None:
    # `inspect -f` and `ps --format` run Go templates; checking a function's argument
    # count once loaded `inspect` (with ast, dis, tokenize and linecache) and the
    # executor's annotations loaded `typing`: ~6 ms of every such command
    cid = ketch("create", "--name", "fmt1", "busybox", "true").stdout.strip()
    ketch.ids.add(cid)
    for args in (["inspect", "-f", "{{.Name}} {{json .Config.Cmd}} {{len .Args}}", cid],
                 ["ps", "-a", "--format", "{{.Names}} {{.Status}}"]):
        proc = importtime(ketch, *args)
        assert "fmt1" in proc.stdout, proc.stdout
        assert _importer(proc.stderr, "ketch.fmt.gotemplate.exec") is not None
        for module in ("inspect", "ast", "tokenize"):
            assert _importer(proc.stderr, module) is None, (args[0], module)
        # (the standard library's tomllib, which reads the network config, loads typing)
        assert not (_importer(proc.stderr, "typing") or "").startswith("ketch"), args[0]


def test_looking_at_a_running_container_loads_no_monitor_and_still_sees_an_exit(ketch) -> None:
    # `ps`, `inspect` and `logs` ask of each running container whether it has exited
    # (an exit nobody finished yet is finished first). For one that runs, conmon's
    # files answer (ketch.runtime.conmonfiles); the lifecycle and the monitor, ~14 ms of
    # imports, load only for an exit to finish.
    cid = ketch("run", "-d", "busybox", "sh", "-c", "echo up; exec sleep 60").stdout.strip()
    ketch.ids.add(cid)
    wait_for(lambda: ketch("logs", cid).stdout == "up\n", what="the container's output")
    looks = {"ps": ["ps", "--no-trunc", "-q"], "inspect": ["inspect", "-f",
             "{{.State.Status}} {{.ExecIDs}}", cid], "logs": ["logs", cid]}
    seen = {}
    for what, argv in looks.items():
        out, mods = imports(ketch, *argv)
        seen[what] = out
        # (inspect asks the exec module, which loads nothing for a container with no
        # session recorded: the heavy modules below stay out)
        assert not mods & {"ketch.containers.lifecycle", "ketch.runtime.monitor"}, what
        # nor the heavy standard library (the template engine, for inspect -f, loads
        # neither re, functools nor collections: its lexer scans words by hand)
        assert not mods & (HEAVY | SLOW_STDLIB) - {"types"}, (what, mods & (HEAVY | SLOW_STDLIB))
    assert seen == {"ps": f"{cid}\n", "inspect": "running []\n", "logs": "up\n"}
    # its monitor and process killed behind ketch's back: no exit recorded, no conmon;
    # the next look finishes the exit through the monitor
    conmon = int((ketch.root / "run" / "containers" / cid / "conmon.pid").read_text())
    pid = int(ketch("inspect", "-f", "{{.State.Pid}}", cid).stdout)
    os.kill(conmon, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{conmon}/stat")
             or open(f"/proc/{conmon}/stat").read().rsplit(")", 1)[1].split()[0] == "Z",
             what="conmon to die")
    out, mods = imports(ketch, "inspect", "-f", "{{.State.Status}}", cid)
    assert out == "exited\n"
    assert "ketch.containers.lifecycle" in mods
    assert ketch("ps", "-q").stdout == ""


def test_inspect_of_a_name_that_is_nothing_does_not_build_the_network_service(ketch) -> None:
    ketch("network", "create", "lonely")
    nid = ketch("network", "inspect", "-f", "{{.Id}}", "lonely").stdout.strip()
    proc = ketch("inspect", "nosuch", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "[]\n",
                                                           "Error: No such object: nosuch\n")
    assert _importer(importtime(ketch, "inspect", "nosuch", status=1).stderr,
                     "ketch.network.service") is None
    _, mods = imports(ketch, "inspect", "-f", "{{.Name}}", "--type", "network", nid[:5])
    assert "ketch.network.service" in mods  # (a network found is shown by the service)
    proc = importtime(ketch, "network", "inspect", "-f", "{{.Name}}", "lonely", nid[:7],
                      "default", "bridge")
    assert proc.stdout.split() == ["lonely", "lonely", "bridge", "bridge"]
    bad = ketch("network", "inspect", "nosuch", "lone", check=False)
    assert bad.returncode == 1
    assert bad.stderr == "Error: network nosuch not found\nError: network lone not found\n"


def test_network_ls_and_inspect_read_the_tables_without_the_kernel_side(ketch) -> None:
    # the network service builds its firewall, bridges, DNS and host-port parts on first
    # use, and its tables are read without ipaddress, re or json: listing and inspecting
    # took 2.6 times docker's time, two thirds of it those imports
    ketch("network", "create", "--subnet", "10.231.7.0/24", "budgetnet")
    cid = ketch("run", "-d", "--network", "budgetnet", "busybox", "sleep", "60").stdout.strip()
    ketch.ids.add(cid)
    kernel_side = {"ketch.network.firewall", "ketch.network.sandbox", "ketch.network.dns",
                   "ketch.network.hostports", "ketch.network.ipam", "ketch.network.netns",
                   "subprocess", "socket", "ctypes", "ipaddress", "re", "json", "pathlib"}
    out, mods = imports(ketch, "network", "ls", "--format", "{{.Name}} {{.Driver}}")
    assert {"budgetnet bridge", "bridge bridge", "host host", "none null"} <= set(
        out.splitlines())
    assert "ketch.network.service" in mods and not mods & kernel_side, mods & kernel_side
    out, mods = imports(ketch, "network", "inspect", "-f",
                        "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}"
                        " {{len .Containers}}", "budgetnet")
    assert out == "10.231.7.0/24 10.231.7.1 1\n"
    assert not mods & kernel_side, mods & kernel_side


def test_volume_ls_and_inspect_load_no_pathlib(ketch) -> None:
    # (pathlib brings fnmatch, re, enum and urllib.parse: 1.8 times docker's time)
    ketch("volume", "create", "--label", "k=v", "budgetvol")
    out, mods = imports(ketch, "volume", "ls", "--format", "{{.Name}} {{.Driver}}")
    assert "budgetvol local" in out.splitlines()
    assert not mods & {"pathlib", "re", "json", "enum"}, mods & {"pathlib", "re", "json"}
    out, mods = imports(ketch, "volume", "inspect", "-f",
                        "{{.Mountpoint}} {{.Labels.k}}", "budgetvol")
    assert out == f"{ketch.root}/volumes/budgetvol/_data v\n"
    assert not mods & {"pathlib", "re", "json", "enum"}, mods & {"pathlib", "re", "json"}


def test_system_df_and_ps_size_load_no_pathlib(ketch) -> None:
    # the writable layers' and the volumes' sizes are summed over text paths
    cid = ketch("run", "-d", "-v", "dfbudget:/d", "busybox", "sh", "-c",
                "echo data > /d/f; echo more > /x; sleep 60").stdout.strip()
    ketch.ids.add(cid)
    wait_for(lambda: ketch("exec", cid, "cat", "/x").stdout == "more\n", what="the files")
    out, mods = imports(ketch, "system", "df")
    assert out.splitlines()[0].split()[:2] == ["TYPE", "TOTAL"]
    assert not mods & {"pathlib", "re", "fnmatch"}, mods & {"pathlib", "re", "fnmatch"}
    out, mods = imports(ketch, "ps", "-s", "--format", "{{.Size}}")
    assert out.startswith("5B (virtual "), out  # "more\n"
    assert not mods & {"pathlib", "re", "fnmatch"}, mods & {"pathlib", "re", "fnmatch"}


def test_inspect_reads_ended_exec_sessions_without_pathlib_or_the_monitor(ketch) -> None:
    # a detached session's end is recorded when it exits (or by the first look that
    # finds it); later looks read the records as text: the exec module is cheap to load
    cid = ketch("run", "-d", "busybox", "sleep", "60").stdout.strip()
    ketch.ids.add(cid)
    ketch("exec", "-d", cid, "sh", "-c", "sleep 0.3; exit 3")
    assert ketch("inspect", "-f", "{{len .ExecIDs}}", cid).stdout == "1\n"
    wait_for(lambda: ketch("inspect", "-f", "{{.ExecIDs}}", cid).stdout == "[]\n",
             what="the session to end")
    out, mods = imports(ketch, "inspect", "-f", "{{.ExecIDs}}", cid)
    assert out == "[]\n" and "ketch.containers.execs" in mods
    loaded = mods & {"pathlib", "contextlib", "json", "ketch.runtime.monitor"}
    assert not loaded, sorted(loaded)
    (record,) = (ketch.root / "run" / "containers" / cid / "exec").glob("*.json")
    assert json.loads(record.read_text())["ExitCode"] == 3


def test_ps_format_works_out_created_at_only_for_a_template_that_can_reach_it(ketch) -> None:
    # CreatedAt is Go's time format, through datetime: `ps --format '{{.Names}}'` (what
    # scripts run) does not load it; a template that names it, or takes the whole row,
    # gets it as before
    cid = ketch("create", "--name", "fmt-created", "busybox", "true").stdout.strip()
    ketch.ids.add(cid)
    out, mods = imports(ketch, "ps", "-a", "--format", "{{.Names}}")
    assert out == "fmt-created\n" and "datetime" not in mods
    for fmt in ("{{.Names}} {{.CreatedAt}}", "{{json .}}", "json",
                "{{range $k, $v := .}}{{if eq $k \"CreatedAt\"}}{{$v}}{{end}}{{end}}"):
        out = ketch("ps", "-a", "--format", fmt).stdout
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \w+", out), (fmt, out)
