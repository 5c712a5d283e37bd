"""Dockerfile builds: parsing, variable expansion and the build-context filter.

`parser` turns Dockerfile text into instructions and stages, `shell` expands `$VAR`
references the way Docker's builder does, and `dockerignore` decides which files of the
build context the builder may see. These three modules are pure; the build executor and
the cache keys sit on top of them.
"""
