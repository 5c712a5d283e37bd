"""The Kubernetes Container Runtime Interface (CRI v1) over gRPC: a third front door on
the Engine, so a kubelet pointed at `unix:///run/ketch/cri.sock` runs its pods on ketch.

`ketch system cri` execs this package's program (`python -m ketch.cri`), as `ketch
system service` does for the Engine API: the CLI never imports gRPC.
"""
