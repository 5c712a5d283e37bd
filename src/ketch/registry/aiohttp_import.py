"""aiohttp, imported for ketch's servers without the TLS client set-up it does on import.

Importing aiohttp makes two TLS client contexts (aiohttp.connector's defaults for its
HTTP client), each loading the system's CA bundle: about 40 ms of CPU at every start of
`ketch registry serve` and of the CRI server on a 2-core host like the project's
(`import aiohttp.web`: 158-180 ms of CPU with the bundle, 123-133 ms without). ketch
runs aiohttp's server only and never its client, the one user of those contexts. So the
servers' entry points import aiohttp here first, with OpenSSL's CA file pointed at
nothing for the import's duration: OpenSSL reads SSL_CERT_FILE each time a context
loads its default locations and passes over a file it cannot read. The caller's own
setting is put back at once, so every TLS context made afterwards in the process (an
image pull, a token fetch) loads the CA bundle as usual. (Here in the registry package,
the one server package both front doors may import; the CRI server uses it too.)
"""

from __future__ import annotations

import os
import sys

_NOWHERE = "/nonexistent/ketch-aiohttp-import"


def import_aiohttp() -> None:
    """Import aiohttp's server (once per process; a no-op when it is loaded already)."""
    if "aiohttp" in sys.modules:
        return
    before = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = _NOWHERE
    try:
        import aiohttp.web  # noqa: F401 (the import is the point)
    finally:
        if before is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = before
