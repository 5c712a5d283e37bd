"""`run`/`create` refuse bad flag values as Docker does: exit 125, Docker's one-line
message, and no container or volume made. The same checks hold for a create request
that reaches the Engine without the CLI (the future API server's path)."""

from __future__ import annotations

import os

import pytest
from tests.containers.conftest import NOTHING_MADE, made_in

NCPU = len(os.sched_getaffinity(0))
CPU_RANGE = (f"Range of CPUs is from 0.01 to {NCPU}.00, as there are only {NCPU} CPUs"
             " available")

# (flags, the message after "Error: ")
CASES = [
    (["-e", ""], "invalid argument \"\" for \"-e, --env\" flag: invalid environment"
                 " variable: "),
    (["-e", "=x"], "invalid argument \"=x\" for \"-e, --env\" flag: invalid environment"
                   " variable: =x"),
    (["-v", ""], "invalid empty volume spec"),
    (["-v", "/a:/b:/c:/d"], "invalid spec: /a:/b:/c:/d: too many colons"),
    (["-v", "/tmp::/x"], "invalid spec: /tmp::/x: empty section between colons"),
    (["-v", "/tmp:/x:badmode"], "invalid mode: badmode"),
    (["-v", "/tmp:/x:ro,rw"], "invalid mode: ro,rw"),
    (["-v", "/tmp:/"], "invalid volume specification: '/tmp:/': invalid mount config for"
                       " type \"bind\": invalid specification: destination can't be '/'"),
    (["-v", "namedvol:/"], "invalid volume specification: 'namedvol:/': invalid mount"
                           " config for type \"volume\": invalid specification: destination"
                           " can't be '/'"),
    (["-v", "/tmp:relative"], "invalid volume specification: '/tmp:relative': invalid mount"
                              " config for type \"bind\": invalid mount path: 'relative'"
                              " mount path must be absolute"),
    (["-v", "/data:ro"], "invalid volume specification: '/data:ro'"),
    (["--tmpfs", "/"], "invalid specification: destination can't be '/'"),
    (["--tmpfs", "rel"], "invalid mount path: 'rel' mount path must be absolute"),
    (["--mount", "type=bind,source=/tmp,target=/"],
     "invalid mount config for type \"bind\": invalid specification: destination can't"
     " be '/'"),
    # a named volume is not made when another flag is refused
    (["-v", "keepme:/data", "--cpus", "999"], CPU_RANGE),
    (["-m", "1m"], "Minimum memory limit allowed is 6MB"),
    (["-m", "6291455b"], "Minimum memory limit allowed is 6MB"),
    (["-m", "99999999999999999999g"],
     "invalid argument \"99999999999999999999g\" for \"-m, --memory\" flag: invalid size:"
     " '99999999999999999999g': value out of range"),
    (["-m", "lots"], "invalid argument \"lots\" for \"-m, --memory\" flag: invalid size:"
                     " 'lots'"),
    (["--memory-swap", "100m"],
     "You should always set the Memory limit when using Memoryswap limit, see usage"),
    (["-m", "20m", "--memory-swap", "10m"],
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    (["--memory-reservation", "1m"], "Minimum memory reservation allowed is 6MB"),
    (["-m", "10m", "--memory-reservation", "20m"],
     "Minimum memory limit can not be less than memory reservation limit, see usage"),
    (["--cpus", str(NCPU + 1)], CPU_RANGE),
    (["--cpus", "0.001"], CPU_RANGE),
    (["--cpus", "-1"], CPU_RANGE),
    (["--cpus", "abc"], "invalid argument \"abc\" for \"--cpus\" flag: failed to parse abc"
                        " as a rational number"),
    (["--cpus", "0.0000000001"], "invalid argument \"0.0000000001\" for \"--cpus\" flag:"
                                 " value is too precise"),
    (["--cpu-shares", "-5"], "shares: invalid argument"),
    (["-l", "=x"], "invalid argument \"=x\" for \"-l, --label\" flag: invalid label '=x':"
                   " empty name"),
    (["--shm-size", "-5"], "invalid argument \"-5\" for \"--shm-size\" flag: invalid size:"
                           " '-5'"),
    (["--ulimit", "nofile"], "invalid argument \"nofile\" for \"--ulimit\" flag: invalid"
                             " ulimit argument: nofile"),
    (["--ulimit", "nofile=10:5"], "invalid argument \"nofile=10:5\" for \"--ulimit\" flag:"
                                  " ulimit soft limit must be less than or equal to hard"
                                  " limit: 10 > 5"),
    (["--ulimit", "nofile=-1:5"], "invalid argument \"nofile=-1:5\" for \"--ulimit\" flag:"
                                  " ulimit soft limit must be less than or equal to hard"
                                  " limit: soft: -1 (unlimited), hard: 5"),
    (["--ulimit", "bogus=1"], "invalid argument \"bogus=1\" for \"--ulimit\" flag: invalid"
                              " ulimit type: bogus"),
    (["--ulimit", "nofile=1:2:3"], "invalid argument \"nofile=1:2:3\" for \"--ulimit\" flag:"
                                   " too many limit value arguments - 1:2:3, can only have"
                                   " up to two, `soft[:hard]`"),
    (["--ulimit", "nofile=many"], "invalid argument \"nofile=many\" for \"--ulimit\" flag:"
                                  " strconv.ParseInt: parsing \"many\": invalid syntax"),
    (["--cpuset-cpus", "0-a"], "Invalid value 0-a for cpuset cpus: invalid format: 0-a"),
    (["--cpuset-cpus", "1-0"], "Invalid value 1-0 for cpuset cpus: invalid format: 1-0"),
    (["--cpuset-cpus", "4096"], "Requested CPUs are not available - requested 4096,"
                                " available: "),
]


@pytest.mark.parametrize("command", ["create", "run"])
@pytest.mark.parametrize(("flags", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_flag_value_is_refused_with_dockers_message_and_nothing_made(
        ketch, command, flags, message):
    p = ketch(command, *flags, "busybox", "true", check=False)
    assert p.returncode == 125, p.stderr
    assert p.stderr.startswith(f"Error: {message}"), p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert made_in(ketch.root) == NOTHING_MADE


def test_pids_limit_out_of_int64_is_a_flag_error(ketch):
    p = ketch("create", "--pids-limit", "99999999999999999999", "busybox", "true",
              check=False)
    assert p.returncode == 125
    assert ('invalid argument "99999999999999999999" for "--pids-limit" flag:'
            ' strconv.ParseInt: parsing "99999999999999999999": value out of range'
            ) in p.stderr
    assert made_in(ketch.root) == NOTHING_MADE


def test_cpuset_names_the_cpus_the_host_has(ketch):
    p = ketch("create", "--cpuset-cpus", "4096", "busybox", "true", check=False)
    cpus = sorted(os.sched_getaffinity(0))
    # the available list is the host's, in Docker's range form (e.g. "0-1")
    assert p.stderr.strip().endswith(f"available: {cpus[0]}-{cpus[-1]}"
                                     if len(cpus) > 1 else f"available: {cpus[0]}")


def test_edge_values_docker_accepts_still_run(ketch):
    # zero shm size means the default, -1 swap means unlimited, infinity a ulimit
    p = ketch("run", "--rm", "--shm-size", "0", "-m", "6m", "--memory-swap", "-1",
              "--cpus", f"{NCPU}", "--cpus", "0.01", "--cpuset-cpus", "0",
              "--ulimit", "nofile=100:200", "--ulimit", "core=infinity",
              "busybox", "sh", "-c", "ulimit -n; ulimit -c")
    assert p.stdout.split() == ["100", "unlimited"]


@pytest.mark.parametrize(("host_config", "message"), [
    ({"Binds": ["/tmp:/"]}, "destination can't be '/'"),
    ({"Binds": ["/tmp:/x:bogus"]}, "invalid mode: bogus"),
    ({"Memory": 1024}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 2**64}, "invalid Memory: 18446744073709551616 is out of range"),
    ({"NanoCpus": (NCPU + 1) * 10**9}, CPU_RANGE),
    ({"ShmSize": -1}, "SHM size can not be less than 0"),
    ({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]},
     "ulimit soft limit must be less than or equal to hard limit: 10 > 5"),
    ({"Ulimits": [{"Name": "as", "Soft": 1, "Hard": 1}]}, "invalid ulimit type: as"),
    ({"CpusetCpus": "0-"}, "Invalid value 0- for cpuset cpus: invalid format: 0-"),
])
def test_engine_refuses_the_same_values_without_the_cli(image_root, host_config, message):
    from ketch.engine import Engine
    from ketch.errors import InvalidArgument

    with Engine(image_root, image_root / "run") as engine:
        with pytest.raises(InvalidArgument) as e:
            engine.containers.create({"Image": "busybox", "Cmd": ["true"]},
                                     dict(host_config))
        assert message in str(e.value)
        assert engine.containers.list(all=True) == []


def test_engine_refuses_an_env_entry_without_a_name(image_root):
    from ketch.engine import Engine
    from ketch.errors import InvalidArgument

    with Engine(image_root, image_root / "run") as engine:
        with pytest.raises(InvalidArgument, match="^invalid environment variable: =x$"):
            engine.containers.create({"Image": "busybox", "Cmd": ["true"], "Env": ["=x"]})
        assert engine.containers.list(all=True) == []


def test_a_cidfile_that_cannot_be_made_or_exists_is_refused_before_the_container(
        ketch, tmp_path):
    missing = tmp_path / "no" / "dir" / "cid"
    p = ketch("run", "--cidfile", str(missing), "busybox", "true", check=False)
    assert (p.returncode, p.stderr) == (125, "Error: failed to create the container ID file:"
                                        f" open {missing}: no such file or directory\n")
    taken = tmp_path / "cid"
    taken.write_text("someone else's\n")
    p = ketch("create", "--cidfile", str(taken), "busybox", "true", check=False)
    assert (p.returncode, p.stderr) == (125, "Error: container ID file found, make sure the"
                                        " other container isn't running or delete"
                                        f" {taken}\n")
    assert taken.read_text() == "someone else's\n"
    assert made_in(ketch.root) == NOTHING_MADE


def test_a_bind_source_that_cannot_be_made_fails_the_start_and_rm_removes_it(ketch):
    p = ketch("run", "--rm", "-v", "/proc/ketch-nope/x:/x", "busybox", "true", check=False)
    # 127: the docker CLI's exit for a start failure that says a file is not there
    assert (p.returncode, p.stderr) == (127, "Error: error while creating mount source path"
                                        " '/proc/ketch-nope/x': mkdir /proc/ketch-nope: no"
                                        " such file or directory\n")
    assert made_in(ketch.root)["containers"] == []


@pytest.mark.parametrize("command", [["run"], ["create"], ["run", "--rm"]])
def test_run_or_create_without_an_image_exits_1_as_docker(ketch, command):
    # cobra's argument check in docker/cli ends every command with 1, `run` too; the
    # 125 of run's own errors is for what comes after it
    p = ketch(*command, check=False)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == f"ketch: 'ketch {command[0]}' requires at least 1 argument\n"
