"""htpasswd basic authentication, as `htpasswd -B` (Apache's apache2-utils) writes it.

bcrypt entries ($2y$/$2b$/$2a$) are verified with the `bcrypt` package, which releases
the GIL while it hashes; `{SHA}` entries are accepted too. Other schemes (MD5 `$apr1$`,
plain text) are refused when the file is loaded, with the line that uses them.

bcrypt is slow on purpose (a quarter of a second and more per check), so the server
never runs it on its event loop: `Authenticator` verifies in a small thread pool of its
own, remembers credentials that verified (by a hash of them, never the password), and
turns away a client whose recent failures passed a limit before spending any bcrypt
time on it, so one client guessing passwords cannot slow down everybody else.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ketch.errors import InvalidArgument

# Failed checks a client may have in FAILURE_WINDOW seconds before it is refused
# (429) without a check until the window has passed.
MAX_FAILURES = 10
FAILURE_WINDOW = 60.0
# Verified credentials remembered (least recently used ones go first).
CACHE_SIZE = 1024
# Threads that run bcrypt: enough for a few logins at once, few enough that guessing
# clients cannot take the cores from the requests that move data.
BCRYPT_THREADS = 2


def _bcrypt_ok(password: str, hashed: str) -> bool:
    import bcrypt

    try:
        return bool(bcrypt.checkpw(password.encode(), hashed.encode()))
    except ValueError:  # a malformed hash: no password matches it
        return False


class Htpasswd:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.users: dict[str, str] = {}
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
                try:
                    import bcrypt  # noqa: F401
                except ImportError:
                    raise InvalidArgument(f"{path}:{n}: bcrypt entries need the Python"
                                          " package 'bcrypt' (pip install bcrypt)") from None
            elif not hashed.startswith("{SHA}"):
                raise InvalidArgument(
                    f"{path}:{n}: unsupported password hash for {user!r}: use bcrypt"
                    " (htpasswd -B)")
            self.users[user] = hashed

    def check(self, user: str, password: str) -> bool:
        """Whether the password is the user's (slow for bcrypt entries: no cache here)."""
        hashed = self.users.get(user)
        if hashed is None:
            return False
        if hashed.startswith("{SHA}"):
            mine = "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
            return hmac.compare_digest(mine, hashed)
        return _bcrypt_ok(password, hashed)


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header, or None."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip(),
                                               validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class TooManyFailures(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed logins")
        self.retry_after = retry_after


class Authenticator:
    """Checks basic credentials for an asyncio server without blocking its loop."""

    def __init__(self, htpasswd: Htpasswd) -> None:
        self.htpasswd = htpasswd
        self._pool = ThreadPoolExecutor(max_workers=BCRYPT_THREADS,
                                        thread_name_prefix="registry-bcrypt")
        self._verified: OrderedDict[bytes, str] = OrderedDict()
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _key(self, user: str, password: str) -> bytes:
        # The cache holds no password: a hash of the pair and of the entry it matched.
        entry = self.htpasswd.users.get(user, "")
        return hashlib.sha256(f"{user}\0{password}\0{entry}".encode()).digest()

    def _recent_failures(self, client: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(client, []) if now - t < FAILURE_WINDOW]
        if times:
            self._failures[client] = times
        else:
            self._failures.pop(client, None)
        return times

    async def user(self, header: str | None, client: str) -> str | None:
        """The user that the header authenticates, or None. Raises TooManyFailures for
        a client that failed too often lately (before any bcrypt work)."""
        creds = parse_basic(header)
        if creds is None:
            return None
        key = self._key(*creds)
        with self._lock:
            if key in self._verified:
                self._verified.move_to_end(key)
                return self._verified[key]
            now = time.monotonic()
            failures = self._recent_failures(client, now)
            if len(failures) >= MAX_FAILURES:
                raise TooManyFailures(int(FAILURE_WINDOW - (now - failures[0])) + 1)
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._pool, self.htpasswd.check, *creds)
        with self._lock:
            if ok:
                self._verified[key] = creds[0]
                while len(self._verified) > CACHE_SIZE:
                    self._verified.popitem(last=False)
                return creds[0]
            self._failures.setdefault(client, []).append(time.monotonic())
            if len(self._failures) > 4 * CACHE_SIZE:  # forget the quiet clients
                now = time.monotonic()
                for c in list(self._failures):
                    self._recent_failures(c, now)
        return None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
