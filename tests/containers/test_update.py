"""`ketch update`: resource limits and the restart policy changed after creation, live
for a running container (its cgroup) and kept for its next start."""

from __future__ import annotations

MiB = 1 << 20


def _limit(ketch, name: str) -> str:  # type: ignore[no-untyped-def]
    return ketch("stats", "--no-stream", "--format", "{{.MemUsage}}", name).stdout.split(
        " / ")[1].strip()


def test_update_memory_of_a_running_container_changes_its_cgroup(ketch, run_d) -> None:  # type: ignore[no-untyped-def]
    run_d("--name", "upd", "-m", "64m", "busybox", "sleep", "300")
    assert _limit(ketch, "upd") == "64MiB"
    p = ketch("update", "--memory", "128m", "--pids-limit", "50", "--restart",
              "on-failure:2", "upd")
    assert p.stdout == "upd\n"
    assert _limit(ketch, "upd") == "128MiB"
    got = ketch("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}"
                " {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy"
                ".MaximumRetryCount}}", "upd").stdout.strip()
    assert got == f"{128 * MiB} 50 on-failure:2"
    # kept for the next start
    ketch("stop", "-t", "0", "upd")
    ketch("start", "upd")
    assert _limit(ketch, "upd") == "128MiB"


def test_update_refuses_bad_values_and_changes_nothing(ketch, run_d) -> None:  # type: ignore[no-untyped-def]
    run_d("--name", "upd2", "-m", "64m", "busybox", "sleep", "300")
    p = ketch("update", "upd2", check=False)
    assert p.returncode == 1
    assert p.stderr == "Error: you must provide one or more flags when using this command\n"
    p = ketch("update", "-m", "1", "upd2", check=False)
    assert p.returncode == 1 and p.stderr == "Error: Minimum memory limit allowed is 6MB\n"
    p = ketch("update", "--restart", "sometimes", "upd2", check=False)
    assert p.returncode == 1 and "invalid restart policy" in p.stderr
    # a value the docker CLI's flag parsing refuses ends update with 125, as docker's
    p = ketch("update", "-m", "lots", "upd2", check=False)
    assert (p.returncode, p.stderr) == (125, 'Error: invalid argument "lots" for "-m, --memory"'
                                             " flag: invalid size: 'lots'\n")
    p = ketch("update", "--cpus", "abc", "upd2", check=False)
    assert p.returncode == 125 and p.stderr.startswith('Error: invalid argument "abc"')
    p = ketch("update", "-m", "96m", "nosuch", check=False)
    assert p.stderr == "Error: No such container: nosuch\n"
    assert ketch("inspect", "-f", "{{.HostConfig.Memory}}", "upd2").stdout.strip() == \
        str(64 * MiB)
    assert _limit(ketch, "upd2") == "64MiB"


def test_update_checks_cpu_values_as_dockerd_before_it_changes_anything(  # type: ignore[no-untyped-def]
        ketch, run_d) -> None:
    """The CFS period and quota are checked as at create, NanoCpus does not meet a period
    or quota set before (either way), and a cpuset the kernel refuses is said as at
    start; before, a bad value reached runc ('runc update: failed to write "5": write
    /sys/fs/cgroup/...: invalid argument') and --cpus beside --cpu-period was taken."""
    run_d("--name", "cpu1", "busybox", "sleep", "300")
    run_d("--name", "cpu2", "--cpus", "1", "busybox", "sleep", "300")
    for args, said in (
            (("--cpu-quota", "5", "cpu1"), "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
            (("--cpu-period", "5", "cpu1"), "CPU cfs period can not be less than 1ms"
                                            " (i.e. 1000) or larger than 1s (i.e. 1000000)"),
            (("--cpus", "1", "--cpu-period", "100000", "cpu1"),
             "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
            (("--cpuset-mems", "7", "cpu1"),
             "Requested memory nodes are not available - requested 7, available: 0"),
            (("--cpu-quota", "50000", "cpu2"),
             "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been"
             " set")):
        p = ketch("update", *args, check=False)
        assert (p.returncode, p.stdout, p.stderr) == (1, "", f"Error: {said}\n"), args
    fields = "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}}" \
             " {{.HostConfig.CpusetMems}}"
    assert ketch("inspect", "-f", fields, "cpu1", "cpu2").stdout.split("\n")[:2] == \
        ["0 0 0 ", "1000000000 0 0 "]
    assert ketch("update", "--cpu-quota", "50000", "cpu1").stdout == "cpu1\n"
    p = ketch("update", "--cpus", "0.5", "cpu1", check=False)
    assert p.stderr == ("Error: Conflicting options: Nano CPUs cannot be updated as CPU Quota"
                        " has already been set\n")
    assert ketch("update", "--cpus", "0.5", "cpu2").stdout == "cpu2\n"
