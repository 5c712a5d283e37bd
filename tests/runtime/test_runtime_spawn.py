"""ketch.runtime.spawn: how the OCI runtime's short commands are run (in place of
`subprocess`, for its import cost): exit status, both outputs, input, deadline, the
child's signals and descriptors."""

from __future__ import annotations

import os
import time

import pytest

from ketch.runtime import spawn


def test_exit_status_and_both_outputs_come_back_apart() -> None:
    assert spawn.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]) == (
        3, b"out\n", b"err\n")


def test_input_and_output_larger_than_a_pipe_go_through_whole() -> None:
    data = os.urandom(300_000)  # over the 64 KiB of a pipe, both ways
    code, out, err = spawn.run(["/bin/cat"], input=data)
    assert (code, out == data, err) == (0, True, b"")


def test_a_process_ended_by_a_signal_reports_minus_its_number() -> None:
    assert spawn.run(["/bin/sh", "-c", "kill -TERM $$"])[0] == -15


def test_the_child_has_sigpipe_back_and_only_its_three_descriptors() -> None:
    # Python ignores SIGPIPE; a child that inherited that would see `yes` fail with
    # EPIPE and complain, where with the default action it just ends
    assert spawn.run(["/bin/sh", "-c", "yes | head -n 1"]) == (0, b"y\n", b"")
    with open(__file__, "rb"):  # a descriptor of this process, not to be inherited
        code, out, _ = spawn.run(["/bin/sh", "-c", "ls /proc/$$/fd"])
    assert (code, sorted(out.split())) == (0, [b"0", b"1", b"2"])


def test_a_deadline_kills_and_reaps_the_process() -> None:
    child = spawn.Child(["/bin/sleep", "30"])
    began = time.monotonic()
    with pytest.raises(spawn.SpawnTimeout):
        child.communicate(timeout=0.2)
    assert time.monotonic() - began < 5
    assert not os.path.exists(f"/proc/{child.pid}")  # killed and waited for: no zombie


def test_a_missing_program_is_an_os_error() -> None:
    with pytest.raises(FileNotFoundError):
        spawn.run(["/nonexistent/runc", "state", "x"])


def test_the_environment_given_is_the_whole_environment() -> None:
    assert spawn.run(["/usr/bin/env"], env={"ONLY": "this"}) == (0, b"ONLY=this\n", b"")


def test_a_process_started_without_stdio_still_gives_its_child_three_pipes() -> None:
    # (conmon's exit command and daemons may run ketch with 0, 1 or 2 closed: the pipes
    # then get those numbers, and the child's descriptors must still be the right ones)
    code = ("import os, sys; os.close(0); os.close(1); os.close(2)\n"
            "from ketch.runtime import spawn\n"
            "result = spawn.run(['/bin/sh', '-c', 'cat; echo out; echo err >&2'],"
            " input=b'in:')\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)\n"
            "os.write(fd, repr(result).encode())\n")
    import subprocess
    import sys
    import tempfile

    with tempfile.NamedTemporaryFile() as f:
        subprocess.run([sys.executable, "-c", code, f.name], check=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert f.read() == repr((0, b"in:out\n", b"err\n")).encode()


def test_a_directory_a_passed_descriptor_a_session_and_no_stdout(tmp_path) -> None:
    # how conmon is started: in the container's directory, with its sync pipes under
    # their own numbers, in a session of its own, its stdout going nowhere
    import sys

    r, w = os.pipe()
    code = ("import os, sys; print('gone'); os.write(int(sys.argv[1]), b'passed');"
            " fds = sorted(int(f) for f in os.listdir('/proc/self/fd'));"
            " print(os.getcwd(), os.getsid(0) == os.getpid(), fds, file=sys.stderr)")
    child = spawn.Child([sys.executable, "-I", "-S", "-c", code, str(w)],
                        cwd=str(tmp_path), stdout=False, pass_fds=[w], new_session=True)
    assert not os.get_inheritable(w)  # (never made inheritable in this process)
    os.close(w)
    result = child.communicate(timeout=30)
    with os.fdopen(r, "rb") as f:
        passed = f.read()
    # (the listing's own descriptor is the one more than 0, 1, 2 and the pipe)
    listing = f"{tmp_path} True {sorted([0, 1, 2, w, 3 if w != 3 else 4])}\n".encode()
    assert (result, passed) == ((0, b"", listing), b"passed")


def test_a_directory_that_is_not_there_fails_the_child_saying_so(tmp_path) -> None:
    code, _out, err = spawn.Child(["/bin/true"], cwd=str(tmp_path / "gone")).communicate(30)
    assert code == 125 and b"cannot change directory" in err


def test_a_short_input_is_there_for_the_child_before_anyone_waits_for_it(tmp_path) -> None:
    # iptables-restore commits its rules while ketch goes on with a container's start:
    # the input must not wait in this process until `communicate`
    out = tmp_path / "got"
    child = spawn.Child(["/bin/sh", "-c", f"cat > {out}.part && mv {out}.part {out}"],
                        input=b"rules\n", stdout=False)
    deadline = time.monotonic() + 10
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.read_bytes() == b"rules\n"
    assert child.communicate(5) == (0, b"", b"")
