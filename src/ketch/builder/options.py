"""The table of `build` flags and how each takes effect (tests/containers/
test_option_table.py keeps it, the declared flags and the tests in step)."""

from __future__ import annotations

_RUN = "the HostConfig of every RUN step's container: "

BUILD_OPTIONS: dict[str, str] = {
    "--add-host": _RUN + "ExtraHosts (lines of its /etc/hosts)",
    "--build-arg": "ARG values",
    "--cache-from": "the named images' histories are cache sources after the local"
                    " cache (ketch.builder.cachefrom); a name not in the store is skipped",
    "--cgroup-parent": _RUN + "cgroupsPath <parent>/<id>",
    "--compress": "accepted: the context is read in place, nothing is sent to compress",
    "--cpu-period": _RUN + "cpu.cfs_period_us",
    "--cpu-quota": _RUN + "cpu.cfs_quota_us",
    "--cpu-shares": _RUN + "cpu.shares",
    "--cpuset-cpus": _RUN + "cpuset.cpus",
    "--cpuset-mems": _RUN + "cpuset.mems",
    "--disable-content-trust": "accepted; ketch verifies no signatures",
    "--file": "the Dockerfile (a path, or - for standard input)",
    "--force-rm": "a failed step's container is removed too",
    "--iidfile": "the image ID is written to the file",
    "--isolation": "only 'default', as Docker on Linux",
    "--label": "labels of the built image",
    "--memory": _RUN + "memory limit",
    "--memory-swap": _RUN + "memory plus swap limit",
    "--network": "the RUN steps' network mode",
    "--no-cache": "no step is taken from the cache",
    "--output": "refused: needs BuildKit",
    "--platform": "only the host's platform; anything else refused",
    "--progress": "auto or plain (the classic builder's output); tty refused",
    "--pull": "base images pulled even when present",
    "--quiet": "only the image ID is printed",
    "--rm": "a committed step's container is removed",
    "--secret": "refused: needs BuildKit",
    "--security-opt": _RUN + "SecurityOpt (no-new-privileges, seccomp, apparmor, label)",
    "--shm-size": _RUN + "size of /dev/shm",
    "--squash": "refused: experimental in Docker",
    "--ssh": "refused: needs BuildKit",
    "--stream": "refused: experimental in Docker",
    "--tag": "names given to the built image",
    "--target": "the stage built",
    "--ulimit": _RUN + "process rlimits",
}

# The flags of every `ketch builder` command (the index is ketch.optiontables).
OPTIONS: dict[str, dict[str, str]] = {
    "build": BUILD_OPTIONS,
    "prune": {
        "--all": "also the images that stay (tagged ones and their parents) stop being"
                 " any step's cache entry: the next build runs every step",
        "--filter": "image prune's filters (until, label) choose the dangling images"
                    " removed",
        "--force": "no confirmation prompt",
        "--keep-storage": "refused: the classic builder's cache is images, with no size to"
                          " keep",
    },
}
