"""The pod infra's seccomp profile is a narrowing of the default one: every call it
allows, the default profile allows every container unconditionally."""

from __future__ import annotations

import json

from ketch.pods.infra import infra_seccomp
from ketch.runtime.seccomp import ALWAYS_ALLOWED, default_profile, oci_seccomp


def _profile() -> dict:
    opt = infra_seccomp()
    assert opt.startswith("seccomp=")
    return json.loads(opt.removeprefix("seccomp="))


def test_infra_profile_allows_only_what_the_default_allows_everyone():
    allowed = [n for r in _profile()["syscalls"] if r["action"] == "SCMP_ACT_ALLOW"
               and "args" not in r and "includes" not in r for n in r["names"]]
    assert allowed
    assert set(allowed) <= set(ALWAYS_ALLOWED)


def test_infra_profile_denies_by_default_and_keeps_the_default_conditional_rules():
    profile, default = _profile(), default_profile()
    assert (profile["defaultAction"], profile["defaultErrnoRet"]) == (
        default["defaultAction"], default["defaultErrnoRet"])
    kept = ("arch_prctl", "clone", "clone3")
    assert [r for r in profile["syscalls"] if r["names"][0] in kept] == [
        r for r in default["syscalls"] if r["names"][0] in kept]
    oci = oci_seccomp(profile, ["CAP_CHOWN", "CAP_KILL"])
    names = {n for r in oci["syscalls"] for n in r["names"]}
    for call in ("mount", "mkdirat", "socket", "ptrace", "unshare", "setns"):
        assert call not in names


def test_infra_profile_leaves_x32_out_even_where_the_kernel_runs_it(monkeypatch):
    # (the pause program makes no x32 call: its filter lists one architecture less, and
    # `pod create` does not ask the kernel, through ctypes, whether it runs x32)
    from ketch.runtime import seccomp

    monkeypatch.setattr(seccomp, "_x32", True)  # as on a kernel that runs x32 calls
    assert "SCMP_ARCH_X32" in str(default_profile()["archMap"])
    arches = {a for m in _profile()["archMap"] for a in [m["architecture"],
                                                         *m["subArchitectures"]]}
    assert "SCMP_ARCH_X32" not in arches
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86"} <= arches
