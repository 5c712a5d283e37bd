"""The flags of every `ketch container` command and how each takes effect (the index is
ketch.optiontables; tests/containers/test_option_table.py keeps it, the declared flags
and the tests in step). `create`/`run`/`exec` share their tables with the code that
checks those options (ketch.containers.options)."""

from __future__ import annotations

from ketch.containers.options import CREATE_OPTIONS, EXEC_OPTIONS

_FORMAT = "a Go template run on each item, or 'json' (ketch.fmt.gotemplate)"
_SIGNAL = "the signal sent first (default the container's StopSignal, else SIGTERM)"
_TIMEOUT = "seconds to wait after the signal before SIGKILL (default the container's" \
           " StopTimeout, else 10)"

OPTIONS: dict[str, dict[str, str]] = {
    "attach": {
        "--detach-keys": "the key sequence that ends the session, the container going on",
        "--no-stdin": "this terminal's input is not sent to the container",
        "--sig-proxy": "signals this command gets are sent to the container's process"
                       " (not with a TTY, as Docker)",
    },
    "cleanup": {"--exec": "the end of this detached exec session is recorded (its exit"
                          " code, one exec_die event) instead of the container's"},
    "commit": {
        "--author": "the image's author field",
        "--change": "Dockerfile instructions applied to the image's config",
        "--message": "the image's comment and its new history entry's comment",
        "--pause": "the container is frozen while its changes are read (=false: not)",
    },
    "cp": {
        "--archive": "copied into a container: files keep their uid/gid (else root's)",
        "--follow-link": "a symlink as SRC_PATH is copied as what it points at",
        "--quiet": "nothing to suppress: ketch's cp prints no progress (Docker 20.10's"
                   " neither)",
    },
    "create": CREATE_OPTIONS,
    "diff": {},
    "exec": EXEC_OPTIONS,
    "export": {"--output": "the tar is written to the file (whole or not at all)"},
    "healthcheck": {},
    "inspect": {
        "--format": _FORMAT,
        "--size": "SizeRw and SizeRootFs computed and shown",
    },
    "kill": {"--signal": "the signal sent (name, SIG name or number; default KILL)"},
    "logs": {
        "--details": "each line's attributes before it: a space, the empty list (the log"
                     " opts that add attributes, labels and env, are refused at create)",
        "--follow": "the log is followed until the container stops",
        "--since": "only lines from this time on (RFC 3339, Unix or relative)",
        "--tail": "only the last N lines",
        "--timestamps": "each line prefixed with its RFC 3339 nano timestamp",
        "--until": "only lines before this time",
    },
    "ls": {
        "--all": "stopped containers listed too",
        "--filter": "Docker's ps filters select the containers listed",
        "--format": "a Go template per row, 'table ...' or 'json'",
        "--last": "the N last created containers, all states",
        "--latest": "the last created container, whatever its state",
        "--no-trunc": "full IDs and commands",
        "--pod": "the POD ID and PODNAME columns (Podman's)",
        "--quiet": "only IDs",
        "--size": "the SIZE column: writable layer (virtual: with the image)",
    },
    "pause": {},
    "port": {},
    "prune": {
        "--filter": "Docker's prune filters (until, label) select what is removed",
        "--force": "no confirmation prompt",
    },
    "rename": {},
    "restart": {"--signal": _SIGNAL, "--timeout": _TIMEOUT},
    "restart-wait": {},
    "rm": {
        "--force": "a running container is killed (SIGKILL) and removed",
        "--link": "refused: ketch keeps no link graph to remove a link from (a container's"
                  " --link entries go with it)",
        "--volumes": "the container's anonymous volumes are removed with it",
    },
    "run": {
        **CREATE_OPTIONS,
        "--detach": "the container runs in the background; its ID is printed",
        "--sig-proxy": "signals this command gets are sent to the container's process"
                       " (not with a TTY, as Docker)",
    },
    "start": {
        "--attach": "the container's output is copied here and signals forwarded",
        "--checkpoint": "refused: no checkpoint/restore (experimental in Docker, needs CRIU)",
        "--checkpoint-dir": "refused: no checkpoint/restore",
        "--detach-keys": "the key sequence that ends the attached session",
        "--interactive": "this terminal's input is the container's stdin",
    },
    "stats": {
        "--all": "stopped containers listed too",
        "--format": "a Go template per row, 'table ...' or 'json'",
        "--no-stream": "one sample printed, then the command ends",
        "--no-trunc": "full IDs",
    },
    "stop": {"--signal": _SIGNAL, "--timeout": _TIMEOUT},
    "top": {},
    "unpause": {},
    "update": {
        "--blkio-weight": "blockIO.weight of the running container and its record",
        "--cpu-period": "cpu.cfs_period_us, live and recorded",
        "--cpu-quota": "cpu.cfs_quota_us, live and recorded",
        "--cpu-rt-period": "cpu.rt_period_us, live and recorded (refused without real-time"
                           " group scheduling)",
        "--cpu-rt-runtime": "cpu.rt_runtime_us, live (the parent cgroups given the budget)"
                            " and recorded",
        "--cpu-shares": "cpu.shares (cpu.weight on cgroup v2), live and recorded",
        "--cpus": "the CFS quota over a 100 ms period, live and recorded",
        "--cpuset-cpus": "cpuset.cpus, live and recorded",
        "--cpuset-mems": "cpuset.mems, live and recorded",
        "--kernel-memory": "discarded with Docker's warning (kmem limits are deprecated)",
        "--memory": "the memory limit, live and recorded",
        "--memory-reservation": "the memory soft limit, live and recorded",
        "--memory-swap": "the memory plus swap limit, live and recorded",
        "--pids-limit": "pids.max, live and recorded",
        "--restart": "the restart policy the monitor applies from the next exit",
    },
    "wait": {},
}
