"""ketch: a daemonless, Docker-compatible container engine.

Importing the package is cheap; the Engine and everything behind it load on first use,
so `ketch --version` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ketch.engine import Engine

__all__ = ["Engine", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from ketch.engine import Engine

        return Engine
    raise AttributeError(name)
