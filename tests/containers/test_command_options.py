"""Options of the container commands other than run/create/exec (the tables in
ketch.containers.optiontable), each seen to take effect on a real container."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pexpect
from tests.containers.conftest import cgroups_of
from tests.helpers.host import wait_for

TRAP = "trap 'echo caught USR1; exit 7' USR1; echo ready; while :; do sleep 0.1; done"


def spawn(ketch, *args: str) -> pexpect.spawn:
    return pexpect.spawn(ketch.argv(*args)[0], ketch.argv(*args)[1:], env=ketch.env(),
                         timeout=30, encoding="utf-8", dimensions=(40, 100))


def _logged(ketch, name: str, text: str) -> bool:
    return text in ketch("logs", name).stdout


def test_stop_signal_flag_sends_that_signal_first(ketch, run_d):
    run_d("--name", "sig", "busybox", "sh", "-c", TRAP)
    wait_for(lambda: _logged(ketch, "sig", "ready"), what="the trap to be set")
    assert ketch("stop", "--signal", "USR1", "-t", "20", "sig").stdout == "sig\n"
    assert ketch("inspect", "-f", "{{.State.ExitCode}}", "sig").stdout == "7\n"
    assert "caught USR1" in ketch("logs", "sig").stdout


def test_restart_signal_flag_sends_that_signal_then_starts_again(ketch, run_d):
    run_d("--name", "rsig", "busybox", "sh", "-c", TRAP)
    wait_for(lambda: _logged(ketch, "rsig", "ready"), what="the trap to be set")
    assert ketch("restart", "-s", "USR1", "-t", "20", "rsig").stdout == "rsig\n"
    assert ketch("inspect", "-f", "{{.State.Running}}", "rsig").stdout == "true\n"
    assert ketch("logs", "rsig").stdout.count("caught USR1") == 1


def test_start_detach_keys_end_the_session_and_leave_the_container_running(ketch):
    ketch("create", "-it", "--name", "sdk", "busybox", "sh")
    ketch.ids.add(ketch("inspect", "-f", "{{.Id}}", "sdk").stdout.strip())
    child = spawn(ketch, "start", "-ai", "--detach-keys", "ctrl-a,d", "sdk")
    try:
        child.sendline("echo $((6*7))")
        child.expect("42")
        child.send("\x01d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert ketch("inspect", "-f", "{{.State.Running}}", "sdk").stdout == "true\n"


def test_attach_detach_keys_end_the_session_and_leave_the_container_running(ketch, run_d):
    run_d("-it", "--name", "adk", "busybox", "sh")
    child = spawn(ketch, "attach", "--detach-keys", "ctrl-x,ctrl-y", "adk")
    try:
        child.sendline("echo $((6*7))")
        child.expect("42")
        child.send("\x18\x19")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert ketch("inspect", "-f", "{{.State.Running}}", "adk").stdout == "true\n"


def _signalled(ketch, *args: str) -> subprocess.Popen[str]:
    """The command started, waited for until the container printed "ready", then sent
    SIGUSR1 (the container's trap exits 7 when the signal reaches it)."""
    p = subprocess.Popen(ketch.argv(*args), env=ketch.env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline() == "ready\n"
    time.sleep(0.3)  # the command's signal handlers are set once it attached
    p.send_signal(signal.SIGUSR1)
    p.wait(timeout=30)
    return p


def test_run_sig_proxy_forwards_signals_to_the_container_and_false_does_not(ketch):
    p = _signalled(ketch, "run", "--name", "sp1", "busybox", "sh", "-c", TRAP)
    ketch.ids.add(ketch("inspect", "-f", "{{.Id}}", "sp1").stdout.strip())
    assert p.returncode == 7
    assert ketch("inspect", "-f", "{{.State.ExitCode}}", "sp1").stdout == "7\n"
    p = _signalled(ketch, "run", "--sig-proxy=false", "--name", "sp2", "busybox", "sh", "-c",
                   TRAP)
    ketch.ids.add(ketch("inspect", "-f", "{{.Id}}", "sp2").stdout.strip())
    assert p.returncode != 7
    assert ketch("inspect", "-f", "{{.State.Running}}", "sp2").stdout == "true\n"
    assert "caught" not in ketch("logs", "sp2").stdout


def test_attach_sig_proxy_forwards_signals_to_the_container_and_false_does_not(ketch,
                                                                                run_d):
    loop = "trap 'echo caught USR1; exit 7' USR1; while :; do echo ready; sleep 1; done"
    run_d("--name", "ap1", "busybox", "sh", "-c", loop)
    run_d("--name", "ap2", "busybox", "sh", "-c", loop)
    p = _signalled(ketch, "attach", "--sig-proxy=false", "ap2")
    assert p.returncode != 7
    assert ketch("inspect", "-f", "{{.State.Running}}", "ap2").stdout == "true\n"
    p = _signalled(ketch, "attach", "--sig-proxy", "ap1")
    assert p.returncode == 7
    assert ketch("inspect", "-f", "{{.State.ExitCode}}", "ap1").stdout == "7\n"


def test_cp_quiet_copies_and_prints_nothing(ketch, run_d, tmp_path):
    run_d("--name", "cpq", "busybox", "sleep", "300")
    (tmp_path / "f").write_text("payload\n")
    p = ketch("cp", "-q", str(tmp_path / "f"), "cpq:/tmp/f")
    assert (p.stdout, p.stderr) == ("", "")
    assert ketch("exec", "cpq", "cat", "/tmp/f").stdout == "payload\n"


def test_rm_link_is_refused_and_removes_nothing(ketch, run_d):
    run_d("--name", "lk", "busybox", "sleep", "300")
    p = ketch("rm", "--link", "lk", check=False)
    assert p.returncode == 1
    assert p.stderr.startswith("Error: --link is not supported") and p.stderr.count("\n") == 1
    assert ketch("inspect", "-f", "{{.State.Running}}", "lk").stdout == "true\n"


def _cg(cid: str, name: str) -> str:
    for d in cgroups_of(cid):
        for f in d.rglob(name):
            return f.read_text().strip()
    raise AssertionError(f"no {name} in the cgroups of {cid}")


def test_update_cpu_and_memory_flags_change_the_running_cgroup_and_the_record(ketch, run_d):
    cid = run_d("--name", "updc", "busybox", "sleep", "300")
    ketch("update", "--cpu-period", "50000", "--cpu-quota", "25000", "--cpu-shares", "512",
          "--cpuset-cpus", "0", "--cpuset-mems", "0", "--memory-reservation", "32m", "updc")
    assert _cg(cid, "cpu.cfs_period_us") == "50000"
    assert _cg(cid, "cpu.cfs_quota_us") == "25000"
    assert _cg(cid, "cpu.shares") == "512"
    assert _cg(cid, "cpuset.cpus") == "0"
    assert _cg(cid, "cpuset.mems") == "0"
    assert _cg(cid, "memory.soft_limit_in_bytes") == str(32 << 20)
    got = ketch("inspect", "-f", "{{.HostConfig.CpuPeriod}} {{.HostConfig.CpuQuota}}"
                " {{.HostConfig.CpuShares}} {{.HostConfig.CpusetCpus}}"
                " {{.HostConfig.MemoryReservation}}", "updc").stdout
    assert got == f"50000 25000 512 0 {32 << 20}\n"
    # --cpus sets the period and quota itself: not beside ones set before (dockerd's)
    p = ketch("update", "--cpus", "0.5", "updc", check=False)
    assert (p.returncode, p.stderr) == (1, "Error: Conflicting options: Nano CPUs cannot be"
                                           " updated as CPU Period has already been set\n")
    cid = run_d("--name", "updn", "busybox", "sleep", "300")
    ketch("update", "--cpus", "0.5", "updn")
    assert ketch("inspect", "-f", "{{.HostConfig.NanoCpus}}", "updn").stdout == "500000000\n"
    assert int(_cg(cid, "cpu.cfs_quota_us")) * 2 == int(_cg(cid, "cpu.cfs_period_us"))


def test_update_blkio_weight_is_recorded_where_the_kernel_has_weights(ketch, run_d):
    """Where the blkio controller has a weight file (CFQ's or BFQ's), the weight is set
    and recorded; where it has none (no BFQ scheduler), dockerd discards it with its
    warning, at update as at create."""
    from ketch.containers.options import blkio_weight_supported

    run_d("--name", "updb", "busybox", "sleep", "300")
    p = ketch("update", "--blkio-weight", "300", "updb")
    if blkio_weight_supported():
        assert p.stdout == "updb\n"
        assert ketch("inspect", "-f", "{{.HostConfig.BlkioWeight}}", "updb").stdout == "300\n"
    else:
        assert p.stdout == ("updb\nYour kernel does not support Block I/O weight or the cgroup"
                            " is not mounted. Weight discarded.\n")
        assert ketch("inspect", "-f", "{{.HostConfig.BlkioWeight}}", "updb").stdout == "0\n"
    p = ketch("update", "--blkio-weight", "5", "updb", check=False)
    if blkio_weight_supported():
        assert (p.returncode, p.stderr) == (1, "Error: Range of blkio weight is from 10 to"
                                               " 1000\n")
    else:  # dockerd looks at the host first: discarded whatever the value
        assert (p.returncode, p.stdout) == (0, "updb\nYour kernel does not support Block I/O"
                                               " weight or the cgroup is not mounted. Weight"
                                               " discarded.\n")


def test_update_kernel_memory_is_discarded_with_dockers_warning(ketch, run_d):
    run_d("--name", "updk", "busybox", "sleep", "300")
    p = ketch("update", "--kernel-memory", "50m", "updk")
    assert p.stdout == ("updk\nYour kernel does not support kernel memory limit capabilities"
                        " or the cgroup is not mounted. Limitation discarded.\n")
    hc = json.loads(ketch("inspect", "-f", "{{json .HostConfig}}", "updk").stdout)
    assert hc.get("KernelMemory", 0) == 0


def test_update_cpu_rt_flags_give_a_running_container_real_time_bandwidth(ketch, run_d):
    from pathlib import Path

    from tests.conftest import require

    require(Path("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists(),
            "real-time group scheduling (cgroup v1 cpu.rt_runtime_us)")
    cid = run_d("--name", "updrt", "busybox", "sleep", "300")
    parents = [d.parent / "cpu.rt_runtime_us" for d in cgroups_of(cid)
               if (d / "cpu.rt_runtime_us").exists()]
    before = {p: p.read_text() for p in parents}
    try:
        ketch("update", "--cpu-rt-period", "100000", "--cpu-rt-runtime", "20000", "updrt")
        assert _cg(cid, "cpu.rt_period_us") == "100000"
        assert _cg(cid, "cpu.rt_runtime_us") == "20000"
        got = ketch("inspect", "-f", "{{.HostConfig.CpuRealtimePeriod}}"
                    " {{.HostConfig.CpuRealtimeRuntime}}", "updrt").stdout
        assert got == "100000 20000\n"
        bad = ketch("update", "--cpu-rt-period", "1000", "--cpu-rt-runtime", "2000", "updrt",
                    check=False)
        assert bad.returncode == 1
        assert bad.stderr == ("Error: cpu real-time runtime cannot be higher than cpu"
                              " real-time period\n")
    finally:
        ketch("rm", "-f", "updrt", check=False)
        for p, text in before.items():
            try:
                p.write_text(text)  # the host's budget back
            except OSError:
                pass  # another container of the parent still holds some


def test_start_checkpoint_is_refused_and_the_container_stays_created(ketch):
    cid = ketch("create", "--name", "ckpt", "busybox", "true").stdout.strip()
    ketch.ids.add(cid)
    for flags in (["--checkpoint", "c1"], ["--checkpoint-dir", "/tmp/ckpt"]):
        p = ketch("start", *flags, "ckpt", check=False)
        assert p.returncode == 1
        assert p.stderr == ("Error: checkpoints are not supported: ketch has no"
                            " checkpoint/restore (an experimental Docker feature needing"
                            " CRIU)\n")
    assert ketch("inspect", "-f", "{{.State.Status}}", "ckpt").stdout == "created\n"


def test_system_prune_removes_stopped_containers_unused_networks_and_dangling_images(
        ketch, run_d):
    keep = run_d("--name", "keeper", "busybox", "sleep", "300")
    gone = ketch("create", "--name", "gone", "busybox", "true").stdout.strip()
    ketch("network", "create", "unusednet")
    anon = ketch("volume", "create").stdout.strip()
    ketch("volume", "create", "named-kept")
    # answering no changes nothing
    p = ketch("system", "prune", input="n\n")
    assert p.stdout.startswith("WARNING! This will remove:\n  - all stopped containers\n")
    assert "Deleted" not in p.stdout
    assert gone in ketch("ps", "-aq", "--no-trunc").stdout
    p = ketch("system", "prune", "--volumes", "--force")
    assert f"Deleted Containers:\n{gone}\n\n" in p.stdout
    assert "Deleted Networks:\nunusednet\n\n" in p.stdout
    assert f"Deleted Volumes:\n{anon}\n\n" in p.stdout
    assert re.search(r"Total reclaimed space: \S+\n$", p.stdout)
    assert ketch("ps", "-aq", "--no-trunc").stdout.split() == [keep]
    assert "unusednet" not in ketch("network", "ls", "--format", "{{.Name}}").stdout
    assert "named-kept" in ketch("volume", "ls", "-q").stdout.split()
    # the running container's image is in use: even -a keeps it
    ketch("system", "prune", "-a", "-f", "--filter", "until=1h")
    assert ketch("images", "-q", "busybox").stdout.strip() != ""
    ketch("volume", "rm", "named-kept")
