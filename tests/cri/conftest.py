"""CRI servers under test, driven by the generated CRI v1 gRPC stubs (the kubelet's own
protocol): ketch (`ketch system cri`) on a temporary socket and state root, and, for the
tests that ask only what Kubernetes expects of any runtime, Debian's containerd with its
CRI plugin on a private socket, root and CNI configuration. Images for both come from a
loopback registry: busybox-static, and ketch's pause image as containerd's sandbox image.

Starting a server (and filling the registry) costs seconds, so each is started once per
session of a worker and shared: `cri_server` and `any_runtime` hand a test a server
with no sandbox, container or image in it, check after the test that it still runs
and logged no traceback, and remove what the test left (ketch's must then leave no
monitor or mount). The modules mark themselves with one xdist_group, so that under
`--dist loadgroup` one worker runs them all on one set of servers (and no two
containerds of one run share the host's portmap chains). A test that
needs a server process of its own (other options, a root of its own) takes
`private_cri_server`, or `ketch_cri(root, folder)` for more than one.
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
from tests.conftest import (
    import_image,
    isolated_network_config,
    ketch_command,
    require,
    require_root,
    require_tool,
    teardown_root,
)
from tests.distribution.conftest import Served as Registry
from tests.distribution.conftest import (
    _stop,
    _wait_for_v2,
    ketch_registry,  # noqa: F401 - a fixture
)
from tests.helpers.host import conmon_pids, mounts_under, wait_for

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

    def remove_images(self) -> None:
        """Every image, the sandbox image too (containerd 1.6 lists every image whatever
        the filter asks, so a test sees exactly what it pulled)."""
        for image in self.images.ListImages(cri.ListImagesRequest()).images:
            self.images.RemoveImage(cri.RemoveImageRequest(
                image=cri.ImageSpec(image=image.id)))

    def reset(self) -> None:
        """Back to what a new server on a new root shows: no sandbox, container or
        image (a shared server between two tests)."""
        if self.proc.poll() is not None:  # the last test stopped it and failed
            self.proc = self._start()
        self.remove_everything()
        self.remove_images()

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> str:
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


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
                # accepts the pods' forwarded traffic in the filter table, as Podman's
                # default network does: a host where dockerd ran has FORWARD set to DROP
                {"type": "firewall", "backend": "iptables"},
            ]}))
        self.chains_before = cni_chains()
        self.filter_chains_before = cni_chains("filter")

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
        for rule in _rules():
            parts = shlex.split(rule)  # comments hold spaces, quoted
            if parts[0] == "-A" and parts[1].startswith("CNI-DN-") \
                    and "--to-destination" in parts:
                dest = parts[parts.index("--to-destination") + 1].rsplit(":", 1)[0]
                if ipaddress.ip_address(dest.strip("[]")) in subnet:
                    ours.add(parts[1])
        return ours

    def forward_rules(self) -> list[str]:
        """The firewall plugin's rules (filter table, CNI-FORWARD) for addresses of this
        network's subnet: one pair for each pod on it."""
        import ipaddress

        subnet = ipaddress.ip_network(self.subnet)
        ours = []
        for rule in _pod_rules("CNI-FORWARD"):
            parts = rule.split()
            for flag in ("-s", "-d"):
                if flag in parts and ipaddress.ip_network(
                        parts[parts.index(flag) + 1], strict=False).subnet_of(subnet):
                    ours.append(rule)
        return ours

    def cleanup(self) -> None:
        """The bridge; the portmap chains of this network's sandboxes (those sending to
        its subnet); and portmap's shared CNI-HOSTPORT-* chains when they appeared during
        the test and no other network's sandbox uses them any more (a test running at
        the same time may)."""
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        _drop_chains(self.sandbox_chains())
        hostport = {c for c in self.new_chains() if c.startswith("CNI-HOSTPORT-")}
        if hostport and not any(c.startswith("CNI-DN-") for c in cni_chains()):
            _drop_chains(hostport, shared=True)
        # the firewall plugin's CNI-FORWARD and CNI-ADMIN: kept by DEL for other
        # networks; dropped here when they appeared during the test and hold no pod's
        # rule any more (a test running at the same time may still use them)
        made = ({"CNI-FORWARD", "CNI-ADMIN"} & cni_chains("filter")) - self.filter_chains_before
        if made and not _pod_rules("CNI-FORWARD"):
            _drop_chains(made, "filter", shared=True)


def _pod_rules(chain: str) -> list[str]:
    """The rules of `chain` in the filter table but its jump to CNI-ADMIN (none when the
    chain does not exist)."""
    proc = subprocess.run(["iptables", "-S", chain], capture_output=True, text=True)
    return [r for r in proc.stdout.splitlines()
            if r.startswith("-A ") and not r.endswith("-j CNI-ADMIN")]


def _rules(table: str = "nat") -> list[str]:
    return subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def _drop_chains(chains: set[str], table: str = "nat", *, shared: bool = False) -> None:
    """Delete the jumps to `chains` from elsewhere, then the chains. `shared`: chains
    the plugins share between networks, which another worker's session may be dropping
    at the same moment: a jump or chain already gone is not an error."""
    if not chains:
        return

    def iptables(*args: str) -> None:
        subprocess.run(["iptables", "-t", table, *args], check=not shared,
                       capture_output=shared)

    for rule in _rules(table):
        parts = shlex.split(rule)  # comments hold spaces, quoted
        if parts[0] == "-A" and "-j" in parts and parts[parts.index("-j") + 1] in chains \
                and parts[1] not in chains:
            iptables("-D", *parts[1:])
    for chain in chains:
        iptables("-F", chain)
    for chain in chains:
        iptables("-X", chain)


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

    def reset(self) -> None:
        super().reset()
        (self.root / "ketch.toml").unlink(missing_ok=True)  # a test's registry settings

    def leaks(self) -> list[str]:
        """Monitors and mounts of the root's containers (none once all are removed; the
        netns directory itself stays a mount point, as `ip netns` keeps /run/netns)."""
        netns_dir = str(self.root / "run" / "netns")
        return ([f"mount {m}" for m in mounts_under(self.root) if m != netns_dir]
                + [f"conmon {p}" for p in conmon_pids(str(self.root))])


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


def cni_chains(table: str = "nat") -> set[str]:
    return {r.split()[1] for r in _rules(table) if r.startswith("-N CNI-")}


def _prerequisites() -> None:
    require_root()
    require(grpc is not None, "grpcio and container-runtime-interface-api (pyproject)")


@pytest.fixture(scope="session")
def cri_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """`ketch registry serve` on a loopback port, for the whole session (of this worker):
    the registry the CRI servers pull from."""
    root = tmp_path_factory.mktemp("cri-registry")
    proc = subprocess.Popen([*ketch_command(), "registry", "serve", "--addr", "127.0.0.1:0",
                             "--root", str(root), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("listening on "), line
        host = line.removeprefix("listening on ")
        _wait_for_v2(host, proc)
        yield Registry(host, root, proc)
    finally:
        _stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="session")
def cri_images(cri_registry: Registry, busybox_tar: Path,
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The session's loopback registry holding `busybox` and ketch's pause image
    (containerd's sandbox image); their names. The tests only pull them."""
    from ketch.engine import Engine
    from ketch.pods.infra import PAUSE_IMAGE, ensure_pause_image

    pusher = tmp_path_factory.mktemp("cri-pusher")
    host = cri_registry.host
    names = {"registry": host, "busybox": f"{host}/cri/busybox:1",
             "pause": f"{host}/cri/pause:1"}
    # made in this process (making images is not what these tests are about)
    import_image(pusher, busybox_tar, names["busybox"], 'CMD ["sh"]')
    with Engine(pusher, pusher / "run") as engine:
        ensure_pause_image(engine.images)
    base = [*ketch_command(), "--root", str(pusher), "--run-root", str(pusher / "run")]
    subprocess.run([*base, "tag", PAUSE_IMAGE, names["pause"]], check=True,
                   capture_output=True)
    for n in ("busybox", "pause"):
        subprocess.run([*base, "push", names[n]], check=True, capture_output=True,
                       timeout=120)
    return names


@contextlib.contextmanager
def ketch_cri(root: Path, where: Path, cni_conf_dir: Path | None = None) -> Iterator[Cri]:
    """`ketch system cri` on `root` (sandboxes on the CNI network configured in
    `cni_conf_dir`, if given), its socket and log in `where`; it must still run at the
    end, and once stopped its socket must be gone and its log hold no traceback."""
    _prerequisites()
    served = Cri(root, where / "cri.sock", where / "cri.log", cni_conf_dir)
    try:
        yield served
        assert served.proc.poll() is None, "the CRI server died during the test"
    finally:
        served.stop()
    assert not served.sock.exists(), "the CRI server left its socket behind"
    text = served.log.read_text()
    assert "Traceback" not in text, text


_ketch_cri = ketch_cri  # (its name in the CNI tests)


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


@contextlib.contextmanager
def one_test(served: Served) -> Iterator[Served]:
    """A shared server for one test: as new at the start (no sandbox, container or
    image); after the test it must still run with no traceback logged, and everything
    the test left is removed (and, for ketch, must leave no monitor or mount)."""
    served.reset()
    mark = served.log_size()
    yield served
    assert served.proc.poll() is None, "the CRI server died during the test"
    text = served.log_since(mark)
    assert "Traceback" not in text, text
    served.remove_everything()
    if isinstance(served, Cri):
        left: list[str] = []

        def gone() -> bool:
            left[:] = served.leaks()
            return not left
        try:
            wait_for(gone, timeout=15, what="the sandboxes' monitors and mounts to go")
        except AssertionError:
            pytest.fail(f"left behind after the test: {left}")


@pytest.fixture(scope="session")
def shared_cri_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cri]:
    """One `ketch system cri` per session (of this worker) on a root of its own, with
    sandboxes on a private CNI network, as on a node; tests get it through
    `cri_server`, which resets it between them."""
    _prerequisites()
    require(Path("/usr/lib/cni/bridge").exists(), "containernetworking-plugins")
    where = tmp_path_factory.mktemp("cri-ketch")
    root = where / "ketch-root"
    root.mkdir()
    isolated_network_config(root)
    network = CniNetwork(where / "net")
    try:
        with ketch_cri(root, where, network.conf_dir) as served:
            served.network = network
            yield served
    finally:
        teardown_root(root, root / "run")
        from ketch.containers.rootfs import unmount

        unmount(root / "run" / "netns")
        network.cleanup()


@pytest.fixture
def cri_server(shared_cri_server: Cri) -> Iterator[Cri]:
    """ketch's CRI server on a private CNI network, with nothing in it at the start of
    the test (shared by the tests of a worker: one that needs a process of its own,
    e.g. to start it with other options, uses `private_cri_server`)."""
    with one_test(shared_cri_server):
        yield shared_cri_server


@pytest.fixture
def private_cri_server(ketch_root: Path, tmp_path: Path, cri_network: CniNetwork
                       ) -> Iterator[Cri]:
    """A `ketch system cri` process and root for this test alone, on a private CNI
    network."""
    with ketch_cri(ketch_root, tmp_path, cri_network.conf_dir) as served:
        served.network = cri_network
        yield served


@pytest.fixture
def bridge_cri_server(ketch_root: Path, tmp_path: Path) -> Iterator[Cri]:
    """ketch's CRI server with no CNI configuration (an empty directory): sandboxes on
    ketch's default bridge (a process and root of its own)."""
    empty = tmp_path / "no-cni"
    empty.mkdir()
    with ketch_cri(ketch_root, tmp_path, empty) as served:
        yield served


@pytest.fixture(scope="session")
def shared_containerd(tmp_path_factory: pytest.TempPathFactory,
                      cri_images: dict[str, str]) -> Iterator[Containerd]:
    """containerd with its CRI plugin, one per session (of this worker)."""
    _prerequisites()
    require_tool("containerd")
    require(Path("/usr/lib/cni/bridge").exists(), "containernetworking-plugins")
    top = tmp_path_factory.mktemp("cri-containerd") / "ctrd"
    served = Containerd(top, cri_images["registry"], cri_images["pause"])
    try:
        yield served
        served.remove_everything()
    finally:
        served.stop()
        served.teardown()
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(params=["ketch", "containerd"])
def any_runtime(request: pytest.FixtureRequest, cri_images: dict[str, str]
                ) -> Iterator[Served]:
    """ketch's CRI server, then containerd's: the tests that use this ask only what
    Kubernetes expects of a node's runtime, so both must pass them. Each is shared by
    the tests of a worker and reset between them, as `cri_server` is."""
    if request.param == "ketch":
        yield request.getfixturevalue("cri_server")
        return
    with one_test(request.getfixturevalue("shared_containerd")) as served:
        yield served
