"""HTTP to one registry: scheme choice, timeouts, error mapping and auth challenges.

A 401 carries `WWW-Authenticate`; for `Basic` the stored credentials are sent, for
`Bearer` a token is fetched from the realm (docker's token auth spec) for the scope the
request needs, then the request is retried once.
"""

from __future__ import annotations

from ketch.errors import KetchError, Unauthorized
from ketch.fastjson import loads

# A pull of an image that is already present makes one request; what it imports shows.
# Plain HTTP (loopback registries) goes through `http11`; `http.client`, `ssl` and
# `socket` are imported only for https; `urllib.parse` (which brings `re` and
# `ipaddress`), `base64` and `re` only for redirects, logins and auth challenges.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0


def read_timeout() -> float:
    """Seconds a registry may send nothing before a request fails (default 120):
    `KETCH_REGISTRY_READ_TIMEOUT` overrides it."""
    import os

    raw = os.environ.get("KETCH_REGISTRY_READ_TIMEOUT", "")
    try:
        value = float(raw) if raw else READ_TIMEOUT
    except ValueError:
        value = READ_TIMEOUT
    return value if value > 0 else READ_TIMEOUT
HUB_REGISTRY = "registry-1.docker.io"

MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


class RegistryUnauthorized(Unauthorized):
    """The registry refused us. An Unauthorized error for callers that classify errors
    (the CRI answers UNAUTHENTICATED), while the Engine API keeps answering 500 with
    the registry's words, as it did."""

    http_status = 500


class RegistryErrorResponse(KetchError):
    def __init__(self, message: str, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    parts = name.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
        return parts[0] == "127" and all(int(p) < 256 for p in parts)
    import ipaddress

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def insecure_registries() -> set[str]:
    """Registries allowed over plain HTTP besides loopback: `KETCH_INSECURE_REGISTRIES`,
    comma-separated host[:port] (docker's daemon.json `insecure-registries`)."""
    import os

    raw = os.environ.get("KETCH_INSECURE_REGISTRIES", "")
    return {h.strip().removeprefix("http://").rstrip("/") for h in raw.split(",")
            if h.strip()}


def endpoint_host(domain: str) -> str:
    """The host to connect to for a reference's domain (Docker Hub is served elsewhere)."""
    return HUB_REGISTRY if domain == "docker.io" else domain


class Response:
    """A registry's answer: `body` read whole, or `raw` to stream (2xx when asked)."""

    def __init__(self, status: int, headers: Any, body: bytes = b"", raw: Any = None,
                 url: str = "") -> None:
        self.status = status
        self.headers = headers  # http11.Headers or http.client.HTTPMessage: `.get`
        self.body = body
        self.raw = raw
        self.url = url

    def header(self, name: str) -> str:
        return self.headers.get(name) or ""


def _https_connection(netloc: str) -> Any:
    """An `http.client` HTTPS connection (imported here: plain HTTP never needs it)."""
    import http.client
    import ssl

    from ketch.distribution.http11 import _resolve

    class HTTPS(http.client.HTTPSConnection):
        up = False  # connected: a timeout after this is the registry not sending

        def connect(self) -> None:
            self.up = False
            _resolve(self.host, self.port, CONNECT_TIMEOUT)  # fails fast without DNS
            super().connect()
            self.up = True
            # A short connect timeout fails fast without a route; transfers may be slow.
            self.sock.settimeout(read_timeout())

    return HTTPS(netloc, timeout=CONNECT_TIMEOUT, blocksize=1 << 20,
                 context=ssl.create_default_context())


def _split(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port], path with query) of an absolute http(s) URL: what
    `urlsplit` gives for the URLs a registry conversation uses, fragments dropped."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", "", url
    netloc, slash, path = rest.partition("/")
    path = (slash + path).partition("#")[0]
    if "?" in netloc:  # "http://host?x" has no path
        netloc, _, query = netloc.partition("?")
        path = "?" + query
    return scheme.lower(), netloc, path or "/"


class Transport:
    def __init__(self, domain: str, credentials: tuple[str, str] | None = None,
                 scheme: str = "") -> None:
        self.domain = domain
        self.credentials = credentials
        self.scheme = scheme
        self._conns: dict[str, Any] = {}
        self._basic = False
        self._tokens: dict[str, str] = {}
        self._challenge: tuple[str, dict[str, str]] | None = None
        self.host = endpoint_host(self.domain)
        if not self.scheme:
            # Docker allows plain HTTP to loopback registries without configuration.
            plain = is_loopback(self.host) or self.host in insecure_registries()
            self.scheme = "http" if plain else "https"

    def clone(self) -> Transport:
        """A transport for another thread: own connections, shared credentials/tokens."""
        other = Transport(self.domain, self.credentials, self.scheme)
        other._tokens = self._tokens
        other._challenge = self._challenge
        return other

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"

    def _conn(self, scheme: str, netloc: str) -> Any:
        key = f"{scheme}://{netloc}"
        conn = self._conns.get(key)
        if conn is None:
            if scheme == "https":
                conn = _https_connection(netloc)
            else:
                from ketch.distribution.http11 import Connection

                conn = Connection(netloc, timeout=CONNECT_TIMEOUT,
                                  read_timeout=read_timeout())
            self._conns[key] = conn
        return conn

    def close(self) -> None:
        for c in self._conns.values():
            c.close()
        self._conns.clear()

    # -- one exchange ---------------------------------------------------------------
    def _once(self, method: str, url: str, headers: dict[str, str],
              body: bytes | BinaryIO | None, stream: bool) -> Response:
        scheme, netloc, path = _split(url)
        for attempt in (0, 1):
            conn = self._conn(scheme, netloc)
            try:
                if hasattr(body, "seek"):
                    body.seek(0)  # type: ignore[union-attr]  # hasattr above: a file body
                conn.request(method, path, body=body, headers=headers)
                raw = conn.getresponse()
            except Exception as e:
                conn.close()
                self._conns.pop(f"{scheme}://{netloc}", None)
                if _stale_connection(e):
                    if attempt == 0:
                        continue  # a kept-alive connection the server had closed
                    raise KetchError(f'{method} "{url}": {e}') from None
                if not isinstance(e, OSError):
                    raise
                if scheme == "https":
                    import ssl

                    if isinstance(e, ssl.SSLError):
                        raise KetchError(f'{method} "{url}": tls: {e.reason or e}') from None
                if isinstance(e, TimeoutError) and getattr(conn, "up", False):
                    raise KetchError(f'{method} "{url}": {netloc} sent nothing for'
                                     f' {read_timeout():g}s (read timed out)') from None
                reason = e.strerror or str(e) or type(e).__name__
                raise KetchError(f'{method.capitalize()} "{url}": dial tcp {netloc}:'
                                 f' {reason}') from None
            resp = Response(raw.status, raw.headers, url=url)
            if stream and 200 <= raw.status < 300:
                resp.raw = raw
            else:
                resp.body = raw.read()
            return resp
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, *, scope: str,
                headers: dict[str, str] | None = None,
                body: bytes | BinaryIO | None = None, stream: bool = False,
                ok: tuple[int, ...] = (200,), redirects: int = 5) -> Response:
        """Send, answering one auth challenge; a status outside `ok` raises."""
        url = path if path.startswith(("http://", "https://")) else self.base + path
        hdrs = dict(headers or {})
        hdrs.setdefault("User-Agent", "ketch")
        if body is None and method in ("PUT", "POST", "PATCH"):
            hdrs.setdefault("Content-Length", "0")
        same_host = _split(url)[1] == self.host
        for _ in range(redirects + 1):
            auth = self._authorization(scope) if same_host else None
            if auth:
                hdrs["Authorization"] = auth
            else:
                hdrs.pop("Authorization", None)
            resp = self._once(method, url, hdrs, body, stream)
            if resp.status == 401 and same_host:
                if self._answer_challenge(resp, scope):
                    hdrs["Authorization"] = self._authorization(scope) or ""
                    resp = self._once(method, url, hdrs, body, stream)
                if resp.status == 401:
                    raise RegistryUnauthorized(_error_message(resp, "unauthorized"))
            if resp.status in (301, 302, 303, 307, 308) and resp.header("Location"):
                # Blob downloads may be redirected to storage on another host.
                from urllib.parse import urljoin

                url = urljoin(url, resp.header("Location"))
                same_host = _split(url)[1] == self.host
                if resp.status == 303:
                    method, body = "GET", None
                continue
            if resp.status not in ok:
                if resp.raw is not None:
                    resp.body = resp.raw.read()
                raise RegistryErrorResponse(_error_message(resp, ""), resp.status,
                                            _error_code(resp))
            return resp
        raise KetchError(f'{method} "{url}": stopped after {redirects} redirects')

    # -- auth ---------------------------------------------------------------------------
    def _authorization(self, scope: str) -> str | None:
        if self._challenge is None:
            return None
        kind, _ = self._challenge
        if kind == "basic" and self.credentials:
            import base64

            user, password = self.credentials
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if kind == "bearer" and scope in self._tokens:
            return "Bearer " + self._tokens[scope]
        return None

    def _answer_challenge(self, resp: Response, scope: str) -> bool:
        """Prepare credentials for a 401; False when there is nothing new to try."""
        challenge = parse_challenge(resp.header("WWW-Authenticate"))
        if challenge is None:
            return False
        kind, params = challenge
        first = self._challenge is None or self._challenge[0] != kind
        self._challenge = challenge
        if kind == "basic":
            if not self.credentials:
                raise RegistryUnauthorized("no basic auth credentials")
            return first
        if kind == "bearer":
            # A cached token was refused (expired, or the server restarted): fetch a
            # fresh one; `request` retries only once, so this cannot loop.
            self._tokens[scope] = self._fetch_token(params, scope)
            return True
        return False

    def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryUnauthorized("bearer challenge without a realm")
        query = {}
        if params.get("service"):
            query["service"] = params["service"]
        if scope:
            query["scope"] = scope
        if self.credentials:
            query["account"] = self.credentials[0]
        import base64
        from urllib.parse import urlencode

        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        hdrs = {"User-Agent": "ketch"}
        if self.credentials:
            user, password = self.credentials
            hdrs["Authorization"] = "Basic " + base64.b64encode(
                f"{user}:{password}".encode()).decode()
        resp = self._once("GET", url, hdrs, None, False)
        if resp.status == 401:
            raise RegistryUnauthorized(_error_message(resp, "unauthorized: incorrect"
                                                      " username or password"))
        if resp.status != 200:
            raise RegistryErrorResponse(
                f"token server {realm} answered {resp.status}", resp.status)
        try:
            data = loads(resp.body)
            token = data.get("token") or data.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise KetchError(f"token server {realm} sent no token")
        return str(token)

    def ping(self) -> Response:
        """GET /v2/, authenticating if challenged (what `login` verifies)."""
        resp = self._once("GET", self.base + "/v2/", {"User-Agent": "ketch"}, None, False)
        if resp.status == 401:
            if not self._answer_challenge(resp, ""):
                raise RegistryUnauthorized(_error_message(resp, "unauthorized"))
            hdrs = {"User-Agent": "ketch", "Authorization": self._authorization("") or ""}
            resp = self._once("GET", self.base + "/v2/", hdrs, None, False)
            if resp.status == 401:
                if self._challenge is not None and self._challenge[0] == "basic":
                    # the credentials themselves were refused: dockerd's words
                    raise RegistryUnauthorized(f"login attempt to {self.base}/v2/ failed"
                                               " with status: 401 Unauthorized")
                raise RegistryUnauthorized(_error_message(resp, "unauthorized"))
        if resp.status != 200:
            raise RegistryErrorResponse(
                f"{self.base}/v2/ does not look like a registry (HTTP {resp.status})",
                resp.status)
        return resp


def _stale_connection(e: BaseException) -> bool:
    """A kept-alive connection the server closed meanwhile: worth one more try."""
    if isinstance(e, BrokenPipeError | ConnectionResetError):
        return True  # http.client's RemoteDisconnected and http11's are resets
    from ketch.distribution.http11 import CannotSendRequest

    if isinstance(e, CannotSendRequest):
        return True
    import sys

    client = sys.modules.get("http.client")  # imported only when https was used
    return client is not None and isinstance(e, client.CannotSendRequest)


_PARAM = r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))'


def parse_challenge(header: str) -> tuple[str, dict[str, str]] | None:
    if not header:
        return None
    import re

    kind, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in re.finditer(_PARAM, rest)}
    return kind.lower(), params


def _error_code(resp: Response) -> str:
    try:
        return str(loads(resp.body)["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def _error_message(resp: Response, default: str) -> str:
    try:
        errs = loads(resp.body)["errors"]
        return "; ".join(f"{str(e.get('code', '')).lower()}: {e.get('message', '')}"
                         for e in errs)
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    if default:
        return default
    return f"{_split(resp.url)[2].partition('?')[0]}: unexpected HTTP status {resp.status}"
