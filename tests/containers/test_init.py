"""`--init` and the root config's `init = true`: Debian's static tini runs as PID 1
(mounted read-only at /sbin/docker-init, as Docker's docker-init), reaps orphaned
zombies and forwards signals; a missing init binary is refused before anything exists."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import require
from tests.containers.conftest import NOTHING_MADE, made_in
from tests.helpers.host import wait_for

# A background child whose parent exits at once is re-parented to PID 1; when it exits
# only PID 1 can reap it. Without an init, PID 1 is `sleep`, which never does.
ORPHAN = "(sleep 0.2 &); exec sleep 60"
STATES = "for f in /proc/[0-9]*/stat; do cat $f; echo; done"


@pytest.fixture(autouse=True)
def tini() -> None:
    require(Path("/usr/bin/tini-static").exists(),
            "tini is not installed (Debian's tini package, /usr/bin/tini-static)")


@pytest.fixture
def root_config(image_root: Path) -> Iterator[Path]:
    """The state root's ketch.toml, removed after the test."""
    path = image_root / "ketch.toml"
    yield path
    path.unlink(missing_ok=True)


def _processes(ketch, cid: str) -> list[tuple[int, str, str]]:
    """(pid, command name, state) of the container's processes, leaving out the `sh` and
    `cat` this probe runs with `exec`."""
    out = []
    for line in ketch("exec", cid, "sh", "-c", STATES).stdout.splitlines():
        head, paren, rest = line.rpartition(")")
        if not paren:
            continue
        pid, _, name = head.partition(" (")
        if name not in ("sh", "cat"):
            out.append((int(pid), name, rest.split()[0]))
    return sorted(out)


def test_init_runs_tini_as_pid_1(ketch):
    p = ketch("run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline")
    assert p.stdout.split("\0") == ["/sbin/docker-init", "--", "cat", "/proc/1/cmdline", ""]
    p = ketch("run", "--rm", "--init", "busybox", "sh", "-c",
              "ps -o pid,comm | awk '$1 == 1 {print $2}'")
    assert p.stdout == "docker-init\n"
    p = ketch("run", "--rm", "busybox", "cat", "/proc/1/cmdline")
    assert p.stdout.split("\0") == ["cat", "/proc/1/cmdline", ""]


def test_init_binary_is_read_only_in_the_container(ketch):
    p = ketch("run", "--rm", "--init", "busybox", "sh", "-c",
              "echo x > /sbin/docker-init", check=False)
    assert p.returncode != 0 and "Read-only file system" in p.stderr


def test_without_init_an_orphan_stays_a_zombie(run_d, ketch):
    cid = run_d("busybox", "sh", "-c", ORPHAN)
    zombies = wait_for(lambda: [p for p in _processes(ketch, cid) if p[2] == "Z"],
                       what="the orphan to exit")
    assert [name for _, name, _ in zombies] == ["sleep"]
    time.sleep(1)
    assert [p for p in _processes(ketch, cid) if p[2] == "Z"] == zombies  # for good


def test_init_reaps_an_orphaned_zombie(run_d, ketch):
    cid = run_d("--init", "busybox", "sh", "-c", ORPHAN)
    # the orphan (a second `sleep`) exits after 0.2 s; tini reaps it, so it disappears
    # instead of staying a zombie
    wait_for(lambda: [name for _, name, _ in _processes(ketch, cid)]
             == ["docker-init", "sleep"], what="the orphan to be reaped", timeout=10)
    procs = _processes(ketch, cid)
    assert procs[0][:2] == (1, "docker-init")
    assert "Z" not in [state for _, _, state in procs]


def test_init_forwards_the_stop_signal(run_d, ketch):
    # sleep as PID 1 ignores SIGTERM; under tini it gets it and dies at once (143)
    cid = run_d("--init", "busybox", "sleep", "60")
    wait_for(lambda: [name for _, name, _ in _processes(ketch, cid)]
             == ["docker-init", "sleep"], what="tini and its sleep")
    t0 = time.monotonic()
    ketch("stop", "-t", "30", cid)
    assert time.monotonic() - t0 < 10
    assert ketch("inspect", "-f", "{{.State.ExitCode}}", cid).stdout == "143\n"


def test_init_passes_the_command_exit_code(ketch):
    p = ketch("run", "--rm", "--init", "busybox", "sh", "-c", "exit 7", check=False)
    assert p.returncode == 7


def test_root_config_init_true_gives_every_container_an_init(ketch, root_config):
    root_config.write_text("[containers]\ninit = true\n")
    p = ketch("run", "--rm", "busybox", "cat", "/proc/1/cmdline")
    assert p.stdout.split("\0")[:2] == ["/sbin/docker-init", "--"]


def test_missing_init_binary_is_refused_and_nothing_is_created(ketch, root_config):
    root_config.write_text('[containers]\ninit_path = "/nonexistent/tini-static"\n')
    p = ketch("run", "--rm", "--init", "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.stderr.count("\n") == 1 and "/nonexistent/tini-static" in p.stderr
    assert made_in(ketch.root) == NOTHING_MADE
    # without --init the setting is not needed
    assert ketch("run", "--rm", "busybox", "true").returncode == 0


def test_unknown_root_config_setting_is_refused(ketch, root_config):
    root_config.write_text("[containers]\niint = true\n")
    p = ketch("run", "--rm", "busybox", "true", check=False)
    assert p.returncode == 125 and "iint" in p.stderr and p.stderr.count("\n") == 1
