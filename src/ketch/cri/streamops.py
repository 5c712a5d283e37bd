"""What the CRI streaming transports share: the channel.k8s.io protocol names and
stream numbers, what an exec or attach does whichever transport carries it (`Ops`), and
the v4 outcome Status."""

from __future__ import annotations

from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ketch.engine import Engine

STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
V4 = "v4.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V2 = "v2.channel.k8s.io"
V1 = "channel.k8s.io"
PORT_FORWARD = "portforward.k8s.io"
STREAM_CREATION_TIMEOUT = 30.0  # seconds, the kubelet's default


def outcome(code: int | None, cmd: list[str], error: str = "") -> dict[str, Any]:
    """The outcome of a stream as the v4 protocol's metav1.Status."""
    if error:
        return {"metadata": {}, "status": "Failure", "message": error,
                "reason": "InternalError", "code": 500}
    if not code:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing"
                       f" command {cmd}, exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


@value
class Ops:
    """What an exec or an attach does, whichever transport carries its streams."""

    cmd: list[str]
    start: Callable[[Engine, Any, Any, int | None], int | None]
    resize: Callable[[Engine, int, int], None]
    gone: Callable[[], None] | None = None
    prepare: Callable[[Engine], None] | None = None


def forward_error(port: int, pod_id: str, exc: Exception) -> str:
    text = getattr(exc, "message", None) or getattr(exc, "strerror", None) or exc
    return f"error forwarding port {port} to pod {pod_id}: {text}"


def resizing(resize: Callable[[Engine, int, int], None], height: int, width: int
              ) -> Callable[[Engine], None]:
    """`resize` bound to one size, for the Engine's worker thread."""
    return lambda e: resize(e, height, width)
