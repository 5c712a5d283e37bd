"""`ketch builder ...` and the `ketch build` shortcut: flags in, the classic builder's
output out. The work is in ketch.builder.executor."""

from __future__ import annotations

import os
import sys

from ketch.cli.base import Registry, engine
from ketch.cli.flags import Namespace, Parser
from ketch.errors import BuildError, InvalidArgument

registry = Registry()


@registry.command("build", "[OPTIONS] PATH | -", "Build an image from a Dockerfile")
def _build(p: Parser) -> None:
    p.add_argument("context", metavar="PATH", nargs="?")
    p.add_argument("--build-arg", action="append", default=[], metavar="list",
                   help="Set build-time variables")
    p.add_argument("-f", "--file", metavar="string",
                   help="Name of the Dockerfile (default: \"PATH/Dockerfile\"; \"-\" reads"
                   " it from stdin)")
    p.add_argument("--force-rm", action="store_true",
                   help="Always remove intermediate containers")
    p.add_argument("--iidfile", metavar="string", help="Write the image ID to the file")
    p.add_argument("--label", action="append", default=[], metavar="list",
                   help="Set metadata for an image")
    p.add_argument("--network", metavar="string", default=None,
                   help="Set the networking mode for the RUN instructions during build"
                   " (default \"default\")")
    p.add_argument("--no-cache", action="store_true",
                   help="Do not use cache when building the image")
    p.add_argument("--platform", metavar="string",
                   help="Set platform if server is multi-platform capable (only the host's"
                   " platform is supported)")
    p.add_argument("--pull", action="store_true",
                   help="Always attempt to pull a newer version of the image")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="Suppress the build output and print image ID on success")
    p.add_argument("--rm", action="store_true", default=True,
                   help="Remove intermediate containers after a successful build"
                   " (default true)")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="list",
                   help="Name and optionally a tag in the \"name:tag\" format")
    p.add_argument("--target", metavar="string", help="Set the target build stage to build.")


def _build_args(values: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for v in values:
        key, eq, val = v.partition("=")
        # `--build-arg NAME` takes the value from the environment, or stays unset.
        out[key] = val if eq else os.environ.get(key)
    return out


def _labels(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        key, _, val = v.partition("=")
        out[key] = val
    return out


def _check_tags(tags: list[str]) -> None:
    from ketch import reference

    for t in tags:
        try:
            r = reference.parse(t)
        except InvalidArgument as e:
            raise InvalidArgument(f'invalid argument "{t}" for "-t, --tag" flag: {e}') from None
        if r.digest:
            raise InvalidArgument(f'invalid argument "{t}" for "-t, --tag" flag: a tag cannot'
                                  " contain a digest")


@_build.handler
def build(ns: Namespace) -> int:
    if ns.context is None:
        raise InvalidArgument('"ketch build" requires exactly 1 argument: the build context'
                              " (a directory, a tarball or -)")
    _check_tags(ns.tag)
    out = sys.stdout
    quiet_buf: list[str] = []
    result = None
    try:
        for event in engine().build(
                ns.context, ns.file, tags=ns.tag, build_args=_build_args(ns.build_arg),
                target=ns.target, no_cache=ns.no_cache, pull=ns.pull,
                labels=_labels(ns.label), network=ns.network, platform=ns.platform,
                remove=ns.rm, force_remove=ns.force_rm):
            # the events have text() and raw() (a RUN step's output as it came);
            # the last one is the result
            if not hasattr(event, "raw"):
                result = event
            elif ns.quiet:
                quiet_buf.append(event.raw().decode("utf-8", "replace"))
            else:
                out.buffer.write(event.raw())
                out.buffer.flush()
    except BuildError as e:
        # The classic builder's failures are printed as they are, one line, exit 1
        # ("The command '/bin/sh -c false' returned a non-zero code: 1").
        if ns.quiet and quiet_buf:
            sys.stderr.write("".join(quiet_buf))
        out.flush()
        sys.stderr.write(e.message.rstrip("\n") + "\n")
        return 1
    assert result is not None
    if ns.iidfile:
        with open(ns.iidfile, "w") as f:
            f.write(result.image_id)
    if ns.quiet:
        out.write(result.image_id + "\n")
    return 0


@registry.command("prune", "[OPTIONS]", "Remove build cache")
def _prune(p: Parser) -> None:
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused build cache, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")


@_prune.handler
def prune(ns: Namespace) -> int:
    """The classic builder's cache is its intermediate images (pruned like dangling
    images) plus ketch's remembered file digests."""
    from ketch.fmt.units import human_size

    if not ns.force:
        from ketch.cli.base import confirm

        if not confirm("WARNING! This will remove all dangling build cache."):
            return 0
    # Tagged images are never build cache, with or without -a.
    report = engine().build_prune()
    for d in report.deleted:
        for k, v in d.items():
            sys.stdout.write(f"{k}: {v}\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(report.space_reclaimed)}\n")
    return 0
