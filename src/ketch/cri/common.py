"""What the CRI services share: one Engine per gRPC worker thread (an Engine holds one
SQLite connection), and the mapping of ketch's errors to gRPC status codes."""

from __future__ import annotations

import functools
import os
import sys
import threading
import traceback

import grpc

from ketch.engine import Engine
from ketch.errors import Conflict, Forbidden, InvalidArgument, KetchError, NotFound, Unauthorized

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Engines:
    """An Engine per worker thread, all on one state root."""

    def __init__(self, root: str, run_root: str) -> None:
        self.root = root
        self.run_root = run_root
        self._local = threading.local()

    def get(self) -> Engine:
        e = getattr(self._local, "engine", None)
        if e is None:
            e = self._local.engine = Engine(self.root, self.run_root)
        return e


class Deadline(KetchError):
    """The call's own time limit ran out (ExecSync's timeout)."""


_CODES: list[tuple[type[KetchError], grpc.StatusCode]] = [
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (Unauthorized, grpc.StatusCode.UNAUTHENTICATED),
    (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (Deadline, grpc.StatusCode.DEADLINE_EXCEEDED),
]


def status_of(exc: KetchError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.UNKNOWN


def rpc(method: Callable[..., Any]) -> Callable[..., Any]:
    """A servicer method whose ketch errors become the call's gRPC status and message."""

    @functools.wraps(method)
    def call(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            if _PROFILE_DIR:
                return _profiled(method, self, request, context)
            return method(self, request, context)
        except KetchError as e:
            context.abort(status_of(e), e.message)
        except Exception as e:
            # a bug: its traceback in the server's log, a one-line error to the caller
            traceback.print_exc(file=sys.stderr)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    return call


# KETCH_CRI_PROFILE=DIR: every call is run under cProfile and its statistics written to
# DIR/<n>-<Method>.prof (for `python3 -m pstats`), to see where a call's time goes
_PROFILE_DIR = os.environ.get("KETCH_CRI_PROFILE", "")
_profiled_calls = [0]


def _profiled(method: Callable[..., Any], *args: Any) -> Any:
    import cProfile

    prof = cProfile.Profile()
    try:
        return prof.runcall(method, *args)
    finally:
        _profiled_calls[0] += 1
        try:  # a profiling aid never fails the call it watches
            prof.dump_stats(os.path.join(
                _PROFILE_DIR, f"{_profiled_calls[0]:04d}-{method.__name__}.prof"))
        except OSError as e:
            print(f"KETCH_CRI_PROFILE: {e}", file=sys.stderr)
