"""The CRI gRPC server on a unix socket (default unix:///run/ketch/cri.sock, mode 0660):
grpcio with the CRI v1 definitions from PyPI `container-runtime-interface-api` (the
generated code of Kubernetes' published api.proto, kept in step with its releases, so
ketch carries no generated code of its own). SIGTERM and SIGINT stop it, letting calls
in progress finish for up to 5 seconds."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from concurrent import futures

import grpc
from cri_api.v1 import api_pb2_grpc

from ketch import sockpath
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
    sockpath.claim(path)
    staging = sockpath.staging(path, "cri")
    _check_bind(staging, path)
    engines = Engines(root, run_root)
    podnet.collect(engines.get(), cni)  # what sandboxes removed meanwhile left on the network
    streams = StreamServer(engines, stream_address)
    try:
        _serve(engines, streams, staging, path, cni)
    finally:
        streams.stop()


def _check_bind(staging: str, path: str) -> None:
    """A socket can be made at `staging` (where it is made before it is renamed to
    `path`): said in one line here, where gRPC would log its own error and raise a
    generic one."""
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.bind(staging)
    except OSError as e:
        raise InvalidArgument(f"cannot listen on {path}: {e.strerror}") from None
    finally:
        probe.close()
    os.unlink(staging)


def _serve(engines: Engines, streams: StreamServer, staging: str, path: str,
           cni: Cni) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="cri"))
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(RuntimeService(engines, streams, cni),
                                                      server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(ImageService(engines), server)
    old = os.umask(0o117)  # the socket: rw for root and its group
    try:
        # (gRPC binds and listens here, and accepts from start(); the path appears only
        # then: see ketch.sockpath)
        server.add_insecure_port(f"unix://{staging}")
        server.start()
        if staging != path:
            os.rename(staging, path)
    except OSError as e:
        server.stop(None)
        if staging != path:
            with contextlib.suppress(OSError):
                os.unlink(staging)
        raise InvalidArgument(f"cannot listen on {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    mine = sockpath.identity(path)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1):
        pass
    server.stop(grace=5).wait()
    sockpath.remove_if_same(path, mine)
