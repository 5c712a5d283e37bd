"""The classic builder: runs a parsed Dockerfile (`ketch.dockerfile`) against a build
context, step by step, with the layer cache.

`context` prepares the build context (directory, tarball or stdin, filtered by
`.dockerignore`), `executor` runs the steps (RUN in a container, COPY/ADD into a
snapshot), `checksum` and `copyargs` make the cache keys, `snapshot` commits a step's
changes as a layer, and `watchdog` undoes what a killed build left behind.
"""
