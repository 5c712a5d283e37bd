"""Security defaults on real runc: Docker's seccomp profile in every container,
`--security-opt` as Docker takes it, and `info` reporting only what is applied."""

from __future__ import annotations

import json
import re

import pytest
from tests.containers.conftest import NOTHING_MADE, made_in

STATUS = ["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"]


def status(text: str) -> dict[str, str]:
    return dict(re.findall(r"^(Seccomp|NoNewPrivs):\s*(\d+)$", text, re.M))


@pytest.fixture
def no_mkdir_profile(tmp_path):
    path = tmp_path / "no-mkdir.json"
    path.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }, indent=2))
    return path


def test_a_default_container_runs_under_a_seccomp_filter(ketch):
    out = ketch("run", "--rm", "busybox", *STATUS).stdout
    assert status(out) == {"Seccomp": "2", "NoNewPrivs": "0"}


def test_the_default_profile_denies_unshare_with_eperm(ketch):
    assert "unshare" in ketch("run", "--rm", "busybox", "busybox", "--list").stdout.split()
    p = ketch("run", "--rm", "busybox", "unshare", "-U", "-r", "id", check=False)
    assert p.returncode != 0
    assert "Operation not permitted" in p.stderr
    # the same call without a filter works: it was the profile that refused it
    p = ketch("run", "--rm", "--security-opt", "seccomp=unconfined", "busybox",
              "sh", "-c", "unshare -U -r id && grep ^Seccomp: /proc/self/status")
    assert p.stdout.startswith("uid=0(root)")
    assert status(p.stdout)["Seccomp"] == "0"


def test_cap_add_sys_admin_opens_what_docker_ties_to_it(ketch):
    p = ketch("run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c",
              "unshare -U -r id && mkdir /m && mount -t tmpfs none /m && echo mounted"
              " && grep ^Seccomp: /proc/self/status")
    assert p.stdout.splitlines() == ["uid=0(root) gid=0(root) groups=0(root)", "mounted",
                                     "Seccomp:\t2"]


def test_capabilities_are_kept_as_dockerd_keeps_them_and_an_unknown_one_is_refused(ketch):
    cid = ketch("create", "--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN", "busybox",
                "true").stdout.strip()
    try:
        assert ketch("inspect", "-f", "{{.HostConfig.CapAdd}} {{.HostConfig.CapDrop}}",
                     cid).stdout == "[CAP_NET_ADMIN] [CAP_CHOWN]\n"
    finally:
        ketch("rm", cid)
    # refused when the container is made, not at its first start
    for flag, key in (("--cap-add", "CapAdd"), ("--cap-drop", "CapDrop")):
        p = ketch("create", "--name", "badcap", flag, "BOGUS", "busybox", "true",
                  check=False)
        assert (p.returncode, p.stderr) == (
            125, f'Error: invalid {key}: unknown capability: "CAP_BOGUS"\n')
        assert ketch("ps", "-aq", "--filter", "name=badcap").stdout == ""


def test_privileged_runs_without_a_filter_as_docker(ketch):
    out = ketch("run", "--rm", "--privileged", "busybox", *STATUS).stdout
    assert status(out)["Seccomp"] == "0"


@pytest.mark.parametrize("sep", ["=", ":"])
def test_a_custom_profile_is_applied(ketch, no_mkdir_profile, sep):
    p = ketch("run", "--rm", "--security-opt", f"seccomp{sep}{no_mkdir_profile}", "busybox",
              "sh", "-c", "echo ok; mkdir /x; echo mkdir=$?", check=False)
    assert p.stdout == "ok\nmkdir=1\n"
    assert "Operation not permitted" in p.stderr


@pytest.mark.parametrize(("opt", "nnp"), [
    ("no-new-privileges", "1"), ("no-new-privileges=true", "1"),
    ("no-new-privileges:true", "1"), ("no-new-privileges=false", "0"),
])
def test_no_new_privileges_forms(ketch, opt, nnp):
    out = ketch("run", "--rm", "--security-opt", opt, "busybox", *STATUS).stdout
    assert status(out) == {"Seccomp": "2", "NoNewPrivs": nnp}


def test_exec_gets_the_containers_filter_and_no_new_privileges(ketch, run_d,
                                                               no_mkdir_profile):
    cid = run_d("--security-opt", "no-new-privileges", "--security-opt",
                f"seccomp={no_mkdir_profile}", "busybox", "sleep", "60")
    p = ketch("exec", cid, "sh", "-c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status;"
              " mkdir /y; echo mkdir=$?", check=False)
    assert status(p.stdout) == {"Seccomp": "2", "NoNewPrivs": "1"}
    assert p.stdout.endswith("mkdir=1\n")
    plain = run_d("busybox", "sleep", "60")
    out = ketch("exec", plain, *STATUS).stdout
    assert status(out) == {"Seccomp": "2", "NoNewPrivs": "0"}
    # --privileged exec widens capabilities, not the container's filter (as Docker)
    out = ketch("exec", "--privileged", plain, *STATUS).stdout
    assert status(out)["Seccomp"] == "2"


def test_inspect_shows_security_opt_as_docker_stores_it(ketch, no_mkdir_profile):
    cid = ketch("create", "--security-opt", "no-new-privileges", "--security-opt",
                f"seccomp={no_mkdir_profile}", "--security-opt", "label=disable",
                "busybox").stdout.strip()
    got = json.loads(ketch("inspect", "-f", "{{json .HostConfig.SecurityOpt}}", cid).stdout)
    # the profile's content travels with the container, compacted, as the docker CLI
    # sends it: editing or deleting the file later changes nothing
    assert got == ["no-new-privileges",
                   'seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":'
                   '["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}', "label=disable"]
    no_mkdir_profile.unlink()
    p = ketch("start", "-a", cid, check=False)
    assert p.returncode == 0, p.stderr


def test_label_disable_and_apparmor_unconfined_are_accepted(ketch):
    out = ketch("run", "--rm", "--security-opt", "label=disable", "--security-opt",
                "apparmor=unconfined", "--security-opt", "label:disable", "busybox",
                *STATUS).stdout
    assert status(out)["Seccomp"] == "2"


def test_systempaths_unconfined_unmasks_proc(ketch):
    script = "grep -c ' /proc/sys ' /proc/self/mountinfo; cat /proc/timer_list | wc -c"
    masked = ketch("run", "--rm", "busybox", "sh", "-c", script, check=False).stdout.split()
    open_ = ketch("run", "--rm", "--security-opt", "systempaths=unconfined", "busybox",
                  "sh", "-c", script, check=False).stdout.split()
    assert masked == ["1", "0"]  # /proc/sys read-only bind, timer_list empty
    assert open_[0] == "0" and int(open_[1]) > 0


@pytest.mark.parametrize(("opt", "message"), [
    ("bogus=1", 'Error: invalid --security-opt 2: "bogus=1"'),
    ("bogus", 'Error: invalid --security-opt: "bogus"'),
    ("no-new-privileges=maybe", 'Error: invalid --security-opt 2: "no-new-privileges=maybe"'),
    ("apparmor=docker-default", 'Error: invalid --security-opt "apparmor=docker-default":'
     ' ketch cannot apply the AppArmor profile "docker-default"; only apparmor=unconfined'
     " is accepted"),
    ("label=type:svirt_t", 'Error: invalid --security-opt "label=type:svirt_t": ketch'
     " applies no SELinux labels; only label=disable is accepted"),
    ("seccomp=/nonexistent/profile.json", "Error: opening seccomp profile"
     " (/nonexistent/profile.json) failed: open /nonexistent/profile.json: no such file"
     " or directory"),
])
@pytest.mark.parametrize("command", ["run", "create"])
def test_bad_security_opts_are_refused_and_nothing_is_created(ketch, opt, message, command):
    p = ketch(command, "--security-opt", opt, "-v", "secvol:/data", "busybox", "true",
              check=False)
    assert p.returncode == 125
    assert p.stderr == message + "\n"
    assert made_in(ketch.root) == NOTHING_MADE
    assert ketch("volume", "ls", "-q").stdout == ""


def test_a_profile_that_is_not_json_is_refused(ketch, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{defaultAction: allow}")
    p = ketch("run", "--security-opt", f"seccomp={bad}", "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.stderr.startswith(f"Error: compacting json for seccomp profile ({bad}) failed:")
    assert p.stderr.count("\n") == 1
    unknown = tmp_path / "unknown-action.json"
    unknown.write_text('{"defaultAction": "SCMP_ACT_MAYBE"}')
    p = ketch("run", "--security-opt", f"seccomp={unknown}", "busybox", "true", check=False)
    assert (p.returncode, p.stderr) == (125, "Error: invalid seccomp profile: unknown action"
                                             " 'SCMP_ACT_MAYBE' in defaultAction\n")
    assert made_in(ketch.root) == NOTHING_MADE


def test_info_reports_only_what_is_applied(ketch):
    got = json.loads(ketch("info", "-f", "{{json .SecurityOptions}}").stdout)
    assert got == ["name=seccomp,profile=builtin"]
    text = ketch("info").stdout
    assert " Security Options:\n  seccomp\n   Profile: builtin\n" in text
    assert "apparmor" not in text.lower() and "selinux" not in text.lower()
