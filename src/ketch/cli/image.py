"""`ketch image ...` and its shortcuts: images, rmi, tag, history, save, load, import."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ketch.cli.base import (
    Registry,
    add_filter,
    engine,
    format_each,
    out,
    parse_filters,
    print_json,
)
from ketch.errors import InvalidArgument, KetchError

registry = Registry()

IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
                 "Digest": "DIGEST", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                 "Size": "SIZE", "VirtualSize": "SIZE", "SharedSize": "SHARED SIZE",
                 "UniqueSize": "UNIQUE SIZE", "Containers": "CONTAINERS"}


@registry.command("ls", "[OPTIONS] [REPOSITORY[:TAG]]", "List images", aliases=("list",))
def _ls(p: argparse.ArgumentParser) -> None:
    p.add_argument("reference", nargs="?")
    p.add_argument("-a", "--all", action="store_true",
                   help="Show all images (default hides intermediate images)")
    p.add_argument("--digests", action="store_true", help="Show digests")
    add_filter(p)
    p.add_argument("--format", metavar="string",
                   help="Format output using a custom template: 'table', 'table TEMPLATE',"
                   " 'json', 'TEMPLATE'")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")


@_ls.handler
def images_ls(ns: argparse.Namespace) -> None:
    from ketch.fmt.template import render_table
    from ketch.fmt.units import human_size, rfc3339nano, time_ago

    filters = parse_filters(ns.filter)
    if ns.reference:
        filters.setdefault("reference", []).append(ns.reference)
    images = engine().images.list(all=ns.all, filters=filters)
    rows = []
    now = time.time()
    for img in images:
        tags = img["RepoTags"] or ["<none>:<none>"]
        digests = img["RepoDigests"]
        image_id = img["Id"] if ns.no_trunc else img["Id"].split(":", 1)[1][:12]
        for t in tags:
            repo, _, tag = t.rpartition(":")
            digest = "<none>"
            for d in digests:
                if d.split("@", 1)[0] == repo:
                    digest = d.split("@", 1)[1]
            rows.append({
                "Repository": repo, "Tag": tag, "ID": image_id, "Digest": digest,
                "CreatedSince": time_ago(img["Created"], now),
                "CreatedAt": rfc3339nano(img["Created"]),
                "Size": human_size(img["Size"]), "VirtualSize": human_size(img["Size"]),
                "SharedSize": "N/A", "UniqueSize": "N/A",
                "Containers": str(img["Containers"]) if img["Containers"] >= 0 else "N/A",
            })
    if ns.quiet:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        for i in seen:
            out(i)
        return
    fmt = ns.format
    if fmt == "json":
        format_each("json", rows)
        return
    if not fmt or fmt == "table":
        cols = "{{.Repository}}\t{{.Tag}}\t"
        if ns.digests:
            cols += "{{.Digest}}\t"
        fmt = "table " + cols + "{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    sys.stdout.write(render_table(fmt, rows, IMAGE_HEADERS))


@registry.command("rm", "[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images",
                  aliases=("remove", "rmi"))
def _rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")


@_rm.handler
def images_rm(ns: argparse.Namespace) -> int:
    rc = 0
    for name in ns.images:
        try:
            for item in engine().images.remove(name, force=ns.force, prune=not ns.no_prune):
                for k, v in item.items():
                    out(f"{k}: {v}")
        except KetchError as e:
            sys.stderr.write(f"Error: {e.message}\n")
            rc = 1
    return rc


@registry.command("tag", "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
                  "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
def _tag(p: argparse.ArgumentParser) -> None:
    p.add_argument("source")
    p.add_argument("target")


@_tag.handler
def images_tag(ns: argparse.Namespace) -> None:
    engine().images.tag(ns.source, ns.target)


@registry.command("inspect", "[OPTIONS] IMAGE [IMAGE...]",
                  "Display detailed information on one or more images")
def _inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--format", metavar="string",
                   help="Format output using a custom template")


@_inspect.handler
def images_inspect(ns: argparse.Namespace) -> int:
    results = []
    rc = 0
    for name in ns.images:
        try:
            results.append(engine().images.inspect(name))
        except KetchError as e:
            sys.stderr.write(f"Error: {e.message}\n")
            rc = 1
    if ns.format:
        format_each(ns.format, results)
    else:
        print_json(results)
    return rc


@registry.command("history", "[OPTIONS] IMAGE", "Show the history of an image")
def _history(p: argparse.ArgumentParser) -> None:
    p.add_argument("image")
    p.add_argument("-H", "--human", action="store_true", default=True,
                   help="Print sizes and dates in human readable format (default true)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--format", metavar="string", help="Format output using a custom template")


@_history.handler
def images_history(ns: argparse.Namespace) -> None:
    from ketch.fmt.template import render_table
    from ketch.fmt.units import human_size, time_ago

    rows = []
    for h in engine().images.history(ns.image):
        hid = h["Id"]
        if hid != "<missing>" and not ns.no_trunc:
            hid = hid.split(":", 1)[1][:12]
        created_by = h["CreatedBy"]
        if not ns.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append({"ID": hid, "CreatedSince": time_ago(h["Created"]),
                     "CreatedBy": created_by, "Size": human_size(h["Size"]),
                     "Comment": h["Comment"]})
    if ns.quiet:
        for r in rows:
            out(r["ID"])
        return
    fmt = ns.format or "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    if fmt == "json":
        format_each("json", rows)
        return
    sys.stdout.write(render_table(fmt, rows, {
        "ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY", "Size": "SIZE",
        "Comment": "COMMENT"}))


@registry.command("prune", "[OPTIONS]", "Remove unused images")
def _prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused images, not just dangling ones")
    p.add_argument("--filter", action="append", default=[], metavar="filter",
                   help="Provide filter values (e.g. \"until=<timestamp>\")")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")


def confirm(question: str) -> bool:
    sys.stdout.write(question + " [y/N] ")
    sys.stdout.flush()
    if not sys.stdin or not sys.stdin.isatty():
        answer = sys.stdin.readline() if sys.stdin else ""
    else:
        answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


@_prune.handler
def images_prune(ns: argparse.Namespace) -> None:
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
def _save(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", metavar="string",
                   help="Write to a file, instead of STDOUT")
    p.add_argument("--platform", metavar="string", help="Save only the given platform")


@_save.handler
def images_save(ns: argparse.Namespace) -> None:
    if ns.output:
        tmp = f"{ns.output}.ketch-{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as f:
                engine().images.save(ns.images, f)
            os.replace(tmp, ns.output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return
    if sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or"
                              " redirect")
    sys.stdout.flush()
    with os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=1 << 20) as f:
        engine().images.save(ns.images, f)


@registry.command("load", "[OPTIONS]", "Load an image from a tar archive or STDIN")
def _load(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", metavar="string",
                   help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    p.add_argument("--platform", metavar="string", help="Load only the given platform")


@_load.handler
def images_load(ns: argparse.Namespace) -> None:
    if ns.input:
        try:
            f = open(ns.input, "rb")
        except OSError as e:
            raise InvalidArgument(f"cannot open {ns.input}: {e.strerror}") from None
    else:
        if sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is empty")
        f = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    with f:
        engine().images.load(f, on_message=(lambda m: None) if ns.quiet else out)


@registry.command("import", "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                  "Import the contents from a tarball to create a filesystem image")
def _import(p: argparse.ArgumentParser) -> None:
    p.add_argument("source")
    p.add_argument("reference", nargs="?")
    p.add_argument("-c", "--change", action="append", default=[], metavar="list",
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", metavar="string",
                   help="Set commit message for imported image")
    p.add_argument("--platform", metavar="string", help="Set platform if server is"
                   " multi-platform capable")


@_import.handler
def images_import(ns: argparse.Namespace) -> None:
    if ns.source == "-":
        f = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    elif "://" in ns.source:
        raise InvalidArgument("importing from a URL is not supported yet: download the file"
                              " and import it by path")
    else:
        try:
            f = open(ns.source, "rb")
        except OSError as e:
            raise InvalidArgument(f"cannot open {ns.source}: {e.strerror}") from None
    with f:
        rec = engine().images.import_tar(f, changes=ns.change, ref=ns.reference,
                                         message=ns.message or "")
    out(rec.id)
