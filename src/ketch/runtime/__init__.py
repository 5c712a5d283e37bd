"""The low layer that runs a bundle: OCI config generation (`spec`), user resolution
inside a rootfs (`users`), the runc/crun driver (`oci`), the conmon monitor with attach
and exec (`monitor`) and k8s-file log reading (`logs`). No images, no database."""
