"""Kubernetes YAML on one machine: `kube play` (YAML -> pods and containers), `kube down`
and `kube generate` (pods -> YAML any cluster accepts), as Podman offers them.

`documents` reads and checks the YAML, `plan` maps it onto engine calls without making
anything, `play` carries a plan out (and undoes it when a step fails), `generate` goes
the other way.
"""
