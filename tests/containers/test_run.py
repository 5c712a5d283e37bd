"""`run` and `create`: attached and detached, exit codes, process settings, isolation,
limits, `--rm`, names."""

from __future__ import annotations

import re
import resource
import subprocess
import threading
import time
from pathlib import Path

import pytest
from tests.containers.conftest import NOTHING_MADE, cgroups_of, made_in
from tests.helpers.host import wait_for

DOCKER_DEFAULT_CAPEFF = 0xA80425FB
CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21


def cap_eff(text: str) -> int:
    m = re.search(r"^CapEff:\s*([0-9a-f]+)$", text, re.M)
    assert m, text
    return int(m.group(1), 16)


# -- attached vs detached ---------------------------------------------------------------
def test_run_attached_streams_output_and_returns_the_exit_code(ketch):
    p = ketch("run", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert p.returncode == 3
    assert p.stdout == "out\n"
    assert p.stderr == "err\n"


def test_run_detached_prints_the_full_id_and_returns_at_once(ketch):
    start = time.monotonic()
    p = ketch("run", "-d", "--name", "bg", "busybox", "sleep", "30")
    assert time.monotonic() - start < 10
    cid = p.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert ketch("inspect", "-f", "{{.State.Status}}", "bg").stdout.strip() == "running"
    assert ketch("ps", "-q").stdout.split() == [cid[:12]]


def test_detached_container_outlives_the_cli_and_records_its_exit(ketch, run_d):
    cid = run_d("busybox", "sh", "-c", "sleep 0.5; exit 7")
    assert ketch("wait", cid).stdout.strip() == "7"
    st = ketch("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid).stdout.split()
    assert st == ["exited", "7"]


def test_run_di_keeps_stdin_open_across_attaches_and_attaches_nothing(ketch, run_d):
    """docker run -di: stdin stays open after an attach ends (StdinOnce false), so a
    second attach still feeds the same process; nothing is attached by run itself."""
    run_d("-i", "--name", "keep", "busybox", "sh", "-c",
          "while read l; do echo got:$l; done")
    got = ketch("inspect", "-f", "{{.Config.OpenStdin}} {{.Config.StdinOnce}}"
                " {{.Config.AttachStdin}} {{.Config.AttachStdout}}", "keep").stdout
    assert got == "true false false false\n"
    for word in ("one", "two"):
        p = subprocess.Popen(ketch.argv("attach", "keep"), env=ketch.env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        p.stdin.write(f"{word}\n".encode())
        p.stdin.close()
        wait_for(lambda w=word: f"got:{w}" in ketch("logs", "keep").stdout, timeout=10)
        p.kill()
        p.wait()
    assert ketch("logs", "keep").stdout == "got:one\ngot:two\n"
    assert ketch("inspect", "-f", "{{.State.Status}}", "keep").stdout == "running\n"


def test_run_interactive_forwards_stdin(ketch):
    p = ketch("run", "-i", "--rm", "busybox", "sh", "-c", "read a; echo got:$a",
              input="hello\n")
    assert p.stdout == "got:hello\n"


def test_create_then_start_attached(ketch):
    cid = ketch("create", "--name", "made", "busybox", "echo", "from-create").stdout.strip()
    assert ketch("ps", "-a", "--filter", "name=made", "--format", "{{.Status}}"
                 ).stdout.strip() == "Created"
    p = ketch("start", "-a", cid)
    assert p.stdout == "from-create\n"


# -- exit codes -------------------------------------------------------------------------
def test_exit_125_when_run_itself_fails(ketch):
    p = ketch("run", "--no-such-flag", "busybox", check=False)
    assert p.returncode == 125
    # --pull never: a missing image must not send the test off to a registry
    p = ketch("run", "--pull", "never", "no-such-image-here", check=False)
    assert p.returncode == 125
    assert "No such image: no-such-image-here" in p.stderr
    p = ketch("run", "--name", "bad/name", "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_exit_126_when_the_command_cannot_be_invoked(ketch):
    p = ketch("run", "--rm", "busybox", "/etc", check=False)
    assert p.returncode == 126
    assert "permission denied" in p.stderr
    assert made_in(ketch.root) == NOTHING_MADE


def test_exit_127_when_the_command_is_not_found(ketch):
    p = ketch("run", "--name", "nf", "busybox", "no-such-command", check=False)
    assert p.returncode == 127
    assert "executable file not found" in p.stderr
    assert p.stderr.count("\n") == 1
    # the failed start leaves a created record (as Docker does) but nothing running
    assert ketch("inspect", "-f", "{{.State.Status}}", "nf").stdout.strip() == "created"


# -- process settings -------------------------------------------------------------------
def test_env_env_file_workdir_user_hostname(ketch, tmp_path: Path):
    envfile = tmp_path / "env"
    envfile.write_text("# comment\nFROM_FILE=yes\nOVERRIDE=file\n")
    p = ketch("run", "--rm", "--env-file", str(envfile), "-e", "OVERRIDE=flag", "-e", "A=1",
              "-w", "/tmp/wd", "-u", "33:33", "--hostname", "box", "busybox", "sh", "-c",
              'echo "$FROM_FILE $OVERRIDE $A"; pwd; id -u; id -g; hostname')
    assert p.stdout.split("\n")[:5] == ["yes flag 1", "/tmp/wd", "33", "33", "box"]


def test_user_by_name_is_resolved_inside_the_image(ketch):
    p = ketch("run", "--rm", "-u", "www-data", "busybox", "id")
    assert p.stdout.startswith("uid=33(www-data) gid=33(www-data)")


def test_entrypoint_replaces_the_image_entrypoint_and_args_replace_cmd(ketch):
    p = ketch("run", "--rm", "--entrypoint", "echo", "busybox", "a", "b")
    assert p.stdout == "a b\n"
    # the image's CMD is ["sh"]: with no args, `sh` runs and reads stdin
    p = ketch("run", "--rm", "-i", "busybox", input="echo from-cmd\n")
    assert p.stdout == "from-cmd\n"


def test_an_empty_entrypoint_resets_the_images_entrypoint_and_cmd(ketch):
    # an image with ENTRYPOINT ["echo", "ep"] and CMD ["default"]
    cid = ketch("create", "busybox", "true").stdout.strip()
    ketch("commit", "--change", 'ENTRYPOINT ["echo", "ep"]', "--change", 'CMD ["default"]',
          cid, "ep-image")
    ketch("rm", cid)
    try:
        assert ketch("run", "--rm", "ep-image").stdout == "ep default\n"
        # as docker: --entrypoint "" drops the entrypoint, and the image's CMD with it
        assert ketch("run", "--rm", "--entrypoint", "", "ep-image", "echo", "x").stdout \
            == "x\n"
        p = ketch("run", "--rm", "--entrypoint", "", "ep-image", check=False)
        assert (p.returncode, p.stderr) == (125, "Error: no command specified\n")
    finally:
        ketch("rmi", "ep-image")


def test_config_env_is_the_images_and_the_users_and_the_process_gets_a_path(ketch):
    # busybox here is imported without Env: as dockerd, the record keeps only what the
    # image and the user give, and the process still gets Docker's default PATH
    cid = ketch("create", "-e", "A=1", "busybox", "sh", "-c", "echo $PATH").stdout.strip()
    try:
        assert ketch("inspect", "-f", "{{json .Config.Env}}", cid).stdout == '["A=1"]\n'
        assert ketch("start", "-a", cid).stdout == (
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n")
    finally:
        ketch("rm", cid)


def test_labels_are_recorded(ketch, run_d):
    cid = run_d("-l", "team=core", "--label", "tier", "busybox", "sleep", "30")
    labels = ketch("inspect", "-f", "{{json .Config.Labels}}", cid).stdout.strip()
    assert labels == '{"team":"core","tier":""}'


# -- security ---------------------------------------------------------------------------
def test_default_capabilities_are_dockers(ketch):
    p = ketch("run", "--rm", "busybox", "cat", "/proc/self/status")
    assert cap_eff(p.stdout) == DOCKER_DEFAULT_CAPEFF


def test_cap_add_and_cap_drop(ketch):
    p = ketch("run", "--rm", "--cap-drop", "NET_RAW", "--cap-add", "SYS_ADMIN", "busybox",
              "cat", "/proc/self/status")
    caps = cap_eff(p.stdout)
    assert not caps & (1 << CAP_NET_RAW)
    assert caps & (1 << CAP_SYS_ADMIN)
    p = ketch("run", "--rm", "--cap-drop", "ALL", "busybox", "cat", "/proc/self/status")
    assert cap_eff(p.stdout) == 0


def test_privileged_gets_every_capability_and_devices(ketch):
    p = ketch("run", "--rm", "--privileged", "busybox", "sh", "-c",
              "cat /proc/self/status; ls /dev")
    assert cap_eff(p.stdout) & (1 << CAP_SYS_ADMIN)
    assert cap_eff(p.stdout) > DOCKER_DEFAULT_CAPEFF
    unprivileged = ketch("run", "--rm", "busybox", "ls", "/dev").stdout.split()
    assert len(p.stdout.split()) > len(unprivileged)


def test_read_only_root(ketch):
    p = ketch("run", "--rm", "--read-only", "busybox", "touch", "/x", check=False)
    assert p.returncode == 1
    assert "Read-only file system" in p.stderr
    # /tmp and the /etc files stay the container's own business, /proc is mounted
    assert ketch("run", "--rm", "--read-only", "busybox", "cat", "/etc/hostname").stdout


def test_namespaces_isolate_processes_and_hostname(ketch):
    p = ketch("run", "--rm", "busybox", "sh", "-c", "ps -o pid,comm; hostname")
    lines = p.stdout.split("\n")
    assert lines[1].split() == ["1", "sh"]
    assert re.fullmatch(r"[0-9a-f]{12}", lines[-2])


# -- resources --------------------------------------------------------------------------
def _cgroup_file(cid: str, controller: str, name: str) -> str | None:
    for path in cgroups_of(cid):
        if path.parent.parent.name == controller or path.parent.parent.name == "unified" \
                and controller == "unified":
            f = path / name
            if f.exists():
                return f.read_text().strip()
    for path in cgroups_of(cid):
        f = path / name
        if f.exists():
            return f.read_text().strip()
    return None


def test_memory_cpus_and_pids_limits_reach_the_cgroup(ketch, run_d):
    cid = run_d("-m", "64m", "--cpus", "0.5", "--pids-limit", "50", "busybox", "sleep", "30")
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    if v2:
        assert _cgroup_file(cid, "", "memory.max") == str(64 << 20)
        assert _cgroup_file(cid, "", "cpu.max") == "50000 100000"
        assert _cgroup_file(cid, "", "pids.max") == "50"
    else:
        assert _cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(64 << 20)
        assert _cgroup_file(cid, "cpu", "cpu.cfs_quota_us") == "50000"
        assert _cgroup_file(cid, "cpu", "cpu.cfs_period_us") == "100000"
        assert _cgroup_file(cid, "pids", "pids.max") == "50"
    # and the container sees them as its own limits
    inside = ketch("exec", cid, "sh", "-c",
                   "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                   "/sys/fs/cgroup/memory.max 2>/dev/null; true").stdout
    assert str(64 << 20) in inside
    hc = ketch("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} "
               "{{.HostConfig.PidsLimit}}", cid).stdout.split()
    assert hc == [str(64 << 20), "500000000", "50"]


def test_pids_limit_is_enforced(ketch):
    # The limit leaves room for runc's init (a Go program: its threads count too): with 5,
    # on a busy machine, it sometimes could not make a thread ("runtime/cgo:
    # pthread_create failed") and died before its start, as it would under dockerd
    p = ketch("run", "--rm", "--pids-limit", "20", "busybox", "sh", "-c",
              "i=0; while [ $i -lt 30 ]; do sleep 5 & i=$((i+1)); done; wait", check=False)
    # busybox ash's message when fork(2) fails with EAGAIN (the pids cgroup is full)
    assert "can't fork: Resource temporarily unavailable" in p.stderr, p.stderr


def test_rlimit_nofile_never_exceeds_the_hosts_hard_limit(ketch):
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    p = ketch("run", "--rm", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn")
    soft_in, hard_in = (int(x) for x in p.stdout.split())
    assert hard_in <= hard and soft_in <= hard_in
    p = ketch("run", "--rm", "--ulimit", "nofile=1024:2048", "busybox", "sh", "-c",
              "ulimit -n; ulimit -Hn")
    assert p.stdout.split() == ["1024", str(min(2048, hard))]


# -- --rm -------------------------------------------------------------------------------
def test_rm_attached_removes_the_container_and_keeps_the_exit_code(ketch):
    p = ketch("run", "--rm", "--name", "gone", "busybox", "sh", "-c", "echo bye; exit 5",
              check=False)
    assert (p.returncode, p.stdout) == (5, "bye\n")
    assert ketch("ps", "-aq").stdout == ""


def test_rm_detached_is_removed_by_the_monitor_when_it_exits(ketch, run_d):
    run_d("--rm", "--name", "short", "busybox", "sh", "-c", "sleep 0.5")
    wait_for(lambda: ketch("ps", "-aq").stdout == "", what="the --rm container to go")
    p = ketch("container", "inspect", "short", check=False)
    assert p.returncode == 1 and "No such container: short" in p.stderr


def test_rm_refused_with_restart_policy(ketch):
    p = ketch("run", "--rm", "--restart", "always", "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.stderr.strip() == ("Error: conflicting options: cannot specify both --restart"
                                " and --rm")


# -- names ------------------------------------------------------------------------------
def test_generated_names_are_adjective_surname(ketch):
    ketch("create", "busybox", "true")
    name = ketch("ps", "-a", "--format", "{{.Names}}").stdout.strip()
    assert re.fullmatch(r"[a-z]+_[a-z_]+\d*", name)


def test_name_conflict_is_refused_with_dockers_message(ketch, run_d):
    cid = run_d("--name", "dup", "busybox", "sleep", "30")
    p = ketch("run", "--name", "dup", "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.stderr.strip() == (
        f'Error: Conflict. The container name "/dup" is already in use by container "{cid}".'
        " You have to remove (or rename) that container to be able to reuse that name.")


@pytest.mark.parametrize("bad", ["a", "-x", "has space", "é1", "a/b", "ab\n"])
def test_invalid_names_are_refused_and_nothing_is_created(ketch, bad):
    p = ketch("create", "--name", bad, "busybox", check=False)
    assert p.returncode == 125
    assert p.stderr == (f"Error: Invalid container name ({bad}), only [a-zA-Z0-9]"
                        "[a-zA-Z0-9_.-] are allowed\n")
    assert made_in(ketch.root) == NOTHING_MADE
    ok = ketch("create", "--name", "/Ok_1.x-y", "busybox").stdout.strip()
    ketch.ids.add(ok)
    assert ketch("ps", "-a", "--format", "{{.Names}}").stdout == "Ok_1.x-y\n"


def test_two_runs_with_the_same_name_at_once_exactly_one_wins(ketch):
    results: list[subprocess.CompletedProcess[str]] = []
    barrier = threading.Barrier(2)

    def go() -> None:
        barrier.wait()
        results.append(ketch("run", "-d", "--name", "race", "busybox", "sleep", "30",
                             check=False))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 125], [r.stderr for r in results]
    loser = next(r for r in results if r.returncode)
    assert 'The container name "/race" is already in use' in loser.stderr
    assert len(ketch("ps", "-aq").stdout.split()) == 1


def test_start_attach_interactive_feeds_stdin(ketch):
    ketch("create", "-i", "--name", "reader", "busybox", "sh", "-c", "read x; echo got-$x")
    p = ketch("start", "-a", "-i", "reader", input="hello\n")
    assert p.stdout == "got-hello\n"


def test_cpu_shares_and_memory_swap_reach_the_cgroup(ketch, run_d):
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        cid = run_d("--cpu-shares", "512", "-m", "64m", "--memory-swap", "128m", "busybox",
                    "sleep", "30")
        assert _cgroup_file(cid, "", "cpu.weight") not in (None, "100")
        assert _cgroup_file(cid, "", "memory.swap.max") == str(64 << 20)
        return
    cid = run_d("--cpu-shares", "512", "-m", "64m", "--memory-swap", "128m", "busybox",
                "sleep", "30")
    assert _cgroup_file(cid, "cpu", "cpu.shares") == "512"
    if Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists():
        assert _cgroup_file(cid, "memory", "memory.memsw.limit_in_bytes") == str(128 << 20)


def test_runtime_crun_is_selectable(ketch):
    from tests.conftest import require_tool

    require_tool("crun")
    hybrid = (Path("/sys/fs/cgroup/unified").is_dir()
              and not Path("/sys/fs/cgroup/cgroup.controllers").exists())
    p = ketch("run", "--rm", "--runtime", "crun", "busybox", "echo", "crun-ok", check=False)
    if hybrid and "hybrid mode not supported" in p.stderr:
        # crun refuses cgroup v1 hosts with a unified hierarchy mounted beside it
        pytest.xfail("crun does not support this host's hybrid cgroup layout")
    assert (p.returncode, p.stdout) == (0, "crun-ok\n")
    p = ketch("run", "--rm", "--runtime", "nosuch", "busybox", "true", check=False)
    assert p.returncode == 125 and "runtime" in p.stderr
