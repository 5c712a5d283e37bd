"""Bearer tokens (Docker's token authentication flow), issued by the registry itself.

`GET /token?service=..&scope=repository:NAME:pull,push` with htpasswd basic credentials
returns `{"token": ...}`; the registry then accepts `Authorization: Bearer <token>` for
the granted scopes. Tokens are HMAC-signed JSON with an expiry, keyed by a secret that
lives only as long as the server process: no key files to manage, and a restart simply
makes clients fetch new tokens (they do so on the next 401).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


SERVICE = "ketch-registry"
LIFETIME = 300


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def parse_scopes(values: list[str]) -> dict[tuple[str, str], set[str]]:
    """`repository:app:pull,push` (several, space- or parameter-separated) as
    {(type, name): actions}."""
    out: dict[tuple[str, str], set[str]] = {}
    for v in values:
        for scope in v.split():
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name:
                out.setdefault((kind, name), set()).update(a for a in actions.split(",") if a)
    return out


class TokenIssuer:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def issue(self, user: str, scopes: dict[tuple[str, str], set[str]]) -> dict[str, Any]:
        now = int(time.time())
        access = [{"type": k, "name": n, "actions": sorted(a)}
                  for (k, n), a in scopes.items()]
        payload = _b64(json.dumps({"sub": user, "access": access, "iat": now,
                                   "exp": now + LIFETIME}).encode())
        token = payload + "." + _b64(self._sign(payload))
        return {"token": token, "access_token": token, "expires_in": LIFETIME,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}

    def _sign(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).digest()

    def verify(self, header: str | None) -> dict[tuple[str, str], set[str]] | None:
        """The access a valid, unexpired `Bearer` header grants, else None."""
        if not header or not header.lower().startswith("bearer "):
            return None
        payload, _, sig = header[7:].strip().partition(".")
        try:
            if not hmac.compare_digest(_unb64(sig), self._sign(payload)):
                return None
            claims = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            return None
        if claims.get("exp", 0) < time.time():
            return None
        return {(a["type"], a["name"]): set(a["actions"]) for a in claims.get("access", [])}
