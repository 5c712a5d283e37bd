"""Events: the record of state changes that `ketch events` and `GET /events` show.

Daemonless, so there is no process to hand events to: every ketch process that changes
state (the CLI, the API service, a container's exit command) appends the event to a
journal on disk, and readers follow that journal. `journal` writes (cheap, on every
command's path); `reader` reads, filters and follows (only `events` needs it).
"""
