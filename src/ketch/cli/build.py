"""`ketch builder ...` and the `ketch build` shortcut: flags in, the classic builder's
output out. The work is in ketch.builder.executor."""

from __future__ import annotations

import os
import sys

from ketch.cli.base import Registry, engine, parse_filters
from ketch.cli.flags import Namespace, Parser, count_error, exits
from ketch.errors import BuildError, InvalidArgument, KetchError, os_words

registry = Registry()


@registry.command("build", "[OPTIONS] PATH | -", "Build an image from a Dockerfile")
def _build(p: Parser) -> None:
    p.add_argument("context", metavar="PATH", nargs="?")
    p.add_argument("--add-host", action="append", default=[], metavar="list",
                   help="Add a custom host-to-IP mapping (host:ip)")
    p.add_argument("--build-arg", action="append", default=[], metavar="list",
                   help="Set build-time variables")
    p.add_argument("--cache-from", action="append", default=[], metavar="strings",
                   help="Images to consider as cache sources")
    p.add_argument("--cgroup-parent", metavar="string",
                   help="Optional parent cgroup for the container")
    p.add_argument("--compress", action="store_true",
                   help="Compress the build context using gzip (ketch reads the context"
                   " in place: nothing to compress)")
    p.add_argument("--cpu-period", type=int, metavar="int",
                   help="Limit the CPU CFS (Completely Fair Scheduler) period")
    p.add_argument("--cpu-quota", type=int, metavar="int",
                   help="Limit the CPU CFS (Completely Fair Scheduler) quota")
    p.add_argument("-c", "--cpu-shares", type=int, metavar="int",
                   help="CPU shares (relative weight)")
    p.add_argument("--cpuset-cpus", metavar="string",
                   help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("--cpuset-mems", metavar="string",
                   help="MEMs in which to allow execution (0-3, 0,1)")
    p.add_argument("--disable-content-trust", action="store_true", default=True,
                   help="Skip image verification (default true)")
    p.add_argument("-f", "--file", metavar="string",
                   help="Name of the Dockerfile (default: \"PATH/Dockerfile\"; \"-\" reads"
                   " it from stdin)")
    p.add_argument("--force-rm", action="store_true",
                   help="Always remove intermediate containers")
    p.add_argument("--iidfile", metavar="string", help="Write the image ID to the file")
    p.add_argument("--isolation", metavar="string", help="Container isolation technology")
    p.add_argument("--label", action="append", default=[], metavar="list",
                   help="Set metadata for an image")
    p.add_argument("-m", "--memory", metavar="bytes", help="Memory limit")
    p.add_argument("--memory-swap", metavar="bytes",
                   help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    p.add_argument("--network", metavar="string", default=None,
                   help="Set the networking mode for the RUN instructions during build"
                   " (default \"default\")")
    p.add_argument("--no-cache", action="store_true",
                   help="Do not use cache when building the image")
    p.add_argument("-o", "--output", metavar="stringArray",
                   help="Output destination (needs BuildKit: refused)")
    p.add_argument("--platform", metavar="string",
                   help="Set platform if server is multi-platform capable (only the host's"
                   " platform is supported)")
    p.add_argument("--progress", default="auto", metavar="string",
                   help="Set type of progress output (auto, plain): the classic builder's"
                   " output is plain")
    p.add_argument("--pull", action="store_true",
                   help="Always attempt to pull a newer version of the image")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="Suppress the build output and print image ID on success")
    p.add_argument("--rm", action="store_true", default=True,
                   help="Remove intermediate containers after a successful build"
                   " (default true)")
    p.add_argument("--secret", action="append", default=[], metavar="stringArray",
                   help="Secret file to expose to the build (needs BuildKit: refused)")
    p.add_argument("--security-opt", action="append", default=[], metavar="strings",
                   help="Security options")
    p.add_argument("--shm-size", metavar="bytes", help="Size of /dev/shm")
    p.add_argument("--squash", action="store_true",
                   help="Squash newly built layers into a single new layer (experimental:"
                   " refused)")
    p.add_argument("--ssh", action="append", default=[], metavar="stringArray",
                   help="SSH agent socket or keys to expose to the build (needs BuildKit:"
                   " refused)")
    p.add_argument("--stream", action="store_true",
                   help="Stream attaches to server to negotiate build context"
                   " (experimental: refused)")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="list",
                   help="Name and optionally a tag in the \"name:tag\" format")
    p.add_argument("--target", metavar="string", help="Set the target build stage to build.")
    p.add_argument("--ulimit", action="append", default=[], metavar="ulimit",
                   help="Ulimit options")


def _refuse_unsupported(ns: Namespace) -> None:
    """Docker's classic builder refuses the BuildKit-only and experimental flags."""
    for flag, given in (("--secret", ns.secret), ("--ssh", ns.ssh), ("--output", ns.output)):
        if given:
            raise InvalidArgument(f"{flag} requires DOCKER_BUILDKIT=1: ketch has only the"
                                  " classic builder")
    if ns.progress not in ("auto", "plain"):
        raise InvalidArgument(f'invalid --progress value "{ns.progress}": the classic'
                              ' builder\'s output is plain ("auto" or "plain")')
    if ns.squash:
        raise InvalidArgument("--squash is only supported on a Docker daemon with"
                              " experimental features enabled: ketch has no experimental"
                              " builder")
    if ns.stream:
        raise InvalidArgument("--stream is an experimental feature ketch does not have")


def _run_host_config(ns: Namespace) -> dict[str, object]:
    """The HostConfig settings every RUN step's container gets, as `docker build` gives
    them (resources, cgroup parent, security options, ulimits; --add-host goes as the
    build's extra hosts)."""
    from ketch.cli.container_opts import _bytes, ulimits_from
    from ketch.engine import Engine

    hc: dict[str, object] = {}
    for key, val in (("CpuPeriod", ns.cpu_period), ("CpuQuota", ns.cpu_quota),
                     ("CpuShares", ns.cpu_shares), ("CpusetCpus", ns.cpuset_cpus),
                     ("CpusetMems", ns.cpuset_mems), ("CgroupParent", ns.cgroup_parent),
                     ("Isolation", ns.isolation),
                     ("Memory", _bytes(ns.memory, "-m, --memory")),
                     ("MemorySwap", _bytes(ns.memory_swap, "--memory-swap")),
                     ("ShmSize", _bytes(ns.shm_size, "--shm-size"))):
        if val is not None and val != "":
            hc[key] = val
    if ns.security_opt:
        opts, unconfined = Engine.security_opts(ns.security_opt)
        hc["SecurityOpt"] = opts
        if unconfined:
            hc["MaskedPaths"], hc["ReadonlyPaths"] = [], []
    if ns.ulimit:
        hc["Ulimits"] = ulimits_from(ns.ulimit)
    return hc


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
            # a flag value the docker CLI refuses: 125, as its flag errors
            raise exits(InvalidArgument(f'invalid argument "{t}" for "-t, --tag" flag:'
                                        f" {e}"), 125) from None
        if r.digest:
            raise exits(InvalidArgument(f'invalid argument "{t}" for "-t, --tag" flag: a tag'
                                        " cannot contain a digest"), 125)


@_build.handler
def build(ns: Namespace) -> int:
    if ns.context is None:
        raise count_error("ketch build", 1, 1, 0)  # the context: a directory, tarball or -
    _check_tags(ns.tag)
    _refuse_unsupported(ns)
    run_host_config = _run_host_config(ns)
    if ns.iidfile:
        _remove_stale_iidfile(ns.iidfile)
    out = sys.stdout
    quiet_buf: list[str] = []
    result = None
    try:
        for event in engine().build(
                ns.context, ns.file, tags=ns.tag, build_args=_build_args(ns.build_arg),
                target=ns.target, no_cache=ns.no_cache, pull=ns.pull,
                labels=_labels(ns.label), network=ns.network, platform=ns.platform,
                remove=ns.rm, force_remove=ns.force_rm, extra_hosts=ns.add_host,
                run_host_config=run_host_config,
                cache_from=[n for v in ns.cache_from for n in v.split(",") if n]):
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
        # The classic builder's failures are printed as they are, one line, and exit
        # with a failed RUN's status ("The command '/bin/sh -c exit 3' returned a
        # non-zero code: 3" exits 3), 1 otherwise, as docker build with it
        if ns.quiet and quiet_buf:
            sys.stderr.write("".join(quiet_buf))
        out.flush()
        sys.stderr.write(e.message.rstrip("\n") + "\n")
        return e.code
    assert result is not None
    if ns.quiet:
        out.write(result.image_id + "\n")
    if ns.iidfile:  # after the build and its -q line, as the docker CLI writes it
        try:
            with open(ns.iidfile, "w") as f:
                f.write(result.image_id)
        except OSError as e:
            out.flush()
            raise KetchError(f"open {ns.iidfile}: {os_words(e)}") from None
    return 0


def _remove_stale_iidfile(path: str) -> None:
    """The docker CLI removes an --iidfile before it builds, so a failed build leaves no
    stale ID behind; a file it cannot remove stops the build before it starts."""
    try:
        try:
            os.unlink(path)
        except IsADirectoryError:
            os.rmdir(path)  # as Go's os.Remove: an empty directory goes too
    except FileNotFoundError:
        pass
    except OSError as e:
        raise KetchError(f"Removing image ID file: remove {path}: {os_words(e)}") from None


@registry.command("prune", "[OPTIONS]", "Remove build cache")
def _prune(p: Parser) -> None:
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused build cache, not just dangling ones")
    p.add_argument("--filter", action="append", default=[], metavar="filter",
                   help="Provide filter values (e.g. 'until=24h')")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--keep-storage", metavar="bytes",
                   help="Amount of disk space to keep for cache (not supported: refused)")


@_prune.handler
def prune(ns: Namespace) -> int:
    """The classic builder's cache is its intermediate images (pruned like dangling
    images) plus ketch's remembered file digests."""
    if ns.keep_storage:
        raise InvalidArgument("--keep-storage is not supported: the classic builder's cache"
                              " is images, with no cache size to keep")
    from ketch.fmt.units import human_size

    if not ns.force:
        from ketch.cli.base import confirm

        if not confirm("WARNING! This will remove all dangling build cache."):
            return 0
    # Tagged images are never build cache; -a also drops the cache entries of the images
    # that stay (intermediate images, parents of tagged ones)
    report = engine().build_prune(all=ns.all, filters=parse_filters(ns.filter))
    for d in report.deleted:
        for k, v in d.items():
            sys.stdout.write(f"{k}: {v}\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(report.space_reclaimed)}\n")
    return 0
