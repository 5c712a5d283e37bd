"""The options of `pod create`, each with how it takes effect (the option tables are
checked against the flags the CLI declares: tests/containers/test_option_table.py)."""

POD_CREATE_OPTIONS = {
    "--add-host": "HOST:IP lines in the /etc/hosts of the infra and of every member",
    "--hostname": "the pod's host name (its UTS namespace), shared by every member",
    "--label": "labels of the pod (pod inspect, pod ps --filter label=)",
    "--name": "the pod's name (a random one otherwise); its infra is <pod id>-infra",
    "--network": "the infra container's network: bridge, host or a user-defined network",
    "--publish": "a port of the pod published on the host, through the infra container",
}

# The flags of every `ketch pod` command (the index is ketch.optiontables).
OPTIONS: dict[str, dict[str, str]] = {
    "create": POD_CREATE_OPTIONS,
    "inspect": {"--format": "a Go template run on each pod, or 'json'"},
    "kill": {"--signal": "the signal sent to every container of the pod (default KILL)"},
    "logs": {
        "--container": "only that member's log",
        "--follow": "every member's log followed at once",
        "--names": "lines prefixed with the member's name instead of its ID",
        "--since": "only lines from this time on",
        "--tail": "only the last N lines of each member",
        "--timestamps": "each line with its timestamp",
        "--until": "only lines before this time",
    },
    "pause": {},
    "prune": {"--force": "no confirmation prompt"},
    "ps": {
        "--filter": "Podman's pod filters (id, name, label, status, ...)",
        "--format": "a Go template per pod, or 'json'",
        "--no-trunc": "full pod and container IDs",
        "--quiet": "only pod IDs",
    },
    "restart": {},
    "rm": {
        "--force": "running members are stopped first",
        "--time": "seconds the stop waits before SIGKILL, with --force",
    },
    "start": {},
    "stop": {"--time": "seconds each member's stop waits before SIGKILL"},
    "top": {},
    "unpause": {},
}
