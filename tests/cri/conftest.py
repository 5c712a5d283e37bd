"""CRI servers under test, driven by the generated CRI v1 gRPC stubs (the kubelet's own
protocol): ketch (`ketch system cri`) on a temporary socket and state root, and, for the
tests that ask only what Kubernetes expects of any runtime, Debian's containerd with its
CRI plugin on a private socket, root and CNI configuration. Images for both come from a
loopback registry: busybox-static, and ketch's pause image as containerd's sandbox image.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.api.conftest import stop_service
from tests.conftest import ketch_command, require, require_root, require_tool
from tests.distribution.conftest import ketch_registry  # noqa: F401 - a fixture

try:
    import grpc
    from cri_api.v1 import api_pb2 as cri
    from cri_api.v1 import api_pb2_grpc
except ImportError:  # pragma: no cover - the dependency is in pyproject
    grpc = None


class Served:
    """A CRI server process and the stubs that talk to it."""

    name = ""

    def __init__(self, sock: Path, log: Path) -> None:
        self.sock = sock
        self.log = log
        self.cri = cri
        self.proc = self._start()

    def command(self) -> list[str]:
        raise NotImplementedError

    def _start(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log)
        deadline = time.monotonic() + 30
        while not self.sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None and self.sock.exists(), self.log.read_text()[-3000:]
        self.channel = grpc.insecure_channel(f"unix://{self.sock}")
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)
        grpc.channel_ready_future(self.channel).result(timeout=20)
        # a runtime may take a moment after its socket answers (containerd's CRI
        # plugin says "server is not initialized yet"); the kubelet polls Status too
        while True:
            try:
                self.runtime.Status(cri.StatusRequest())
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return proc

    def stop(self) -> None:
        self.channel.close()
        stop_service(self.proc)

    def restart(self) -> None:
        """A new server process on the same state."""
        self.stop()
        self.proc = self._start()

    def remove_everything(self) -> None:
        rt = self.runtime
        for c in rt.ListContainers(cri.ListContainersRequest()).containers:
            rt.StopContainer(cri.StopContainerRequest(container_id=c.id, timeout=0))
            rt.RemoveContainer(cri.RemoveContainerRequest(container_id=c.id))
        for s in rt.ListPodSandbox(cri.ListPodSandboxRequest()).items:
            rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=s.id))
            rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=s.id))


class CniNetwork:
    """A private CNI network as a kubelet's node has one: a conflist of Debian's
    bridge, host-local and portmap plugins in a configuration directory of its own, on
    a bridge name and subnet of its own (two runs at once must not share a bridge with
    different subnets). `cleanup` removes what the plugins leave behind on purpose: the
    bridge and the portmap plugin's chains (when this network created them)."""

    def __init__(self, top: Path) -> None:
        import secrets

        from tests.network.helpers import SubnetPicker

        self.top = top
        self.bridge = f"ktcri{secrets.token_hex(4)}"
        self.subnet = SubnetPicker()()
        self.conf_dir = top / "cni"
        self.ipam_dir = top / "ipam"
        self.conf_dir.mkdir(parents=True)
        (self.conf_dir / "10-ktcri.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "ktcri",
            "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": True,
                 "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": self.subnet}]],
                          "dataDir": str(self.ipam_dir)}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ]}))
        self.chains_before = cni_chains()

    def leases(self) -> list[str]:
        """The addresses host-local has handed out and not taken back."""
        d = self.ipam_dir / "ktcri"
        return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.is_dir() else []

    def new_chains(self) -> set[str]:
        return cni_chains() - self.chains_before

    def sandbox_chains(self) -> set[str]:
        """portmap's per-sandbox chains (CNI-DN-...) that send to this network."""
        import ipaddress

        subnet = ipaddress.ip_network(self.subnet)
        ours = set()
        for rule in _nat_rules():
            parts = shlex.split(rule)  # comments hold spaces, quoted
            if parts[0] == "-A" and parts[1].startswith("CNI-DN-") \
                    and "--to-destination" in parts:
                dest = parts[parts.index("--to-destination") + 1].rsplit(":", 1)[0]
                if ipaddress.ip_address(dest.strip("[]")) in subnet:
                    ours.add(parts[1])
        return ours

    def cleanup(self) -> None:
        """The bridge; the portmap chains of this network's sandboxes (those sending to
        its subnet); and portmap's shared CNI-HOSTPORT-* chains when they appeared during
        the test and no other network's sandbox uses them any more (a test running at
        the same time may)."""
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        _drop_chains(self.sandbox_chains())
        shared = {c for c in self.new_chains() if c.startswith("CNI-HOSTPORT-")}
        if shared and not any(c.startswith("CNI-DN-") for c in cni_chains()):
            _drop_chains(shared)


def _nat_rules() -> list[str]:
    return subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def _drop_chains(chains: set[str]) -> None:
    """Delete the jumps to `chains` from elsewhere, then the chains."""
    if not chains:
        return
    for rule in _nat_rules():
        parts = shlex.split(rule)
        if parts[0] == "-A" and "-j" in parts and parts[parts.index("-j") + 1] in chains \
                and parts[1] not in chains:
            subprocess.run(["iptables", "-t", "nat", "-D", *parts[1:]], check=True)
    for chain in chains:
        subprocess.run(["iptables", "-t", "nat", "-F", chain], check=True)
    for chain in chains:
        subprocess.run(["iptables", "-t", "nat", "-X", chain], check=True)


class Cri(Served):
    name = "ketch"

    network: CniNetwork | None = None

    def __init__(self, root: Path, sock: Path, log: Path, cni_conf_dir: Path | None = None
                 ) -> None:
        self.root = root
        self.cni_conf_dir = cni_conf_dir
        super().__init__(sock, log)

    def command(self) -> list[str]:
        cni = ["--cni-conf-dir", str(self.cni_conf_dir), "--cni-bin-dir", "/usr/lib/cni"] \
            if self.cni_conf_dir else []
        return [*ketch_command(), "--root", str(self.root), "--run-root",
                str(self.root / "run"), "system", "cri", "--listen", f"unix://{self.sock}",
                *cni]

    def ketch(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ketch_command(), "--root", str(self.root), "--run-root",
                               str(self.root / "run"), *args], capture_output=True,
                              text=True, timeout=120, check=True)


class Containerd(Served):
    """containerd 1.6's CRI plugin on a root, state, socket and CNI network of its own."""

    name = "containerd"

    def __init__(self, top: Path, registry: str, pause: str) -> None:
        self.top = top
        self.network = CniNetwork(top)
        self.bridge = self.network.bridge
        cni = self.network.conf_dir
        config = top / "config.toml"
        config.write_text(f'''version = 2
root = "{top}/root"
state = "{top}/state"
[grpc]
  address = "{top}/containerd.sock"
[ttrpc]
  address = "{top}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  sandbox_image = "{pause}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{registry}"]
    endpoint = ["http://{registry}"]
''')
        self.config = config
        super().__init__(top / "containerd.sock", top / "containerd.log")

    def command(self) -> list[str]:
        return ["containerd", "--config", str(self.config)]

    def teardown(self) -> None:
        """What containerd and the CNI plugins leave behind on purpose: mounts, the
        bridge, and the portmap plugin's chains."""
        self.network.cleanup()
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f if f" {self.top}" in line]
        for p in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", p], capture_output=True)


def cni_chains() -> set[str]:
    return {r.split()[1] for r in _nat_rules() if r.startswith("-N CNI-")}


@pytest.fixture
def cri_images(ketch_registry, busybox_tar: Path, tmp_path: Path) -> dict[str, str]:  # noqa: F811
    """A loopback registry holding `busybox` and ketch's pause image (containerd's sandbox
    image); their names."""
    reg = ketch_registry()
    pusher = tmp_path / "pusher"
    base = [*ketch_command(), "--root", str(pusher), "--run-root", str(pusher / "run")]
    names = {"registry": reg.host, "busybox": f"{reg.host}/cri/busybox:1",
             "pause": f"{reg.host}/cri/pause:1"}
    subprocess.run([*base, "import", "--change", 'CMD ["sh"]', str(busybox_tar),
                    names["busybox"]], check=True, capture_output=True, timeout=120)
    from ketch.pods.infra import PAUSE_IMAGE

    subprocess.run([*base, "pod", "create", "--name", "maker"], check=True,
                   capture_output=True, timeout=120)  # makes the pause image
    subprocess.run([*base, "pod", "rm", "-f", "maker"], check=True, capture_output=True)
    subprocess.run([*base, "tag", PAUSE_IMAGE, names["pause"]], check=True,
                   capture_output=True)
    for n in ("busybox", "pause"):
        subprocess.run([*base, "push", names[n]], check=True, capture_output=True,
                       timeout=120)
    return names


@contextlib.contextmanager
def _ketch_cri(root: Path, tmp_path: Path, cni_conf_dir: Path | None) -> Iterator[Cri]:
    require_root()
    require(grpc is not None, "grpcio and container-runtime-interface-api (pyproject)")
    served = Cri(root, tmp_path / "cri.sock", tmp_path / "cri.log", cni_conf_dir)
    try:
        yield served
        assert served.proc.poll() is None, "the CRI server died during the test"
    finally:
        served.stop()
    assert not served.sock.exists(), "the CRI server left its socket behind"
    text = served.log.read_text()
    assert "Traceback" not in text, text


@pytest.fixture
def cri_network(tmp_path: Path) -> Iterator[CniNetwork]:
    """A private CNI network (configuration directory, bridge, subnet); what the
    plugins leave on the host is removed after the test."""
    require_root()
    require(Path("/usr/lib/cni/bridge").exists(), "containernetworking-plugins")
    network = CniNetwork(tmp_path / "net")
    try:
        yield network
    finally:
        network.cleanup()


@pytest.fixture
def cri_server(ketch_root: Path, tmp_path: Path, cri_network: CniNetwork) -> Iterator[Cri]:
    """ketch's CRI server with sandboxes on a private CNI network, as on a node."""
    with _ketch_cri(ketch_root, tmp_path, cri_network.conf_dir) as served:
        served.network = cri_network
        yield served


@pytest.fixture
def bridge_cri_server(ketch_root: Path, tmp_path: Path) -> Iterator[Cri]:
    """ketch's CRI server with no CNI configuration (an empty directory): sandboxes on
    ketch's default bridge."""
    empty = tmp_path / "no-cni"
    empty.mkdir()
    with _ketch_cri(ketch_root, tmp_path, empty) as served:
        yield served


@pytest.fixture(params=["ketch", "containerd"])
def any_runtime(request: pytest.FixtureRequest, tmp_path: Path,
                cri_images: dict[str, str]) -> Iterator[Served]:
    """ketch's CRI server, then containerd's: the tests that use this ask only what
    Kubernetes expects of a node's runtime, so both must pass them."""
    require_root()
    require(grpc is not None, "grpcio and container-runtime-interface-api (pyproject)")
    if request.param == "ketch":
        yield request.getfixturevalue("cri_server")
        return
    require_tool("containerd")
    require(Path("/usr/lib/cni/bridge").exists(), "containernetworking-plugins")
    top = tmp_path / "ctrd"
    served = Containerd(top, cri_images["registry"], cri_images["pause"])
    try:
        yield served
        served.remove_everything()
    finally:
        served.stop()
        served.teardown()
        shutil.rmtree(top, ignore_errors=True)
