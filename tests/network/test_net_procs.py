"""Detached helper processes (the DNS service, the IPv6 port proxy) are started for real:
the pid handed back already runs the helper program, and a helper that cannot run is an
error at once rather than a record of a process that never was."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest
from tests.helpers.host import wait_for

from ketch.network import procs


def test_the_returned_pid_runs_the_helper_with_its_sockets_as_fd_3() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        pid, started = procs.spawn_detached(["/bin/sleep", "30"], [sock])
    finally:
        sock.close()
    try:
        # no wait: the exec has happened by the time spawn_detached returns
        assert os.readlink(f"/proc/{pid}/exe") == os.path.realpath("/bin/sleep")
        assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"/bin/sleep\x0030\x00"
        assert os.readlink(f"/proc/{pid}/fd/3").startswith("socket:")
        # nothing of this process's own stays open there (the helper's dynamic loader
        # may hold a library open for a moment just after the exec)
        wait_for(lambda: sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2", "3"],
                 timeout=5, what="the helper to hold only fds 0-3")
        assert procs.alive(pid, started)
    finally:
        procs.stop(pid, started)
    assert not procs.alive(pid, started)


def test_a_helper_that_cannot_be_executed_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-helper"
    with pytest.raises(OSError) as raised:
        procs.spawn_detached([str(missing)], [])
    assert raised.value.errno == errno.ENOENT
    assert str(missing) in str(raised.value)
    not_executable = tmp_path / "plain-file"
    not_executable.write_text("#!/bin/sh\n")
    with pytest.raises(OSError) as raised:
        procs.spawn_detached([str(not_executable)], [])
    assert raised.value.errno == errno.EACCES
