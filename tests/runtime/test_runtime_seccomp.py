"""The seccomp profile generator and `--security-opt` parsing, without running anything:
Docker's default profile resolved against a container's capabilities, and Docker-format
profiles converted to the runtime-spec's `linux.seccomp`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ketch.containers.security import client_security_opts, parse_security_opts
from ketch.errors import InvalidArgument
from ketch.runtime.seccomp import default_profile, host_arch, oci_seccomp
from ketch.runtime.spec import DEFAULT_CAPABILITIES, ContainerSpec, generate_config

CLONE_NAMESPACE_FLAGS = 0x7E020000  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def resolved(caps: list[str] | tuple[str, ...] = DEFAULT_CAPABILITIES) -> dict:
    return oci_seccomp(default_profile(), list(caps))


def unconditional(profile: dict) -> set[str]:
    """Names allowed whatever their arguments."""
    return {n for rule in profile["syscalls"]
            if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
            for n in rule["names"]}


def rules_for(profile: dict, name: str) -> list[dict]:
    return [rule for rule in profile["syscalls"] if name in rule["names"]]


def test_default_profile_denies_with_eperm_what_it_does_not_list():
    p = resolved()
    assert p["defaultAction"] == "SCMP_ACT_ERRNO"
    assert p["defaultErrnoRet"] == 1


# An x32 getpid from a process of the test's own: True where the kernel runs x32 calls
X32_PROBE = ("import ctypes; libc = ctypes.CDLL(None, use_errno=True);"
             " print(libc.syscall(0x40000000 | 39) != -1 or ctypes.get_errno() != 38)")


def test_default_profile_covers_the_native_and_compat_architectures_the_kernel_runs():
    """x86-64 with x86, and with x32 only where the kernel runs x32 calls (this VM's
    kernel is built without them): runc compiles a filter for each listed architecture
    at every container start."""
    goarch, native = host_arch()
    probe = subprocess.run([sys.executable, "-I", "-S", "-c", X32_PROBE],
                           capture_output=True, text=True, check=True).stdout.strip()
    x32 = ["SCMP_ARCH_X32"] if probe == "True" else []
    expected = {"SCMP_ARCH_X86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", *x32],
                "SCMP_ARCH_AARCH64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]}
    if native not in expected:
        pytest.skip(f"no expectation written for {os.uname().machine}")
    assert resolved()["architectures"] == expected[native]


def test_threads_asking_at_once_whether_the_kernel_filters_all_hear_yes(monkeypatch):
    """The starts of a pod's infra and members run in threads of one process, and each
    asks, the first time, whether the kernel has seccomp: none may see the answer half
    found (a "no" refuses the infra's own profile: "seccomp is not enabled in your
    kernel")."""
    import threading

    from ketch.runtime import seccomp

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a thread switch at nearly every bytecode
    try:
        for _ in range(50):
            monkeypatch.setattr(seccomp, "_mode", None)
            monkeypatch.setattr(seccomp, "_x32", None)
            barrier = threading.Barrier(4)
            answers: list[bool] = []

            def ask(barrier: threading.Barrier, answers: list[bool]) -> None:
                barrier.wait()
                answers.append(seccomp.seccomp_supported())

            threads = [threading.Thread(target=ask, args=(barrier, answers))
                       for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert answers == [True] * 4
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.parametrize("name", ["mount", "umount2", "unshare", "setns", "kexec_load",
                                  "init_module", "reboot", "bpf", "open_by_handle_at",
                                  "clock_settime", "acct", "kcmp", "iopl", "syslog",
                                  "keyctl", "add_key", "userfaultfd", "swapon", "clone3"])
def test_default_capabilities_do_not_open(name):
    assert name not in unconditional(resolved())


@pytest.mark.parametrize("name", ["read", "write", "openat", "execve", "mkdirat", "wait4",
                                  "futex", "rt_sigreturn", "chroot", "fchmodat2"])
def test_default_capabilities_allow(name):
    assert name in unconditional(resolved())


def test_clone_is_allowed_only_without_namespace_flags_and_clone3_answers_enosys():
    p = resolved()
    clone = rules_for(p, "clone")
    assert clone == [{"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": CLONE_NAMESPACE_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}]}]
    assert rules_for(p, "clone3") == [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]


def test_socket_is_allowed_except_for_vsock_and_personality_for_docker_values_only():
    p = resolved()
    assert rules_for(p, "socket") == [{"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                                       "args": [{"index": 0, "value": 40,
                                                 "op": "SCMP_CMP_NE"}]}]
    values = sorted(r["args"][0]["value"] for r in rules_for(p, "personality"))
    assert values == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]


def test_cap_sys_admin_opens_mount_unshare_and_unrestricted_clone():
    p = resolved([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])
    allowed = unconditional(p)
    assert {"mount", "umount2", "unshare", "setns", "clone", "clone3"} <= allowed
    assert all(not r.get("args") for r in rules_for(p, "clone"))
    assert all(r["action"] == "SCMP_ACT_ALLOW" for r in rules_for(p, "clone3"))


@pytest.mark.parametrize(("cap", "name"), [
    ("CAP_SYS_PTRACE", "kcmp"), ("CAP_SYS_MODULE", "init_module"),
    ("CAP_SYS_BOOT", "reboot"), ("CAP_SYS_TIME", "clock_settime"),
    ("CAP_SYS_NICE", "mbind"), ("CAP_SYS_RAWIO", "iopl"), ("CAP_SYS_PACCT", "acct"),
    ("CAP_SYSLOG", "syslog"), ("CAP_BPF", "bpf"), ("CAP_PERFMON", "perf_event_open"),
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at"), ("CAP_SYS_TTY_CONFIG", "vhangup"),
])
def test_a_capability_opens_its_syscalls(cap, name):
    assert name not in unconditional(resolved())
    assert name in unconditional(resolved([*DEFAULT_CAPABILITIES, cap]))


def test_dropping_sys_chroot_closes_chroot():
    caps = [c for c in DEFAULT_CAPABILITIES if c != "CAP_SYS_CHROOT"]
    assert "chroot" not in unconditional(resolved(caps))


def spec_config(**kw: object) -> dict:
    return generate_config(ContainerSpec(id="abc", rootfs=Path("/r"), args=["sh"], **kw))  # type: ignore[arg-type]


def test_config_json_carries_the_filter_unless_privileged_or_unconfined():
    assert spec_config()["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "seccomp" not in spec_config(privileged=True)["linux"]
    assert "seccomp" not in spec_config(seccomp="unconfined")["linux"]
    assert "mount" in unconditional(spec_config(cap_add=["SYS_ADMIN"])["linux"]["seccomp"])


def test_a_docker_format_profile_is_converted_with_its_conditions():
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"name": "mkdir", "action": "SCMP_ACT_ERRNO"},
            {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
             "includes": {"caps": ["CAP_FOWNER", "CAP_SYS_ADMIN"]}},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG",
             "args": [{"index": 0, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_GE"}]},
        ],
    }
    out = oci_seccomp(profile, list(DEFAULT_CAPABILITIES))
    assert out == {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_GE"}]},
        ]}
    admin = oci_seccomp(profile, [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])
    assert [r["names"] for r in admin["syscalls"]] == [["mkdir"], ["chmod"], ["getpid"]]


@pytest.mark.parametrize(("profile", "message"), [
    ({"syscalls": []}, "unknown action None in defaultAction"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
      "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]},
     "use either 'architectures' or 'archMap'"),
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}]},
     "use either 'name' or 'names'"),
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]},
     "unknown operator 'SCMP_CMP_ABOUT'"),
])
def test_a_profile_runc_could_not_load_is_refused(profile, message):
    with pytest.raises(InvalidArgument) as e:
        oci_seccomp(profile, list(DEFAULT_CAPABILITIES))
    assert message in str(e.value)


def test_client_side_reads_the_profile_file_and_takes_out_systempaths(tmp_path):
    f = tmp_path / "p.json"
    f.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW"\n}\n')
    opts, unconfined = client_security_opts(
        [f"seccomp={f}", "no-new-privileges", "systempaths=unconfined", "label:disable"])
    assert opts == ['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}', "no-new-privileges",
                    "label:disable"]
    assert unconfined is True
    assert json.loads(opts[0].partition("=")[2]) == {"defaultAction": "SCMP_ACT_ALLOW"}


@pytest.mark.parametrize(("opts", "seccomp", "nnp"), [
    ([], "builtin", False),
    (["seccomp=unconfined"], "unconfined", False),
    (["seccomp:unconfined", "no-new-privileges"], "unconfined", True),
    (["no-new-privileges=true", "no-new-privileges=false"], "builtin", False),
    (["no-new-privileges:1", "label=disable", "apparmor=unconfined", "disable"],
     "builtin", True),
])
def test_engine_side_accepts_dockers_forms(opts, seccomp, nnp):
    parsed = parse_security_opts(opts)
    assert (parsed.seccomp, parsed.no_new_privileges) == (seccomp, nnp)


@pytest.mark.parametrize(("opt", "message"), [
    ("bogus=1", 'invalid --security-opt 2: "bogus=1"'),
    ("bogus", 'invalid --security-opt 1: "bogus"'),
    ("no-new-privileges=maybe", 'invalid --security-opt 2: "no-new-privileges=maybe"'),
    ("seccomp={not json", "Decoding seccomp profile failed:"),
    ("apparmor=docker-default", 'invalid --security-opt "apparmor=docker-default": ketch'
     ' cannot apply the AppArmor profile "docker-default"; only apparmor=unconfined is'
     " accepted"),
    ("label=level:s0:c100", 'invalid --security-opt "label=level:s0:c100": ketch applies'
     " no SELinux labels; only label=disable is accepted"),
])
def test_engine_side_refuses(opt, message):
    with pytest.raises(InvalidArgument) as e:
        parse_security_opts([opt])
    assert str(e.value).startswith(message)
