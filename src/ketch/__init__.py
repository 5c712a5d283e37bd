"""ketch: a daemonless, Docker-compatible container engine.

Importing the package is cheap; the Engine and everything behind it load on first use,
so `ketch --version` stays fast.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported: `ketch --version` stays cheap

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ketch.engine import Engine

__all__ = ["Engine", "__version__"]


def __getattr__(name: str) -> type[Engine]:
    if name == "Engine":
        from ketch.engine import Engine

        return Engine
    raise AttributeError(name)
