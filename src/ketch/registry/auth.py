"""htpasswd basic authentication, as `htpasswd -B` (Apache's apache2-utils) writes it.

bcrypt is checked with the C library's crypt(3) (libxcrypt knows $2y$/$2b$), so no extra
Python package is needed; `{SHA}` entries are accepted too. Other schemes (MD5 `$apr1$`,
plain text) are refused when the file is loaded, with the line that uses them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import warnings
from pathlib import Path

from ketch.errors import InvalidArgument


def _crypt(password: str, salt: str) -> str | None:
    with warnings.catch_warnings():
        # `crypt` is deprecated (PEP 594) but is the stdlib's only bcrypt verifier.
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, salt)


class Htpasswd:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.users: dict[str, str] = {}
        # bcrypt is slow on purpose; remember the credentials that already verified.
        self._ok: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        try:
            text = path.read_text()
        except OSError as e:
            raise InvalidArgument(f"cannot read htpasswd file {path}: {e.strerror}") from None
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep:
                raise InvalidArgument(f"{path}:{n}: not a user:hash line")
            if hashed.startswith(("$2y$", "$2b$", "$2a$")):
                if _crypt("probe", hashed) in (None, "", "*0", "*1"):
                    raise InvalidArgument(
                        f"{path}:{n}: this system's crypt(3) cannot verify bcrypt")
            elif not hashed.startswith("{SHA}"):
                raise InvalidArgument(
                    f"{path}:{n}: unsupported password hash for {user!r}: use bcrypt"
                    " (htpasswd -B)")
            self.users[user] = hashed

    def check(self, user: str, password: str) -> bool:
        hashed = self.users.get(user)
        if hashed is None:
            return False
        with self._lock:
            if (user, password) in self._ok:
                return True
        if hashed.startswith("{SHA}"):
            mine = "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
            ok = hmac.compare_digest(mine, hashed)
        else:
            ok = hmac.compare_digest(_crypt(password, hashed) or "", hashed)
        if ok:
            with self._lock:
                self._ok.add((user, password))
        return ok

    def check_header(self, header: str | None) -> str | None:
        """The user an `Authorization: Basic ...` header authenticates, or None."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user if self.check(user, password) else None
