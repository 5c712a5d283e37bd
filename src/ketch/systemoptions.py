"""The flags of every `ketch system` command and how each takes effect (the index is
ketch.optiontables; tests/containers/test_option_table.py keeps it, the declared flags
and the tests in step)."""

from __future__ import annotations

OPTIONS: dict[str, dict[str, str]] = {
    "check": {"--repair": "what the check finds is repaired, not only reported"},
    "cri": {"--cni-bin-dir": "where the CNI plugins are looked for, colon-separated"
                             " (default /opt/cni/bin:/usr/lib/cni; [cri] cni_bin_dir)",
            "--cni-conf-dir": "the first network configuration there (lexical order)"
                              " attaches every sandbox through CNI (default"
                              " /etc/cni/net.d; [cri] cni_conf_dir)",
            "--listen": "the unix socket the CRI service serves on (default"
                        " unix:///run/ketch/cri.sock)",
            "--stream-address": "the address of the streaming server that Exec, Attach"
                                " and PortForward return URLs on (default 127.0.0.1:0,"
                                " a free loopback port)"},
    "df": {
        "--format": "a Go template per row, 'table ...' or 'json'",
        "--verbose": "the images, containers, volumes and build cache listed one by one",
    },
    "events": {
        "--filter": "Docker's event filters (container, image, event, type, label, ...)",
        "--format": "a Go template per event, or 'json'",
        "--since": "past events from this time on are printed first",
        "--until": "the stream ends at this time",
    },
    "info": {"--format": "a Go template run on the info, or 'json'"},
    "inspect": {
        "--format": "a Go template run on each object, or 'json'",
        "--size": "containers' SizeRw and SizeRootFs computed and shown",
        "--type": "only objects of that type (container, image, network, volume) are looked"
                  " up",
    },
    "prune": {
        "--all": "images no container uses and all build cache, not only dangling ones",
        "--filter": "Docker's prune filters (until, label), given to every part",
        "--force": "no confirmation prompt",
        "--volumes": "anonymous volumes no container uses are removed too",
    },
    "restart-policies": {"--print-unit": "a systemd unit running this command at boot is"
                                         " printed instead"},
    "service": {"--time": "seconds without a request or connection before the service"
                          " exits (0: never)"},
    "version": {"--format": "a Go template run on the version, or 'json'"},
}
