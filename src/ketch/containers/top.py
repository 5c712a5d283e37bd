"""`top`: the host's `ps`, run as Docker's daemon runs it, with the rows narrowed to the
processes the runtime lists for the container."""

from __future__ import annotations

import os

from ketch.errors import KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService


def top(svc: ContainerService, rec: ContainerRecord, ps_args: list[str] | None = None
        ) -> tuple[list[str], list[list[str]]]:
    """`top`: the host's `ps` output, rows limited to the container's processes."""
    from ketch.runtime import spawn, which

    # (runc's recorded cgroup, read without starting runc: OCIRuntime.ps)
    pids = set(svc.lifecycle.runtime(rec).ps(rec.id))
    args = list(ps_args or []) or ["-ef"]
    # Docker's daemon runs ps with no terminal and no COLUMNS: full command lines,
    # whatever width the caller's terminal or environment has.
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    ps = which("ps")
    if ps is None:
        raise KetchError("Error running ps: ps is not installed (Debian: procps)")
    try:
        code, out, err = spawn.run([ps, *args], env=env)
    except OSError as e:
        raise KetchError(f"Error running ps: {e.strerror}") from None
    if code != 0:
        # ps's first line says what is wrong; its usage text after it is not an error
        first = (err.decode(errors="replace").strip().splitlines() or [""])[0].strip()
        raise KetchError(f"ps: {first or 'exit status ' + str(code)}")
    lines = out.decode(errors="replace").splitlines()
    if not lines:
        raise KetchError("ps printed nothing")
    titles = lines[0].split()
    if "PID" not in titles:
        raise KetchError("Couldn't find PID field in ps output")
    pid_at = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) <= pid_at:
            continue
        try:
            pid = int(fields[pid_at])
        except ValueError:
            raise KetchError(f"Unexpected pid '{fields[pid_at]}'") from None
        if pid in pids:
            # the last column (the command) keeps its spaces
            n = len(titles) - 1
            rows.append(fields[:n] + [" ".join(fields[n:])])
    return titles, rows
