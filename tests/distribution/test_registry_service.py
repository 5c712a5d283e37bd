"""`ketch registry serve` as a service: the optional conformance workflows (upload
cancel, sparse indexes), many clients at once with bounded memory, bcrypt logins that
do not hold up other clients, and a clean stop on SIGTERM.

Everything goes over HTTP on loopback to the real server process.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.distribution.conftest import Served, write_htpasswd
from tests.distribution.test_registry_conformance import (
    OCI_INDEX,
    OCI_MANIFEST,
    call,
    digest_of,
    manifest_bytes,
    push_blob,
)


def _index(children: list[str]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": 100,
         "platform": {"architecture": "arm64", "os": "linux"}} for d in children]}).encode()


def _rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def test_cancelled_upload_answers_204_then_is_unknown(ketch_registry) -> None:
    reg: Served = ketch_registry()
    start = call(reg.host, "POST", "/v2/app/blobs/uploads/")
    assert start.status == 202
    loc = start.header("Location")
    assert loc
    assert call(reg.host, "PATCH", loc, b"some bytes").status == 202
    gone = call(reg.host, "DELETE", loc)
    assert gone.status == 204, gone.body
    for method, body in (("GET", None), ("PATCH", b"more"), ("DELETE", None)):
        r = call(reg.host, method, loc, body)
        assert r.status == 404, (method, r.status)
        assert r.code() == "BLOB_UPLOAD_UNKNOWN"
    uploads = reg.root / "repositories" / "app" / "_uploads"
    assert list(uploads.glob("*")) == []


def test_index_naming_absent_manifests_needs_the_sparse_switch(ketch_registry) -> None:
    absent = digest_of(b"a manifest this registry never saw")
    body = _index([absent])
    strict = ketch_registry()
    r = call(strict.host, "PUT", "/v2/app/manifests/multi", body, {"Content-Type": OCI_INDEX})
    assert r.status == 404 and r.code() == "MANIFEST_BLOB_UNKNOWN"

    sparse = ketch_registry(extra=("--sparse-indexes",))
    r = call(sparse.host, "PUT", "/v2/app/manifests/multi", body, {"Content-Type": OCI_INDEX})
    assert r.status == 201, r.body
    got = call(sparse.host, "GET", "/v2/app/manifests/multi")
    assert got.status == 200 and got.body == body
    assert got.header("Content-Type") == OCI_INDEX
    # sparse only waives the children's presence, not the shape checks
    bad = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                      "manifests": [{"digest": "sha256:nothex", "size": 1}]}).encode()
    r = call(sparse.host, "PUT", "/v2/app/manifests/bad", bad, {"Content-Type": OCI_INDEX})
    assert r.status == 400


def test_manifest_put_with_sixty_long_tag_parameters_applies_them_all(ketch_registry) -> None:
    reg: Served = ketch_registry()
    cfg = push_blob(reg.host, "app", b"{}")
    layer = push_blob(reg.host, "app", b"layer")
    body = manifest_bytes(cfg, [(layer, 5)])
    tags = [f"t{i:03d}" + "x" * 120 for i in range(60)]  # a request line of ~8 KiB
    query = "&".join(f"tag={t}" for t in tags)
    r = call(reg.host, "PUT", f"/v2/app/manifests/{digest_of(body)}?{query}", body,
             {"Content-Type": OCI_MANIFEST})
    assert r.status == 201, r.body
    assert sorted(r.all("OCI-Tag")) == tags
    listed = json.loads(call(reg.host, "GET", "/v2/app/tags/list").body)["tags"]
    assert listed == tags


CLIENTS = 50
BLOB = 4 << 20  # 50 x 4 MiB in flight: 200 MiB that must not sit in the server's memory
RSS_BOUND_KIB = 128 << 10  # measured 78 MiB (23 MiB idle)


def _client_round(host: str, n: int) -> str:
    """Push one image by chunked upload (two PATCHes) and read everything back."""
    data = hashlib.shake_256(f"client-{n}".encode()).digest(BLOB)
    d = digest_of(data)
    start = call(host, "POST", f"/v2/load{n}/blobs/uploads/")
    assert start.status == 202, start.body
    loc = start.header("Location")
    half = BLOB // 2
    for a, b in ((0, half), (half, BLOB)):
        r = call(host, "PATCH", loc or "", data[a:b], {"Content-Range": f"{a}-{b - 1}"})
        assert r.status == 202, r.body
        loc = r.header("Location")
    r = call(host, "PUT", f"{loc}?digest={d}")
    assert r.status == 201, r.body
    cfg = push_blob(host, f"load{n}", json.dumps({"n": n}).encode())
    body = manifest_bytes(cfg, [(d, BLOB)], cfg_size=len(json.dumps({"n": n})))
    r = call(host, "PUT", f"/v2/load{n}/manifests/v1", body, {"Content-Type": OCI_MANIFEST})
    assert r.status == 201, r.body
    got = call(host, "GET", f"/v2/load{n}/manifests/v1")
    assert got.status == 200 and got.body == body
    blob = call(host, "GET", f"/v2/load{n}/blobs/{d}")
    assert blob.status == 200 and hashlib.sha256(blob.body).hexdigest() == d[7:]
    return d


def test_fifty_clients_push_and_pull_at_once_with_bounded_server_memory(
        ketch_registry) -> None:
    reg: Served = ketch_registry()
    assert reg.proc is not None
    barrier = threading.Barrier(CLIENTS)

    def client(n: int) -> str:
        barrier.wait(60)  # all connect at once: the listen backlog must hold them
        return _client_round(reg.host, n)

    with ThreadPoolExecutor(CLIENTS) as pool:
        digests = list(pool.map(client, range(CLIENTS)))
    assert len(set(digests)) == CLIENTS
    catalog = json.loads(call(reg.host, "GET", "/v2/_catalog").body)["repositories"]
    assert sorted(catalog) == sorted(f"load{n}" for n in range(CLIENTS))
    peak = _rss_peak_kib(reg.proc.pid)
    assert peak < RSS_BOUND_KIB, f"server peak RSS {peak >> 10} MiB"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()
                                                          ).decode()}


def test_wrong_passwords_of_one_client_do_not_hold_up_a_logged_in_client(
        ketch_registry, tmp_path: Path) -> None:
    # at a cost that makes each wrong password a quarter of a second of bcrypt
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "alice", "right", cost=12)
    # `htpasswd -B` writes $2y$; the registry reads it like $2b$.
    htpasswd.write_text(htpasswd.read_text().replace("$2b$", "$2y$"))
    reg: Served = ketch_registry(htpasswd)
    good = _basic("alice", "right")
    assert call(reg.host, "GET", "/v2/", headers=good).status == 200  # verified once

    order: list[str] = []
    lock = threading.Lock()
    started = threading.Barrier(3)

    def bad(i: int) -> int:
        started.wait(30)
        r = call(reg.host, "GET", "/v2/", headers=_basic("alice", f"wrong{i}"))
        with lock:
            order.append(f"bad{i}")
        return r.status

    def fine() -> int:
        started.wait(30)
        # the wrong passwords are on their way to bcrypt (a quarter second each and
        # more); the logged-in client's request must not queue behind them
        statuses = [call(reg.host, "GET", "/v2/", headers=good).status for _ in range(5)]
        with lock:
            order.append("good")
        return max(statuses)

    with ThreadPoolExecutor(3) as pool:
        bads = [pool.submit(bad, i) for i in range(2)]
        ok = pool.submit(fine)
        assert ok.result() == 200
        assert [b.result() for b in bads] == [401, 401]
    assert order[0] == "good", order

    # Past the failure limit a client is turned away before any bcrypt work... (on a
    # registry of its own whose hash is cheap: what is tested is the limit, and the
    # failures up to it would otherwise cost bcrypt ~2 s of CPU at cost 12)
    reg = ketch_registry(write_htpasswd(tmp_path / "htpasswd-cheap", "alice", "right",
                                        cost=4))
    assert call(reg.host, "GET", "/v2/", headers=good).status == 200  # verified once
    statuses = [call(reg.host, "GET", "/v2/", headers=_basic("alice", f"x{i}")).status
                for i in range(12)]
    assert statuses[-1] == 429, statuses
    limited = call(reg.host, "GET", "/v2/", headers=_basic("alice", "x99"))
    assert limited.status == 429 and limited.code() == "TOOMANYREQUESTS"
    assert int(limited.header("Retry-After") or 0) > 0
    # ...while credentials that verified keep working.
    assert call(reg.host, "GET", "/v2/", headers=good).status == 200


def test_sigterm_stops_the_server_cleanly(ketch_registry) -> None:
    reg: Served = ketch_registry()
    assert reg.proc is not None
    assert call(reg.host, "GET", "/v2/").status == 200
    reg.proc.send_signal(signal.SIGTERM)
    assert reg.proc.wait(20) == 0
    h, port = reg.host.rsplit(":", 1)
    c = http.client.HTTPConnection(h, int(port), timeout=5)
    try:
        c.request("GET", "/v2/")
        raise AssertionError("the server still answers after SIGTERM")
    except OSError:
        pass
    finally:
        c.close()




def test_a_listen_address_that_is_not_one_is_a_one_line_error(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import ketch_command

    for addr, error in (("127.0.0.1:99999", "invalid listen address '127.0.0.1:99999': the"
                                            " port must be 0-65535"),
                        ("127.0.0.1:x", "invalid listen address '127.0.0.1:x'")):
        r = subprocess.run([*ketch_command(), "registry", "serve", "--addr", addr, "--root",
                            str(tmp_path / "reg")], capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stderr) == (1, f"Error: {error}\n")


def test_servers_import_aiohttp_without_loading_ca_certificates_and_keep_tls_intact(
        tmp_path: Path) -> None:
    """The servers' aiohttp import (ketch.registry.aiohttp_import) skips the CA bundle
    that aiohttp's unused client contexts would load, and leaves TLS in the rest of the
    process as it was: the caller's SSL_CERT_FILE is back, a new context loads its CAs."""
    import subprocess
    import sys

    import certifi

    code = ("import os, ssl, aiohttp_probe\n"
            "from ketch.registry.aiohttp_import import import_aiohttp\n"
            "import_aiohttp()\n"
            "import aiohttp.connector as c\n"
            "print(c._SSL_CONTEXT_VERIFIED.cert_store_stats()['x509_ca'],"
            " os.environ.get('SSL_CERT_FILE') == aiohttp_probe.BUNDLE,"
            " ssl.create_default_context().cert_store_stats()['x509_ca'] > 100)\n")
    (tmp_path / "aiohttp_probe.py").write_text(f"BUNDLE = {certifi.where()!r}\n")
    import ketch

    src = str(Path(ketch.__file__).parents[1])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "SSL_CERT_FILE": certifi.where(),
                            "PYTHONPATH": f"{src}:{tmp_path}"}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "True", "True"]
