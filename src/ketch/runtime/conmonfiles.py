"""Where conmon leaves its files for one container, and the one question asked of them
on every look at a running container: has it exited?

`ps`, `inspect`, `logs` and `exec` look at each running container before they show it
(an exit nobody has finished yet is finished first). Answering through the monitor's
module (ketch.runtime.monitor, with the lifecycle behind it) cost each of those commands
about 14 ms of imports for a container that, nearly always, still runs; this module is
standard library only and loads nothing. When the answer is not plainly "still runs",
the caller asks the monitor, which reads the exit and finishes it.

The names are the layout ContainerPaths (ketch.runtime.monitor) gives conmon.
"""

from __future__ import annotations

import os

CONMON_PIDFILE = "conmon.pid"
EXIT_DIR = "exits"  # conmon's --exit-dir: a file named after the container
PERSIST_DIR = "persist"  # conmon's --persist-dir: "exit" (and "oom")
EXEC_DIR = "exec"  # one directory per exec session, and its record (ID.json) beside it


def still_running(run_dir: str, container_id: str) -> bool:
    """True when conmon has recorded no exit for the container whose transient files are
    in `run_dir` and conmon itself still runs (a zombie counts as exited). False means
    "ask the monitor": it has exited, or its files do not say."""
    for path in (f"{run_dir}/{PERSIST_DIR}/exit", f"{run_dir}/{EXIT_DIR}/{container_id}"):
        if os.path.lexists(path):
            return False
    try:
        with open(f"{run_dir}/{CONMON_PIDFILE}", "rb") as f:
            pid = int(f.read())
        if pid <= 0:
            return False
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (OSError, ValueError):
        return False
    state = stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3]
    return state not in (b"Z", b"X")
