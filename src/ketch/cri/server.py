"""The CRI gRPC server on a unix socket (default unix:///run/ketch/cri.sock, mode 0660):
grpcio with the CRI v1 definitions from PyPI `container-runtime-interface-api` (the
generated code of Kubernetes' published api.proto, kept in step with its releases, so
ketch carries no generated code of its own). SIGTERM and SIGINT stop it, letting calls
in progress finish for up to 5 seconds."""

from __future__ import annotations

import os
import signal
import threading
from concurrent import futures

import grpc
from cri_api.v1 import api_pb2_grpc

from ketch.cri import podnet
from ketch.cri.addresses import parse_address, socket_path
from ketch.cri.cni import Cni
from ketch.cri.common import Engines
from ketch.cri.images import ImageService
from ketch.cri.runtime import RuntimeService
from ketch.cri.stream import StreamServer
from ketch.errors import InvalidArgument


def serve(root: str, run_root: str, uri: str | None, stream_address: str | None = None,
          cni_conf_dir: str = "", cni_bin_dir: str = "") -> None:
    path = socket_path(uri)
    parse_address(stream_address)  # a bad address fails before anything is made
    cni = Cni(root, cni_conf_dir, cni_bin_dir)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as e:
        raise InvalidArgument(f"cannot listen on {path}: {e.strerror}") from None
    if os.path.exists(path):
        os.unlink(path)  # a socket left by a server that is gone
    _check_bind(path)
    engines = Engines(root, run_root)
    podnet.collect(engines.get(), cni)  # what sandboxes removed meanwhile left on the network
    streams = StreamServer(engines, stream_address)
    try:
        _serve(engines, streams, path, cni)
    finally:
        streams.stop()


def _check_bind(path: str) -> None:
    """A socket can be made at `path`: said in one line here, where gRPC would log its
    own error and raise a generic one."""
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.bind(path)
    except OSError as e:
        raise InvalidArgument(f"cannot listen on {path}: {e.strerror}") from None
    finally:
        probe.close()
    os.unlink(path)


def _serve(engines: Engines, streams: StreamServer, path: str, cni: Cni) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="cri"))
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(RuntimeService(engines, streams, cni),
                                                      server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(ImageService(engines), server)
    old = os.umask(0o117)  # the socket: rw for root and its group
    try:
        server.add_insecure_port(f"unix://{path}")
        server.start()
    finally:
        os.umask(old)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1):
        pass
    server.stop(grace=5).wait()
    if os.path.exists(path):
        os.unlink(path)
