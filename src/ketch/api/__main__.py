"""`python -m ketch.api ROOT RUN_ROOT URI IDLE`: the Engine API service as a program.

`ketch system service` replaces itself with this program (exec, same pid, so a socket
handed over by systemd's socket activation stays ours): the service is long-running and
takes none of the CLI's short-lived-process tuning (the CLI raises gc thresholds for
its start-up), and the CLI itself never imports the HTTP stack or this package.
"""

from __future__ import annotations

import sys

from ketch.errors import KetchError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        sys.stderr.write("usage: python -m ketch.api ROOT RUN_ROOT URI IDLE_SECONDS"
                         " (URI may be empty for the default socket)\n")
        return 2
    root, run_root, uri, idle = args
    try:
        seconds = float(idle)
    except ValueError:
        sys.stderr.write(f"Error: invalid idle time {idle!r}: a number of seconds\n")
        return 2
    from ketch.api.server import serve

    try:
        serve(root, run_root, uri or None, seconds)
    except KetchError as e:
        sys.stderr.write(f"Error: {e.message}\n")
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 (one line, as the CLI says it, never a traceback)
        sys.stderr.write(f"Error: internal error: {type(e).__name__}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
