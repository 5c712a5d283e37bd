"""`ketch` started with a standard descriptor closed (`>&-`, `<&-`, `2>&-`), as shells
and service managers can start it: the docker CLI (Go's runtime) puts /dev/null there,
so its output is discarded and nothing else lands on that number. ketch does the same:
before, `ps >&-` was a traceback, `run -d >&-` exited 125 with the container running,
and `run -i <&-` gave the container ketch's own code bundle (the first file it opened
took fd 0) as its stdin."""

from __future__ import annotations

import subprocess

from tests.conftest import ketch_command
from tests.containers.conftest import TrackingCLI


def closed(ketch: TrackingCLI, redirect: str, *args: str,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`ketch ARGS` with `redirect` (a shell's `>&-` and the like) applied to it; the
    descriptors it does not close are captured."""
    return subprocess.run(["sh", "-c", f'exec "$@" {redirect}', "sh", *ketch_command(), *args],
                          env=ketch.env(), input=input, capture_output=True, text=True,
                          timeout=60)


def test_run_detached_with_stdout_closed_succeeds_and_the_container_runs(
        ketch: TrackingCLI) -> None:
    proc = closed(ketch, ">&-", "run", "-d", "--name", "no-stdout", "busybox", "sleep", "60")
    assert (proc.returncode, proc.stderr) == (0, "")
    ketch.ids.add(ketch("inspect", "-f", "{{.Id}}", "no-stdout").stdout.strip())
    assert ketch("inspect", "-f", "{{.State.Status}}", "no-stdout").stdout == "running\n"


def test_listing_with_stdout_closed_exits_0_and_an_error_still_reaches_stderr(
        ketch: TrackingCLI) -> None:
    for args in (("ps", "-a"), ("images",), ("volume", "ls")):
        proc = closed(ketch, ">&-", *args)
        assert (proc.returncode, proc.stderr) == (0, ""), args
    proc = closed(ketch, ">&-", "inspect", "no-such-thing")
    assert proc.returncode == 1
    assert proc.stderr == "Error: No such object: no-such-thing\n"


def test_run_interactive_with_stdin_closed_gives_the_container_an_empty_stdin(
        ketch: TrackingCLI) -> None:
    proc = closed(ketch, "<&-", "run", "-i", "--rm", "busybox", "sh", "-c",
                  "wc -c; echo done")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "done"]


def test_an_error_with_stderr_closed_keeps_its_exit_code_and_harms_nothing(
        ketch: TrackingCLI) -> None:
    proc = closed(ketch, "2>&-", "run", "--rm", "busybox", "sh", "-c",
                  "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout) == (3, "out\n")
    proc = closed(ketch, "2>&-", "rmi", "no-such-image")
    assert (proc.returncode, proc.stdout) == (1, "")
    # the state root is intact: nothing was written where an error message would go
    assert ketch("images", "--format", "{{.Repository}}").stdout == "busybox\n"
