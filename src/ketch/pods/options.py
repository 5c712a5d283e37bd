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
