"""Containers: records and state machine, root filesystems, lifecycle over the runtime."""
