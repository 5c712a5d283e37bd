"""Entry point: global flags, command lookup, and the one place errors become exit codes.

The command table is static so `ketch --version` and `ketch --help` import nothing
heavy; a command's module is imported only when that command runs.
"""

from __future__ import annotations

import os
import sys

# name -> (module, command inside the module's group, one-line help)
# Group commands ("image ls") and Docker's top-level shortcuts ("images") share handlers.
GROUPS: dict[str, tuple[str, str]] = {
    "builder": ("ketch.cli.build", "Manage builds"),
    "container": ("ketch.cli.container", "Manage containers"),
    "image": ("ketch.cli.image", "Manage images"),
    "kube": ("ketch.cli.kube", "Play, take down and generate Kubernetes YAML"),
    "network": ("ketch.cli.network", "Manage networks"),
    "pod": ("ketch.cli.pod", "Manage pods"),
    "system": ("ketch.cli.system", "Manage ketch"),
    "volume": ("ketch.cli.volume", "Manage volumes"),
}
# Groups that only back shortcuts (not listed as management commands).
HIDDEN_GROUPS: dict[str, tuple[str, str]] = {
    "distribution": ("ketch.cli.distribution", "Registries: pull, push, login, logout,"
                     " search"),
}

SHORTCUTS: dict[str, tuple[str, str, str]] = {
    # common commands
    "run": ("container", "run", "Create and run a new container from an image"),
    "exec": ("container", "exec", "Execute a command in a running container"),
    "ps": ("container", "ls", "List containers"),
    "build": ("builder", "build", "Build an image from a Dockerfile"),
    "pull": ("distribution", "pull", "Download an image from a registry"),
    "push": ("distribution", "push", "Upload an image to a registry"),
    "images": ("image", "ls", "List images"),
    "login": ("distribution", "login", "Log in to a registry"),
    "logout": ("distribution", "logout", "Log out from a registry"),
    "version": ("system", "version", "Show the ketch version information"),
    "info": ("system", "info", "Display system-wide information"),
    # other commands
    "attach": ("container", "attach", "Attach local standard input, output, and error streams"
               " to a running container"),
    "commit": ("container", "commit", "Create a new image from a container's changes"),
    "cp": ("container", "cp", "Copy files/folders between a container and the local"
           " filesystem"),
    "create": ("container", "create", "Create a new container"),
    "events": ("system", "events", "Get real time events from the server"),
    "diff": ("container", "diff", "Inspect changes to files or directories on a container's"
             " filesystem"),
    "export": ("container", "export", "Export a container's filesystem as a tar archive"),
    "history": ("image", "history", "Show the history of an image"),
    "import": ("image", "import", "Import the contents from a tarball to create a filesystem"
               " image"),
    "inspect": ("system", "inspect", "Return low-level information on ketch objects"),
    "kill": ("container", "kill", "Kill one or more running containers"),
    "load": ("image", "load", "Load an image from a tar archive or STDIN"),
    "logs": ("container", "logs", "Fetch the logs of a container"),
    "pause": ("container", "pause", "Pause all processes within one or more containers"),
    "port": ("container", "port", "List port mappings or a specific mapping for the"
             " container"),
    "rename": ("container", "rename", "Rename a container"),
    "restart": ("container", "restart", "Restart one or more containers"),
    "rm": ("container", "rm", "Remove one or more containers"),
    "rmi": ("image", "rm", "Remove one or more images"),
    "search": ("distribution", "search", "Search Docker Hub for images"),
    "save": ("image", "save", "Save one or more images to a tar archive (streamed to STDOUT"
             " by default)"),
    "start": ("container", "start", "Start one or more stopped containers"),
    "stats": ("container", "stats", "Display a live stream of container(s) resource usage"
              " statistics"),
    "stop": ("container", "stop", "Stop one or more running containers"),
    "tag": ("image", "tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "top": ("container", "top", "Display the running processes of a container"),
    "unpause": ("container", "unpause", "Unpause all processes within one or more"
                " containers"),
    "update": ("container", "update", "Update configuration of one or more containers"),
    "wait": ("container", "wait", "Block until one or more containers stop, then print their"
             " exit codes"),
    # beyond docker
    "registry": ("distribution", "serve", "Run ketch's OCI registry server"),
}

COMMON = ["run", "exec", "ps", "build", "pull", "push", "images", "login", "logout",
          "version", "info"]


def top_help() -> str:
    lines = ["", "Usage:  ketch [OPTIONS] COMMAND", "",
             "A daemonless, Docker-compatible container engine", "",
             "Common Commands:"]
    for name in COMMON:
        lines.append(f"  {name:<11} {SHORTCUTS[name][2]}")
    lines += ["", "Management Commands:"]
    for name, (_, h) in GROUPS.items():
        lines.append(f"  {name:<11} {h}")
    lines += ["", "Commands:"]
    for name in sorted(SHORTCUTS):
        if name not in COMMON:
            lines.append(f"  {name:<11} {SHORTCUTS[name][2]}")
    lines += ["", "Global Options:",
              "      --root string       State root (default \"/var/lib/ketch\"; env"
              " KETCH_ROOT)",
              "      --run-root string   Run state root (default \"/run/ketch\"; env"
              " KETCH_RUN_ROOT)",
              "  -D, --debug             Show Python tracebacks on errors",
              "  -h, --help              Print usage",
              "  -v, --version           Print version information and quit", "",
              "Run 'ketch COMMAND --help' for more information on a command.", ""]
    return "\n".join(lines)


def _err(msg: str) -> None:
    sys.stderr.write(msg.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    from ketch.cli import gcpolicy

    gcpolicy.command_started()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get("KETCH_DEBUG"))
    # Global flags before the command word.
    while args and args[0].startswith("-"):
        a = args.pop(0)
        if a in ("-v", "--version"):
            from ketch import __version__

            print(f"ketch version {__version__}")
            return 0
        if a in ("-h", "--help"):
            print(top_help())
            return 0
        if a in ("-D", "--debug"):
            debug = True
            continue
        name, eq, val = a.partition("=")
        if name in ("--root", "--run-root"):
            if not eq:
                if not args:
                    _err(f"ketch: flag needs an argument: {name}")
                    return 125
                val = args.pop(0)
            os.environ["KETCH_ROOT" if name == "--root" else "KETCH_RUN_ROOT"] = val
            continue
        _err(f"ketch: unknown flag: {a} (see 'ketch --help')")
        return 125
    if not args:
        print(top_help())
        return 0
    word = args.pop(0)
    if word in GROUPS:
        group = word
        if not args or args[0] in ("-h", "--help"):
            from ketch.cli.base import group_help

            print(group_help(group, GROUPS[group][0], GROUPS[group][1]))
            return 0
        sub = args.pop(0)
        prog = f"ketch {group} {sub}"
    elif word in SHORTCUTS:
        group, sub, _ = SHORTCUTS[word]
        prog = f"ketch {word}"
    else:
        _err(f"ketch: '{word}' is not a ketch command (see 'ketch --help')")
        return 1
    from ketch.cli.base import run_command

    module = (GROUPS.get(group) or HIDDEN_GROUPS[group])[0]
    return run_command(module, group, sub, prog, args, debug=debug)


def run() -> None:
    """The `ketch` process: `main()`, then `exit_now` (what the launcher and
    `python -m ketch` call; in-process callers use `main`)."""
    if sys.stdout is None or sys.stderr is None or sys.stdin is None:
        streams_for_closed_stdio()
    exit_now(main())


def streams_for_closed_stdio() -> None:
    """Python's streams for the standard descriptors the process started without
    (`ketch ps >&-`), which importing ketch gave /dev/null (ketch/__init__.py): what goes
    to a closed stdout is discarded, as docker's is, where a print was a traceback."""
    import io

    if sys.stdin is None:
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    if sys.stdout is None:
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      write_through=True)
    if sys.stderr is None:
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", write_through=True)


def exit_now(code: int) -> None:
    """End the process without the interpreter's teardown.

    A ketch command is over when `main` returns: what the interpreter does after that
    (a full garbage collection, then clearing every module with three more collections,
    freeing each object) is work for nobody, and it was 18% of the instructions of
    `ketch image inspect` (callgrind: 13.8 of 75.8 million; a bare `python -I -S -c
    pass` spends 6.2 million there). So: flush the standard streams, close the
    command's Engine (checkpoint its SQLite connection), run the atexit callbacks (weakref
    finalizers, the code bundle's refresh) and `os._exit`. Where the normal exit would
    still do something, this falls back to it: a flush that fails (the interpreter
    reports it and exits 120) and threads still running (it joins the non-daemon
    ones)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        sys.exit(code)
    base = sys.modules.get("ketch.cli.base")
    if base is not None:
        # the WAL is folded into the database before the process ends, so the next
        # command has nothing to recover, and the WAL file is kept (Database.close)
        base.close_engine(exiting=True)
    import atexit

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)
