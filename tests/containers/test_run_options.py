"""`run`/`create` options beside Docker 20.10: each one has Docker's effect, seen from
inside or outside a real container, or Docker's clear refusal with nothing created."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from tests.conftest import require
from tests.containers.conftest import NOTHING_MADE, made_in, mounts_under

V1 = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()


def require_cgroup_v1() -> None:
    require(V1, "cgroup v1 controllers (cpu, cpuset, memory) at /sys/fs/cgroup/<name>")


def nothing_created(ketch) -> bool:
    return ketch("ps", "-aq").stdout.split() == []


# -- attach, detach, tty ---------------------------------------------------------------
def test_attach_stdout_only_shows_stdout(ketch):
    p = ketch("run", "--rm", "-a", "stdout", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (p.stdout, p.stderr) == ("out\n", "")


def test_attach_stderr_only_shows_stderr(ketch):
    p = ketch("run", "--rm", "-a", "STDERR", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (p.stdout, p.stderr) == ("", "err\n")


def test_a_missing_env_or_label_file_is_named_as_docker_names_it(ketch, tmp_path):
    for flag in ("--env-file", "--label-file"):
        p = ketch("run", "--rm", flag, str(tmp_path / "nope"), "busybox", "true", check=False)
        assert (p.returncode, p.stderr) == (125, f"Error: open {tmp_path / 'nope'}: no such"
                                                 " file or directory\n")
    assert nothing_created(ketch)


def test_a_network_alias_on_a_built_in_network_is_refused_at_create(ketch):
    # it was accepted and ignored: the default bridge and host have no DNS to answer it
    for network in ([], ["--network", "host"]):
        p = ketch("create", *network, "--network-alias", "web", "busybox", check=False)
        assert (p.returncode, p.stderr) == (125, "Error: network-scoped aliases are only"
                                                 " supported for user-defined networks\n")
    assert nothing_created(ketch)


def test_a_non_root_user_binds_port_80_and_pings_as_with_docker(ketch):
    # dockerd's defaults for a container with its own network namespace: ports below
    # 1024 and ICMP echo sockets without capabilities (a `USER node` app on port 80)
    p = ketch("run", "--rm", "-u", "1000", "busybox", "sh", "-c",
              "nc -l -p 80 & sleep 0.3; netstat -tln | grep -c ':80 '; "
              "cat /proc/sys/net/ipv4/ping_group_range")
    assert p.stdout.split("\n")[:2] == ["1", "0\t2147483647"]
    # the user's value wins; the host's namespace is left as it is
    p = ketch("run", "--rm", "--sysctl", "net.ipv4.ip_unprivileged_port_start=500",
              "busybox", "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start")
    assert p.stdout == "500\n"
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        host = f.read()
    p = ketch("run", "--rm", "--network", "host", "busybox", "cat",
              "/proc/sys/net/ipv4/ip_unprivileged_port_start")
    assert p.stdout == host


def test_bad_detach_keys_are_refused_before_anything_is_made(ketch):
    # dockerd refuses them at attach, whether a terminal is attached or not; they were
    # accepted (and ignored) without one
    p = ketch("run", "--rm", "--detach-keys", "bogus", "busybox", "true", check=False)
    assert (p.returncode, p.stderr) == (125, "Error: Invalid detach keys (bogus) provided\n")
    assert nothing_created(ketch)


def test_attach_with_detach_is_refused_as_docker(ketch):
    p = ketch("run", "-d", "-a", "stdout", "busybox", "true", check=False)
    # the docker CLI's own check: exit 1, as its argument errors
    assert (p.returncode, p.stderr) == (1, "Error: conflicting options: cannot specify both"
                                           " --attach and --detach\n")
    assert nothing_created(ketch)


def test_attach_to_an_unknown_stream_is_refused(ketch):
    p = ketch("run", "--rm", "-a", "stdweird", "busybox", "true", check=False)
    assert p.returncode == 125
    assert "valid streams are STDIN, STDOUT and STDERR" in p.stderr


def test_tty_without_interactive_runs_when_stdin_is_no_terminal(ketch):
    p = ketch("run", "--rm", "-t", "busybox", "sh", "-c", "echo hi; tty", input="")
    assert p.returncode == 0
    # the process's stdout is the pty
    lines = p.stdout.splitlines()
    assert lines[0] == "hi"
    assert re.fullmatch(r"/dev/pts/\d+", lines[1]), lines


def test_tty_with_interactive_still_needs_a_terminal(ketch):
    p = ketch("run", "--rm", "-it", "busybox", "true", input="", check=False)
    assert (p.returncode, p.stderr) == (1, "the input device is not a TTY\n")  # as docker's


# -- entrypoint, expose, publish ------------------------------------------------------
def test_entrypoint_is_one_word_as_docker_keeps_it(ketch):
    cid = ketch("create", "--entrypoint", "sh -c", "busybox", "echo hi").stdout.strip()
    assert ketch("inspect", "-f", "{{json .Config.Entrypoint}}", cid).stdout.strip() == \
        '["sh -c"]'
    p = ketch("start", "-a", cid, check=False)
    assert p.returncode == 127  # no executable called "sh -c", as with Docker
    assert '"sh -c"' in p.stderr


def test_expose_range_is_one_port_each_and_publish_all_publishes_them(ketch, run_d):
    cid = run_d("--expose", "7000-7001", "-P", "busybox", "sleep", "30")
    exposed = ketch("inspect", "-f", "{{json .Config.ExposedPorts}}", cid).stdout.strip()
    assert exposed == '{"7000/tcp":{},"7001/tcp":{}}'
    lines = ketch("port", cid).stdout.splitlines()
    lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    seen = {}
    for line in lines:
        m = re.fullmatch(r"(\d+)/tcp -> 0\.0\.0\.0:(\d+)", line)
        assert m, lines
        seen[int(m.group(1))] = int(m.group(2))
    assert sorted(seen) == [7000, 7001]
    assert all(lo <= port <= hi for port in seen.values()), seen


# -- hostnames of shared namespaces ----------------------------------------------------
def test_network_host_gives_the_hosts_name(ketch):
    p = ketch("run", "--rm", "--network", "host", "busybox", "hostname")
    assert p.stdout.strip() == socket.gethostname()


def test_network_container_gives_that_containers_name(ketch, run_d):
    run_d("--name", "donor", "--hostname", "donorhost", "busybox", "sleep", "30")
    p = ketch("run", "--rm", "--network", "container:donor", "busybox", "hostname")
    assert p.stdout.strip() == "donorhost"
    bad = ketch("run", "--rm", "--network", "container:donor", "-h", "x", "busybox",
                "true", check=False)
    assert bad.returncode == 125
    assert "conflicting options: hostname and the network mode" in bad.stderr


def test_ip_on_the_default_bridge_is_refused_as_docker(ketch):
    # moby: enableIPOnPredefinedNetwork() is false on Linux
    p = ketch("run", "--rm", "--ip", "10.250.0.9", "busybox", "true", check=False)
    assert p.returncode == 125
    assert "user specified IP address is supported on user defined networks only" in p.stderr


# -- runtime, failed starts ------------------------------------------------------------
def test_unknown_runtime_is_refused_at_create_and_leaves_nothing(ketch):
    p = ketch("create", "--runtime", "bogus", "busybox", "true", check=False)
    assert p.returncode == 125
    assert "Unknown runtime specified bogus" in p.stderr
    assert nothing_created(ketch)


@pytest.mark.parametrize("remove", [("rm", "-f"), ("container", "prune", "-f")])
def test_a_container_whose_start_failed_is_removable_and_unmounted(ketch, remove):
    cid = ketch("create", "busybox", "/no/such/program").stdout.strip()
    p = ketch("start", cid, check=False)
    assert p.returncode != 0
    assert ketch("inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == "created"
    assert not mounts_under(ketch.root / "containers" / cid)
    ketch(*remove, *([cid] if remove[0] == "rm" else []))
    assert nothing_created(ketch)


# -- platform --------------------------------------------------------------------------
def test_platform_mismatch_does_not_use_the_local_image_and_pulls(ketch):
    import socket

    from ketch.oci.model import host_platform

    other = "linux/arm64" if host_platform().architecture != "arm64" else "linux/amd64"
    # a loopback port held by a socket that never listens: the pull is refused at once,
    # never leaving the host, and no other process can take the port meanwhile
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        registry = f"127.0.0.1:{held.getsockname()[1]}"
        ref = f"{registry}/plat/busybox"
        ketch("tag", "busybox", ref)
        try:
            assert ketch("run", "--rm", ref, "true").returncode == 0
            p = ketch("run", "--rm", "--platform", other, ref, "true", check=False)
            assert p.returncode == 125
            assert f"Unable to find image '{ref}:latest' locally" in p.stderr
            assert registry in p.stderr.splitlines()[-1]
            assert nothing_created(ketch)
        finally:
            ketch("rmi", ref, check=False)


# -- sysctls, labels, commit, logs ------------------------------------------------------
def test_sysctl_without_equals_is_refused_with_dockers_message(ketch):
    p = ketch("run", "--rm", "--sysctl", "noequals", "busybox", "true", check=False)
    assert p.returncode == 125
    assert "sysctl 'noequals' is not whitelisted" in p.stderr
    assert nothing_created(ketch)


def test_sysctl_outside_dockers_list_is_refused_at_create(ketch):
    p = ketch("create", "--sysctl", "kernel.domainname=x", "busybox", "true", check=False)
    assert p.returncode == 125
    assert "sysctl 'kernel.domainname=x' is not whitelisted" in p.stderr
    assert nothing_created(ketch)


def test_sysctl_the_kernel_lacks_gives_one_clean_line(ketch):
    p = ketch("run", "--rm", "--sysctl", "net.ipv4.no_such_knob=1", "busybox", "true",
              check=False)
    assert p.returncode == 125
    assert p.stderr.strip().splitlines() == [
        "Error: invalid sysctl net.ipv4.no_such_knob: the kernel has no such setting"]


def test_sysctl_takes_effect(ketch):
    p = ketch("run", "--rm", "--sysctl", "kernel.shmmni=1234", "busybox", "cat",
              "/proc/sys/kernel/shmmni")
    assert p.stdout.strip() == "1234"


def test_cpuset_of_a_cpu_the_host_lacks_gives_one_clean_line(ketch):
    n = os.cpu_count() or 1
    p = ketch("run", "--rm", "--cpuset-cpus", str(n + 5), "busybox", "true", check=False)
    assert p.returncode == 125
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: Requested CPUs are not available - requested {n + 5},"
                               " available: ")
    assert "runc" not in lines[0]


def test_label_file_line_without_equals_is_left_out(ketch, tmp_path):
    f = tmp_path / "labels"
    f.write_text("a=1\nb\n# comment\nc=\n")
    cid = ketch("create", "--label-file", str(f), "busybox", "true").stdout.strip()
    labels = ketch("inspect", "-f", "{{json .Config.Labels}}", cid).stdout.strip()
    assert labels == '{"a":"1","c":""}'


def test_commit_message_is_the_images_comment(ketch, run_d):
    cid = run_d("busybox", "sh", "-c", "echo x > /f; sleep 30")
    ketch("commit", "-m", "added f", cid, "committed:msg")
    try:
        inspect = ketch("image", "inspect", "-f", "{{.Comment}}", "committed:msg")
        assert inspect.stdout.strip() == "added f"
        history = ketch("history", "--format", "{{.Comment}}", "committed:msg").stdout
        assert history.splitlines()[0] == "added f"
    finally:
        ketch("rmi", "committed:msg", check=False)


def test_logs_details_puts_a_space_before_each_line(ketch):
    cid = ketch("create", "busybox", "sh", "-c", "echo one; echo two").stdout.strip()
    ketch("start", "-a", cid)
    assert ketch("logs", "--details", cid).stdout == " one\n two\n"
    stamped = ketch("logs", "--details", "-t", cid).stdout.splitlines()
    assert all(re.fullmatch(r"\S+Z  (one|two)", line) for line in stamped), stamped


# -- options Docker has that ketch lacked -----------------------------------------------
def test_gpus_are_refused_clearly(ketch):
    p = ketch("run", "--rm", "--gpus", "all", "busybox", "true", check=False)
    assert p.returncode == 125
    assert "no GPU support" in p.stderr
    assert nothing_created(ketch)


def test_domainname(ketch):
    p = ketch("run", "--rm", "--domainname", "example.org", "busybox", "cat",
              "/proc/sys/kernel/domainname")
    assert p.stdout.strip() == "example.org"


def test_oom_score_adj(ketch):
    p = ketch("run", "--rm", "--oom-score-adj", "500", "busybox", "cat",
              "/proc/self/oom_score_adj")
    assert p.stdout.strip() == "500"
    bad = ketch("run", "--rm", "--oom-score-adj", "1001", "busybox", "true", check=False)
    assert bad.returncode == 125
    assert "Invalid value 1001, range for oom score adj is [-1000, 1000]" in bad.stderr


def test_cpu_period_and_quota_reach_the_cgroup(ketch):
    require_cgroup_v1()
    p = ketch("run", "--rm", "--cpu-period", "50000", "--cpu-quota", "25000", "busybox",
              "cat", "/sys/fs/cgroup/cpu/cpu.cfs_period_us", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    assert p.stdout.split() == ["50000", "25000"]
    bad = ketch("run", "--rm", "--cpus", "1", "--cpu-quota", "25000", "busybox", "true",
                check=False)
    assert bad.returncode == 125
    assert "Conflicting options: Nano CPUs and CPU Quota cannot both be set" in bad.stderr


def test_cpuset_mems_memory_swappiness_and_oom_kill_disable(ketch):
    require_cgroup_v1()
    p = ketch("run", "--rm", "--cpuset-mems", "0", "--memory-swappiness", "7", "-m", "64m",
              "--oom-kill-disable", "busybox", "cat", "/sys/fs/cgroup/cpuset/cpuset.mems",
              "/sys/fs/cgroup/memory/memory.swappiness", "/sys/fs/cgroup/memory/memory.oom_control")
    out = p.stdout.split("\n")
    assert out[0] == "0"
    assert out[1] == "7"
    assert "oom_kill_disable 1" in p.stdout
    bad = ketch("run", "--rm", "--memory-swappiness", "101", "busybox", "true", check=False)
    assert "Invalid value: 101, valid memory swappiness range is 0-100" in bad.stderr


def test_oom_kill_disable_without_memory_limit_warns_as_docker(ketch):
    p = ketch("run", "--rm", "--oom-kill-disable", "busybox", "true")
    assert ("WARNING: Disabling the OOM killer on containers without setting a"
            " '-m/--memory' limit may be dangerous.") in p.stderr


def test_blkio_weight_is_applied_or_discarded_with_dockers_warning(ketch):
    from ketch.containers.options import blkio_weight_supported

    p = ketch("run", "--rm", "--blkio-weight", "300", "busybox", "sh", "-c",
              "cat /sys/fs/cgroup/blkio/blkio*weight 2>/dev/null; true")
    if blkio_weight_supported():
        assert "300" in p.stdout.split()
    else:
        assert ("WARNING: Your kernel does not support Block I/O weight or the cgroup is not"
                " mounted. Weight discarded.") in p.stderr
    bad = ketch("run", "--rm", "--blkio-weight", "5", "busybox", "true", check=False)
    if blkio_weight_supported():
        assert "Range of blkio weight is from 10 to 1000" in bad.stderr
    else:  # dockerd looks at the host first: the weight is discarded whatever it is
        assert (bad.returncode, bad.stderr) == (0, "WARNING: Your kernel does not support"
                                                   " Block I/O weight or the cgroup is not"
                                                   " mounted. Weight discarded.\n")


def test_kernel_memory_is_accepted_with_dockers_warning(ketch):
    p = ketch("run", "--rm", "--kernel-memory", "64m", "busybox", "true")
    assert "WARNING: Your kernel does not support kernel memory limit" in p.stderr


def test_disable_content_trust_is_accepted(ketch):
    assert ketch("run", "--rm", "--disable-content-trust", "busybox", "echo", "ok").stdout \
        == "ok\n"


def test_pid_host_and_pid_container(ketch, run_d):
    p = ketch("run", "--rm", "--pid", "host", "busybox", "readlink", "/proc/self/ns/pid")
    assert p.stdout.strip() == os.readlink("/proc/self/ns/pid")
    run_d("--name", "pidowner", "busybox", "sleep", "30")
    p = ketch("run", "--rm", "--pid", "container:pidowner", "busybox", "ps", "-o", "pid,args")
    assert re.search(r"^\s*1 sleep 30$", p.stdout, re.M), p.stdout
    bad = ketch("run", "--rm", "--pid", "bogus", "busybox", "true", check=False)
    assert bad.returncode == 125
    assert "invalid PID mode: bogus" in bad.stderr


def test_ipc_host_shareable_and_container(ketch, run_d):
    p = ketch("run", "--rm", "--ipc", "host", "busybox", "readlink", "/proc/self/ns/ipc")
    assert p.stdout.strip() == os.readlink("/proc/self/ns/ipc")
    run_d("--name", "ipcowner", "--ipc", "shareable", "busybox", "sleep", "30")
    mine = ketch("exec", "ipcowner", "readlink", "/proc/self/ns/ipc").stdout.strip()
    joined = ketch("run", "--rm", "--ipc", "container:ipcowner", "busybox", "readlink",
                   "/proc/self/ns/ipc").stdout.strip()
    assert joined == mine != os.readlink("/proc/self/ns/ipc")
    run_d("--name", "ipcprivate", "busybox", "sleep", "30")
    bad = ketch("run", "--rm", "--ipc", "container:ipcprivate", "busybox", "true",
                check=False)
    assert bad.returncode == 125
    assert "non-shareable" in bad.stderr


def test_uts_host_gives_the_hosts_name(ketch):
    p = ketch("run", "--rm", "--uts", "host", "busybox", "sh", "-c",
              "hostname; readlink /proc/self/ns/uts")
    assert p.stdout.split() == [socket.gethostname(), os.readlink("/proc/self/ns/uts")]


def test_cgroupns_private_and_host(ketch):
    private = ketch("run", "--rm", "--cgroupns", "private", "busybox", "readlink",
                    "/proc/self/ns/cgroup").stdout.strip()
    host = ketch("run", "--rm", "--cgroupns", "host", "busybox", "readlink",
                 "/proc/self/ns/cgroup").stdout.strip()
    assert host == os.readlink("/proc/self/ns/cgroup")
    assert private.startswith("cgroup:[") and private != host


def test_cgroup_parent_places_the_container_there(ketch):
    parent = f"ketch-test-parent-{os.getpid()}"
    try:
        p = ketch("run", "--rm", "--cgroup-parent", parent, "busybox", "cat", "/proc/self/cgroup")
        lines = [ln for ln in p.stdout.splitlines() if ln.split(":")[1] in ("pids", "")]
        assert lines and all(ln.split(":")[2].startswith(f"/{parent}/") for ln in lines), \
            p.stdout
    finally:
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            d = hierarchy / parent
            if d.is_dir():
                d.rmdir()
        if (Path("/sys/fs/cgroup") / parent).is_dir():
            (Path("/sys/fs/cgroup") / parent).rmdir()


def test_device_is_made_and_allowed_in_the_container(ketch):
    require(Path("/dev/fuse").exists(), "/dev/fuse on the host")
    st = os.stat("/dev/fuse")
    p = ketch("run", "--rm", "--device", "/dev/fuse:/dev/myfuse:r", "busybox", "sh", "-c",
              "stat -c '%t:%T' /dev/myfuse; cat /dev/myfuse; echo rc=$?")
    numbers, *rest = p.stdout.splitlines()
    assert numbers == f"{os.major(st.st_rdev):x}:{os.minor(st.st_rdev):x}"
    # the device cgroup lets it be opened (fuse then refuses the read itself)
    assert "can't open" not in p.stderr
    missing = ketch("run", "--rm", "--device", "/dev/no-such-dev", "busybox", "true",
                    check=False)
    assert missing.returncode == 125
    assert 'error gathering device information while adding custom device' in missing.stderr


@pytest.mark.parametrize(("path", "why"), [("/dev/no-such-dev", "no such file or directory"),
                                         ("/etc/hostname", "not a device node")])
def test_create_refuses_a_device_the_host_lacks_and_creates_nothing(ketch, path, why):
    p = ketch("create", "--device", path, "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.stderr == ("Error: error gathering device information while adding custom"
                        f' device "{path}": {why}\n')
    assert made_in(ketch.root) == NOTHING_MADE


def test_device_cgroup_rule_allows_a_device_node(ketch):
    script = "mknod /dev/f c 10 229; cat /dev/f 2>&1; true"
    denied = ketch("run", "--rm", "busybox", "sh", "-c", script).stdout
    allowed = ketch("run", "--rm", "--device-cgroup-rule", "c 10:229 rw", "busybox",
                    "sh", "-c", script).stdout
    assert "can't open '/dev/f': Operation not permitted" in denied
    assert "can't open" not in allowed
    bad = ketch("run", "--rm", "--device-cgroup-rule", "x 1:2 rw", "busybox", "true",
                check=False)
    assert bad.returncode == 125
    assert "invalid device cgroup format 'x 1:2 rw'" in bad.stderr


def test_volumes_from_mounts_the_other_containers_volumes(ketch, run_d, tmp_path):
    bind = tmp_path / "bind"
    bind.mkdir()
    run_d("--name", "vsrc", "-v", "vfdata:/data", "-v", f"{bind}:/b:ro", "busybox", "sh",
          "-c", "echo seeded > /data/f; sleep 30")
    from tests.containers.conftest import wait_for

    wait_for(lambda: "seeded" in ketch("exec", "vsrc", "cat", "/data/f", check=False).stdout)
    p = ketch("run", "--rm", "--volumes-from", "vsrc", "busybox", "sh", "-c",
              "cat /data/f; echo new > /data/g; touch /b/x 2>/dev/null || echo b-ro")
    assert p.stdout.split() == ["seeded", "b-ro"]
    ro = ketch("run", "--rm", "--volumes-from", "vsrc:ro", "busybox", "sh", "-c",
               "touch /data/h 2>/dev/null || echo data-ro")
    assert ro.stdout.strip() == "data-ro"
    missing = ketch("create", "--volumes-from", "nobody", "busybox", "true", check=False)
    assert missing.returncode == 125
    assert "No such container: nobody" in missing.stderr


def test_mac_address(ketch):
    p = ketch("run", "--rm", "--mac-address", "92:d0:c6:0a:29:33", "busybox", "cat",
              "/sys/class/net/eth0/address")
    assert p.stdout.strip() == "92:d0:c6:0a:29:33"
    bad = ketch("run", "--rm", "--mac-address", "nope", "busybox", "true", check=False)
    assert bad.returncode == 125
    assert "nope is not a valid mac address" in bad.stderr


def test_exec_env_file(ketch, run_d, tmp_path):
    f = tmp_path / "env"
    f.write_text("A=1\n# comment\nB=two words\n")
    cid = run_d("busybox", "sleep", "30")
    p = ketch("exec", "--env-file", str(f), "-e", "C=3", cid, "sh", "-c", "echo $A,$B,$C")
    assert p.stdout == "1,two words,3\n"


# -- other commands' options -----------------------------------------------------------
def test_ps_format_label_prints_that_labels_value(ketch):
    ketch("create", "--label", "role=web", "--name", "labelled", "busybox", "true")
    ketch("create", "--name", "plain", "busybox", "true")
    p = ketch("ps", "-a", "--format", '{{.Names}}={{.Label "role"}}')
    assert sorted(p.stdout.splitlines()) == ["labelled=web", "plain="]


def test_device_throttles_reach_the_blkio_cgroup(ketch):
    require_cgroup_v1()
    require(Path("/dev/loop0").exists(), "/dev/loop0 on the host")
    st = os.stat("/dev/loop0")
    dev = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    p = ketch("run", "--rm", "--device-read-bps", "/dev/loop0:1mb", "--device-write-bps",
              "/dev/loop0:2mb", "--device-read-iops", "/dev/loop0:40", "--device-write-iops",
              "/dev/loop0:50", "busybox", "cat",
              *(f"/sys/fs/cgroup/blkio/blkio.throttle.{f}_device"
                for f in ("read_bps", "write_bps", "read_iops", "write_iops")))
    assert p.stdout.splitlines() == [f"{dev} 1048576", f"{dev} 2097152", f"{dev} 40",
                                     f"{dev} 50"]
    bad = ketch("run", "--rm", "--device-read-iops", "/dev/loop0:fast", "busybox", "true",
                check=False)
    assert bad.returncode == 125
    assert "invalid rate for device: /dev/loop0:fast." in bad.stderr
    missing = ketch("run", "--rm", "--device-read-bps", "/dev/no-such:1mb", "busybox", "true",
                    check=False)
    assert missing.returncode == 125
    assert "error getting device information for /dev/no-such" in missing.stderr
    assert nothing_created(ketch)


@pytest.mark.parametrize("option, message", [
    (("--isolation", "hyperv"), "Invalid isolation: \"hyperv\" - linux only supports 'default'"),
    (("--userns", "private"), "--userns: invalid USER mode"),
    (("--storage-opt", "size=1G"),
     "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"),
    (("--volume-driver", "flocker"),
     'error looking up volume plugin flocker: plugin "flocker" not found'),
])
def test_options_ketch_cannot_honour_are_refused_as_docker(ketch, option, message):
    p = ketch("create", *option, "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.stderr.strip() == f"Error: {message}"
    assert nothing_created(ketch)


@pytest.mark.parametrize("option", [("--isolation", "default"), ("--userns", "host"),
                                    ("--volume-driver", "local")])
def test_the_values_docker_has_on_linux_are_accepted(ketch, option):
    assert ketch("run", "--rm", *option, "busybox", "echo", "ok").stdout == "ok\n"


def test_link_adds_hosts_entry_and_legacy_environment(ketch, run_d):
    cid = run_d("--name", "db", "-e", "PGX=1", "--expose", "5432", "busybox", "sleep", "30")
    ip = ketch("inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid).stdout.strip()
    p = ketch("run", "--rm", "--name", "app", "--link", "db:database", "busybox", "sh", "-c",
              "grep database /etc/hosts; env | grep ^DATABASE_ | sort")
    lines = p.stdout.splitlines()
    assert lines[0].split() == [ip, "database", cid[:12], "db"]
    assert lines[1:] == sorted([
        "DATABASE_ENV_PGX=1", "DATABASE_NAME=/app/database",
        f"DATABASE_PORT=tcp://{ip}:5432", f"DATABASE_PORT_5432_TCP=tcp://{ip}:5432",
        f"DATABASE_PORT_5432_TCP_ADDR={ip}", "DATABASE_PORT_5432_TCP_PORT=5432",
        "DATABASE_PORT_5432_TCP_PROTO=tcp"])
    ketch("stop", "-t", "0", "db")
    stopped = ketch("run", "--rm", "--link", "db", "busybox", "true", check=False)
    assert stopped.returncode == 125
    assert "Cannot link to a non running container: /db AS" in stopped.stderr


def test_ipc_none_has_no_dev_shm(ketch):
    p = ketch("run", "--rm", "--ipc", "none", "busybox", "sh", "-c",
              "test -e /dev/shm && echo present; readlink /proc/self/ns/ipc")
    assert p.stdout.strip() != os.readlink("/proc/self/ns/ipc")
    assert "present" not in p.stdout


def test_inspect_shows_dockers_namespace_defaults(ketch):
    from ketch.containers.options import default_cgroupns_mode

    cid = ketch("create", "busybox", "true").stdout.strip()
    p = ketch("inspect", "-f", "{{.HostConfig.IpcMode}} {{.HostConfig.CgroupnsMode}}", cid)
    assert p.stdout.split() == ["private", default_cgroupns_mode()]


def test_inspect_shows_dockers_zero_resources_for_a_container_made_without_them(ketch):
    cid = ketch("create", "busybox", "true").stdout.strip()
    p = ketch("inspect", "-f", "{{.HostConfig.BlkioWeight}} {{.HostConfig.CpuShares}}"
              " {{.HostConfig.CpuQuota}} {{.HostConfig.ShmSize}} {{.HostConfig.OomScoreAdj}}"
              " {{json .HostConfig.PidsLimit}} {{json .HostConfig.ConsoleSize}}"
              " {{len .HostConfig.BlkioDeviceReadBps}}", cid)
    assert p.stdout == "0 0 0 67108864 0 null [0,0] 0\n"
    # and it is the /dev/shm such a container really gets
    df = ketch("run", "--rm", "busybox", "df", "-k", "/dev/shm").stdout.splitlines()[1]
    assert int(df.split()[1]) * 1024 == 67108864



# -- flags that took effect without a test of their own ---------------------------------
def test_blkio_weight_device_is_applied_or_discarded_with_dockers_warning(ketch):
    from ketch.containers.options import blkio_weight_supported

    require(Path("/dev/loop0").exists(), "/dev/loop0 on the host")
    p = ketch("run", "--rm", "--blkio-weight-device", "/dev/loop0:200", "busybox", "sh",
              "-c", "cat /sys/fs/cgroup/blkio/blkio*weight_device 2>/dev/null; true")
    if blkio_weight_supported():
        assert "200" in p.stdout
    else:
        assert "Weight-device discarded." in p.stderr
    bad = ketch("run", "--rm", "--blkio-weight-device", "/dev/loop0:5", "busybox", "true",
                check=False)
    assert "invalid weight for device: /dev/loop0:5" in bad.stderr


def test_detach_keys_detach_an_attached_run(ketch, tmp_path):
    import pexpect

    cidfile = tmp_path / "cid"
    argv = ketch.argv("run", "-it", "--cidfile", str(cidfile), "--detach-keys", "ctrl-a,d",
                      "--name", "keys", "busybox", "sh")
    child = pexpect.spawn(argv[0], argv[1:], env=ketch.env(), timeout=30, encoding="utf-8")
    try:
        child.expect(r"[#$] ")
        child.send("\x01d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
        ketch.note_cidfile(cidfile)
    assert child.exitstatus == 0
    assert ketch("inspect", "-f", "{{.State.Status}}", "keys").stdout.strip() == "running"


def test_dns_option_group_add_and_shm_size(ketch):
    p = ketch("run", "--rm", "--dns-option", "ndots:3", "--group-add", "1234",
              "--shm-size", "8m", "busybox", "sh", "-c",
              "grep ^options /etc/resolv.conf; id -G; df -k /dev/shm | tail -1")
    options, groups, shm = p.stdout.splitlines()
    assert options == "options ndots:3"
    assert "1234" in groups.split()
    assert shm.split()[1] == str(8 * 1024)


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--dns", "bad", "IP address is not correctly formatted: bad"),
    ("--dns", "1.2.3", "IP address is not correctly formatted: 1.2.3"),
    ("--dns-search", "bad search!", "bad search! is not a valid domain"),
    ("--dns-search", "-a.example", "-a.example is not a valid domain"),
    ("--dns-search", "123", "123 is not a valid domain"),
])
def test_a_dns_server_or_search_domain_that_is_not_one_is_refused(ketch, flag, value, message):
    p = ketch("run", "--rm", flag, value, "busybox", "true", check=False)
    assert (p.returncode, p.stderr) == (125, f"Error: {message}\n")
    assert nothing_created(ketch)


def test_dns_servers_are_trimmed_and_search_dot_means_no_search_line(ketch):
    p = ketch("run", "--rm", "--dns", " 192.0.2.53", "--dns", "2001:db8::53",
              "--dns-search", ".", "busybox", "cat", "/etc/resolv.conf")
    assert p.stdout == "nameserver 192.0.2.53\nnameserver 2001:db8::53\n"
    p = ketch("run", "--rm", "--dns", "192.0.2.53", "--dns-search", "corp.example.",
              "--dns-search", "b-2.example", "busybox", "cat", "/etc/resolv.conf")
    assert p.stdout == "nameserver 192.0.2.53\nsearch corp.example. b-2.example\n"


def test_memory_reservation_reaches_the_cgroup(ketch):
    require_cgroup_v1()
    p = ketch("run", "--rm", "-m", "64m", "--memory-reservation", "32m", "busybox", "cat",
              "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes")
    assert p.stdout.strip() == str(32 << 20)


def test_no_healthcheck_and_stop_timeout_are_recorded_and_used(ketch, run_d):
    cid = run_d("--no-healthcheck", "--stop-timeout", "1", "busybox", "sh", "-c",
                "trap '' TERM; sleep 30")
    fields = ketch("inspect", "-f", "{{json .Config.Healthcheck}} {{.Config.StopTimeout}}",
                   cid).stdout.split()
    assert fields == ['{"Test":["NONE"]}', "1"]
    import time

    start = time.monotonic()
    ketch("stop", cid)  # TERM is ignored: SIGKILL after the container's 1 s, not 10 s
    assert time.monotonic() - start < 8
    assert ketch("inspect", "-f", "{{.State.ExitCode}}", cid).stdout.strip() == "137"



def test_network_subnet_overlapping_a_host_route_or_network_is_refused(ketch):
    import ipaddress

    routes = []
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if 0 < bin(int(fields[7], 16)).count("1") <= 29:
            dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
            routes.append(ipaddress.IPv4Network(f"{dest}/{bin(int(fields[7], 16)).count('1')}"))
    require(bool(routes), "a non-default IPv4 route on the host")
    inside = next(routes[0].subnets(new_prefix=min(routes[0].prefixlen + 1, 30)))
    p = ketch("network", "create", "--subnet", str(inside), "overlaps-route", check=False)
    assert p.returncode == 1
    assert "Pool overlaps with other one on this address space" in p.stderr
    bridge = ketch("network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", "bridge")
    p = ketch("network", "create", "--subnet", bridge.stdout.strip(), "overlaps-bridge",
              check=False)
    assert p.returncode == 1
    assert "Pool overlaps with other one on this address space" in p.stderr
    assert "overlaps" not in ketch("network", "ls", "--format", "{{.Name}}").stdout


def test_cpu_rt_runtime_and_period_reach_the_containers_cgroup(ketch):
    require_cgroup_v1()
    rt = "/sys/fs/cgroup/cpu/cpu.rt_runtime_us"
    if not Path(rt).exists():
        p = ketch("run", "--rm", "--cpu-rt-runtime", "10000", "busybox", "true", check=False)
        assert p.returncode == 125
        assert "Your kernel does not support cgroup cpu real-time runtime" in p.stderr
        return
    parent = Path("/sys/fs/cgroup/cpu/ketch/cpu.rt_runtime_us")  # the default parent
    before = parent.read_text() if parent.exists() else None
    try:
        p = ketch("run", "--rm", "--cpu-rt-period", "100000", "--cpu-rt-runtime", "20000",
                  "busybox", "cat", "/sys/fs/cgroup/cpu/cpu.rt_period_us", rt)
        assert p.stdout.split() == ["100000", "20000"]
        # the parent got the container's share of real-time bandwidth (20 %)
        assert int(parent.read_text()) >= 200000
    finally:
        if before is not None:
            try:
                parent.write_text(before)  # give the host its budget back
            except OSError:
                pass  # another container of the parent still holds some
    bad = ketch("run", "--rm", "--cpu-rt-period", "1000", "--cpu-rt-runtime", "2000",
                "busybox", "true", check=False)
    assert bad.returncode == 125
    assert bad.stderr.strip() == ("Error: cpu real-time runtime cannot be higher than cpu"
                                  " real-time period")
    assert made_in(ketch.root) == NOTHING_MADE
