"""`ketch events`: the journal every ketch process writes (the CLI, the monitor's exit
command), read back with Docker's plain lines, JSON and templates, --since/--until and
filters, followed live, and kept to a bounded size."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.conftest import ketch_command
from tests.containers.conftest import TrackingCLI
from tests.helpers.host import interruptible, wait_for

JSON_KEYS = ["status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano"]


def mark() -> str:
    """Now, as Unix seconds with nanoseconds (what the docker CLI sends for --since)."""
    ns = time.time_ns()
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def tag_concurrently(ketch: TrackingCLI, names: list[str], env: dict[str, str]) -> None:
    """`tag busybox NAME` for each name, four processes at a time."""
    ketch_command()  # the launcher is rendered once, before the threads want it
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: ketch("tag", "busybox", n, env=env), names))


def actions(ketch: TrackingCLI, since: str, *filters: str) -> list[str]:
    args = ["events", "--since", since, "--until", mark(), "--format", "{{.Action}}"]
    for f in filters:
        args += ["--filter", f]
    return ketch(*args, timeout=30).stdout.split("\n")[:-1]


def test_run_rm_journals_create_attach_start_die_destroy_in_order(ketch: TrackingCLI) -> None:
    t0 = mark()
    proc = ketch("run", "--rm", "--name", "ev-run", "-l", "team=blue", "busybox",
                 "sh", "-c", "exit 3", check=False)
    assert proc.returncode == 3, proc.stderr
    assert actions(ketch, t0, "container=ev-run") == [
        "create", "attach", "start", "die", "destroy"]
    lines = ketch("events", "--since", t0, "--until", mark(), "--filter", "event=die",
                  "--filter", "type=container").stdout.splitlines()
    assert len(lines) == 1
    # Docker's plain line: RFC 3339 with nanoseconds, type, action, ID, sorted attributes
    stamp, kind, action, cid, attrs = lines[0].split(" ", 4)
    assert len(stamp) == len("2026-12-03T16:00:00.000000000Z") and stamp.endswith("Z")
    assert (kind, action, len(cid)) == ("container", "die", 64)
    assert attrs == "(exitCode=3, image=busybox, name=ev-run, team=blue)"


def test_events_json_has_dockerds_shape(ketch: TrackingCLI) -> None:
    t0 = mark()
    cid = ketch("create", "--name", "ev-json", "busybox", "true").stdout.strip()
    ketch.ids.add(cid)
    out = ketch("events", "--since", t0, "--until", mark(), "--filter", "container=ev-json",
                "--format", "{{json .}}").stdout.splitlines()
    assert len(out) == 1
    ev = json.loads(out[0])
    assert list(ev) == JSON_KEYS
    assert ev["status"] == ev["Action"] == "create"
    assert ev["id"] == ev["Actor"]["ID"] == cid
    assert ev["from"] == "busybox" and ev["scope"] == "local"
    assert ev["Actor"]["Attributes"] == {"image": "busybox", "name": "ev-json"}
    assert ev["time"] == ev["timeNano"] // 1_000_000_000
    # Go template fields by their Go names
    line = ketch("events", "--since", t0, "--until", mark(), "--filter", "container=ev-json",
                 "--format", "{{.Type}} {{.Status}} {{.Actor.Attributes.name}} {{.From}}"
                 ).stdout
    assert line == "container create ev-json busybox\n"


def test_stop_journals_kill_die_stop_with_signal_and_exit_code(ketch: TrackingCLI,
                                                               run_d) -> None:
    t0 = mark()
    run_d("--name", "ev-stop", "busybox", "sleep", "100")
    ketch("stop", "-t", "0", "ev-stop")
    ketch("rm", "ev-stop")
    lines = ketch("events", "--since", t0, "--until", mark(), "--filter", "container=ev-stop",
                  "--format", "{{.Action}} {{.Actor.Attributes.signal}}"
                  " {{.Actor.Attributes.exitCode}}").stdout.splitlines()
    assert lines == ["create <no value> <no value>", "start <no value> <no value>",
                     "kill 9 <no value>", "die <no value> 137", "stop <no value> <no value>",
                     "destroy <no value> <no value>"]


def test_filters_select_by_type_event_image_label_and_name_prefix(ketch: TrackingCLI) -> None:
    t0 = mark()
    ketch("tag", "busybox", "ev-img:1")
    a = ketch("create", "--name", "ev-flt-a", "-l", "tier=web", "busybox").stdout.strip()
    b = ketch("create", "--name", "ev-flt-b", "busybox").stdout.strip()
    ketch.ids.update({a, b})
    ketch("rmi", "ev-img:1")
    assert actions(ketch, t0, "type=image") == ["tag", "untag"]
    assert actions(ketch, t0, "image=ev-img") == ["tag", "untag"]
    ids = ketch("events", "--since", t0, "--until", mark(), "--filter", "event=create",
                "--format", "{{.ID}}").stdout.split()
    assert ids == [a, b]
    assert ketch("events", "--since", t0, "--until", mark(), "--filter", "label=tier=web",
                 "--format", "{{.ID}}").stdout.split() == [a]
    # several values of one key: either; different keys: both
    assert ketch("events", "--since", t0, "--until", mark(), "--filter", "container=ev-flt-b",
                 "--filter", f"container={a[:12]}", "--filter", "type=container",
                 "--format", "{{.Actor.Attributes.name}}").stdout.split() == [
                     "ev-flt-a", "ev-flt-b"]
    assert actions(ketch, t0, "container=ev-flt", "type=image") == []


def test_since_and_until_take_rfc3339_unix_seconds_and_durations(ketch: TrackingCLI) -> None:
    a = ketch("create", "--name", "ev-t-a", "busybox").stdout.strip()
    ketch.ids.add(a)
    time.sleep(0.05)
    t1 = time.time()
    b = ketch("create", "--name", "ev-t-b", "busybox").stdout.strip()
    ketch.ids.add(b)
    t2 = time.time()
    rfc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t1)) + f".{int(t1 % 1 * 1e6):06d}Z"
    for since, until in ((f"{t1:.6f}", f"{t2:.6f}"), (rfc, f"{t2:.6f}")):
        got = ketch("events", "--since", since, "--until", until, "--filter",
                    "container=ev-t-", "--format", "{{.Actor.Attributes.name}}").stdout
        assert got == "ev-t-b\n", (since, until)
    got = ketch("events", "--since", "10m", "--until", "0s", "--filter", "container=ev-t-",
                "--format", "{{.Actor.Attributes.name}}").stdout.split()
    assert got == ["ev-t-a", "ev-t-b"]
    # --until alone reaches back as far as the journal does, as dockerd's buffered
    # events (it listed nothing)
    got = ketch("events", "--until", "0s", "--filter", "container=ev-t-",
                "--format", "{{.Actor.Attributes.name}}").stdout.split()
    assert got == ["ev-t-a", "ev-t-b"]


def test_bad_since_and_unknown_filters_are_one_line_errors(ketch: TrackingCLI) -> None:
    for args, message in ((["--since", "yesterday"], "yesterday"),
                          (["--filter", "colour=red"], "invalid filter 'colour'"),
                          (["--filter", "type=boat"], "unknown event type: boat"),
                          (["--filter", "nonsense"], "bad format of filter")):
        proc = ketch("events", "--until", "0s", *args, check=False, timeout=30)
        assert proc.returncode != 0 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_format_that_fails_on_a_message_exits_64_before_any_event(ketch: TrackingCLI
                                                                     ) -> None:
    # as docker events: tried on an empty message first, whether any event comes or not
    for fmt, message in (("{{.Bogus}}", 'template: :1:2: executing "" at <.Bogus>: can\'t'
                                        " evaluate field Bogus in type *events.Message"),
                         ("{{.status}}", 'template: :1:2: executing "" at <.status>: can\'t'
                                         " evaluate field status in type *events.Message"),
                         ("{{.Action", "template: :1: unclosed action")):
        p = ketch("events", "--until", "0s", "--filter", "container=ev-none", "--format",
                  fmt, check=False, timeout=30)
        assert (p.returncode, p.stdout) == (64, ""), fmt
        assert p.stderr == f"Error parsing format: {message}\n"  # the docker CLI 28's words


def test_events_follows_until_interrupted_and_exits_130_quietly(ketch: TrackingCLI) -> None:
    """Ctrl-C ends the stream with no message and status 130, as the docker CLI 28's
    `docker events` (measured beside dockerd 20.10 on this kind of host)."""
    follower = subprocess.Popen(
        ketch.argv("events", "--filter", "container=ev-follow", "--format",
                   "{{.Action}}"), env=ketch.env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    try:
        time.sleep(1.0)  # it is reading the journal's end by now
        cid = ketch("create", "--name", "ev-follow", "busybox").stdout.strip()
        ketch.ids.add(cid)
        assert follower.stdout is not None
        assert follower.stdout.readline() == "create\n"
        ketch("rm", "ev-follow")
        assert follower.stdout.readline() == "destroy\n"
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 130
        assert follower.stderr is not None and follower.stderr.read() == ""
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_until_in_the_future_follows_until_then(ketch: TrackingCLI) -> None:
    start = time.monotonic()
    proc = subprocess.Popen(ketch.argv("events", "--until", f"{time.time() + 2:.3f}",
                                       "--filter", "container=ev-until", "--format",
                                       "{{.Action}}"),
                            env=ketch.env(), stdout=subprocess.PIPE, text=True)
    time.sleep(0.8)
    ketch.ids.add(ketch("create", "--name", "ev-until", "busybox").stdout.strip())
    out, _ = proc.communicate(timeout=15)
    assert out == "create\n"
    assert 1.5 < time.monotonic() - start < 10


def test_container_killed_while_nothing_listens_still_has_its_die(ketch: TrackingCLI,
                                                                   run_d) -> None:
    t0 = mark()
    cid = run_d("--name", "ev-killed", "busybox", "sleep", "100")
    pid = int(ketch("inspect", "-f", "{{.State.Pid}}", cid).stdout)
    os.kill(pid, signal.SIGKILL)  # from outside: no ketch command sees it happen
    # `events` only reads the journal: the die comes from the monitor's exit command
    found: list[str] = []

    def died() -> bool:
        found[:] = ketch("events", "--since", t0, "--until", mark(), "--filter",
                         "event=die", "--filter", f"container={cid}", "--format",
                         "{{.Actor.Attributes.exitCode}}").stdout.split()
        return bool(found)

    wait_for(died, timeout=20, what="the die event of a container killed from outside")
    assert found == ["137"]
    # and nothing journals it twice once a command looks at the container
    assert ketch("inspect", "-f", "{{.State.ExitCode}}", cid).stdout.strip() == "137"
    assert actions(ketch, t0, "event=die", f"container={cid}") == ["die"]


def test_journal_stays_bounded_and_whole_under_concurrent_writers(ketch: TrackingCLI) -> None:
    limit = 4096
    env = {"KETCH_EVENTS_MAX_BYTES": str(limit)}
    t0 = mark()
    names = [f"ev-bound-{i}:v" for i in range(24)]
    tag_concurrently(ketch, names, env)  # ~8 KB of tag events, four writers at a time
    ketch("rmi", *names[:10], env=env)  # then ~3 KB from one process
    folder = Path(ketch.root) / "events"
    files = sorted(p.name for p in folder.iterdir() if p.name.startswith("events.log"))
    assert files == ["events.log", "events.log.1"]
    sizes = [(folder / f).stat().st_size for f in files]
    # a writer that opened the file just before another rotated it adds its one line
    assert all(s <= limit + 512 for s in sizes), sizes
    for f in files:  # no torn or interleaved line
        for line in (folder / f).read_text().splitlines():
            assert json.loads(line)["scope"] == "local"
    kept = actions(ketch, t0, "type=image")
    # the newest events are all there (at least `limit` bytes of them are always kept),
    # the oldest went with the rotations
    assert kept[-10:] == ["untag"] * 10
    assert 10 < len(kept) < 34
    ketch("rmi", *names[10:])


def test_a_follower_reads_across_rotations_without_losing_events(ketch: TrackingCLI) -> None:
    env = {"KETCH_EVENTS_MAX_BYTES": "4096"}
    names = [f"ev-rot-{i}:v" for i in range(16)]
    tag_concurrently(ketch, names, env)
    follower = subprocess.Popen(
        ketch.argv("events", "--filter", "event=untag", "--format",
                   "{{.Actor.Attributes.name}}"),
        env=ketch.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible)
    got: list[str] = []
    threading.Thread(target=lambda: got.extend(follower.stdout or ()), daemon=True).start()
    try:
        time.sleep(1.0)
        ketch("rmi", *names, env=env)  # ~5 KB of events from one process: rotations
        wait_for(lambda: len(got) >= len(names), timeout=15, what="every untag event")
        assert [line.strip() for line in got] == names  # all, in the order rmi made them
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            follower.wait(timeout=10)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait()


@pytest.mark.parametrize("fmt", ["json", "{{json .}}"])
def test_json_format_spellings_print_one_object_per_line(ketch: TrackingCLI, fmt: str) -> None:
    t0 = mark()
    ketch("tag", "busybox", "ev-fmt:1")
    ketch("rmi", "ev-fmt:1")
    out = ketch("events", "--since", t0, "--until", mark(), "--filter", "image=ev-fmt",
                "--format", fmt).stdout.splitlines()
    assert [json.loads(x)["Action"] for x in out] == ["tag", "untag"]
    assert json.loads(out[0])["Actor"]["Attributes"]["name"] == "ev-fmt:1"


def test_rename_pause_unpause_restart_and_exec_are_journaled(ketch: TrackingCLI,
                                                              run_d) -> None:
    t0 = mark()
    run_d("--name", "ev-life", "busybox", "sleep", "100")
    ketch("rename", "ev-life", "ev-life2")
    ketch("pause", "ev-life2")
    ketch("unpause", "ev-life2")
    assert ketch("exec", "ev-life2", "sh", "-c", "exit 4", check=False).returncode == 4
    ketch("restart", "-t", "0", "ev-life2")
    lines = ketch("events", "--since", t0, "--until", mark(), "--filter", "type=container",
                  "--filter", "container=ev-life", "--format",
                  "{{.Action}}|{{.Actor.Attributes.name}}").stdout.splitlines()
    # the name filter matches the name at the time of each event (a prefix matches both)
    assert [x.split("|")[0] for x in lines] == [
        "create", "start", "rename", "pause", "unpause", "exec_create: sh -c exit 4",
        "exec_start: sh -c exit 4", "exec_die", "kill", "die", "stop", "start", "restart"]
    assert lines[2] == "rename|ev-life2" and lines[1] == "start|ev-life"
    old = ketch("events", "--since", t0, "--until", mark(), "--filter", "event=rename",
                "--filter", "container=ev-life2", "--format",
                "{{.Actor.Attributes.oldName}}").stdout
    assert old == "/ev-life\n"
    code = ketch("events", "--since", t0, "--until", mark(), "--filter", "event=exec_die",
                 "--filter", "container=ev-life2", "--format",
                 "{{.Actor.Attributes.exitCode}}").stdout
    assert code == "4\n"
    # dockerd matches exec_start without its command as a prefix
    assert actions(ketch, t0, "event=exec_start", "container=ev-life2") == [
        "exec_start: sh -c exit 4"]


def test_update_cp_and_export_are_journaled_as_dockerd_journals_them(
        ketch: TrackingCLI, run_d, tmp_path: Path) -> None:
    """dockerd's update, archive-path (a copy out), extract-to-dir (a copy in) and export
    events; a copy that fails and a stat journal nothing."""
    t0 = mark()
    run_d("--name", "ev-files", "busybox", "sleep", "100")
    ketch("update", "--memory", "64m", "ev-files")
    ketch("cp", "ev-files:/etc/hostname", str(tmp_path / "hostname"))
    ketch("cp", str(tmp_path / "hostname"), "ev-files:/tmp/")
    assert ketch("cp", "ev-files:/nowhere", str(tmp_path), check=False).returncode == 1
    ketch("export", "-o", str(tmp_path / "fs.tar"), "ev-files")
    assert (tmp_path / "fs.tar").stat().st_size > 1_000_000
    assert actions(ketch, t0, "container=ev-files") == [
        "create", "start", "update", "archive-path", "extract-to-dir", "export"]


def test_a_detached_exec_journals_its_exec_die_once_when_it_ends(ketch: TrackingCLI,
                                                                  run_d) -> None:
    # as dockerd: the end of `exec -d` is journaled when the process exits, with no
    # command or look waiting for it (the monitor's exit command records it); a later
    # look at the session finds it recorded and journals nothing more
    from ketch.engine import Engine

    t0 = mark()
    run_d("--name", "ev-dx", "busybox", "sleep", "100")
    assert ketch("exec", "-d", "ev-dx", "sh", "-c", "sleep 0.2; exit 3").stdout == ""

    def ends() -> list[str]:
        return ketch("events", "--since", t0, "--until", mark(), "--filter",
                     "event=exec_die", "--format",
                     "{{.Actor.Attributes.exitCode}} {{.Actor.Attributes.execID}}"
                     ).stdout.splitlines()

    wait_for(ends, what="the detached session's exec_die")
    (code, eid), = (line.split() for line in ends())
    assert code == "3"
    with Engine(ketch.root, ketch.root / "run") as engine:
        doc = engine.containers.exec_inspect(eid)
    assert (doc["Running"], doc["ExitCode"]) == (False, 3)
    # the monitor's command run again (or for a session long gone) records nothing more
    assert ketch("container", "cleanup", "--exec", eid, "ev-dx").returncode == 0
    assert ketch("container", "cleanup", "--exec", "0" * 64, "ev-dx").returncode == 0
    assert ends() == [f"3 {eid}"]


def test_network_and_volume_events(ketch: TrackingCLI) -> None:
    t0 = mark()
    ketch("network", "create", "ev-net")
    ketch("volume", "create", "ev-vol")
    try:
        proc = ketch("run", "--rm", "--network", "ev-net", "-v", "ev-vol:/data", "busybox",
                     "true")
        assert proc.returncode == 0
    finally:
        ketch("network", "rm", "ev-net")
        ketch("volume", "rm", "ev-vol")
    net = ketch("events", "--since", t0, "--until", mark(), "--filter", "network=ev-net",
                "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"
                ).stdout.splitlines()
    assert net == ["network create ev-net", "network connect ev-net",
                   "network disconnect ev-net", "network destroy ev-net"]
    vol = ketch("events", "--since", t0, "--until", mark(), "--filter", "volume=ev-vol",
                "--format", "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.destination}}"
                ).stdout.splitlines()
    assert vol == ["create ev-vol <no value>", "mount ev-vol /data",
                   "unmount ev-vol <no value>", "destroy ev-vol <no value>"]


def test_commit_import_and_build_journal_their_tags_and_load_does_not(
        ketch: TrackingCLI, tmp_path: Path, busybox_tar: Path) -> None:
    # dockerd's image events, checked against dockerd 20.10: import and commit say
    # "tag" for the name they give, a build for each -t, and load only "load"
    since = mark()
    ketch("import", str(busybox_tar), "ev-import:1")
    cid = ketch("create", "busybox", "true").stdout.strip()
    ketch("commit", cid, "ev-commit:1")
    ketch("rm", cid)
    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL ev=1\n")
    ketch("build", "-q", "-t", "ev-build:1", str(tmp_path))
    ketch("save", "-o", str(tmp_path / "s.tar"), "ev-build:1")
    ketch("rmi", "ev-build:1")
    ketch("load", "-i", str(tmp_path / "s.tar"))
    try:
        fmt = "{{.Action}} {{.Actor.Attributes.name}}"
        out = ketch("events", "--since", since, "--until", mark(), "--filter", "type=image",
                    "--format", fmt).stdout.splitlines()
    finally:
        ketch("rmi", "ev-import:1", "ev-commit:1", "ev-build:1")
    assert [line for line in out if line.startswith(("tag", "load"))] == [
        "tag ev-import:1", "tag ev-commit:1", "tag ev-build:1", "load ev-build:1"]


def test_bad_since_and_until_are_the_clis_own_errors_in_its_words(ketch: TrackingCLI) -> None:
    # the docker CLI parses --since/--until itself: its message alone (no "Error:"),
    # exit 1, and Go's words for a field out of range
    for args, message in (
            (["--since", "10x", "--until", "0s"],
             'failed to parse value as time or duration: "10x"'),
            (["--since", "1h", "--until", "5y"],
             'failed to parse value as time or duration: "5y"'),
            (["--since", "2024-13-01", "--until", "0s"],
             'parsing time "2024-13-01": month out of range'),
            (["--since", "2024-02-30T10:00:00Z", "--until", "0s"],
             'parsing time "2024-02-30T10:00:00Z": day out of range')):
        proc = ketch("events", *args, check=False, timeout=30)
        assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", message + "\n")


def test_top_is_journaled_as_dockerd_journals_it(ketch: TrackingCLI, run_d) -> None:
    t0 = mark()
    run_d("--name", "ev-top", "busybox", "sleep", "100")
    ketch("top", "ev-top")
    assert ketch("top", "ev-top", "--bogus", check=False).returncode == 1  # (no answer)
    assert actions(ketch, t0, "container=ev-top") == ["create", "start", "top"]
