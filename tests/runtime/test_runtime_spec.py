"""config.json generation: Docker's defaults and flags, without running anything."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from ketch.errors import InvalidArgument
from ketch.runtime.spec import (
    DEFAULT_CAPABILITIES,
    MASKED_PATHS,
    READONLY_PATHS,
    STOP_SIGNAL_ANNOTATION,
    ContainerSpec,
    Mount,
    User,
    exec_process,
    generate_config,
    host_capabilities,
    signal_number,
    swap_limit_supported,
)

ROOTFS = Path("/var/lib/ketch/containers/x/merged")


def make(**kwargs: object) -> dict:
    kwargs.setdefault("args", ["sh"])
    return generate_config(ContainerSpec(id="abc123", rootfs=ROOTFS, **kwargs))  # type: ignore[arg-type]


def ns_types(config: dict) -> list[str]:
    return [n["type"] for n in config["linux"]["namespaces"]]


def test_config_is_runtime_spec_1_0_2_with_the_rootfs_and_process():
    config = make(args=["echo", "hi"], env=["A=1"], cwd="/srv", hostname="box")
    assert config["ociVersion"] == "1.0.2"
    assert config["root"] == {"path": str(ROOTFS), "readonly": False}
    assert config["process"]["args"] == ["echo", "hi"]
    assert config["process"]["cwd"] == "/srv"
    assert config["hostname"] == "box"
    env = config["process"]["env"]
    assert "A=1" in env and "HOSTNAME=box" in env
    assert any(e.startswith("PATH=/usr/local/sbin") for e in env)
    assert "HOME=/" in env


def test_namespaces_are_pid_ipc_uts_mount_and_a_private_network():
    assert sorted(ns_types(make())) == ["ipc", "mount", "network", "pid", "uts"]


def test_network_namespace_path_is_joined_when_given():
    config = make(netns_path="/run/netns/ketch-1")
    assert {"type": "network", "path": "/run/netns/ketch-1"} in config["linux"]["namespaces"]


def test_host_network_shares_the_hosts_network_namespace():
    assert "network" not in ns_types(make(netns_path="host"))


def test_default_capabilities_are_dockers_fourteen_with_no_inheritable_set():
    caps = make()["process"]["capabilities"]
    expected = [c for c in DEFAULT_CAPABILITIES if c in host_capabilities()]
    assert sorted(caps["bounding"]) == sorted(expected)
    assert caps["effective"] == caps["permitted"] == caps["bounding"]
    assert caps["inheritable"] == [] and caps["ambient"] == []
    assert len(DEFAULT_CAPABILITIES) == 14


def test_cap_add_and_cap_drop_accept_names_with_or_without_the_prefix():
    caps = make(cap_add=["net_admin"], cap_drop=["CAP_CHOWN", "mknod"])["process"]
    bounding = caps["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in bounding
    assert "CAP_CHOWN" not in bounding and "CAP_MKNOD" not in bounding


def test_cap_drop_all_then_add_keeps_only_the_added_capability():
    bounding = make(cap_drop=["ALL"], cap_add=["KILL"])["process"]["capabilities"]["bounding"]
    assert bounding == ["CAP_KILL"]


def test_unknown_capability_is_refused():
    with pytest.raises(InvalidArgument, match="unknown capability"):
        make(cap_add=["CAP_FLY"])


def test_masked_and_readonly_paths_are_mobys_defaults():
    linux = make()["linux"]
    assert linux["maskedPaths"] == list(MASKED_PATHS)
    assert linux["readonlyPaths"] == list(READONLY_PATHS)
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]


def test_default_mounts_with_sysfs_and_cgroup_read_only_and_a_64m_shm():
    mounts = {m["destination"]: m for m in make()["mounts"]}
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                            "/sys/fs/cgroup"]
    assert "ro" in mounts["/sys"]["options"]
    assert "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert "size=65536k" in mounts["/dev/shm"]["options"]
    assert mounts["/dev/pts"]["type"] == "devpts"


def test_shm_size_and_user_mounts_replace_defaults_at_the_same_place():
    config = make(shm_size=128 * 1024 * 1024,
                  mounts=[Mount("/data", "/srv/data", "bind", ["ro"]),
                          Mount("/dev/mqueue", "/tmp/mq", "bind", [])])
    mounts = {m["destination"]: m for m in config["mounts"]}
    assert "size=131072k" in mounts["/dev/shm"]["options"]
    assert mounts["/data"] == {"destination": "/data", "type": "bind", "source": "/srv/data",
                               "options": ["ro", "rbind"]}
    assert mounts["/dev/mqueue"]["type"] == "bind"
    assert [m["destination"] for m in config["mounts"]].count("/dev/mqueue") == 1


def test_default_device_rules_deny_everything_but_the_standard_devices():
    rules = make()["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    allowed = {(r.get("major"), r.get("minor")) for r in rules[1:] if r["allow"]}
    assert {(1, 3), (1, 5), (1, 8), (1, 9), (5, 0), (5, 2), (136, None)} <= allowed
    assert make()["linux"]["devices"] == []


def test_privileged_gets_every_capability_no_masks_rw_sys_and_host_devices():
    config = make(privileged=True)
    linux = config["linux"]
    assert config["process"]["capabilities"]["bounding"] == list(host_capabilities())
    assert "maskedPaths" not in linux and "readonlyPaths" not in linux
    mounts = {m["destination"]: m for m in config["mounts"]}
    assert "rw" in mounts["/sys"]["options"] and "rw" in mounts["/sys/fs/cgroup"]["options"]
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert any(d["path"] == "/dev/null" for d in linux["devices"])


def test_read_only_sets_a_read_only_root():
    assert make(readonly_rootfs=True)["root"]["readonly"] is True


def test_memory_limit_on_this_host_has_swap_only_with_swap_accounting():
    # Docker without swap accounting (cgroup v1 without memory.memsw): "Memory limited
    # without swap"; with it, -m alone allows as much swap again.
    memory = make(memory=64 << 20)["linux"]["resources"]["memory"]
    assert memory["limit"] == 64 << 20
    assert memory.get("swap") == ((128 << 20) if swap_limit_supported() else None)
    memory = make(memory=64 << 20, memory_swap=-1)["linux"]["resources"]["memory"]
    assert memory.get("swap") == (-1 if swap_limit_supported() else None)


@pytest.fixture
def swap_accounting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generate configs as on a kernel with swap accounting, whatever this host has (the
    generator is pure; only the probe of the host differs)."""
    import ketch.runtime.spec

    monkeypatch.setattr(ketch.runtime.spec, "swap_limit_supported", lambda: True)


def test_memory_limit_gets_twice_as_much_swap_by_default_as_docker(swap_accounting):
    memory = make(memory=64 << 20)["linux"]["resources"]["memory"]
    assert memory == {"limit": 64 << 20, "swap": 128 << 20}


def test_memory_swap_minus_one_is_unlimited_swap(swap_accounting):
    memory = make(memory=64 << 20, memory_swap=-1)["linux"]["resources"]["memory"]
    assert memory == {"limit": 64 << 20, "swap": -1}


def test_memory_swap_sets_memory_plus_swap(swap_accounting):
    memory = make(memory=64 << 20, memory_swap=100 << 20)["linux"]["resources"]["memory"]
    assert memory == {"limit": 64 << 20, "swap": 100 << 20}


def test_memory_swap_below_the_memory_limit_is_refused(swap_accounting):
    # (without swap accounting Docker drops --memory-swap before this check)
    with pytest.raises(InvalidArgument, match="larger than memory limit"):
        make(memory=100 << 20, memory_swap=50 << 20)


@pytest.mark.parametrize("kwargs, message", [
    ({"memory": 1024 * 1024}, "Minimum memory limit allowed is 6MB"),
    ({"memory_swap": 100 << 20}, "always set the Memory limit"),
    ({"cpus": 100000.0}, "Range of CPUs"),
    ({"cwd": "relative"}, "needs to be an absolute path"),
    ({"args": []}, "no command specified"),
])
def test_invalid_limits_are_refused_with_dockers_messages(kwargs, message):
    with pytest.raises(InvalidArgument, match=message):
        make(**kwargs)


def test_cpus_become_a_quota_over_a_100ms_period_and_shares_pass_through():
    cpu = make(cpus=0.5, cpu_shares=512, cpuset_cpus="0")["linux"]["resources"]["cpu"]
    assert cpu == {"period": 100000, "quota": 50000, "shares": 512, "cpus": "0"}


def test_pids_limit_is_set_only_when_positive():
    assert make(pids_limit=50)["linux"]["resources"]["pids"] == {"limit": 50}
    assert "pids" not in make(pids_limit=-1)["linux"]["resources"]
    assert "pids" not in make(pids_limit=0)["linux"]["resources"]


def test_cgroups_path_is_under_the_ketch_parent():
    assert make()["linux"]["cgroupsPath"] == "/ketch/abc123"
    assert make(cgroup_parent="/custom/")["linux"]["cgroupsPath"] == "/custom/abc123"


def test_nofile_rlimit_never_exceeds_the_hosts_hard_limit():
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    rlimits = {r["type"]: r for r in make()["process"]["rlimits"]}
    nofile = rlimits["RLIMIT_NOFILE"]
    assert nofile["hard"] <= hard and nofile["soft"] <= nofile["hard"]
    assert nofile["hard"] == min(1048576, hard)


def test_requested_ulimits_are_clamped_and_unlimited_maps_to_the_host_limit():
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    rlimits = {r["type"]: r for r in make(ulimits={"nofile": (10**7, 10**7),
                                                   "nproc": (100, 200)})["process"]["rlimits"]}
    assert rlimits["RLIMIT_NOFILE"]["hard"] == hard
    assert rlimits["RLIMIT_NPROC"]["soft"] == 100 and rlimits["RLIMIT_NPROC"]["hard"] == 200
    core = {r["type"]: r for r in make(ulimits={"core": (-1, -1)})["process"]["rlimits"]}
    core_hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    expected = 2**64 - 1 if core_hard == resource.RLIM_INFINITY else core_hard
    assert core["RLIMIT_CORE"]["hard"] == expected


def test_bad_ulimits_are_refused():
    with pytest.raises(InvalidArgument, match="invalid ulimit type"):
        make(ulimits={"wings": (1, 1)})
    with pytest.raises(InvalidArgument, match="soft limit must be less"):
        make(ulimits={"nofile": (10, 5)})


def test_user_ids_groups_and_home_reach_the_process():
    config = make(user=User(33, 34, [100, 100, 101], "/var/www"))
    assert config["process"]["user"] == {"uid": 33, "gid": 34,
                                         "additionalGids": [34, 100, 101]}
    assert "HOME=/var/www" in config["process"]["env"]
    assert "HOME=/root" in make(env=["HOME=/root"], user=User(0, 0, [], "/x"))["process"]["env"]


def test_terminal_sets_term_like_docker():
    config = make(terminal=True)
    assert config["process"]["terminal"] is True
    assert "TERM=xterm" in config["process"]["env"]


def test_stop_signal_annotation_and_sysctls():
    config = make(stop_signal="SIGQUIT", annotations={"a": "b"},
                  sysctls={"net.ipv4.ip_forward": "1"})
    assert config["annotations"] == {"a": "b", STOP_SIGNAL_ANNOTATION: "SIGQUIT"}
    assert config["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}
    with pytest.raises(InvalidArgument, match="Invalid signal"):
        make(stop_signal="SIGNOPE")
    with pytest.raises(InvalidArgument, match="host"):
        make(netns_path="host", sysctls={"net.ipv4.ip_forward": "1"})


@pytest.mark.parametrize("text, number", [("SIGTERM", 15), ("kill", 9), ("9", 9),
                                          ("HUP", 1), ("SIGRTMIN+1", 35), ("iot", 6),
                                          ("SIGCLD", 17), ("rtmax-1", 63)])
def test_signals_are_accepted_by_name_or_number(text, number):
    assert signal_number(text) == number


@pytest.mark.parametrize("text", ["SIG_DFL", "SIG_BLOCK", "NSIG", "SIG", "SIGRTMIN+x"])
def test_names_of_signal_constants_that_are_no_signals_are_refused(text):
    with pytest.raises(InvalidArgument) as refused:
        signal_number(text)
    assert str(refused.value) == f"Invalid signal: {text}"


def test_exec_process_inherits_the_container_and_overrides_what_is_asked():
    base = make(env=["A=1", "B=2"], cwd="/srv")
    process = exec_process(base, ["ls"], env=["B=3", "C=4"], user=User(5, 6, [], "/home/u"),
                           terminal=True)
    assert process["args"] == ["ls"]
    assert process["cwd"] == "/srv"
    assert process["user"] == {"uid": 5, "gid": 6, "additionalGids": [6]}
    env = process["env"]
    assert "A=1" in env and "B=3" in env and "C=4" in env and "B=2" not in env
    assert "HOME=/home/u" in env and "TERM=xterm" in env
    assert process["capabilities"] == base["process"]["capabilities"]
    assert exec_process(base, ["ls"], cwd="/tmp")["cwd"] == "/tmp"
    with pytest.raises(InvalidArgument):
        exec_process(base, [])
