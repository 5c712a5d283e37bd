"""The one owner of the cyclic garbage collector's settings (see ARCHITECTURE.md,
"Start-up policy"). The services never touch `gc`; the other front door, the API
service (`ketch.api.server`), owns its own idle release.

A ketch command is a short process whose start is mostly imports: thousands of
long-lived objects and no garbage cycles. Collection passes over them find nothing and
cost milliseconds, so:
- every command raises the thresholds (`command_started`);
- `run` turns collection off while it creates and starts the container
  (`startup_paused`), and a session that then stays attached for hours turns it back on
  (`long_session_started`, which `run` hands to the Engine's `run_attached`);
- before collection comes back on, what exists is frozen: it lives until exit anyway,
  and the first collection (or the one at exit) would otherwise scan all of it (~20 ms
  with all of ketch loaded).
"""

from __future__ import annotations

import gc

# The default first-generation threshold (700) collects dozens of times during the
# imports of one command (~5 ms of `ps`); cycles are still collected in long-running
# commands, only less often.
_THRESHOLDS = (20_000, 20, 100)


def command_started() -> None:
    """At the start of every ketch command."""
    gc.set_threshold(*_THRESHOLDS)


def _resume() -> None:
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


class startup_paused:  # a context manager, named like one
    """No collection while a container is created and started; collection is back on
    (after a freeze) when the block ends."""

    def __enter__(self) -> None:
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        _resume()


def long_session_started() -> None:
    """An attached session can last for hours: collection is on from here (a no-op when
    it already is)."""
    _resume()
