"""`ketch pull/push/login/logout` and `ketch registry serve`."""

from __future__ import annotations

import sys

from ketch.cli.base import Registry, engine, out
from ketch.cli.flags import Namespace, Parser, count_error
from ketch.errors import InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

registry = Registry()


def _show(events: Iterable[object], *, silent: bool = False) -> None:
    """Run a pull or push to its end, showing its events as the docker CLI does (bars
    on a terminal, plain lines otherwise; nothing when `silent`)."""
    from ketch.cli.progress import show

    show(events, quiet=silent)


@registry.command("pull", "[OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry")
def _pull(p: Parser) -> None:
    p.add_argument("args", nargs="*", metavar="NAME")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("--platform", metavar="string",
                   help="Set platform if server is multi-platform capable")
    p.add_argument("-a", "--all-tags", action="store_true",
                   help="Download all tagged images in the repository")
    p.add_argument("--disable-content-trust", action="store_true", default=True,
                   help="Skip image verification (default true; ketch verifies no"
                   " signatures)")


@_pull.handler
def pull_cmd(ns: Namespace) -> None:

    if len(ns.args) != 1:
        raise count_error("ketch pull", 1, 1, len(ns.args))
    if ns.platform:
        from ketch.oci.model import Platform, host_platform

        if not host_platform().matches(Platform.parse(ns.platform)):
            raise InvalidArgument(f"--platform {ns.platform}: ketch pulls only the host"
                                  " platform")
    # `-q` prints only the reference pulled (the final event), as docker does
    from ketch.cli.progress import show

    last = show(engine().pull(ns.args[0], quiet=ns.quiet, all_tags=ns.all_tags),
                quiet=ns.quiet)
    if ns.quiet and last is not None:
        out(str(last))


@registry.command("push", "[OPTIONS] NAME[:TAG]", "Upload an image to a registry")
def _push(p: Parser) -> None:
    p.add_argument("args", nargs="*", metavar="NAME")
    p.add_argument("-a", "--all-tags", action="store_true",
                   help="Push all tags of an image to the repository")
    p.add_argument("--disable-content-trust", action="store_true", default=True,
                   help="Skip image signing (default true; ketch signs nothing)")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("--compression-format", metavar="string",
                   help='Compression for layers stored uncompressed: "gzip" (default),'
                   ' "zstd" or "none"')
    p.add_argument("--compression-level", metavar="int",
                   help="Compression level (gzip 0-9, zstd 1-22)")


@_push.handler
def push_cmd(ns: Namespace) -> int | None:
    from ketch import reference

    if len(ns.args) != 1:
        raise count_error("ketch push", 1, 1, len(ns.args))
    name = ns.args[0]
    opts = {"compression_format": ns.compression_format,
            "compression_level": ns.compression_level}
    if ns.all_tags:
        ref = reference.parse(name, default_tag=None)
        if ref.tag or ref.digest:
            raise InvalidArgument("tag can't be used with --all-tags/-a")
    events = engine().push(name, all_tags=ns.all_tags, **opts)
    try:
        _show(events, silent=ns.quiet)
    except KetchError as e:
        # what goes wrong once the push has begun comes in its stream, which the docker
        # CLI prints as it is (no "Error response from daemon")
        sys.stderr.write(f"{e.message}\n")
        return 1
    if ns.quiet:
        out(reference.parse(name).familiar())
    return None


@registry.command("search", "[OPTIONS] TERM", "Search Docker Hub for images")
def _search(p: Parser) -> None:
    p.add_argument("args", nargs="*", metavar="TERM")
    p.add_argument("-f", "--filter", action="append", metavar="filter",
                   help="Filter output based on conditions provided")
    p.add_argument("--format", metavar="string", help="Pretty-print search using a Go"
                   " template")
    p.add_argument("--limit", type=int, metavar="int", help="Max number of search results")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")


@_search.handler
def search_cmd(ns: Namespace) -> None:
    """The flags are docker's; the answer is the Engine's, which has no index to
    search (an honest error, exit 1, as when docker cannot reach its index)."""
    if len(ns.args) != 1:
        raise count_error("ketch search", 1, 1, len(ns.args))
    engine().search(ns.args[0], limit=ns.limit)


@registry.command("login", "[OPTIONS] [SERVER]", "Log in to a registry")
def _login(p: Parser) -> None:
    p.add_argument("args", nargs="*", metavar="SERVER")
    p.add_argument("-u", "--username", metavar="string", help="Username")
    p.add_argument("-p", "--password", metavar="string", help="Password")
    p.add_argument("--password-stdin", action="store_true",
                   help="Take the password from stdin")


@_login.handler
def login_cmd(ns: Namespace) -> int | None:
    if len(ns.args) > 1:
        raise count_error("ketch login", 0, 1, len(ns.args))
    if ns.username == "":  # given, and empty: the docker CLI's check, before any other
        sys.stderr.write("username is empty\n")
        return 1
    password = ns.password
    if ns.password_stdin:
        if password:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not ns.username:
            raise InvalidArgument("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure."
                         " Use --password-stdin.\n")
    _key, plain = engine().login(ns.args[0] if ns.args else None, ns.username, password)
    if plain is not None:
        sys.stderr.write(f"WARNING! Your credentials are stored unencrypted in '{plain}'.\n"
                         "Configure a credential helper to remove this warning.\n")
    out("Login Succeeded")
    return None


@registry.command("logout", "[SERVER]", "Log out from a registry")
def _logout(p: Parser) -> None:
    p.add_argument("args", nargs="*", metavar="SERVER")


@_logout.handler
def logout_cmd(ns: Namespace) -> None:
    if len(ns.args) > 1:
        raise count_error("ketch logout", 0, 1, len(ns.args))
    # the docker CLI says so whether or not there were any
    key, _removed = engine().logout(ns.args[0] if ns.args else None)
    out(f"Removing login credentials for {key}")


@registry.command("serve", "serve|garbage-collect [OPTIONS]",
                  "Run ketch's OCI registry server, or collect its unreferenced blobs")
def _serve(p: Parser) -> None:
    # `ketch registry WORD`: the shortcut hands over WORD as the first argument.
    p.add_argument("args", nargs="*", metavar="serve")
    p.add_argument("--dry-run", action="store_true",
                   help="garbage-collect: only list the blobs that would be removed")
    p.add_argument("--delete-untagged", action="store_true",
                   help="garbage-collect: also delete manifests no tag points at")
    p.add_argument("--addr", default="127.0.0.1:5000", metavar="string",
                   help='Listen address (default "127.0.0.1:5000")')
    p.add_argument("--root", metavar="string",
                   help="Storage directory (default: <ketch root>/registry)")
    p.add_argument("--htpasswd", metavar="string",
                   help="Require basic auth checked against this htpasswd file (bcrypt)")
    p.add_argument("--auth", choices=("basic", "token"), default="basic", metavar="string",
                   help='With --htpasswd: "basic" auth on every request, or "token" for'
                   ' bearer tokens from the registry\'s /token endpoint (default "basic")')
    p.add_argument("--sparse-indexes", action="store_true",
                   help="Accept image indexes that name manifests the registry does not hold")
    p.add_argument("--quiet", action="store_true", help="Do not log requests")


@_serve.handler
def serve_cmd(ns: Namespace) -> None:
    import os
    from pathlib import Path

    from ketch.registry.aiohttp_import import import_aiohttp

    import_aiohttp()
    from ketch.registry.auth import Htpasswd
    from ketch.registry.server import RegistryServer, parse_addr

    root = Path(ns.root) if ns.root else Path(
        os.environ.get("KETCH_ROOT") or "/var/lib/ketch") / "registry"
    if ns.args == ["garbage-collect"]:
        from ketch.registry.storage import Storage, collect_temp_files, garbage_collect

        if not root.is_dir():
            raise KetchError(f"no registry storage at {root}")
        storage = Storage(root)
        removed = garbage_collect(storage, delete_untagged=ns.delete_untagged,
                                  dry_run=ns.dry_run)
        for digest in removed:
            out(f"blob eligible for deletion: {digest}" if ns.dry_run
                else f"deleted blob: {digest}")
        for path in collect_temp_files(storage, dry_run=ns.dry_run):
            out(f"temp file eligible for deletion: {path}" if ns.dry_run
                else f"deleted temp file: {path}")
        return
    if ns.args not in ([], ["serve"]):
        raise InvalidArgument(f"unknown command {' '.join(ns.args)!r}: use 'ketch registry"
                              " serve' or 'ketch registry garbage-collect'")
    for flag, given in (("--dry-run", ns.dry_run), ("--delete-untagged", ns.delete_untagged)):
        if given:
            raise InvalidArgument(f"{flag} is a flag of 'ketch registry garbage-collect',"
                                  " not of serve")
    htpasswd = Htpasswd(Path(ns.htpasswd)) if ns.htpasswd else None
    if ns.auth == "token" and htpasswd is None:
        raise InvalidArgument("--auth token needs --htpasswd (the token endpoint checks"
                              " credentials against it)")
    host, port = parse_addr(ns.addr)
    try:
        server = RegistryServer((host, port), root, htpasswd, quiet=ns.quiet,
                                token_auth=ns.auth == "token",
                                sparse_indexes=ns.sparse_indexes)
    except OSError as e:
        raise KetchError(f"listen tcp {ns.addr}: {e.strerror or e}") from None
    bound = server.server_address
    shown = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
    sys.stderr.write(f"ketch registry listening on {shown}, storage {root}\n")
    # The bound address on stdout lets scripts and tests use port 0 (an ephemeral port).
    out(f"listening on {shown}")
    sys.stdout.flush()
    try:
        server.serve_forever()  # until SIGTERM or SIGINT
    finally:
        server.server_close()
