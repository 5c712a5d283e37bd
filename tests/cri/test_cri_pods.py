"""CRI pod sandboxes and their containers on real runc, driven with the generated stubs
as a kubelet drives them: two containers talking over the pod's localhost, a port
mapping reached from the host, ExecSync, CRI-format logs at the kubelet's path, stats,
status across a server restart, and nothing left after removal. The tests on
`any_runtime` pass on containerd's CRI plugin too."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tests.cri.conftest import Cri, Served
from tests.helpers.host import conmon_pids, mounts_under, wait_for
from tests.helpers.ports import free_port

pytestmark = pytest.mark.xdist_group("cri")  # one worker, one set of servers


def _pulled(served: Served, name: str) -> str:
    cri = served.cri
    served.images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=name)))
    return name


@pytest.fixture
def busybox(any_runtime: Served, cri_images: dict[str, str]) -> str:
    return _pulled(any_runtime, cri_images["busybox"])


@pytest.fixture
def ketch_busybox(cri_server: Cri, cri_images: dict[str, str]) -> str:
    return _pulled(cri_server, cri_images["busybox"])


def _sandbox(cri_server: Served, name: str, logs: Path, host_port: int = 0,  # type: ignore[no-untyped-def]
             cgroup_parent: str = ""):
    cri = cri_server.cri
    ports = [cri.PortMapping(protocol=cri.TCP, container_port=80, host_port=host_port,
                             host_ip="127.0.0.1")] if host_port else []
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="default", uid=f"uid-{name}",
                                        attempt=0),
        hostname=name, log_directory=str(logs), port_mappings=ports,
        labels={"app": name}, annotations={"note": "from a test"},
        linux=cri.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent))


@pytest.fixture
def pod_cgroup() -> Iterator[str]:
    """A pod cgroup path as the kubelet's cgroupfs driver names them; removed after."""
    import secrets

    path = f"/ketch-cri-test-{secrets.token_hex(4)}/pod-uid"
    yield path
    top = path.split("/")[1]
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for d in (hierarchy / path.lstrip("/"), hierarchy / top):
            if d.is_dir():
                for leaf in sorted(d.rglob("*"), key=lambda p: -len(p.parts)):
                    if leaf.is_dir():
                        leaf.rmdir()
                d.rmdir()


def _container(cri_server: Served, name: str, image: str, command: list[str],
               **kw):  # type: ignore[no-untyped-def]
    cri = cri_server.cri
    return cri.ContainerConfig(metadata=cri.ContainerMetadata(name=name, attempt=0),
                               image=cri.ImageSpec(image=image), command=command,
                               log_path=f"{name}/0.log", labels={"role": name}, **kw)


def test_a_sandbox_runs_two_containers_that_talk_over_localhost_and_a_host_port(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    cri_server = any_runtime
    cri = cri_server.cri
    rt = cri_server.runtime
    port = free_port("127.0.0.1")
    config = _sandbox(cri_server, "web", tmp_path / "pods" / "web", host_port=port)
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id

    web = rt.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config, config=_container(
            cri_server, "server", busybox,
            ["sh", "-c", "mkdir -p /www && echo hello-from-the-pod > /www/index.html"
             " && echo serving && exec httpd -f -p 80 -h /www"]))).container_id
    client = rt.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config, config=_container(
            cri_server, "client", busybox, ["sleep", "300"],
            envs=[cri.KeyValue(key="GREETING", value="hi")]))).container_id
    for cid in (web, client):
        rt.StartContainer(cri.StartContainerRequest(container_id=cid))

    # the other container reaches the server on the pod's 127.0.0.1
    def fetched() -> bool:
        r = rt.ExecSync(cri.ExecSyncRequest(container_id=client, timeout=10,
                                            cmd=["wget", "-qO-", "http://127.0.0.1:80/"]))
        return r.exit_code == 0 and r.stdout == b"hello-from-the-pod\n"
    wait_for(fetched, timeout=20, what="the client to fetch the page over localhost")
    env = rt.ExecSync(cri.ExecSyncRequest(container_id=client, cmd=["sh", "-c",
                                                                     "echo $GREETING; exit 3"]))
    assert (env.stdout, env.exit_code) == (b"hi\n", 3)
    assert rt.ExecSync(cri.ExecSyncRequest(container_id=client, cmd=["hostname"])
                       ).stdout == b"web\n"

    # the sandbox's port mapping, from the host
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
        assert resp.read() == b"hello-from-the-pod\n"

    # CRI-format log at the kubelet's path
    log = tmp_path / "pods" / "web" / "server" / "0.log"
    wait_for(lambda: log.exists() and b"serving" in log.read_bytes(), timeout=10,
             what="the server's log line")
    line = log.read_text().splitlines()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) stdout F serving",
                        line), line

    status = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
    assert status.state == cri.SANDBOX_READY
    assert status.metadata.name == "web" and status.metadata.uid == "uid-web"
    assert dict(status.labels) == {"app": "web"}
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", status.network.ip)
    listed = rt.ListContainers(cri.ListContainersRequest(filter=cri.ContainerFilter(
        pod_sandbox_id=pod_id))).containers
    assert sorted(c.metadata.name for c in listed) == ["client", "server"]
    assert all(c.state == cri.CONTAINER_RUNNING for c in listed)
    cs = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=web)).status
    assert cs.state == cri.CONTAINER_RUNNING and cs.started_at > 0
    assert cs.log_path == str(log)

    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    status = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
    assert status.state == cri.SANDBOX_NOTREADY
    cs = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=web)).status
    assert cs.state == cri.CONTAINER_EXITED and cs.finished_at >= cs.started_at

    for cid in (web, client):
        rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    # removing again is no error in the CRI
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert list(rt.ListPodSandbox(cri.ListPodSandboxRequest()).items) == []
    assert list(rt.ListContainers(cri.ListContainersRequest()).containers) == []


def test_a_sandbox_is_a_ketch_pod_and_leaves_nothing_when_removed(
        cri_server: Cri, ketch_busybox: str, tmp_path: Path) -> None:
    busybox = ketch_busybox
    cri = cri_server.cri
    rt = cri_server.runtime
    config = _sandbox(cri_server, "mine", tmp_path / "logs", host_port=free_port("127.0.0.1"))
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    cid = rt.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config,
        config=_container(cri_server, "sleeper", busybox, ["sleep", "300"]))).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=cid))
    log = tmp_path / "logs" / "sleeper" / "0.log"
    assert log.is_file() and not log.is_symlink()  # conmon writes at the kubelet's path
    pods = json.loads(cri_server.ketch("pod", "inspect", pod_id).stdout)
    pods = pods if isinstance(pods, list) else [pods]
    assert pods[0]["NumContainers"] == 2  # the infra and the member
    assert cid in cri_server.ketch("ps", "-q", "--no-trunc").stdout

    rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
    # the log file is the kubelet's to remove, with its rotated generations
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert cri_server.ketch("ps", "-aq").stdout == ""
    wait_for(lambda: not conmon_pids(str(cri_server.root)), timeout=10,
             what="the sandbox's monitors to exit")
    # the netns directory itself stays a mount point (as `ip netns` keeps /run/netns)
    netns_dir = str(cri_server.root / "run" / "netns")
    assert [m for m in mounts_under(cri_server.root) if m != netns_dir] == []


def _numbers(path: Path) -> list[int]:
    """The counter values in a CRI log of `line-N` lines."""
    return [int(m) for m in re.findall(r" stdout F line-(\d+)$", path.read_text(), re.M)]


def test_reopen_container_log_after_the_kubelets_rename_starts_a_new_file(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    served = any_runtime
    cri = served.cri
    rt = served.runtime
    config = _sandbox(served, "rotated", tmp_path / "logs")
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    cid = rt.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config, config=_container(
            served, "counter", busybox,
            ["sh", "-c", "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.1; done"]
        ))).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=cid))
    log = tmp_path / "logs" / "counter" / "0.log"
    wait_for(lambda: log.is_file() and len(_numbers(log)) >= 3, timeout=10,
             what="the first lines in the log")

    # the kubelet's rotation: rename, then ask the runtime to reopen the path
    old = log.with_name("0.log.20261203-201500")
    log.rename(old)
    rt.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=cid))
    wait_for(lambda: log.is_file() and len(_numbers(log)) >= 3, timeout=10,
             what="new lines in a new file at the log path")
    before = _numbers(old)
    time.sleep(0.5)
    assert _numbers(old) == before, "the renamed file still grows"
    new = _numbers(log)
    assert before == list(range(before[0], before[-1] + 1)) and before[0] == 0
    assert new[0] > before[-1]  # nothing written after the rename is lost or repeated
    assert log.read_text().splitlines()[0].endswith(f"stdout F line-{new[0]}")
    if isinstance(served, Cri):  # `ketch logs` reads the file at the kubelet's path
        shown = served.ketch("logs", cid).stdout.split()
        assert shown[:2] == [f"line-{new[0]}", f"line-{new[1]}"], shown[:5]

    rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=0))
    with pytest.raises(grpc.RpcError):  # a stopped container has nothing to reopen
        rt.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=cid))
    with pytest.raises(grpc.RpcError) as err:
        rt.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def test_sandboxes_and_containers_are_found_again_by_a_restarted_server(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    cri_server = any_runtime
    cri = cri_server.cri
    config = _sandbox(cri_server, "kept", tmp_path / "logs")
    pod_id = cri_server.runtime.RunPodSandbox(
        cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    cid = cri_server.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config,
        config=_container(cri_server, "sleeper", busybox, ["sleep", "300"]))).container_id
    cri_server.runtime.StartContainer(cri.StartContainerRequest(container_id=cid))

    cri_server.restart()

    status = cri_server.runtime.PodSandboxStatus(
        cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
    assert status.state == cri.SANDBOX_READY and status.metadata.name == "kept"
    cs = cri_server.runtime.ContainerStatus(cri.ContainerStatusRequest(container_id=cid)).status
    assert cs.state == cri.CONTAINER_RUNNING and cs.metadata.name == "sleeper"
    cri_server.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    cri_server.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert list(cri_server.runtime.ListContainers(cri.ListContainersRequest()).containers) == []


def test_unknown_sandbox_and_container_are_not_found_and_exec_times_out(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    cri_server = any_runtime
    cri = cri_server.cri
    rt = cri_server.runtime
    with pytest.raises(grpc.RpcError) as err:
        rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        rt.CreateContainer(cri.CreateContainerRequest(
            pod_sandbox_id="nope", config=_container(cri_server, "x", busybox, ["true"])))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        rt.StopContainer(cri.StopContainerRequest(container_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # removing what is not there is no error
    rt.RemoveContainer(cri.RemoveContainerRequest(container_id="nope"))
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id="nope"))

    config = _sandbox(cri_server, "slow", tmp_path / "logs")
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    cid = rt.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config,
        config=_container(cri_server, "s", busybox, ["sleep", "300"]))).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=cid))
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=["sleep", "30"], timeout=1))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 15
    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def _sleeping_pod(served: Served, pod: str, names: list[str], image: str, tmp_path: Path
                  ) -> tuple[str, list[str]]:
    """A sandbox whose members `names` run `sleep 300`: (sandbox ID, container IDs)."""
    cri, rt = served.cri, served.runtime
    config = _sandbox(served, pod, tmp_path / "logs")
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    ids = []
    for name in names:
        (tmp_path / "logs" / name).mkdir(parents=True, exist_ok=True)
        cid = rt.CreateContainer(cri.CreateContainerRequest(
            pod_sandbox_id=pod_id, sandbox_config=config,
            config=_container(served, name, image, ["sleep", "300"]))).container_id
        rt.StartContainer(cri.StartContainerRequest(container_id=cid))
        ids.append(cid)
    return pod_id, ids


def test_exec_sync_of_a_command_that_cannot_start_is_an_error_not_an_exit_status(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    # an exec probe of a missing binary must fail (the kubelet counts the error as a
    # failed probe); a command that runs and exits non-zero is an exit status
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, (cid,) = _sleeping_pod(any_runtime, "probe", ["c"], busybox, tmp_path)
    with pytest.raises(grpc.RpcError) as err:
        rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=["no-such-command"],
                                        timeout=10))
    assert "executable file not found" in (err.value.details() or "")
    r = rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", "exit 3"],
                                        timeout=10))
    assert r.exit_code == 3
    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def test_stop_sandbox_kills_members_that_ignore_sigterm_without_waiting(
        any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    # the kubelet gives grace periods through StopContainer; StopPodSandbox then stops
    # what still runs forcibly (containerd: timeout 0), so `sleep` as PID 1, which
    # ignores SIGTERM, must not hold the call for a stop timeout per member
    cri = any_runtime.cri
    rt = any_runtime.runtime
    pod_id, ids = _sleeping_pod(any_runtime, "stubborn", ["one", "two"], busybox, tmp_path)
    started = time.monotonic()
    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    took = time.monotonic() - started
    states = [rt.ContainerStatus(cri.ContainerStatusRequest(container_id=c)).status.state
              for c in ids]
    assert states == [cri.CONTAINER_EXITED, cri.CONTAINER_EXITED]
    assert took < 8, f"StopPodSandbox took {took:.1f} s"
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def test_stats_of_a_container_and_its_sandbox_and_a_live_resource_update(
        pod_cgroup: str, any_runtime: Served, busybox: str, tmp_path: Path) -> None:
    # (pod_cgroup first: it is removed after the runtime has removed the containers)
    cri_server = any_runtime
    cri = cri_server.cri
    rt = cri_server.runtime
    config = _sandbox(cri_server, "busy", tmp_path / "logs", cgroup_parent=pod_cgroup)
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    # 8 MB held in a shell variable, a 1 MB file in the writable layer, then two processes
    script = ("x=$(head -c 8000000 /dev/zero | tr '\\0' a); head -c 1048576 /dev/zero"
              " > /big; touch /ready; sleep 300 & wait")
    cid = rt.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config,
        config=_container(cri_server, "hog", busybox, ["sh", "-c", script],
                          linux=cri.LinuxContainerConfig(resources=cri.LinuxContainerResources(
                              memory_limit_in_bytes=256 * 2**20))))).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=cid))
    wait_for(lambda: rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=["test", "-e",
                                                                            "/ready"])
                                 ).exit_code == 0, timeout=20, what="the container's work")

    st = rt.ContainerStats(cri.ContainerStatsRequest(container_id=cid)).stats
    assert st.attributes.id == cid and st.attributes.metadata.name == "hog"
    assert st.cpu.usage_core_nano_seconds.value > 0
    assert st.memory.working_set_bytes.value > 8_000_000
    # containerd measures the writable layer in the background: it may still say 0
    assert st.writable_layer.HasField("used_bytes")
    listed = rt.ListContainerStats(cri.ListContainerStatsRequest()).stats
    assert [s.attributes.id for s in listed] == [cid]

    pod = rt.PodSandboxStats(cri.PodSandboxStatsRequest(pod_sandbox_id=pod_id)).stats
    assert pod.attributes.id == pod_id and pod.attributes.metadata.name == "busy"
    assert [c.attributes.id for c in pod.linux.containers] == [cid]
    assert pod.linux.process.process_count.value == 2  # sh and sleep
    assert pod.linux.memory.working_set_bytes.value > 8_000_000
    assert [s.attributes.id for s in rt.ListPodSandboxStats(
        cri.ListPodSandboxStatsRequest()).stats] == [pod_id]

    rt.UpdateContainerResources(cri.UpdateContainerResourcesRequest(
        container_id=cid, linux=cri.LinuxContainerResources(memory_limit_in_bytes=64 * 2**20)))
    limit = rt.ExecSync(cri.ExecSyncRequest(
        container_id=cid, cmd=["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])).stdout
    assert limit == b"%d\n" % (64 * 2**20)
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
