"""The CRI RuntimeService on the Engine. This first part answers what a kubelet asks
before it runs anything (Version, Status, RuntimeConfig, UpdateRuntimeConfig); pod
sandboxes and their containers build on ketch's pods."""

from __future__ import annotations

import grpc
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc

from ketch import __version__
from ketch.cri.common import Engines, rpc

# the version of the kubelet-runtime API (the CRI's `version` field, "0.1.0" in every
# runtime that implements v1) and of the protocol itself
KUBE_API_VERSION = "0.1.0"
RUNTIME_API_VERSION = "v1"


class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, engines: Engines) -> None:
        self.engines = engines
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
        conditions = [cri.RuntimeCondition(type="RuntimeReady", status=True),
                      cri.RuntimeCondition(type="NetworkReady", status=True)]
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
