"""`--log-driver`/`--log-opt` as Docker: bounded json-file logs (max-size, max-file,
compress) that `logs` still reads across generations, `none`, refused drivers and
options, and the default from the state root's ketch.toml."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from tests.containers.conftest import NOTHING_MADE, made_in, wait_for

# ~105 bytes a line: 300,000 lines are ~31 MB of output
PRINT = ('i=0; while [ $i -lt {n} ]; do echo "line $i padding padding padding padding'
         ' padding padding"; i=$((i+1)); done')


def log_dir(ketch, name: str) -> Path:
    cid = ketch("inspect", "-f", "{{.Id}}", name).stdout.strip()
    return ketch.root / "containers" / cid


def log_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.name.startswith("ctr.log"))


def disk_use(files: list[Path]) -> int:
    """Bytes on disk (allocated blocks): what a full disk would feel."""
    return sum(os.stat(p).st_blocks * 512 for p in files)


def keepers_of(d: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ketch.runtime.logs" in cmdline and str(d).encode() in cmdline:
                found.append(int(entry.name))
    return found


def test_max_size_and_max_file_bound_a_30mb_log_to_3mb_and_tail_shows_the_end(ketch):
    ketch("run", "--name", "big", "--log-opt", "max-size=1m", "--log-opt", "max-file=3",
          "busybox", "sh", "-c", PRINT.format(n=300_000))
    d = log_dir(ketch, "big")
    wait_for(lambda: not keepers_of(d), timeout=20, what="the log keeper to exit")
    files = log_files(d)
    generations = [p for p in files if p.name.startswith("ctr.log.") and p.name[8:].isdigit()]
    assert len(generations) == 2, files  # max-file=3: the current file and two more
    used = disk_use(files)
    assert used <= 3.3 * 1024 * 1024, f"{used} bytes on disk for max-size=1m max-file=3"
    assert ketch("logs", "--tail", "5", "big").stdout.splitlines() == [
        f"line {i} padding padding padding padding padding padding"
        for i in range(299_995, 300_000)]
    lines = ketch("logs", "big").stdout.splitlines()
    # every line whole, the first too: the keeper never ends a generation between the
    # pieces of a line (conmon's reads end mid-line; a removed generation would take
    # the start of that line with it)
    numbers = [int(x.split()[1]) for x in lines]
    assert numbers == list(range(numbers[0], 300_000))  # contiguous, in order, to the end
    assert 1.5 * 1024 * 1024 < len(lines) * 56 + sum(map(len, lines))  # ~2 files' worth


def test_compressed_generations_are_gzip_and_logs_reads_every_line_in_order(ketch):
    ketch("run", "--name", "gz", "--log-opt", "max-size=100k", "--log-opt", "max-file=100",
          "--log-opt", "compress=true", "busybox", "sh", "-c", PRINT.format(n=30_000))
    d = log_dir(ketch, "gz")
    wait_for(lambda: not keepers_of(d), timeout=20, what="the log keeper to exit")
    packed = [p for p in log_files(d) if p.suffix == ".gz"]
    assert len(packed) >= 20, log_files(d)
    for p in packed:
        with gzip.open(p) as f:
            assert b" stdout F line " in f.read(4096)
    expected = [f"line {i} padding padding padding padding padding padding"
                for i in range(30_000)]
    assert ketch("logs", "gz").stdout.splitlines() == expected
    assert ketch("logs", "--tail", "3", "gz").stdout.splitlines() == expected[-3:]
    # --since/--until bisect each generation: a bound in the middle of the log
    stamped = ketch("logs", "-t", "gz").stdout.splitlines()
    assert [s.split(" ", 1)[1] for s in stamped] == expected
    middle = stamped[15_000].split(" ", 1)[0]
    # (a bound can fall between the two pieces conmon split a line into: the output
    # then starts or ends with a piece)
    since = ketch("logs", "--since", middle, "gz").stdout.splitlines()
    if not since[0].startswith("line "):
        since = since[1:]
    out = ketch("logs", "--until", middle, "gz").stdout
    until = out.splitlines() if out.endswith("\n") else out.splitlines()[:-1]
    first = int(since[0].split()[1])
    last = int(until[-1].split()[1])
    assert since == expected[first:] and until == expected[:last + 1]
    assert 14_800 < first <= 15_200 and 14_800 <= last < 15_200


def test_logs_follow_reads_on_while_generations_rotate(ketch, run_d):
    script = "sleep 1; " + PRINT.format(n=20_000)
    run_d("--name", "flw", "--log-opt", "max-size=64k", "--log-opt", "max-file=1000",
          "busybox", "sh", "-c", script)
    p = ketch("logs", "-f", "flw", timeout=60)
    assert p.stdout.splitlines() == [
        f"line {i} padding padding padding padding padding padding" for i in range(20_000)]


def test_rm_of_a_container_whose_log_is_still_rotating_leaves_no_file_or_keeper(ketch, run_d):
    # many generations to shift: the keeper is still at work when the container exits
    cid = run_d("--log-opt", "max-size=16k", "--log-opt", "max-file=1000", "busybox",
                "sh", "-c", PRINT.format(n=20_000))
    d = ketch.root / "containers" / cid
    ketch("wait", cid)
    ketch("rm", "-f", cid)
    assert not d.exists(), sorted(p.name for p in d.iterdir())[:10]
    assert keepers_of(d) == []


def test_log_driver_none_stores_nothing_and_logs_fails_as_docker(ketch):
    p = ketch("run", "--name", "quiet", "--log-driver", "none", "busybox", "echo", "shown")
    assert p.stdout == "shown\n"  # attached output does not need a log
    d = log_dir(ketch, "quiet")
    assert log_files(d) == []
    p = ketch("logs", "quiet", check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == "Error: configured logging driver does not support reading"
    assert ketch("inspect", "-f", "{{json .HostConfig.LogConfig}}", "quiet").stdout.strip() \
        == '{"Type":"none","Config":{}}'


@pytest.mark.parametrize(("flags", "message"), [
    (["--log-driver", "syslogx"], "logger: no log driver named 'syslogx' is registered"),
    (["--log-opt", "x=1"], "unknown log opt 'x' for json-file log driver"),
    (["--log-driver", "none", "--log-opt", "max-size=1m"],
     "unknown log opt 'max-size' for none log driver"),
    (["--log-opt", "max-file=2"], "max-file cannot be greater than 1 when max-size is not"),
    (["--log-opt", "max-size=1q"], "invalid suffix: 'q'"),
    (["--log-opt", "max-size=abc"], "invalid size: 'abc'"),
    (["--log-opt", "max-size=0"], "max-size must be a positive number"),
    (["--log-opt", "max-size=1m", "--log-opt", "max-file=0"],
     "max-file cannot be less than 1"),
    (["--log-opt", "max-size=1m", "--log-opt", "max-file=2x"],
     'strconv.Atoi: parsing "2x": invalid syntax'),
    (["--log-opt", "max-size=1m", "--log-opt", "max-file=+"],
     'strconv.Atoi: parsing "+": invalid syntax'),
    (["--log-opt", "max-size=1m", "--log-opt", "compress=true"],
     "compress cannot be true when max-file is less than 2 or max-size is not set"),
    (["--log-opt", "compress=yes"], 'strconv.ParseBool: parsing "yes": invalid syntax'),
    (["--log-opt", "max-size"], 'invalid argument "max-size" for "--log-opt" flag'),
    (["--log-opt", "path=/tmp/x.log"], "unknown log opt 'path' for json-file log driver"),
    (["--log-driver", "k8s-file", "--log-opt", "path=rel.log"],
     "log opt path 'rel.log': must be an absolute file path"),
])
def test_bad_log_configuration_is_refused_and_nothing_is_created(ketch, flags, message):
    for command in ("create", "run"):
        p = ketch(command, *flags, "busybox", "true", check=False)
        assert p.returncode == 125, p.stderr
        assert message in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    assert made_in(ketch.root) == NOTHING_MADE


def test_k8s_file_path_option_puts_the_log_there_and_logs_reads_it(ketch, tmp_path):
    path = tmp_path / "kubelet" / "pod" / "0.log"
    ketch("run", "--name", "placed", "--log-driver", "k8s-file", "--log-opt",
          f"path={path}", "busybox", "echo", "written-there")
    assert path.read_text().split(" ", 1)[1] == "stdout F written-there\n"
    assert log_files(log_dir(ketch, "placed")) == []  # not in the container's directory
    assert ketch("logs", "placed").stdout == "written-there\n"
    assert ketch("inspect", "-f", "{{.LogPath}}", "placed").stdout.strip() == str(path)
    (tmp_path / "a-file").write_text("")
    p = ketch("run", "--log-driver", "k8s-file", "--log-opt",
              f"path={tmp_path / 'a-file' / '0.log'}", "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.stderr.strip() == (f"Error: cannot create the log directory {tmp_path / 'a-file'}:"
                                " File exists")


def test_journald_is_refused_when_journald_is_not_running(ketch):
    if Path("/run/systemd/journal/socket").exists():
        pytest.skip("journald runs on this host")  # ketch hands the log to it then
    p = ketch("create", "--log-driver", "journald", "busybox", "true", check=False)
    assert p.returncode == 125
    assert "journald is not running on this host" in p.stderr
    assert made_in(ketch.root) == NOTHING_MADE


def test_state_root_config_sets_the_default_driver_and_options(ketch):
    config = ketch.root / "ketch.toml"
    config.write_text('[containers]\nlog_driver = "json-file"\n'
                      'log_opts = { max-size = "64k", max-file = "2" }\n')
    try:
        assert ketch("info", "-f", "{{.LoggingDriver}}").stdout.strip() == "json-file"
        ketch("run", "--name", "dflt", "busybox", "sh", "-c", PRINT.format(n=5_000))
        assert ketch("inspect", "-f", "{{json .HostConfig.LogConfig}}", "dflt").stdout \
            .strip() == '{"Type":"json-file","Config":{"max-file":"2","max-size":"64k"}}'
        d = log_dir(ketch, "dflt")
        wait_for(lambda: not keepers_of(d), timeout=20, what="the log keeper to exit")
        assert disk_use(log_files(d)) <= 3 * 64 * 1024 + 16 * 1024
        assert ketch("logs", "--tail", "1", "dflt").stdout.startswith("line 4999 ")
        # a flag overrides one option; another driver takes none of the defaults
        ketch("create", "--name", "own", "--log-opt", "max-file=3", "busybox", "true")
        assert ketch("inspect", "-f", "{{json .HostConfig.LogConfig.Config}}", "own"
                     ).stdout.strip() == '{"max-file":"3","max-size":"64k"}'
        ketch("create", "--name", "other", "--log-driver", "k8s-file", "busybox", "true")
        assert ketch("inspect", "-f", "{{json .HostConfig.LogConfig}}", "other").stdout \
            .strip() == '{"Type":"k8s-file","Config":{}}'
        config.write_text('[containers]\nlog_driver = "none"\n')
        assert ketch("info", "-f", "{{.LoggingDriver}}").stdout.strip() == "none"
        config.write_text('[containers]\nlog_opts = { colour = "red" }\n')
        p = ketch("create", "busybox", "true", check=False)
        assert p.returncode == 125
        assert "unknown log opt 'colour' for json-file log driver" in p.stderr
    finally:
        config.unlink()


def test_a_container_without_log_options_keeps_one_unrotated_file(ketch):
    ketch("run", "--name", "plain", "busybox", "sh", "-c", PRINT.format(n=2_000))
    d = log_dir(ketch, "plain")
    assert [p.name for p in log_files(d)] == ["ctr.log"]
    assert ketch("inspect", "-f", "{{json .HostConfig.LogConfig}}", "plain").stdout.strip() \
        == '{"Type":"json-file","Config":{}}'
    assert not keepers_of(d)
