"""`logs`: history, `-f` following a live container, `--tail`, `-t`, `--since`,
`--until`, and stdout/stderr kept apart."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import datetime

from tests.helpers.host import wait_for

TICKER = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


def test_logs_of_a_detached_container(ketch, run_d):
    run_d("--name", "hello", "busybox", "sh", "-c", "echo one; echo two")
    ketch("wait", "hello")
    assert ketch("logs", "hello").stdout == "one\ntwo\n"
    assert ketch("container", "logs", "hello").stdout == "one\ntwo\n"


def test_logs_asked_for_before_a_removal_are_read_after_it(ketch, run_d):
    # A front door that answers a logs request first and reads the log after (the
    # Engine API sends the response's headers, docker-py's `containers.run` then waits
    # for and removes the container, and only then reads the body) gets the output:
    # the log is opened when it is asked for, not at its first chunk.
    from ketch.engine import Engine

    cid = run_d("busybox", "sh", "-c", "echo one; echo two >&2")
    assert ketch("wait", cid).stdout == "0\n"
    with Engine(ketch.root, ketch.root / "run") as engine:
        plain = engine.containers.logs(cid)
        following = engine.containers.logs(cid, follow=True)
        ketch("rm", cid)
        assert ketch("ps", "-aq", "--no-trunc").stdout.split() == []
        for chunks in (plain, following):
            assert sorted(chunks) == [("stderr", b"two\n"), ("stdout", b"one\n")]


def test_stdout_and_stderr_stay_apart(ketch):
    ketch("run", "--name", "both", "busybox", "sh", "-c",
          "echo out1; echo err1 >&2; echo out2; echo err2 >&2")
    p = ketch("logs", "both")
    assert p.stdout == "out1\nout2\n"
    assert p.stderr == "err1\nerr2\n"


def test_logs_follow_streams_a_container_that_prints_every_200ms(ketch, run_d):
    run_d("--name", "ticker", "busybox", "sh", "-c", TICKER)
    proc = subprocess.Popen(ketch.argv("logs", "-f", "ticker"), env=ketch.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        arrivals: list[tuple[float, str]] = []
        assert proc.stdout is not None
        # What was printed before the follower started comes at once; after that, lines
        # arrive as the container prints them (~0.2 s apart), not all at the end.
        live = 0
        while live < 4:
            line = proc.stdout.readline()
            assert line, "logs -f ended early"
            arrivals.append((time.monotonic(), line))
            if len(arrivals) > 1 and arrivals[-1][0] - arrivals[-2][0] > 0.1:
                live += 1
            assert len(arrivals) < 60, "no line arrived on its own in 60 lines"
        numbers = [int(line.split()[1]) for _, line in arrivals]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert proc.poll() is None
        ketch("stop", "-t", "1", "ticker")
        # the follower ends by itself once the container has stopped
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_logs_follow_of_a_stopped_container_prints_and_exits(ketch):
    ketch("run", "--name", "fin", "busybox", "echo", "end")
    p = ketch("logs", "-f", "fin", timeout=30)
    assert p.stdout == "end\n"


def test_tail(ketch):
    ketch("run", "--name", "seq", "busybox", "seq", "1", "10")
    assert ketch("logs", "--tail", "3", "seq").stdout == "8\n9\n10\n"
    assert ketch("logs", "-n", "1", "seq").stdout == "10\n"
    assert ketch("logs", "--tail", "0", "seq").stdout == ""
    assert ketch("logs", "--tail", "all", "seq").stdout.split() == [str(i) for i in
                                                                   range(1, 11)]
    assert ketch("logs", "--tail", "50", "seq").stdout.count("\n") == 10
    # dockerd shows the whole log for a --tail that is not a number (or is negative)
    for odd in ("x", "-5", "1.5"):
        p = ketch("logs", "--tail", odd, "seq", check=False)
        assert (p.returncode, p.stdout.split()) == (0, [str(i) for i in range(1, 11)])


def test_timestamps(ketch):
    ketch("run", "--name", "stamped", "busybox", "sh", "-c", "echo a; echo b >&2")
    p = ketch("logs", "-t", "stamped")
    assert re.fullmatch(rf"{TS} a\n", p.stdout)
    assert re.fullmatch(rf"{TS} b\n", p.stderr)


def _stamp(line: str) -> float:
    ts = line.split()[0]
    whole, frac = ts.rstrip("Z").split(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float("0." + frac)


def test_since_and_until(ketch):
    ketch("run", "--name", "slow", "busybox", "sh", "-c",
          "echo early; sleep 1.5; echo middle; sleep 1.5; echo late")
    lines = ketch("logs", "-t", "slow").stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["early", "middle", "late"]
    t_early, t_middle, t_late = (_stamp(line) for line in lines)
    mid1 = f"{(t_early + t_middle) / 2:.3f}"
    mid2 = f"{(t_middle + t_late) / 2:.3f}"
    assert ketch("logs", "--since", mid1, "slow").stdout == "middle\nlate\n"
    assert ketch("logs", "--until", mid2, "slow").stdout == "early\nmiddle\n"
    assert ketch("logs", "--since", mid1, "--until", mid2, "slow").stdout == "middle\n"
    # relative durations and RFC 3339 work as Docker's
    assert ketch("logs", "--since", "1h", "slow").stdout.count("\n") == 3
    assert ketch("logs", "--until", "1h", "slow").stdout == ""
    iso = datetime.utcfromtimestamp(t_middle - 0.5).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert ketch("logs", "--since", iso, "slow").stdout == "middle\nlate\n"


def test_a_since_or_until_that_is_no_time_is_the_docker_clis_error(ketch):
    ketch("run", "--name", "times", "busybox", "echo", "hi")
    for flag in ("since", "until"):
        p = ketch("logs", f"--{flag}", "abc", "times", check=False)
        assert (p.returncode, p.stdout, p.stderr) == (
            1, "", f'invalid value for "{flag}": failed to parse value as time or duration:'
                   ' "abc"\n')


def test_logs_of_unknown_container(ketch):
    p = ketch("logs", "nosuch", check=False)
    assert p.returncode == 1 and p.stderr == "Error: No such container: nosuch\n"


def test_logs_follow_picks_up_output_after_a_restart(ketch, run_d):
    run_d("--name", "again", "busybox", "sh", "-c", "echo run; sleep 60")
    wait_for(lambda: ketch("logs", "again").stdout == "run\n", what="first output")
    ketch("restart", "-t", "0", "again")
    wait_for(lambda: ketch("logs", "again").stdout == "run\nrun\n", what="output after restart")
