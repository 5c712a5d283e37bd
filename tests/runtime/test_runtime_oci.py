"""The OCI runtime driver and monitor helpers that need no container."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ketch.errors import InvalidArgument, RuntimeFailure
from ketch.runtime.monitor import (
    ContainerPaths,
    _DetachMatcher,
    classify_start_error,
    parse_detach_keys,
)
from ketch.runtime.oci import OCIRuntime, runtime_error_message


def test_runc_logfmt_error_is_reduced_to_its_message():
    text = ('time="2024-01-01T00:00:00Z" level=error msg="runc create failed: unable to '
            'start container process: exec: \\"nope\\": executable file not found in $PATH"\n')
    assert runtime_error_message(text) == ('runc create failed: unable to start container '
                                           'process: exec: "nope": executable file not '
                                           'found in $PATH')


def test_json_and_plain_runtime_errors_are_reduced_too():
    assert runtime_error_message('{"level":"error","msg":"boom\\nbang"}') == "boom bang"
    assert runtime_error_message(b"crun: container `x` does not exist\n") == \
        "container `x` does not exist"
    assert runtime_error_message("") == "unknown error from the OCI runtime"


@pytest.mark.parametrize("message, code", [
    ('exec: "nope": executable file not found in $PATH', 127),
    ("exec: /x: no such file or directory", 127),
    ('exec: "/etc/passwd": permission denied', 126),
    ("something else entirely", 125),
])
def test_start_errors_map_to_dockers_exit_codes(message, code):
    assert classify_start_error(message) == code


@pytest.mark.parametrize("spec, keys", [("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-a,d", b"\x01d"),
                                        ("ctrl-@", b"\x00"), ("ctrl-[", b"\x1b")])
def test_detach_keys_use_dockers_syntax(spec, keys):
    assert parse_detach_keys(spec) == keys


@pytest.mark.parametrize("spec", ["", "ctrl-", "ctrl-1", "abc"])
def test_bad_detach_keys_are_refused(spec):
    with pytest.raises(InvalidArgument, match="Invalid detach keys"):
        parse_detach_keys(spec)


def test_detach_sequence_is_found_across_reads_and_broken_prefixes_are_released():
    matcher = _DetachMatcher(b"\x10\x11")
    assert matcher.feed(b"ab\x10") == (b"ab", False)
    assert matcher.feed(b"c") == (b"\x10c", False)
    assert matcher.feed(b"\x10") == (b"", False)
    assert matcher.feed(b"\x11rest") == (b"", True)
    assert _DetachMatcher(None).feed(b"\x10\x11") == (b"\x10\x11", False)


def test_runtime_is_runc_or_crun_and_always_uses_its_own_state_root(tmp_path: Path):
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    runtime = OCIRuntime("runc", tmp_path / "state")
    assert runtime.command("list")[1:] == ["--root", str(tmp_path / "state"), "list"]
    assert runtime.list() == []
    assert runtime.state("nothing") is None
    runtime.delete("nothing", force=True)  # idempotent
    with pytest.raises(InvalidArgument, match="unknown OCI runtime"):
        OCIRuntime("kata", tmp_path)


def test_crun_is_selectable(tmp_path: Path):
    if shutil.which("crun") is None:
        pytest.skip("crun is not installed")
    runtime = OCIRuntime("crun", tmp_path / "state")
    assert runtime.name == "crun" and runtime.path.endswith("crun")
    assert runtime.state("nothing") is None
    with pytest.raises(RuntimeFailure, match="statistics"):
        runtime.stats("nothing")


def test_container_paths_keep_monitor_files_apart_from_the_bundle(tmp_path: Path):
    paths = ContainerPaths.create("abc", tmp_path / "b", tmp_path / "r")
    assert paths.config == f"{tmp_path}/b/config.json"
    assert paths.attach_socket == f"{tmp_path}/b/attach"
    assert paths.exit_file == f"{tmp_path}/r/exits/abc"
    assert paths.log_path == f"{tmp_path}/b/ctr.log"
