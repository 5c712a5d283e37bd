"""HTTP for the registry: the OCI Distribution Spec endpoints over `Storage`.

aiohttp's low-level server, as the Engine API service uses: one event loop for all
connections, a listen backlog of BACKLOG, request bodies streamed to disk in pieces
of about PIECE bytes (the memory a request holds is bounded whatever it uploads),
blobs sent with sendfile(2). File-system work runs in a thread pool so the loop never
waits for a disk; bcrypt checks run in a pool of their own (see auth.Authenticator).

Size: one job, the distribution-spec endpoints over Storage with their error mapping and
range handling; storage, auth and tokens are modules of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, quote, urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from ketch.registry.auth import Authenticator, Htpasswd, TooManyFailures
from ketch.registry.errors import RegistryError
from ketch.registry.storage import (
    CHUNK,
    UPLOAD_IDLE,
    Storage,
    check_digest,
    check_name,
    paginate,
    upload_headers,
)
from ketch.registry.tokens import SERVICE, TokenIssuer, parse_scopes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from typing import Any, BinaryIO


_ROUTES = [
    ("manifest", re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")),
    ("upload", re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]+)$")),
    ("uploads", re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?$")),
    ("blob", re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$")),
    ("tags", re.compile(r"^/v2/(?P<name>.+)/tags/list$")),
    ("referrers", re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)$")),
    ("catalog", re.compile(r"^/v2/_catalog$")),
    ("base", re.compile(r"^/v2/?$")),
]
MAX_MANIFEST = 4 << 20
# Body bytes a request holds before they are written to disk (plus READ_BUFSIZE that
# the HTTP layer buffers): what bounds the server's memory per upload.
PIECE = 256 << 10
# What has arrived of a slow body is written out at least this often, so an upload's
# temp file shows (by its mtime) that its writer is alive.
PIECE_WAIT = 10.0
MAX_QUERY_TAGS = 64  # the spec asks for at least 10; more may be answered with 414
BACKLOG = 1024
WORKERS = 16  # metadata: manifests, links, listings, opening blobs
BULK_WORKERS = 32  # body bytes: writes, fsyncs, hashing
# Bytes the HTTP layer buffers per connection before it stops reading the socket.
READ_BUFSIZE = 64 << 10
DRAIN_SECONDS = 5.0
# A request line may carry MAX_QUERY_TAGS `tag=` parameters of up to 128 characters.
MAX_LINE = 64 << 10
API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0", "Server": "ketch-registry"}

T = TypeVar("T")


class _Request:
    """What the handlers need of one request: its parts, parsed once."""

    def __init__(self, raw: web.BaseRequest) -> None:
        self.raw = raw
        self.method = raw.method
        url = urlsplit(raw.raw_path)
        self.path = url.path
        self.query_all = parse_qs(url.query)
        self.query = {k: v[-1] for k, v in self.query_all.items()}
        self.headers = raw.headers
        self.scope = ""
        self.access: dict[tuple[str, str], set[str]] | None = None


def _response(status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str | None = None,
              extra: list[tuple[str, str]] | None = None) -> web.Response:
    resp = web.Response(status=status, body=body or None, headers={**API_VERSION,
                                                                   **(headers or {})})
    for k, v in extra or []:  # headers that may repeat
        resp.headers.add(k, v)
    if content_type:
        resp.headers["Content-Type"] = content_type
    return resp


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> web.Response:
    return _response(status, json.dumps(data).encode(), headers, "application/json")


def _error_response(method: str, e: RegistryError,
                    headers: dict[str, str]) -> web.StreamResponse:
    if method == "HEAD":
        return _response(e.status, b"", headers)
    return _json(e.status, e.body(), headers)


class _ProtocolHandler(RequestHandler):
    """aiohttp's connection handler, answering requests it cannot parse (a bad
    Content-Length, a broken request line, bytes left over from a body longer than its
    Content-Length) with the spec's JSON error shape instead of plain text."""

    # asyncio's protocols may return True here to keep the transport open for writing;
    # aiohttp's annotation says None.
    def eof_received(self) -> bool:  # type: ignore[override]  # asyncio allows True (keep the transport open); aiohttp annotates None
        """A client that ends its sending side (shutdown(SHUT_WR)) still gets the
        answers to the requests it sent, then the connection closes; a body it cut
        short fails the request instead of waiting for bytes that cannot come."""
        current = getattr(self, "_current_request", None)
        content = getattr(current, "content", None)
        if content is not None and not content.is_eof():
            content.set_exception(ConnectionError("client closed its side mid-body"))
        self.close()
        return True

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        text = str(message or (exc and getattr(exc, "message", "")) or "bad request")
        code = "UNKNOWN"
        lowered = text.lower()
        if status == 400 and ("content-length" in lowered or "chunk" in lowered):
            code = "SIZE_INVALID"
        first = text.splitlines()[0][:200] if text.strip() else "bad request"
        body = {"errors": [{"code": code, "message": f"malformed HTTP request: {first}"}]}
        resp = _response(status, json.dumps(body).encode(), {"Connection": "close"},
                         "application/json")
        resp.force_close()
        return resp


class _LowLevelServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProtocolHandler(self, loop=self._loop, **self._kwargs)


class _BlobResponse(web.StreamResponse):
    """A byte range of an open blob, sent with sendfile(2) where the transport allows."""

    def __init__(self, f: BinaryIO, offset: int, count: int, status: int,
                 headers: dict[str, str]) -> None:
        super().__init__(status=status, headers=headers)
        self._file = f
        self._offset = offset
        self._count = count
        self.content_length = count

    async def prepare(self, request: web.BaseRequest) -> Any:
        try:
            if request.method == "HEAD" or self._count == 0:
                return await super().prepare(request)
            writer = await super().prepare(request)
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("connection lost")
            loop = asyncio.get_running_loop()
            try:
                await loop.sendfile(transport, self._file, self._offset, self._count)
            except NotImplementedError:  # TLS or a transport without sendfile
                await self._copy(writer, loop)
            await super().write_eof()
            return writer
        finally:
            self._file.close()

    async def _copy(self, writer: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._file.seek(self._offset)
        left = self._count
        while left > 0:
            chunk = await loop.run_in_executor(None, self._file.read, min(CHUNK, left))
            if not chunk:
                break
            await writer.write(chunk)
            left -= len(chunk)


class RegistryServer:
    """The registry on one listening socket. `serve_forever` runs it in the calling
    thread until SIGTERM/SIGINT (in the main thread) or `shutdown()`."""

    def __init__(self, addr: tuple[str, int], root: Path,
                 htpasswd: Htpasswd | None = None, quiet: bool = False,
                 token_auth: bool = False, backlog: int = BACKLOG,
                 sparse_indexes: bool = False) -> None:
        self.storage = Storage(root, sparse_indexes=sparse_indexes)
        self.htpasswd = htpasswd
        self.auth = Authenticator(htpasswd) if htpasswd is not None else None
        self.tokens = TokenIssuer() if htpasswd is not None and token_auth else None
        self.quiet = quiet
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(addr)
            self.socket.listen(backlog)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.backlog = backlog
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopped = threading.Event()
        self._bulk: ThreadPoolExecutor | None = None

    # -- running --------------------------------------------------------------------------
    def serve_forever(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop a server running in another thread and wait until it has."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
            self._stopped.wait(DRAIN_SECONDS + 5)

    def server_close(self) -> None:
        self.socket.close()
        if self.auth is not None:
            self.auth.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="registry")
        loop.set_default_executor(executor)
        self._bulk = ThreadPoolExecutor(max_workers=BULK_WORKERS,
                                        thread_name_prefix="registry-bulk")
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
        server = _LowLevelServer(self._handle, access_log=None, read_bufsize=READ_BUFSIZE,
                                 max_line_size=MAX_LINE, max_field_size=MAX_LINE)
        runner = web.ServerRunner(server, handle_signals=False,
                                  shutdown_timeout=DRAIN_SECONDS)
        await runner.setup()
        site = web.SockSite(runner, self.socket, backlog=self.backlog)
        await site.start()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            executor.shutdown(wait=True, cancel_futures=True)
            self._bulk.shutdown(wait=True, cancel_futures=True)

    # -- plumbing -------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the worker pool: file-system work never blocks the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(fn, *args))

    async def _run_bulk(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the pool for the bulk of the bytes (body writes, fsyncs,
        hashing whole blobs): a manifest or HEAD request never queues behind them."""
        loop = asyncio.get_running_loop()
        assert self._bulk is not None
        return await loop.run_in_executor(self._bulk, functools.partial(fn, *args))

    def _log(self, req: _Request, status: int, started: float) -> None:
        if not self.quiet:
            peer = req.raw.remote or "-"
            ms = (time.monotonic() - started) * 1000
            sys.stderr.write(f"{peer} {req.method} {req.raw.raw_path} {status}"
                             f" {ms:.1f}ms\n")

    async def _chunks(self, req: _Request) -> AsyncIterator[bytes]:
        """The request body in pieces of about PIECE bytes, whatever its framing: each
        as soon as PIECE bytes are there, or PIECE_WAIT seconds passed."""
        content = req.raw.content
        parts: list[bytes] = []
        have = 0
        since = time.monotonic()
        while True:
            try:
                # One timer per read, without wait_for's task per read.
                async with asyncio.timeout(UPLOAD_IDLE):
                    data = await content.readany()
            except TimeoutError:
                raise ConnectionError("client sent nothing for too long") from None
            except HttpProcessingError as e:
                raise RegistryError("SIZE_INVALID", "invalid request body framing",
                                    str(e.message or e), status=400) from None
            if not data:
                break
            parts.append(data)
            have += len(data)
            if have >= PIECE or time.monotonic() - since > PIECE_WAIT:
                yield parts[0] if len(parts) == 1 else b"".join(parts)
                parts, have = [], 0
                since = time.monotonic()
        if parts:
            yield b"".join(parts)

    async def _read_all(self, req: _Request, limit: int) -> bytes:
        out = bytearray()
        async for chunk in self._chunks(req):
            out += chunk
            if len(out) > limit:
                raise RegistryError("SIZE_INVALID", "manifest too large", status=413)
        return bytes(out)

    async def _write_body(self, req: _Request, writer: Any) -> int:
        """Stream the body into a storage writer and commit it; the size written."""
        try:
            async for chunk in self._chunks(req):
                await self._run_bulk(writer.write, chunk)
            await self._run_bulk(writer.commit)
        finally:
            await self._run_bulk(writer.cancel)
        return int(writer.size)

    # -- dispatch -------------------------------------------------------------------------
    async def _handle(self, raw: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        req = _Request(raw)
        try:
            resp = await self._dispatch(req)
        except RegistryError as e:
            headers = dict(e.headers)
            if e.status == 401:
                headers["WWW-Authenticate"] = self._challenge(req)
            resp = _error_response(req.method, e, headers)
            if e.code == "SIZE_INVALID" and e.status == 400:
                resp.force_close()  # where the body ends is unknown
        except TooManyFailures as e:
            resp = _error_response(req.method, RegistryError(
                "TOOMANYREQUESTS", "too many failed login attempts", status=429),
                {"Retry-After": str(e.retry_after)})
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as e:  # a bug costs one request, not the server
            sys.stderr.write(f"registry: internal error: {type(e).__name__}: {e}\n")
            resp = _error_response(req.method, RegistryError(
                "UNKNOWN", "internal server error", status=500), {})
            resp.force_close()
        self._log(req, resp.status, started)
        return resp

    async def _dispatch(self, req: _Request) -> web.StreamResponse:
        method = req.method
        if req.path == "/token" and self.tokens is not None:
            if method != "GET":
                raise RegistryError("UNSUPPORTED", "the operation is unsupported",
                                    status=405)
            return await self._token_get(req, req.query_all.get("scope", []))
        for kind, rx in _ROUTES:
            m = rx.match(req.path)
            if m is None:
                continue
            args = m.groupdict()
            if "name" in args:
                check_name(args["name"])
            await self._authorize(req, kind, args.get("name"))
            handler = getattr(self, f"_{kind}_{method.lower()}", None)
            if handler is None:
                raise RegistryError("UNSUPPORTED", "the operation is unsupported",
                                    status=405)
            return await handler(req, **args)
        await self._authorize(req, "base", None)
        raise RegistryError("NOT_FOUND", "no such endpoint", status=404)

    # -- auth -----------------------------------------------------------------------------
    async def _user(self, req: _Request) -> str | None:
        assert self.auth is not None
        return await self.auth.user(req.headers.get("Authorization"),
                                    req.raw.remote or "")

    async def _authorize(self, req: _Request, kind: str, name: str | None) -> None:
        if self.auth is None:
            return
        if self.tokens is None:
            if await self._user(req) is None:
                raise RegistryError("UNAUTHORIZED", "authentication required",
                                    [{"Type": "registry", "Action": "access"}])
            return
        if kind == "catalog":
            req.scope = "registry:catalog:*"
        elif name is not None:
            action = "pull" if req.method in ("GET", "HEAD") else "push"
            if req.method == "DELETE":
                action = "delete"
            req.scope = f"repository:{name}:{action}"
        req.access = self.tokens.verify(req.headers.get("Authorization"))
        if req.access is None or (req.scope and not self._granted(req, req.scope)):
            raise RegistryError("UNAUTHORIZED", "authentication required",
                                [{"Type": "registry", "Action": "access"}])

    def _granted(self, req: _Request, scope: str) -> bool:
        if self.tokens is None:
            return True
        for (kind, name), actions in parse_scopes([scope]).items():
            have = (req.access or {}).get((kind, name), set())
            if "*" not in have and not actions <= have:
                return False
        return True

    def _challenge(self, req: _Request) -> str:
        if self.tokens is None:
            return 'Basic realm="ketch-registry"'
        addr = self.server_address
        host = req.headers.get("Host") or f"{addr[0]}:{addr[1]}"
        out = f'Bearer realm="http://{host}/token",service="{SERVICE}"'
        if req.scope:
            out += f',scope="{req.scope}"'
        return out

    async def _token_get(self, req: _Request, scopes: list[str]) -> web.StreamResponse:
        assert self.tokens is not None
        user = await self._user(req)
        if user is None:
            raise RegistryError("UNAUTHORIZED", "incorrect username or password")
        # Every authenticated user may pull and push everywhere: htpasswd has no ACLs.
        return _json(200, self.tokens.issue(user, parse_scopes(scopes)))

    # -- handlers -------------------------------------------------------------------------
    async def _base_get(self, req: _Request) -> web.StreamResponse:
        return _json(200, {})

    _base_head = _base_get

    async def _catalog_get(self, req: _Request) -> web.StreamResponse:
        n = _int(req.query.get("n"))
        repos, more = paginate(await self._run(self.storage.catalog), n, req.query.get("last"))
        headers = {}
        if more and repos:
            headers["Link"] = f'</v2/_catalog?n={n}&last={quote(repos[-1])}>; rel="next"'
        return _json(200, {"repositories": repos}, headers)

    async def _tags_get(self, req: _Request, name: str) -> web.StreamResponse:
        n = _int(req.query.get("n"))
        tags, more = paginate(await self._run(self.storage.tags, name), n,
                              req.query.get("last"))
        headers = {}
        if more and tags:
            headers["Link"] = (f'</v2/{name}/tags/list?n={n}&last={quote(tags[-1])}>;'
                               ' rel="next"')
        return _json(200, {"name": name, "tags": tags}, headers)

    async def _referrers_get(self, req: _Request, name: str,
                             digest: str) -> web.StreamResponse:
        artifact_type = req.query.get("artifactType")
        found = await self._run(self.storage.referrers, name, digest, artifact_type)
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
        body = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": found}
        return _response(200, json.dumps(body).encode(), headers,
                         "application/vnd.oci.image.index.v1+json")

    async def _manifest_get(self, req: _Request, name: str, ref: str) -> web.StreamResponse:
        data, media_type, digest = await self._run(self.storage.get_manifest, name, ref)
        return _response(200, data, {"Docker-Content-Digest": digest, "ETag": f'"{digest}"'},
                         media_type)

    _manifest_head = _manifest_get  # aiohttp sends no body for HEAD, the length stays

    async def _manifest_put(self, req: _Request, name: str, ref: str) -> web.StreamResponse:
        tags = req.query_all.get("tag") or []
        if len(tags) > MAX_QUERY_TAGS:
            raise RegistryError("TAG_INVALID", "too many tag parameters",
                                {"count": len(tags)}, status=414)
        data = await self._read_all(req, MAX_MANIFEST)
        digest = await self._run(self.storage.put_manifest, name, ref, data,
                                 req.headers.get("Content-Type") or "", tags)
        headers = {"Location": f"/v2/{name}/manifests/{digest}",
                   "Docker-Content-Digest": digest}
        try:
            subject = json.loads(data).get("subject") or {}
        except (ValueError, AttributeError):
            subject = {}
        if isinstance(subject, dict) and subject.get("digest"):
            # Tells OCI 1.1 clients the referrers API exists (no fallback tag needed).
            headers["OCI-Subject"] = str(subject["digest"])
        return _response(201, b"", headers, extra=[("OCI-Tag", t) for t in dict.fromkeys(tags)])

    async def _manifest_delete(self, req: _Request, name: str,
                               ref: str) -> web.StreamResponse:
        await self._run(self.storage.delete_manifest, name, ref)
        return _response(202)

    async def _blob_get(self, req: _Request, name: str, digest: str) -> web.StreamResponse:
        f, size = await self._run(self.storage.open_blob, name, digest)
        try:
            headers = {**API_VERSION, "Docker-Content-Digest": digest,
                       "ETag": f'"{digest}"', "Accept-Ranges": "bytes",
                       "Content-Type": "application/octet-stream"}
            start, end = 0, size - 1
            status = 200
            wanted = (_byte_range(req.headers.get("Range"), size)
                      if req.method == "GET" else None)
            if wanted is not None:
                start, end = wanted
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        except BaseException:
            f.close()
            raise
        return _BlobResponse(f, start, end - start + 1, status, headers)

    _blob_head = _blob_get

    async def _blob_delete(self, req: _Request, name: str, digest: str) -> web.StreamResponse:
        await self._run(self.storage.delete_blob, name, digest)
        return _response(202)

    async def _uploads_post(self, req: _Request, name: str) -> web.StreamResponse:
        st = self.storage
        mount, source = req.query.get("mount"), req.query.get("from")
        if mount and source:
            scope = f"repository:{source}:pull"
            if not self._granted(req, scope):
                # Distribution's answer: the token must cover the source too. Turning
                # the mount into a plain upload instead would hide why it failed.
                # Both scopes, as distribution asks, so the client can upgrade its token.
                req.scope = f"repository:{name}:pull,push {scope}"
                raise RegistryError("UNAUTHORIZED", "authentication required",
                                    [{"Type": "repository", "Name": source,
                                      "Action": "pull"}])
            if await self._run(st.mount, name, mount, source):
                return _response(201, b"", {"Location": f"/v2/{name}/blobs/{mount}",
                                            "Docker-Content-Digest": mount})
        digest = req.query.get("digest")
        if digest:
            tmp, w = await self._run(st.monolithic_writer, digest)
            try:
                await self._write_body(req, w)
                await self._run_bulk(st.store_monolithic, name, digest, tmp)
            finally:
                await self._run(st.discard, tmp)
            return _response(201, b"", {"Location": f"/v2/{name}/blobs/{digest}",
                                        "Docker-Content-Digest": digest})
        uid = await self._run(st.start_upload, name)
        return _response(202, b"", upload_headers(name, uid, 0))

    async def _upload_get(self, req: _Request, name: str, uuid: str) -> web.StreamResponse:
        offset = await self._run(self.storage.upload_offset, name, uuid)
        return _response(204, b"", upload_headers(name, uuid, offset))

    async def _content_range_start(self, req: _Request, name: str, uuid: str) -> int | None:
        """Where the chunk of this PATCH or closing PUT claims to start, if it says."""
        value = req.headers.get("Content-Range")
        if value is None:
            return None
        m = re.match(r"^(?:bytes )?(\d+)-(\d+)$", value.strip())
        if m is None or int(m.group(2)) < int(m.group(1)):
            offset = await self._run(self.storage.upload_offset, name, uuid)
            raise RegistryError("RANGE_INVALID", "invalid content range",
                                {"Content-Range": value},
                                headers=upload_headers(name, uuid, offset))
        return int(m.group(1))

    async def _append(self, req: _Request, name: str, uuid: str) -> int:
        start = await self._content_range_start(req, name, uuid)
        w = await self._run(self.storage.upload_writer, name, uuid, start)
        return await self._write_body(req, w)

    async def _upload_patch(self, req: _Request, name: str, uuid: str) -> web.StreamResponse:
        offset = await self._append(req, name, uuid)
        return _response(202, b"", upload_headers(name, uuid, offset))

    async def _upload_put(self, req: _Request, name: str, uuid: str) -> web.StreamResponse:
        digest = req.query.get("digest")
        st = self.storage
        await self._append(req, name, uuid)
        if not digest:
            await self._run(st.cancel_upload, name, uuid)
            raise RegistryError("DIGEST_INVALID", "digest parameter missing")
        check_digest(digest)
        await self._run_bulk(st.finish_upload, name, uuid, digest)
        return _response(201, b"", {"Location": f"/v2/{name}/blobs/{digest}",
                                    "Docker-Content-Digest": digest})

    async def _upload_delete(self, req: _Request, name: str, uuid: str) -> web.StreamResponse:
        await self._run(self.storage.cancel_upload, name, uuid)
        return _response(204)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte positions a single-range `Range` header asks for, None
    to send the whole blob (no header, or one this server does not parse: RFC 9110
    lets a server ignore Range), RANGE_INVALID (416) when nothing of it exists."""
    m = re.match(r"^bytes=(\d*)-(\d*)$", (header or "").strip())
    if m is None or not (m.group(1) or m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        if m.group(2) and int(m.group(2)) < start:
            return None  # syntactically invalid: ignored
    else:  # a suffix: the last N bytes
        start, end = max(size - int(m.group(2)), 0), size - 1
        if int(m.group(2)) == 0:
            start = size
    if start >= size:
        raise RegistryError("RANGE_INVALID", "requested range not satisfiable",
                            status=416, headers={"Content-Range": f"bytes */{size}"})
    return start, end


def _int(s: str | None) -> int | None:
    if s is None or s == "":
        return None
    try:
        n = int(s)
    except ValueError:
        raise RegistryError("PAGINATION_NUMBER_INVALID", "invalid number of results",
                            status=400) from None
    if n < 0:
        raise RegistryError("PAGINATION_NUMBER_INVALID", "invalid number of results",
                            status=400)
    return n


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep:
        host, port = addr, "5000"
    host = host.strip("[]") or "0.0.0.0"
    from ketch.errors import InvalidArgument

    if not (port.isascii() and port.isdigit()):
        raise InvalidArgument(f"invalid listen address {addr!r}")
    if int(port) > 65535:
        raise InvalidArgument(f"invalid listen address {addr!r}: the port must be 0-65535")
    return host, int(port)
