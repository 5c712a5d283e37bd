"""The CRI RuntimeService on the Engine: what a kubelet asks before it runs anything
(Version, Status, RuntimeConfig, UpdateRuntimeConfig), pod sandboxes (ketch pods,
cri/sandboxes.py) and their containers (cri/containers.py), ExecSync."""

from __future__ import annotations

import grpc
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc

from ketch import __version__
from ketch.cri import containers, sandboxes, stats
from ketch.cri.common import Engines, rpc
from ketch.errors import InvalidArgument, KetchError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.cri.cni import Cni
    from ketch.cri.stream import StreamServer

# the version of the kubelet-runtime API (the CRI's `version` field, "0.1.0" in every
# runtime that implements v1) and of the protocol itself
KUBE_API_VERSION = "0.1.0"
RUNTIME_API_VERSION = "v1"


class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, engines: Engines, streams: StreamServer | None = None,
                 cni: Cni | None = None) -> None:
        self.engines = engines
        self.streams = streams
        self.cni = cni
        self.pod_cidr = ""

    @rpc
    def Version(self, request: cri.VersionRequest,
                context: grpc.ServicerContext) -> cri.VersionResponse:
        return cri.VersionResponse(version=KUBE_API_VERSION, runtime_name="ketch",
                                   runtime_version=__version__,
                                   runtime_api_version=RUNTIME_API_VERSION)

    @rpc
    def Status(self, request: cri.StatusRequest,
               context: grpc.ServicerContext) -> cri.StatusResponse:
        self.engines.get()  # the state root opens: the runtime is ready
        # as containerd: the network is ready once there is a CNI configuration (until
        # then sandboxes are put on ketch's default bridge)
        why = self.cni.not_ready() if self.cni is not None else ""
        network = cri.RuntimeCondition(type="NetworkReady", status=not why)
        if why:
            network.reason, network.message = "NetworkPluginNotReady", why
        conditions = [cri.RuntimeCondition(type="RuntimeReady", status=True), network]
        return cri.StatusResponse(status=cri.RuntimeStatus(conditions=conditions))

    @rpc
    def RuntimeConfig(self, request: cri.RuntimeConfigRequest,
                      context: grpc.ServicerContext) -> cri.RuntimeConfigResponse:
        # ketch drives runc with the cgroupfs driver (no systemd unit per container)
        return cri.RuntimeConfigResponse(
            linux=cri.LinuxRuntimeConfiguration(cgroup_driver=cri.CGROUPFS))

    @rpc
    def UpdateRuntimeConfig(self, request: cri.UpdateRuntimeConfigRequest,
                            context: grpc.ServicerContext) -> cri.UpdateRuntimeConfigResponse:
        # the node's pod CIDR; ketch's own networks allocate pod addresses for now
        self.pod_cidr = request.runtime_config.network_config.pod_cidr
        return cri.UpdateRuntimeConfigResponse()

    # -- sandboxes -------------------------------------------------------------------------
    @rpc
    def RunPodSandbox(self, request: cri.RunPodSandboxRequest,
                      context: grpc.ServicerContext) -> cri.RunPodSandboxResponse:
        return cri.RunPodSandboxResponse(
            pod_sandbox_id=sandboxes.run(self.engines.get(), request.config, self.cni))

    @rpc
    def StopPodSandbox(self, request: cri.StopPodSandboxRequest,
                       context: grpc.ServicerContext) -> cri.StopPodSandboxResponse:
        sandboxes.stop(self.engines.get(), request.pod_sandbox_id, self.cni)
        return cri.StopPodSandboxResponse()

    @rpc
    def RemovePodSandbox(self, request: cri.RemovePodSandboxRequest,
                         context: grpc.ServicerContext) -> cri.RemovePodSandboxResponse:
        sandboxes.remove(self.engines.get(), request.pod_sandbox_id, self.cni)
        return cri.RemovePodSandboxResponse()

    @rpc
    def PodSandboxStatus(self, request: cri.PodSandboxStatusRequest,
                         context: grpc.ServicerContext) -> cri.PodSandboxStatusResponse:
        return cri.PodSandboxStatusResponse(
            status=sandboxes.status(self.engines.get(), request.pod_sandbox_id,
                                  self.cni))

    @rpc
    def ListPodSandbox(self, request: cri.ListPodSandboxRequest,
                       context: grpc.ServicerContext) -> cri.ListPodSandboxResponse:
        flt = request.filter if request.HasField("filter") else None
        return cri.ListPodSandboxResponse(items=sandboxes.listed(self.engines.get(), flt))

    # -- containers ------------------------------------------------------------------------
    @rpc
    def CreateContainer(self, request: cri.CreateContainerRequest,
                        context: grpc.ServicerContext) -> cri.CreateContainerResponse:
        return cri.CreateContainerResponse(container_id=containers.create(
            self.engines.get(), request.pod_sandbox_id, request.config))

    @rpc
    def StartContainer(self, request: cri.StartContainerRequest,
                       context: grpc.ServicerContext) -> cri.StartContainerResponse:
        containers.start(self.engines.get(), request.container_id)
        return cri.StartContainerResponse()

    @rpc
    def StopContainer(self, request: cri.StopContainerRequest,
                      context: grpc.ServicerContext) -> cri.StopContainerResponse:
        containers.stop(self.engines.get(), request.container_id, int(request.timeout))
        return cri.StopContainerResponse()

    @rpc
    def RemoveContainer(self, request: cri.RemoveContainerRequest,
                        context: grpc.ServicerContext) -> cri.RemoveContainerResponse:
        containers.remove(self.engines.get(), request.container_id)
        return cri.RemoveContainerResponse()

    @rpc
    def ContainerStatus(self, request: cri.ContainerStatusRequest,
                        context: grpc.ServicerContext) -> cri.ContainerStatusResponse:
        return cri.ContainerStatusResponse(
            status=containers.status(self.engines.get(), request.container_id))

    @rpc
    def ListContainers(self, request: cri.ListContainersRequest,
                       context: grpc.ServicerContext) -> cri.ListContainersResponse:
        flt = request.filter if request.HasField("filter") else None
        return cri.ListContainersResponse(
            containers=containers.listed(self.engines.get(), flt))

    @rpc
    def ReopenContainerLog(self, request: cri.ReopenContainerLogRequest,
                           context: grpc.ServicerContext) -> cri.ReopenContainerLogResponse:
        containers.reopen_log(self.engines.get(), request.container_id)
        return cri.ReopenContainerLogResponse()

    @rpc
    def ExecSync(self, request: cri.ExecSyncRequest,
                 context: grpc.ServicerContext) -> cri.ExecSyncResponse:
        out, err, code = containers.exec_sync(self.engines.get(), request.container_id,
                                              list(request.cmd), int(request.timeout))
        return cri.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)

    # -- streaming: a URL on the streaming server (cri/stream.py) for each request -----
    def _url(self, kind: str, request: object) -> str:
        if self.streams is None:
            raise KetchError("the streaming server is not running")
        return self.streams.url(kind, request)

    @rpc
    def Exec(self, request: cri.ExecRequest,
             context: grpc.ServicerContext) -> cri.ExecResponse:
        containers.check_stream(self.engines.get(), request.container_id, tty=request.tty,
                                stdin=request.stdin, stdout=request.stdout,
                                stderr=request.stderr, cmd=list(request.cmd))
        return cri.ExecResponse(url=self._url("exec", request))

    @rpc
    def Attach(self, request: cri.AttachRequest,
               context: grpc.ServicerContext) -> cri.AttachResponse:
        containers.check_stream(self.engines.get(), request.container_id, tty=request.tty,
                                stdin=request.stdin, stdout=request.stdout,
                                stderr=request.stderr)
        return cri.AttachResponse(url=self._url("attach", request))

    @rpc
    def PortForward(self, request: cri.PortForwardRequest,
                    context: grpc.ServicerContext) -> cri.PortForwardResponse:
        if sandboxes.ours(self.engines.get(), request.pod_sandbox_id) is None:
            raise NotFound(f"an error occurred when try to find sandbox"
                           f" {request.pod_sandbox_id!r}: not found")
        bad = [p for p in request.port if not 0 < p < 65536]
        if bad:
            raise InvalidArgument(f"invalid port {bad[0]}: a port is 1 to 65535")
        return cri.PortForwardResponse(url=self._url("portforward", request))

    # -- stats and resources ---------------------------------------------------------------
    @rpc
    def ContainerStats(self, request: cri.ContainerStatsRequest,
                       context: grpc.ServicerContext) -> cri.ContainerStatsResponse:
        return cri.ContainerStatsResponse(
            stats=stats.container_stats(self.engines.get(), request.container_id))

    @rpc
    def ListContainerStats(self, request: cri.ListContainerStatsRequest,
                           context: grpc.ServicerContext) -> cri.ListContainerStatsResponse:
        flt = request.filter if request.HasField("filter") else None
        return cri.ListContainerStatsResponse(
            stats=stats.list_container_stats(self.engines.get(), flt))

    @rpc
    def PodSandboxStats(self, request: cri.PodSandboxStatsRequest,
                        context: grpc.ServicerContext) -> cri.PodSandboxStatsResponse:
        return cri.PodSandboxStatsResponse(
            stats=stats.sandbox_stats(self.engines.get(), request.pod_sandbox_id))

    @rpc
    def ListPodSandboxStats(self, request: cri.ListPodSandboxStatsRequest,
                            context: grpc.ServicerContext) -> cri.ListPodSandboxStatsResponse:
        flt = request.filter if request.HasField("filter") else None
        return cri.ListPodSandboxStatsResponse(
            stats=stats.list_sandbox_stats(self.engines.get(), flt))

    @rpc
    def UpdateContainerResources(self, request: cri.UpdateContainerResourcesRequest,
                                 context: grpc.ServicerContext
                                 ) -> cri.UpdateContainerResourcesResponse:
        stats.update_resources(self.engines.get(), request.container_id, request.linux)
        return cri.UpdateContainerResourcesResponse()
