"""The options of `ketch kube ...`, each with how it takes effect (the option tables are
checked against the flags the CLI declares: tests/containers/test_option_table.py)."""

OPTIONS: dict[str, dict[str, str]] = {
    "play": {
        "--build": "build every image from the folder named after it beside the YAML"
                   " (a Containerfile or Dockerfile in it); without the flag only missing"
                   " images are built, --build=false never builds",
        "--configmap": "a YAML file of ConfigMaps the pods' env and volumes may use",
        "--down": "remove what the YAML describes instead (kube down)",
        "--network": "the network of the pods' infra containers (bridge, host or a"
                     " user-defined one); a hostNetwork pod stays on the host's",
        "--replace": "pods of the same names are removed first (with their emptyDir"
                     " volumes and files)",
        "--start": "--start=false creates the pods and containers without starting them",
    },
    "down": {"--force": "the PersistentVolumeClaims' volumes are removed too"},
    "generate": {
        "--filename": "the YAML is written to this file instead of standard output",
        "--service": "a NodePort Service for each pod's published ports",
        "--type": "pod (default) or deployment",
    },
}
