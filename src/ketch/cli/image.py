"""`ketch image ...` and its shortcuts: images, rmi, tag, history, save, load, import."""

from __future__ import annotations

import os
import sys
import time

from ketch.cli.base import (
    Registry,
    add_filter,
    check_args,
    confirm,
    engine,
    format_each,
    inspect_each,
    out,
    parse_filters,
    positional,
)
from ketch.cli.flags import Namespace, Parser
from ketch.errors import ImageNotFound, InvalidArgument, KetchError, os_words
from ketch.fmt.table import tabulate

registry = Registry()


IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
                 "Digest": "DIGEST", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                 "Size": "SIZE", "VirtualSize": "SIZE", "SharedSize": "SHARED SIZE",
                 "UniqueSize": "UNIQUE SIZE", "Containers": "CONTAINERS"}


@registry.command("ls", "[OPTIONS] [REPOSITORY[:TAG]]", "List images", aliases=("list",))
def _ls(p: Parser) -> None:
    positional(p, "REPOSITORY[:TAG]")
    p.add_argument("-a", "--all", action="store_true",
                   help="Show all images (default hides intermediate images)")
    p.add_argument("--digests", action="store_true", help="Show digests")
    add_filter(p)
    p.add_argument("--format", metavar="string",
                   help="Format output using a custom template: 'table', 'table TEMPLATE',"
                   " 'json', 'TEMPLATE'")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")


DEFAULT_IMAGE_COLUMNS = ("Repository", "Tag", "ID", "CreatedSince", "Size")
DIGEST_IMAGE_COLUMNS = ("Repository", "Tag", "Digest", "ID", "CreatedSince", "Size")


@_ls.handler
def images_ls(ns: Namespace) -> None:
    from ketch.fmt.units import go_time, human_size, time_ago

    match = check_args(ns, 0, 1)
    filters = parse_filters(ns.filter)
    if match:
        filters.setdefault("reference", []).append(match[0])
    fmt = ns.format or "table"
    need_digest = ns.digests or "{{.Digest}}" in fmt
    rows = []
    now = time.time()
    # The default table only needs some of the fields: skip the others' formatting.
    everything = fmt != "table"
    for img in engine().images.list(all=ns.all, filters=filters):
        image_id = img["Id"] if ns.no_trunc else img["Id"].split(":", 1)[1][:12]
        common = {"CreatedSince": time_ago(img["Created"], now), "ID": image_id,
                  "Size": human_size(img["Size"], 3)}
        if everything:
            common.update({
                "Containers": str(img["Containers"]) if img["Containers"] >= 0 else "N/A",
                "CreatedAt": go_time(img["Created"]), "SharedSize": "N/A",
                "UniqueSize": "N/A", "VirtualSize": human_size(img["Size"])})
        for repo, tag, digest in _image_rows(img["RepoTags"], img["RepoDigests"],
                                             need_digest, ns.digests):
            rows.append({**common, "Digest": digest, "Repository": repo, "Tag": tag})
    if fmt == "table" and ns.quiet:
        for r in rows:  # one line per row, as docker prints it (IDs repeat)
            out(r["ID"])
        return
    if fmt == "json":
        format_each("json", [dict(sorted(r.items())) for r in rows])  # Go sorts map keys
        return
    if fmt == "table":
        # The default table needs no template engine: cells are ASCII (the reference
        # grammar guarantees it), so docker's tabwriter reduces to padding.
        cols = DIGEST_IMAGE_COLUMNS if ns.digests else DEFAULT_IMAGE_COLUMNS
        sys.stdout.write(tabulate([[IMAGE_HEADERS[c] for c in cols]]
                                   + [[r[c] for c in cols] for r in rows]))
        return
    from ketch.fmt.gotemplate import render_table

    if fmt.startswith("table") and ns.digests and "{{.Digest}}" not in fmt:
        fmt += "\t{{.Digest}}"
    sys.stdout.write(render_table(fmt, rows, IMAGE_HEADERS, go_type="*formatter.imageContext"))


def _image_rows(repo_tags: list[str], repo_digests: list[str], need_digest: bool,
                show_digests: bool) -> list[tuple[str, str, str]]:
    """docker/cli's imageFormatTaggedAndDigest: a row per repository tag (times each of
    the repository's digests when digests are wanted), then digest-only repositories."""
    if not repo_tags and not repo_digests:
        return [("<none>", "<none>", "<none>")]
    tags: dict[str, list[str]] = {}
    for t in repo_tags:
        name, _, tag = t.rpartition(":")
        tags.setdefault(name, []).append(tag)
    digests: dict[str, list[str]] = {}
    for d in repo_digests:
        name, _, digest = d.partition("@")
        digests.setdefault(name, []).append(digest)
    rows = []
    for repo, repo_tag_list in tags.items():
        ds = digests.pop(repo, []) if need_digest else []
        digests.pop(repo, None)
        for tag in repo_tag_list:
            if not ds:
                rows.append((repo, tag, "<none>"))
            rows.extend((repo, tag, d) for d in ds)
    for repo, ds in digests.items():
        if show_digests:
            rows.extend((repo, "<none>", d) for d in ds)
        else:
            rows.append((repo, "<none>", ""))
    return rows


@registry.command("rm", "[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images",
                  aliases=("remove", "rmi"))
def _rm(p: Parser) -> None:
    positional(p, "IMAGE")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")


@_rm.handler
def images_rm(ns: Namespace) -> int:
    rc = 0
    for name in check_args(ns, 1):
        try:
            for item in engine().images.remove(name, force=ns.force, prune=not ns.no_prune):
                for k, v in item.items():
                    out(f"{k}: {v}")
        except KetchError as e:
            sys.stderr.write(f"Error: {e.message}\n")
            # as docker rmi -f: an image that is not there is reported, no failure
            if not (ns.force and isinstance(e, ImageNotFound)):
                rc = 1
    return rc


@registry.command("tag", "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
                  "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
def _tag(p: Parser) -> None:
    positional(p, "SOURCE_IMAGE TARGET_IMAGE")


@_tag.handler
def images_tag(ns: Namespace) -> None:
    source, target = check_args(ns, 2, 2)
    try:
        engine().images.tag(source, target)
    except InvalidArgument as e:
        if e.message.startswith(("Error parsing reference", "refusing to create a tag")):
            e.bare = True  # the docker CLI's own check: its words as they are
        raise


@registry.command("inspect", "[OPTIONS] IMAGE [IMAGE...]",
                  "Display detailed information on one or more images")
def _inspect(p: Parser) -> None:
    positional(p, "IMAGE")
    p.add_argument("-f", "--format", metavar="string",
                   help="Format output using a custom template")


@_inspect.handler
def images_inspect(ns: Namespace) -> int:
    return inspect_each(check_args(ns, 1), engine().images.inspect, ns.format)


@registry.command("history", "[OPTIONS] IMAGE", "Show the history of an image")
def _history(p: Parser) -> None:
    positional(p, "IMAGE")
    p.add_argument("-H", "--human", action="store_true", default=True,
                   help="Print sizes and dates in human readable format (default true)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--format", metavar="string", help="Format output using a custom template")


@_history.handler
def images_history(ns: Namespace) -> None:
    from ketch.fmt.units import human_size, time_ago

    human = ns.human
    (image,) = check_args(ns, 1, 1)
    rows = []
    now = time.time()
    for h in engine().images.history(image):
        hid = h["Id"]
        if hid != "<missing>" and not ns.no_trunc:
            hid = hid.split(":", 1)[1][:12]
        created_by = h["CreatedBy"].replace("\t", " ")
        if not ns.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        created_at = _rfc3339(h["Created"])
        rows.append({"ID": hid,
                     "CreatedSince": time_ago(h["Created"], now) if human else created_at,
                     "CreatedAt": created_at, "CreatedBy": created_by,
                     "Size": human_size(h["Size"], 3) if human else str(h["Size"]),
                     "Comment": h["Comment"]})
    fmt = ns.format or "table"
    if fmt == "table" and ns.quiet:
        for r in rows:
            out(r["ID"])
        return
    if fmt == "json":
        format_each("json", [dict(sorted(r.items())) for r in rows])
        return
    if fmt == "table":
        second = "CreatedSince" if human else "CreatedAt"
        cols = ("ID", second, "CreatedBy", "Size", "Comment")
        sys.stdout.write(tabulate([[HISTORY_HEADERS[c] for c in cols]]
                                   + [[r[c] for c in cols] for r in rows]))
        return
    from ketch.fmt.gotemplate import render_table

    sys.stdout.write(render_table(fmt, rows, HISTORY_HEADERS, go_type="*image.historyContext"))


HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                   "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}


def _rfc3339(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@registry.command("prune", "[OPTIONS]", "Remove unused images")
def _prune(p: Parser) -> None:
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused images, not just dangling ones")
    p.add_argument("--filter", action="append", default=[], metavar="filter",
                   help="Provide filter values (e.g. \"until=<timestamp>\")")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")


@_prune.handler
def images_prune(ns: Namespace) -> None:
    from ketch.fmt.units import human_size

    if not ns.force:
        warning = ("WARNING! This will remove all images without at least one container"
                   " associated to them." if ns.all else
                   "WARNING! This will remove all dangling images.")
        if not confirm(warning + "\nAre you sure you want to continue?"):
            return
    report = engine().images.prune(all=ns.all, filters=parse_filters(ns.filter))
    if report.deleted:
        out("Deleted Images:")
        for item in report.deleted:
            for k, v in item.items():
                out(f"{k.lower()}: {v}")
        out("")
    out(f"Total reclaimed space: {human_size(report.space_reclaimed)}")


@registry.command("save", "[OPTIONS] IMAGE [IMAGE...]",
                  "Save one or more images to a tar archive (streamed to STDOUT by default)")
def _save(p: Parser) -> None:
    positional(p, "IMAGE")
    p.add_argument("-o", "--output", metavar="string",
                   help="Write to a file, instead of STDOUT")
    p.add_argument("--platform", metavar="string", help="Save only the given platform")


@_save.handler
def images_save(ns: Namespace) -> None:
    names = check_args(ns, 1)
    if ns.platform:
        engine().images.check_save_platform(names, ns.platform)
    if ns.output:
        engine().images.save_to(names, ns.output)
        return
    if sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or"
                              " redirect")
    sys.stdout.flush()
    with os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=1 << 20) as f:
        engine().images.save(names, f)


@registry.command("load", "[OPTIONS]", "Load an image from a tar archive or STDIN")
def _load(p: Parser) -> None:
    p.add_argument("-i", "--input", metavar="string",
                   help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    p.add_argument("--platform", metavar="string", help="Load only the given platform")


@_load.handler
def images_load(ns: Namespace) -> None:
    if ns.platform:
        engine().images.check_load_platform(ns.platform)
    if ns.input:
        try:
            f = open(ns.input, "rb")
        except OSError as e:
            # the docker CLI opens the file itself: its words as they are
            raise InvalidArgument(f"open {ns.input}: {os_words(e)}",
                                  bare=True) from None
    else:
        if sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is empty")
        f = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    with f:
        # Progress bars only on a terminal and without -q; the "Loaded image" lines
        # always, as in Docker.
        if ns.quiet or not sys.stdout.isatty():
            engine().images.load(f, on_message=out)
            return
        from ketch.cli.ttyprogress import Renderer

        renderer = Renderer(sys.stdout)
        engine().images.load(f, on_message=renderer.show, on_progress=renderer.show)


@registry.command("import", "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                  "Import the contents from a tarball to create a filesystem image")
def _import(p: Parser) -> None:
    positional(p, "file|URL|- [REPOSITORY[:TAG]]")
    p.add_argument("-c", "--change", action="append", default=[], metavar="list",
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", metavar="string",
                   help="Set commit message for imported image")
    p.add_argument("--platform", metavar="string", help="Set platform if server is"
                   " multi-platform capable")


@_import.handler
def images_import(ns: Namespace) -> None:
    args = check_args(ns, 1, 2)
    source, ref = args[0], (args[1] if len(args) > 1 else None)
    if ref is not None:
        from ketch import reference

        reference.parse(ref)  # a bad name fails before anything is read
    if source == "-":
        f = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    elif "://" in source:
        raise InvalidArgument("importing from a URL is not supported yet: download the file"
                              " and import it by path")
    else:
        try:
            f = open(source, "rb")
        except OSError as e:
            # the docker CLI opens the file itself: its words as they are
            raise InvalidArgument(f"open {source}: {os_words(e)}",
                                  bare=True) from None
    with f:
        rec = engine().images.import_tar(f, changes=ns.change, ref=ref,
                                         message=ns.message or "", platform=ns.platform)
    out(rec.id)
