"""Terminals and processes: `run -it` through a pseudo-terminal, `exec`, `attach`,
`top` and `stats`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pexpect
import pytest
from tests.helpers.host import interruptible, wait_for

PROMPT = r"[#$] "


def spawn(ketch, *args: str) -> pexpect.spawn:
    return pexpect.spawn(ketch.argv(*args)[0], ketch.argv(*args)[1:], env=ketch.env(),
                         timeout=30, encoding="utf-8", dimensions=(40, 100))


# -- run -it ----------------------------------------------------------------------------
def test_run_it_drives_a_shell_through_a_pseudo_terminal(ketch, tmp_path):
    cidfile = tmp_path / "cid"
    child = spawn(ketch, "run", "-it", "--cidfile", str(cidfile), "--name", "tty1",
                  "busybox", "sh")
    try:
        child.expect(PROMPT)
        child.sendline("echo $((6*7)); tty")
        child.expect("42")
        child.expect("/dev/pts/")
        child.sendline("stty size")
        child.expect("40 100")
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
    finally:
        child.close()
        ketch.note_cidfile(cidfile)
    assert child.exitstatus == 5
    assert ketch("container", "inspect", "-f", "{{.State.ExitCode}}", "tty1"
                 ).stdout.strip() == "5"


def test_run_it_rm_exits_with_the_shells_code_and_removes_it(ketch, tmp_path):
    cidfile = tmp_path / "cid"
    child = spawn(ketch, "run", "-it", "--rm", "--cidfile", str(cidfile), "busybox")
    try:
        child.expect(PROMPT)
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
        ketch.note_cidfile(cidfile)
    assert child.exitstatus == 3
    assert ketch("ps", "-aq").stdout == ""


def test_ctrl_p_ctrl_q_detaches_and_attach_comes_back(ketch, tmp_path):
    cidfile = tmp_path / "cid"
    child = spawn(ketch, "run", "-it", "--cidfile", str(cidfile), "--name", "det",
                  "busybox", "sh")
    try:
        child.expect(PROMPT)
        child.send("\x10\x11")
        child.expect(pexpect.EOF)
    finally:
        child.close()
        ketch.note_cidfile(cidfile)
    assert child.exitstatus == 0
    assert ketch("container", "inspect", "-f", "{{.State.Status}}", "det"
                 ).stdout.strip() == "running"
    again = spawn(ketch, "attach", "det")
    try:
        again.sendline("echo back-$((1+1))")
        again.expect("back-2")
        again.sendline("exit 0")
        again.expect(pexpect.EOF)
    finally:
        again.close()
    assert ketch("wait", "det").stdout == "0\n"


def test_run_t_without_a_terminal_is_refused(ketch):
    p = ketch("run", "-it", "busybox", "true", check=False)
    assert p.returncode == 1  # the docker CLI's own check, before any daemon call
    assert p.stderr == "the input device is not a TTY\n"  # the docker CLI's words


def test_ctrl_c_stops_an_attached_container(ketch, tmp_path):
    cidfile = tmp_path / "cid"
    child = spawn(ketch, "run", "--cidfile", str(cidfile), "--name", "intr", "busybox", "sh",
                  "-c", 'trap "echo bye; exit 130" INT; echo up; while true; do sleep 0.1; done')
    try:
        child.expect("up")
        child.sendintr()
        child.expect("bye")
        child.expect(pexpect.EOF)
    finally:
        child.close()
        ketch.note_cidfile(cidfile)
    assert child.exitstatus == 130
    assert ketch("container", "inspect", "-f", "{{.State.Status}}", "intr"
                 ).stdout.strip() == "exited"


# -- exec -------------------------------------------------------------------------------
@pytest.fixture
def box(run_d):
    return run_d("--name", "box", "-e", "BASE=1", "busybox", "sleep", "300")


def test_exec_runs_in_the_container_with_its_environment(ketch, box):
    p = ketch("exec", "box", "sh", "-c", 'echo $BASE $HOSTNAME; cat /proc/1/cmdline')
    base, host = p.stdout.split("\n")[0].split()
    assert base == "1" and host == box[:12]
    assert p.stdout.split("\n")[1].startswith("sleep")


def test_exec_env_workdir_user(ketch, box):
    p = ketch("exec", "-e", "NEW=2", "--env", "BASE=3", "-w", "/tmp", "-u", "33:33", "box",
              "sh", "-c", "echo $NEW $BASE; pwd; id -u; id -g")
    assert p.stdout.split() == ["2", "3", "/tmp", "33", "33"]
    p = ketch("exec", "-u", "nobody", "box", "id", "-un")
    assert p.stdout == "nobody\n"
    # what the docker CLI checks itself, in its words (no "Error:"): a bad -e is a flag
    # error (125), an env file it cannot open exits 1
    p = ketch("exec", "-e", "=x", "box", "true", check=False)
    assert (p.returncode, p.stderr) == (125, 'invalid argument "=x" for "-e, --env" flag:'
                                             " invalid environment variable: =x\n")
    p = ketch("exec", "--env-file", "/nonexistent", "box", "true", check=False)
    assert (p.returncode, p.stderr) == (1, "open /nonexistent: no such file or directory\n")


def test_exec_interactive_reads_stdin(ketch, box):
    p = ketch("exec", "-i", "box", "sh", "-c", "tr a-z A-Z", input="shout\n")
    assert p.stdout == "SHOUT\n"
    p = ketch("exec", "box", "cat", input="ignored\n")
    assert p.stdout == ""


def test_exec_tty(ketch, box):
    child = spawn(ketch, "exec", "-it", "box", "sh")
    try:
        child.expect(PROMPT)
        child.sendline("tty; echo $((2*21))")
        child.expect("/dev/pts/")
        child.expect("42")
        child.sendline("exit 6")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 6


def test_exec_detach_keys_leave_the_exec_running(ketch, box):
    child = spawn(ketch, "exec", "-it", "--detach-keys", "ctrl-a,d", "box", "sh", "-c",
                  "echo ready; sleep 1; touch /tmp/after-detach; sleep 300")
    try:
        child.expect("ready")
        child.send("\x01d")  # ctrl-a then d: the session ends, the process goes on
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    wait_for(lambda: ketch("exec", "box", "test", "-e", "/tmp/after-detach",
                           check=False).returncode == 0, what="the detached exec's file")
    bad = ketch("exec", "--detach-keys", "ctrl-", "box", "true", check=False)
    assert bad.stderr.strip().endswith("Invalid detach keys (ctrl-) provided")
    assert bad.returncode != 0


def test_exec_detached(ketch, box):
    p = ketch("exec", "-d", "box", "sh", "-c", "sleep 0.3; echo done > /tmp/flag")
    assert p.stdout == ""
    wait_for(lambda: ketch("exec", "box", "cat", "/tmp/flag", check=False).stdout == "done\n",
             what="the detached exec")


def test_exec_exit_codes(ketch, box):
    assert ketch("exec", "box", "sh", "-c", "exit 4", check=False).returncode == 4
    # every session that cannot start exits 126, a command not found too (dockerd
    # records 126 for them all; run's 127 is not exec's)
    p = ketch("exec", "box", "no-such-binary", check=False)
    assert p.returncode == 126
    assert "executable file not found" in p.stderr
    p = ketch("exec", "-w", "/no/such/dir", "box", "pwd", check=False)
    assert p.returncode == 126
    assert 'chdir to cwd ("/no/such/dir")' in p.stderr
    p = ketch("exec", "box", "/etc/passwd", check=False)
    assert p.returncode == 126
    # a session that cannot start exits 126, as dockerd sets it
    p = ketch("exec", "-u", "nobody-here", "box", "true", check=False)
    assert (p.returncode, p.stderr) == (126, "Error: unable to find user nobody-here: no"
                                             " matching entries in passwd file\n")
    # errors before the session (the docker CLI's own exit 1, as docker 20.10 gives here)
    p = ketch("exec", "no-such-box", "true", check=False)
    assert (p.returncode, p.stderr) == (1, "Error: No such container: no-such-box\n")
    p = ketch("exec", "box", check=False)
    assert (p.returncode, p.stderr) == (
        1, "ketch: 'ketch exec' requires at least 2 arguments\n")  # the docker CLI 28's words
    ketch("kill", "box")
    p = ketch("exec", "box", "true", check=False)
    assert p.returncode == 1
    assert re.fullmatch(r"Error: Container [0-9a-f]{64} is not running\n", p.stderr)


def test_exec_in_a_paused_container_is_refused(ketch, box):
    ketch("pause", "box")
    p = ketch("exec", "box", "true", check=False)
    assert p.returncode == 1 and "is paused" in p.stderr
    ketch("unpause", "box")


# -- attach -----------------------------------------------------------------------------
def _has_socket(pid: int) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd).startswith("socket:") for fd in fds.iterdir())
    except OSError:
        return False


def test_attach_streams_output_until_exit(ketch, run_d, tmp_path):
    # The container prints only once `attach` is connected (attach shows what comes after
    # it, as Docker's does), however long the command takes to start.
    run_d("--name", "att", "-v", f"{tmp_path}:/w", "busybox", "sh", "-c",
          "while [ ! -e /w/go ]; do sleep 0.05; done; echo one; sleep 0.3; echo two >&2; "
          "exit 8")
    proc = subprocess.Popen(ketch.argv("attach", "att"), env=ketch.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _has_socket(proc.pid) or proc.poll() is not None,
                 what="attach to connect")
        (tmp_path / "go").touch()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 8, err
    assert out == "one\n" and err == "two\n"


def test_attach_to_a_stopped_container_is_refused(ketch):
    ketch("create", "--name", "cold", "busybox")
    p = ketch("attach", "cold", check=False)
    assert p.returncode == 1
    assert p.stderr == "Error: You cannot attach to a stopped container, start it first\n"


# -- top --------------------------------------------------------------------------------
def test_top_lists_the_containers_processes(ketch, run_d, tmp_path):
    run_d("--name", "tp", "busybox", "sh", "-c", "sleep 300 & sleep 301 & wait")
    wait_for(lambda: "sleep 301" in ketch("top", "tp").stdout, what="both sleeps")
    lines = ketch("top", "tp").stdout.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    cmds = [line.split(None, 7)[7] for line in lines[1:]]
    assert sorted(cmds) == ["sh -c sleep 300 & sleep 301 & wait", "sleep 300", "sleep 301"]
    # docker top's table: columns at least 20 wide, three spaces apart
    assert lines[0].startswith("UID" + " " * 17 + "PID" + " " * 17 + "PPID ")
    p = ketch("top", "tp", "-o", "pid,comm")
    assert p.stdout.splitlines()[0].split() == ["PID", "COMMAND"]
    assert sorted(line.split()[1] for line in p.stdout.splitlines()[1:]) == [
        "sh", "sleep", "sleep"]
    # options ps refuses: its one-line error, as docker top (not ps's usage text)
    p = ketch("top", "tp", "--bogus", check=False)
    assert (p.returncode, p.stderr) == (1, "Error: ps: error: unknown gnu long option\n")
    # the processes come from the container's cgroup, which runc recorded: runc itself
    # is not started (half of top's time), so a broken runc first on $PATH changes nothing
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "runc").write_text("#!/bin/sh\necho 'runc: not this one' >&2\nexit 1\n")
    (fake / "runc").chmod(0o755)
    p = ketch("top", "tp", "-o", "pid,comm", env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert sorted(line.split()[1] for line in p.stdout.splitlines()[1:]) == [
        "sh", "sleep", "sleep"]


def test_top_of_a_stopped_container_is_refused(ketch):
    ketch("create", "--name", "idle", "busybox")
    p = ketch("top", "idle", check=False)
    assert p.returncode == 1
    assert re.fullmatch(r"Error: Container [0-9a-f]{64} is not running\n", p.stderr)


# -- stats ------------------------------------------------------------------------------
def test_stats_no_stream(ketch, run_d):
    # (a fifth of a core: the loop shows, without taking a core from the rest of the suite)
    run_d("--name", "burn", "-m", "100m", "--cpus", "0.2", "busybox", "sh", "-c",
          "while true; do :; done")
    run_d("--name", "calm", "busybox", "sleep", "300")
    ketch("create", "--name", "never", "busybox")
    p = ketch("stats", "--no-stream")
    lines = p.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == [
        "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O",
        "BLOCK I/O", "PIDS"]
    rows = {re.split(r"\s{2,}", line.strip())[1]: re.split(r"\s{2,}", line.strip())
            for line in lines[1:]}
    assert set(rows) == {"burn", "calm"}
    burn = rows["burn"]
    # a busy loop against a sleeper (the loop's share shrinks when the host is busy)
    assert re.fullmatch(r"\d+\.\d\d%", burn[2]) and float(burn[2][:-1]) > 2
    assert re.fullmatch(r"[\d.]+[KM]iB / 100MiB", burn[3])
    assert re.fullmatch(r"\d+\.\d\d%", burn[4])
    assert re.fullmatch(r"[\d.]+[kMG]?B / [\d.]+[kMG]?B", burn[5])
    assert burn[7] == "1"
    assert float(rows["calm"][2][:-1]) < 1
    p = ketch("stats", "--no-stream", "-a", "--format", "{{.Name}} {{.PIDs}} {{.CPUPerc}}")
    assert "never 0 0.00%" in p.stdout.splitlines()
    p = ketch("stats", "--no-stream", "--format", "{{.Container}}", "calm")
    assert p.stdout == "calm\n"
    # docker's {{json .}}: the row's fields in name order; the full ID with --no-trunc
    for flags, id_len in (((), 12), (("--no-trunc",), 64)):
        doc = json.loads(ketch("stats", "--no-stream", *flags, "--format", "json",
                               "calm").stdout)
        assert list(doc) == ["BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage",
                             "Name", "NetIO", "PIDs"]
        assert (doc["Name"], len(doc["ID"])) == ("calm", id_len)
    ketch("kill", "burn")


def test_stats_of_unknown_container(ketch):
    p = ketch("stats", "--no-stream", "nosuch", check=False)
    assert p.returncode == 1 and p.stderr == "Error: No such container: nosuch\n"


def test_exec_keeps_running_processes_visible_to_top(ketch, box):
    proc = subprocess.Popen(ketch.argv("exec", "box", "sleep", "7"), env=ketch.env())
    try:
        wait_for(lambda: "sleep 7" in ketch("top", "box").stdout, what="the exec'd sleep")
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.1)


def test_stats_streams_until_interrupted(ketch, run_d):
    """It redraws until Ctrl-C, which ends it with no message and status 130, as the
    docker CLI 28's `docker stats`."""
    run_d("--name", "streamed", "busybox", "sleep", "300")
    proc = subprocess.Popen(ketch.argv("stats", "streamed"), env=ketch.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)
    try:
        assert proc.stdout is not None
        headers = 0
        while headers < 2:
            line = proc.stdout.readline()
            assert line, "stats ended by itself"
            headers += line.startswith("CONTAINER ID")
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    p = ketch("stats", "--no-stream", "--no-trunc", "--format", "{{.ID}}", "streamed")
    assert len(p.stdout.strip()) == 64


def test_exec_sessions_beyond_the_kept_number_are_forgotten_oldest_first(
        ketch, run_d, monkeypatch):
    from ketch.containers import execs
    from ketch.engine import Engine
    from ketch.errors import NotFound

    run_d("--name", "many", "busybox", "sleep", "300")
    monkeypatch.setattr(execs, "KEEP_FINISHED", 2)
    e = Engine(str(ketch.root), str(ketch.root / "run"))
    ids = []
    for _ in range(5):
        eid = e.containers.exec_create("many", ["true"])
        assert e.containers.exec_start(eid) == 0
        ids.append(eid)
    known = []
    for eid in ids:
        try:
            known.append(e.containers.exec_inspect(eid)["ID"])
        except NotFound as err:
            assert err.message == f"No such exec instance: {eid}"
    assert known == ids[-3:]  # the two kept finished ones and the newest


def test_an_exec_that_outlives_its_container_ends_without_an_error(ketch, run_d):
    # The exec's output is held until `rm -f` has removed the container, records and
    # all; the exec then ends (its process was killed with the container) with nothing
    # left to record, and no error (the CRI's ExecSync past its timeout met this)
    import threading

    from ketch.engine import Engine

    cid = run_d("busybox", "sleep", "300")
    with Engine(ketch.root, ketch.root / "run") as engine:
        eid = engine.containers.exec_create(cid, ["sh", "-c", "echo started; sleep 30"])
        removed = threading.Event()
        got: list[bytes] = []
        ended: list[object] = []

        def out(data: bytes) -> None:
            got.append(data)
            removed.wait(30)

        def run() -> None:
            try:
                ended.append(engine.containers.exec_start(eid, stdout=out))
            except BaseException as e:  # reported below
                ended.append(e)

        t = threading.Thread(target=run)
        t.start()
        wait_for(lambda: got, what="the exec's first output")
        ketch("rm", "-f", cid)
        assert not (ketch.root / "run" / "containers" / cid).exists()
        removed.set()
        t.join(30)
        assert not t.is_alive()
        assert len(ended) == 1 and not isinstance(ended[0], BaseException), ended
    assert b"started" in b"".join(got)


def _stdin_from(ketch, path: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    """`ketch ARGS... < path`: stdin a file (or /dev/null), as a shell redirection gives."""
    with open(path, "rb") as f:
        return subprocess.run(ketch.argv(*args), stdin=f, capture_output=True, text=True,
                              env=ketch.env(), timeout=60)


def test_a_file_as_stdin_goes_in_whole_whatever_bytes_it_holds(ketch, box, tmp_path: Path):
    # `exec -i db psql < dump.sql`: no terminal, so the detach keys (ctrl-p ctrl-q by
    # default) are not looked for, as dockerd copies a plain stdin as it is; and a file or
    # /dev/null is a stdin epoll cannot wait on
    data = (b"x" * 1000 + b"\x10\x11") * 200
    dump = tmp_path / "dump.bin"
    dump.write_bytes(data)
    p = _stdin_from(ketch, dump, "exec", "-i", "box", "wc", "-c")
    assert (p.returncode, p.stdout.strip(), p.stderr) == (0, str(len(data)), "")
    p = _stdin_from(ketch, dump, "run", "--rm", "-i", "busybox", "wc", "-c")
    assert (p.returncode, p.stdout.strip(), p.stderr) == (0, str(len(data)), "")
    for args in (("exec", "-i", "box", "cat"), ("run", "--rm", "-i", "busybox", "cat")):
        p = _stdin_from(ketch, "/dev/null", *args)
        assert (p.returncode, p.stdout, p.stderr) == (0, "", ""), args
    p = _stdin_from(ketch, "/dev/null", "exec", "-it", "box", "true")
    assert p.stderr == "the input device is not a TTY\n"  # the docker CLI's words


def test_a_look_at_a_detached_exec_between_its_exit_and_the_exit_file_waits_for_the_code(
        ketch, run_d):
    # conmon writes a session's exit file only after it has reaped the process: a look
    # in between (the process a zombie or gone, no exit file yet) must not record an
    # end without a code (-1, for good), it must report the session still running
    from ketch.engine import Engine

    cid = run_d("busybox", "sleep", "300")
    with Engine(ketch.root, ketch.root / "run") as engine:
        c = engine.containers
        eid = c.exec_create(cid, ["sh", "-c", "sleep 0.5; exit 9"])
        assert c.exec_start(eid, detach=True) is None
        pid = c.exec_inspect(eid)["Pid"]
        with open(f"/proc/{pid}/stat") as f:
            conmon = int(f.read().rsplit(")", 1)[1].split()[1])  # its parent, the reaper
        with open(f"/proc/{conmon}/comm") as f:
            assert f.read().strip() == "conmon"
        os.kill(conmon, signal.SIGSTOP)
        try:
            def ended() -> bool:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"

            wait_for(ended, what="the exec's process to exit (a zombie: conmon is stopped)")
            doc = c.exec_inspect(eid)
            assert (doc["Running"], doc["ExitCode"]) == (True, None)
        finally:
            os.kill(conmon, signal.SIGCONT)
        wait_for(lambda: c.exec_inspect(eid)["ExitCode"] == 9, what="the exec's exit code")
        assert c.exec_inspect(eid)["Running"] is False
