"""HTTP routing for the registry: the OCI Distribution Spec endpoints over `Storage`.

A threaded stdlib HTTP/1.1 server: no dependency, one thread per connection, bodies
streamed in both directions (Content-Length or chunked transfer coding).
"""

from __future__ import annotations

import json
import re
import socket
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from ketch.registry.auth import Htpasswd
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
MANIFEST_ACCEPT_DEFAULT = "application/vnd.oci.image.manifest.v1+json"
MAX_MANIFEST = 4 << 20
PIECE_WAIT = 10.0
MAX_QUERY_TAGS = 64  # the spec asks for at least 10; more may be answered with 414


class RegistryServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], root: Path,
                 htpasswd: Htpasswd | None = None, quiet: bool = False,
                 token_auth: bool = False) -> None:
        self.storage = Storage(root)
        self.htpasswd = htpasswd
        self.tokens = TokenIssuer() if htpasswd is not None and token_auth else None
        self.quiet = quiet
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections (and stalled uploads) release their thread eventually;
    # garbage collection relies on this bound (see UPLOAD_TIMEOUT).
    timeout = UPLOAD_IDLE
    server: RegistryServer
    server_version = "ketch-registry"

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # -- plumbing ---------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str | None = None, head: bool = False,
              length: int | None = None, extra: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        for k, v in extra or []:  # headers that may repeat
            self.send_header(k, v)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers, "application/json")

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """Requests the HTTP layer cannot parse (a request line that is not one, bytes
        left over from a body longer than its Content-Length, ...) get the spec's JSON
        error shape too, and the connection is closed: its framing is lost."""
        self.close_connection = True
        # An unparsable request line leaves the version at HTTP/0.9, which would send
        # the body bare; nobody speaks 0.9 to a registry, so answer in HTTP/1.1.
        self.request_version = self.protocol_version
        short, _ = self.responses.get(code, ("error", ""))
        body = {"errors": [{"code": "UNSUPPORTED" if code == 501 else "UNKNOWN",
                            "message": message or short}]}
        try:
            self.send_response(code, message)
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Connection", "close")
            data = json.dumps(body).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(data)
        except OSError:
            pass

    def _check_framing(self) -> None:
        """Refuse a body whose length cannot be known before reading any of it."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return
        if len(set(values)) == 1 and values[0].strip().isascii() and values[0].strip(
                ).isdigit():
            return
        self._framing_lost()
        raise RegistryError("SIZE_INVALID", "invalid Content-Length header",
                            {"Content-Length": ", ".join(values)}, status=400)

    def _framing_lost(self) -> None:
        # Where this request's body ends is unknown: nothing more can be read from
        # the connection, so it is neither drained nor kept open.
        self._body_iter = iter(())
        self.close_connection = True

    def _body(self) -> Iterator[bytes]:
        """The request body as chunks, whatever its framing.

        One iterator per request: draining after an error continues where the handler
        stopped reading instead of waiting for bytes that were already consumed.
        """
        if self._body_iter is None:
            self._body_iter = self._read_body()
        return self._body_iter

    def _read_body(self) -> Iterator[bytes]:
        # In pieces of what arrived (see _read_piece), so that an upload's temp file
        # is written while the client sends: its mtime tells a live upload from a dead one.
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                line = self.rfile.readline(1024)
                digits = line.split(b";")[0].strip()
                if not line.endswith(b"\n") or not digits or not all(
                        c in b"0123456789abcdefABCDEF" for c in digits):
                    self._framing_lost()
                    raise RegistryError("SIZE_INVALID", "invalid chunked transfer coding",
                                        status=400)
                size = int(digits, 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    data = self._read_piece(left)
                    left -= len(data)
                    yield data
                self.rfile.readline(1024)
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                data = self._read_piece(left)
                left -= len(data)
                yield data

    def _read_piece(self, left: int) -> bytes:
        """Up to CHUNK bytes of the body, sooner when the client is slow: whatever has
        arrived is handed on after PIECE_WAIT seconds, so an upload's temp file is
        written (its mtime refreshed) well within UPLOAD_TIMEOUT while it is alive."""
        import time

        want = min(left, CHUNK)
        buf = bytearray()
        deadline = time.monotonic() + PIECE_WAIT
        while len(buf) < want:
            data = self.rfile.read1(want - len(buf))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            buf += data
            if time.monotonic() > deadline:
                break
        return bytes(buf)

    def _drain(self) -> None:
        for _ in self._body():
            pass

    def _read_all(self, limit: int) -> bytes:
        out = bytearray()
        for chunk in self._body():
            out += chunk
            if len(out) > limit:
                raise RegistryError("SIZE_INVALID", "manifest too large",
                                    status=413)
        return bytes(out)

    # -- dispatch -----------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self._body_iter: Iterator[bytes] | None = None
        self.query_all = parse_qs(url.query)
        self.query = {k: v[-1] for k, v in self.query_all.items()}
        body_read = method in ("GET", "HEAD", "DELETE")
        self._scope = ""
        self.access: dict[tuple[str, str], set[str]] | None = None
        try:
            self._check_framing()
            if url.path == "/token" and self.server.tokens is not None:
                if method != "GET":
                    raise RegistryError("UNSUPPORTED", "the operation is unsupported",
                                        status=405)
                self._token_get(parse_qs(url.query).get("scope", []))
                return
            for kind, rx in _ROUTES:
                m = rx.match(url.path)
                if m is None:
                    continue
                args = m.groupdict()
                if "name" in args:
                    check_name(args["name"])
                self._authorize(kind, args.get("name"), method)
                handler = getattr(self, f"_{kind}_{method.lower()}", None)
                if handler is None:
                    raise RegistryError("UNSUPPORTED", "the operation is unsupported",
                                        status=405)
                handler(**args)
                return
            self._authorize("base", None, method)
            raise RegistryError("NOT_FOUND", "no such endpoint", status=404)
        except RegistryError as e:
            if not body_read:
                try:
                    self._drain()
                except (OSError, ValueError):
                    self.close_connection = True
            headers = dict(e.headers)
            if e.status == 401:
                headers["WWW-Authenticate"] = self._challenge()
            if self.close_connection:
                headers["Connection"] = "close"
            self._error(method, e, headers)
        except (OSError, ValueError) as e:
            self.close_connection = True
            self.log_message("dropped request: %s", e)
        except Exception as e:  # a bug must cost one request, not the connection thread
            self.close_connection = True
            self.log_message("internal error: %s: %s", type(e).__name__, e)
            self._error(method, RegistryError("UNKNOWN", "internal server error",
                                              status=500), {})

    def _error(self, method: str, e: RegistryError, headers: dict[str, str]) -> None:
        try:
            if method == "HEAD":
                self._send(e.status, b"", headers, head=True)
            else:
                self._json(e.status, e.body(), headers)
        except OSError:
            self.close_connection = True

    # -- auth ---------------------------------------------------------------------------
    def _authorize(self, kind: str, name: str | None, method: str) -> None:
        srv = self.server
        if srv.htpasswd is None:
            return
        if srv.tokens is None:
            if srv.htpasswd.check_header(self.headers.get("Authorization")) is None:
                raise RegistryError("UNAUTHORIZED", "authentication required",
                                    [{"Type": "registry", "Action": "access"}])
            return
        if kind == "catalog":
            self._scope = "registry:catalog:*"
        elif name is not None:
            action = "pull" if method in ("GET", "HEAD") else "push"
            if method == "DELETE":
                action = "delete"
            self._scope = f"repository:{name}:{action}"
        self.access = srv.tokens.verify(self.headers.get("Authorization"))
        if self.access is None or (self._scope and not self._granted(self._scope)):
            raise RegistryError("UNAUTHORIZED", "authentication required",
                                [{"Type": "registry", "Action": "access"}])

    def _granted(self, scope: str) -> bool:
        if self.server.tokens is None:
            return True
        for (kind, name), actions in parse_scopes([scope]).items():
            have = (self.access or {}).get((kind, name), set())
            if "*" not in have and not actions <= have:
                return False
        return True

    def _challenge(self) -> str:
        if self.server.tokens is None:
            return 'Basic realm="ketch-registry"'
        addr = self.server.server_address
        host = self.headers.get("Host") or f"{addr[0]}:{addr[1]}"
        out = f'Bearer realm="http://{host}/token",service="{SERVICE}"'
        if self._scope:
            out += f',scope="{self._scope}"'
        return out

    def _token_get(self, scopes: list[str]) -> None:
        assert self.server.htpasswd is not None and self.server.tokens is not None
        user = self.server.htpasswd.check_header(self.headers.get("Authorization"))
        if user is None:
            raise RegistryError("UNAUTHORIZED", "incorrect username or password")
        # Every authenticated user may pull and push everywhere: htpasswd has no ACLs.
        self._json(200, self.server.tokens.issue(user, parse_scopes(scopes)))

    # -- handlers -----------------------------------------------------------------------
    def _base_get(self) -> None:
        self._json(200, {})

    _base_head = _base_get

    def _catalog_get(self) -> None:
        n = _int(self.query.get("n"))
        repos, more = paginate(self.server.storage.catalog(), n, self.query.get("last"))
        headers = {}
        if more and repos:
            headers["Link"] = f'</v2/_catalog?n={n}&last={quote(repos[-1])}>; rel="next"'
        self._json(200, {"repositories": repos}, headers)

    def _tags_get(self, name: str) -> None:
        n = _int(self.query.get("n"))
        tags, more = paginate(self.server.storage.tags(name), n, self.query.get("last"))
        headers = {}
        if more and tags:
            headers["Link"] = (f'</v2/{name}/tags/list?n={n}&last={quote(tags[-1])}>;'
                               ' rel="next"')
        self._json(200, {"name": name, "tags": tags}, headers)

    def _referrers_get(self, name: str, digest: str) -> None:
        artifact_type = self.query.get("artifactType")
        found = self.server.storage.referrers(name, digest, artifact_type)
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
        body = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": found}
        self._send(200, json.dumps(body).encode(), headers,
                   "application/vnd.oci.image.index.v1+json")

    def _manifest_get(self, name: str, ref: str, head: bool = False) -> None:
        data, media_type, digest = self.server.storage.get_manifest(name, ref)
        self._send(200, data, {"Docker-Content-Digest": digest, "ETag": f'"{digest}"'},
                   media_type, head=head)

    def _manifest_head(self, name: str, ref: str) -> None:
        self._manifest_get(name, ref, head=True)

    def _manifest_put(self, name: str, ref: str) -> None:
        data = self._read_all(MAX_MANIFEST)
        tags = self.query_all.get("tag") or []
        if len(tags) > MAX_QUERY_TAGS:
            raise RegistryError("TAG_INVALID", "too many tag parameters",
                                {"count": len(tags)}, status=414)
        digest = self.server.storage.put_manifest(
            name, ref, data, self.headers.get("Content-Type") or "", tags=tags)
        headers = {"Location": f"/v2/{name}/manifests/{digest}",
                   "Docker-Content-Digest": digest}
        try:
            subject = json.loads(data).get("subject") or {}
        except (ValueError, AttributeError):
            subject = {}
        if isinstance(subject, dict) and subject.get("digest"):
            # Tells OCI 1.1 clients the referrers API exists (no fallback tag needed).
            headers["OCI-Subject"] = str(subject["digest"])
        self._send(201, b"", headers, extra=[("OCI-Tag", t) for t in dict.fromkeys(tags)])

    def _manifest_delete(self, name: str, ref: str) -> None:
        self.server.storage.delete_manifest(name, ref)
        self._send(202)

    def _blob_get(self, name: str, digest: str, head: bool = False) -> None:
        f, size = self.server.storage.open_blob(name, digest)
        with f:
            headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"',
                       "Accept-Ranges": "bytes"}
            start, end = 0, size - 1
            status = 200
            wanted = _byte_range(self.headers.get("Range"), size) if not head else None
            if wanted is not None:
                start, end = wanted
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self._send(status, b"", headers, "application/octet-stream", head=True,
                       length=end - start + 1)
            if head:
                return
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def _blob_head(self, name: str, digest: str) -> None:
        self._blob_get(name, digest, head=True)

    def _blob_delete(self, name: str, digest: str) -> None:
        self.server.storage.delete_blob(name, digest)
        self._send(202)

    def _uploads_post(self, name: str) -> None:
        st = self.server.storage
        mount, source = self.query.get("mount"), self.query.get("from")
        if mount and source:
            scope = f"repository:{source}:pull"
            if not self._granted(scope):
                # Distribution's answer: the token must cover the source too. Turning
                # the mount into a plain upload instead would hide why it failed.
                # Both scopes, as distribution asks, so the client can upgrade its token.
                self._scope = f"repository:{name}:pull,push {scope}"
                raise RegistryError("UNAUTHORIZED", "authentication required",
                                    [{"Type": "repository", "Name": source,
                                      "Action": "pull"}])
            if st.mount(name, mount, source):
                self._drain()
                self._send(201, b"", {"Location": f"/v2/{name}/blobs/{mount}",
                                      "Docker-Content-Digest": mount})
                return
        digest = self.query.get("digest")
        if digest:
            st.put_monolithic(name, digest, self._body())
            self._send(201, b"", {"Location": f"/v2/{name}/blobs/{digest}",
                                  "Docker-Content-Digest": digest})
            return
        self._drain()
        uid = st.start_upload(name)
        self._send(202, b"", upload_headers(name, uid, 0))

    def _upload_get(self, name: str, uuid: str) -> None:
        offset = self.server.storage.upload_offset(name, uuid)
        self._send(204, b"", upload_headers(name, uuid, offset))

    def _content_range_start(self, name: str, uuid: str) -> int | None:
        """Where the chunk of this PATCH or closing PUT claims to start, if it says."""
        value = self.headers.get("Content-Range")
        if value is None:
            return None
        m = re.match(r"^(?:bytes )?(\d+)-(\d+)$", value.strip())
        if m is None or int(m.group(2)) < int(m.group(1)):
            offset = self.server.storage.upload_offset(name, uuid)
            raise RegistryError("RANGE_INVALID", "invalid content range",
                                {"Content-Range": value},
                                headers=upload_headers(name, uuid, offset))
        return int(m.group(1))

    def _upload_patch(self, name: str, uuid: str) -> None:
        start = self._content_range_start(name, uuid)
        offset = self.server.storage.append_upload(name, uuid, self._body(), start)
        self._send(202, b"", upload_headers(name, uuid, offset))

    def _upload_put(self, name: str, uuid: str) -> None:
        digest = self.query.get("digest")
        st = self.server.storage
        st.append_upload(name, uuid, self._body(), self._content_range_start(name, uuid))
        if not digest:
            st.cancel_upload(name, uuid)
            raise RegistryError("DIGEST_INVALID", "digest parameter missing")
        check_digest(digest)
        st.finish_upload(name, uuid, digest)
        self._send(201, b"", {"Location": f"/v2/{name}/blobs/{digest}",
                              "Docker-Content-Digest": digest})

    def _upload_delete(self, name: str, uuid: str) -> None:
        self.server.storage.cancel_upload(name, uuid)
        self._send(204)


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
    try:
        return host, int(port)
    except ValueError:
        from ketch.errors import InvalidArgument

        raise InvalidArgument(f"invalid listen address {addr!r}") from None
