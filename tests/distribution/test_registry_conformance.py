"""`ketch registry serve` against the causes of the OCI distribution-spec conformance
suite's failures, one test per cause, plus ambiguous manifests (the CVE-2021-41190
class), malformed request framing and the temp files of killed uploads.

Everything goes over HTTP on loopback to the real server process.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.distribution.conftest import Served, write_htpasswd

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        found = [v for k, v in self.headers if k.lower() == name.lower()]
        return found[-1] if found else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def code(self) -> str:
        return str(json.loads(self.body)["errors"][0]["code"])


def call(host: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    c = http.client.HTTPConnection(host, timeout=20)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return Reply(r.status, r.getheaders(), r.read())
    finally:
        c.close()


def digest_of(data: bytes, algo: str = "sha256") -> str:
    return f"{algo}:" + hashlib.new(algo, data).hexdigest()


def push_blob(host: str, repo: str, data: bytes, algo: str = "sha256",
              headers: dict[str, str] | None = None) -> str:
    d = digest_of(data, algo)
    r = call(host, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data, headers)
    assert r.status == 201, r.body
    assert r.header("Docker-Content-Digest") == d
    return d


def manifest_bytes(config: str, layers: list[tuple[str, int]], cfg_size: int = 2,
                   media_type: str | None = OCI_MANIFEST, **extra: object) -> bytes:
    doc: dict[str, object] = {"schemaVersion": 2}
    if media_type:
        doc["mediaType"] = media_type
    doc["config"] = {"mediaType": OCI_CONFIG, "digest": config, "size": cfg_size}
    doc["layers"] = [{"mediaType": OCI_LAYER, "digest": d, "size": n} for d, n in layers]
    doc.update(extra)
    return json.dumps(doc).encode()


@pytest.fixture
def reg(inproc_registry: Callable[..., Served]) -> Served:
    """The registry's server in this process (see inproc_registry); the test of a
    killed `registry serve` below starts the command."""
    return inproc_registry()


# -- ambiguous manifests (CVE-2021-41190) -----------------------------------------------------
MISSING = digest_of(b"never pushed")


@pytest.mark.parametrize("case", ["no-media-type-put-as-index", "index-type-with-layers",
                                  "index-type-with-config", "manifest-type-with-manifests"])
def test_ambiguous_manifest_is_refused_as_manifest_invalid(reg: Served, case: str) -> None:
    if case == "no-media-type-put-as-index":
        # The blobs do not exist: stored as an "index", the missing-blob check is skipped.
        body = manifest_bytes(MISSING, [(MISSING, 12)], media_type=None)
        ctype = OCI_INDEX
    elif case == "index-type-with-layers":
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
                           "layers": [{"mediaType": OCI_LAYER, "digest": MISSING,
                                       "size": 12}]}).encode()
        ctype = OCI_INDEX
    elif case == "index-type-with-config":
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
                           "config": {"mediaType": OCI_CONFIG, "digest": MISSING,
                                      "size": 2}}).encode()
        ctype = OCI_INDEX
    else:
        cfg = push_blob(reg.host, "app", b"{}")
        body = manifest_bytes(cfg, [], manifests=[])
        ctype = OCI_MANIFEST
    r = call(reg.host, "PUT", "/v2/app/manifests/v1", body, {"Content-Type": ctype})
    assert r.status == 400, r.body
    assert r.code() == "MANIFEST_INVALID"
    assert call(reg.host, "GET", "/v2/app/manifests/v1").status == 404
    assert call(reg.host, "GET", f"/v2/app/manifests/{digest_of(body)}").status == 404


def test_manifest_without_media_type_still_has_its_blobs_checked(reg: Served) -> None:
    body = manifest_bytes(MISSING, [(MISSING, 12)], media_type=None)
    for ctype in (OCI_MANIFEST, "application/json", ""):
        r = call(reg.host, "PUT", "/v2/app/manifests/v1", body,
                 {"Content-Type": ctype} if ctype else {})
        assert r.status == 404, (ctype, r.body)
        assert r.code() == "MANIFEST_BLOB_UNKNOWN"


# -- framing --------------------------------------------------------------------------------
def raw_exchange(host: str, request: bytes, replies: int = 1) -> list[tuple[int, bytes]]:
    """Send raw bytes and end the sending side; read up to `replies` responses (status,
    JSON body)."""
    h, port = host.rsplit(":", 1)
    with socket.create_connection((h, int(port)), timeout=20) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        f = s.makefile("rb")
        out = []
        for _ in range(replies):
            status_line = f.readline()
            if not status_line:
                break
            status = int(status_line.split()[1])
            length = 0
            while (line := f.readline()) not in (b"\r\n", b"\n", b""):
                k, _, v = line.decode().partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            out.append((status, f.read(length)))
        return out


@pytest.mark.parametrize("value", ["abc", "-5", "1e3", "12, 13"])
def test_invalid_content_length_gets_400_with_a_json_error(reg: Served, value: str) -> None:
    data = b"x" * 16
    req = (f"POST /v2/app/blobs/uploads/?digest={digest_of(data)} HTTP/1.1\r\n"
           f"Host: {reg.host}\r\nContent-Length: {value}\r\n\r\n").encode() + data
    replies = raw_exchange(reg.host, req)
    assert replies, "the server dropped the connection without an answer"
    status, body = replies[0]
    assert status == 400
    assert json.loads(body)["errors"][0]["code"] == "SIZE_INVALID"
    assert call(reg.host, "HEAD", f"/v2/app/blobs/{digest_of(data)}").status == 404
    assert call(reg.host, "GET", "/v2/").status == 200  # the server lives on


def test_invalid_chunk_size_gets_400_with_a_json_error(reg: Served) -> None:
    req = (f"POST /v2/app/blobs/uploads/?digest={digest_of(b'x')} HTTP/1.1\r\n"
           f"Host: {reg.host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n"
           ).encode()
    (status, body), = raw_exchange(reg.host, req)
    assert status == 400
    assert json.loads(body)["errors"][0]["code"] == "SIZE_INVALID"


def test_body_longer_than_its_content_length_gets_json_errors_only(reg: Served) -> None:
    data = b"y" * 64
    d = digest_of(data)
    # 40 of the 64 bytes belong to the request; the other 24 are not a request at all.
    req = (f"POST /v2/app/blobs/uploads/?digest={d} HTTP/1.1\r\n"
           f"Host: {reg.host}\r\nContent-Length: 40\r\n\r\n").encode() + data
    replies = raw_exchange(reg.host, req, replies=2)
    # The HTTP layer may answer the first request (DIGEST_INVALID: 40 bytes are not the
    # 64 the digest names) before it meets the garbage, or, when both arrive in one
    # read, answer only the garbage and close: either way, JSON errors only.
    assert replies, "the server dropped the connection without an answer"
    assert all(s == 400 for s, _ in replies), replies
    codes = [json.loads(b)["errors"][0]["code"] for _, b in replies]
    assert all(json.loads(b)["errors"][0]["message"] for _, b in replies)
    assert codes[-1] != "DIGEST_INVALID" and set(codes[:-1]) <= {"DIGEST_INVALID"}, codes
    assert call(reg.host, "HEAD", f"/v2/app/blobs/{d}").status == 404


# -- temp files of killed uploads ---------------------------------------------------------------
def _temp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".tmp-*"))


def test_garbage_collect_removes_temp_files_of_an_upload_cut_off_by_sigkill(
        ketch_registry: Callable[..., Served], ketch) -> None:
    reg = ketch_registry()
    assert reg.proc is not None
    data = os.urandom(4 << 20)
    h, port = reg.host.rsplit(":", 1)
    s = socket.create_connection((h, int(port)), timeout=20)
    try:
        s.sendall((f"POST /v2/app/blobs/uploads/?digest={digest_of(data)} HTTP/1.1\r\n"
                   f"Host: {reg.host}\r\nContent-Length: {len(data)}\r\n\r\n").encode())
        s.sendall(data[: 1 << 20])
        deadline = time.monotonic() + 10
        while not _temp_files(reg.root) and time.monotonic() < deadline:
            time.sleep(0.05)
        temps = _temp_files(reg.root)
        assert temps, "the upload left no temp file to test with"
        reg.proc.kill()  # SIGKILL, mid-body
        reg.proc.wait(10)
    finally:
        s.close()
    assert _temp_files(reg.root) == temps

    # Fresh: it might belong to a live upload of a server still running; it stays.
    out = ketch("registry", "garbage-collect", "--root", str(reg.root))
    assert out.returncode == 0
    assert _temp_files(reg.root) == temps
    from ketch.registry.storage import UPLOAD_TIMEOUT

    recent = time.time() - UPLOAD_TIMEOUT + 60
    for t in temps:
        os.utime(t, (recent, recent))
    ketch("registry", "garbage-collect", "--root", str(reg.root))
    assert _temp_files(reg.root) == temps
    old = time.time() - UPLOAD_TIMEOUT - 60
    for t in temps:
        os.utime(t, (old, old))
    dry = ketch("registry", "garbage-collect", "--root", str(reg.root), "--dry-run")
    assert _temp_files(reg.root) == temps, "--dry-run deleted something"
    assert "temp file eligible for deletion" in dry.stdout
    out = ketch("registry", "garbage-collect", "--root", str(reg.root))
    assert _temp_files(reg.root) == []
    assert "deleted temp file" in out.stdout


# -- conformance causes ------------------------------------------------------------------------
def test_sha512_digests_work_for_every_blob_and_manifest_operation(reg: Served) -> None:
    host = reg.host
    mono = os.urandom(3000)
    d_mono = push_blob(host, "app", mono, "sha512")  # monolithic POST
    assert call(host, "GET", f"/v2/app/blobs/{d_mono}").body == mono
    head = call(host, "HEAD", f"/v2/app/blobs/{d_mono}")
    assert head.status == 200 and head.header("Content-Length") == str(len(mono))
    assert head.header("Docker-Content-Digest") == d_mono

    chunked = os.urandom(5000)  # POST, PATCH, PATCH, PUT
    d_chunked = digest_of(chunked, "sha512")
    loc = call(host, "POST", "/v2/app/blobs/uploads/").header("Location")
    assert loc
    for start, end in ((0, 2000), (2000, 5000)):
        r = call(host, "PATCH", loc, chunked[start:end],
                 {"Content-Range": f"{start}-{end - 1}",
                  "Content-Type": "application/octet-stream"})
        assert r.status == 202, r.body
        loc = r.header("Location")
    r = call(host, "PUT", f"{loc}?digest={d_chunked}")
    assert r.status == 201, r.body
    assert r.header("Docker-Content-Digest") == d_chunked
    assert call(host, "GET", f"/v2/app/blobs/{d_chunked}").body == chunked

    lying = digest_of(b"something else", "sha512")
    r = call(host, "POST", f"/v2/app/blobs/uploads/?digest={lying}", mono)
    assert r.status == 400 and r.code() == "DIGEST_INVALID"

    r = call(host, "POST", f"/v2/other/blobs/uploads/?mount={d_mono}&from=app")
    assert r.status == 201, r.body
    assert call(host, "GET", f"/v2/other/blobs/{d_mono}").body == mono

    cfg = b"{}"
    d_cfg = push_blob(host, "app", cfg, "sha512")
    body = manifest_bytes(d_cfg, [(d_mono, len(mono)), (d_chunked, len(chunked))])
    d_man = digest_of(body, "sha512")
    r = call(host, "PUT", f"/v2/app/manifests/{d_man}", body, {"Content-Type": OCI_MANIFEST})
    assert r.status == 201, r.body
    assert r.header("Docker-Content-Digest") == d_man
    got = call(host, "GET", f"/v2/app/manifests/{d_man}")
    assert got.status == 200 and got.body == body
    assert got.header("Docker-Content-Digest") == d_man
    assert call(host, "HEAD", f"/v2/app/manifests/{d_man}").status == 200
    wrong = call(host, "PUT", f"/v2/app/manifests/{digest_of(b'x', 'sha512')}", body,
                 {"Content-Type": OCI_MANIFEST})
    assert wrong.status == 400 and wrong.code() == "DIGEST_INVALID"

    assert call(host, "DELETE", f"/v2/app/manifests/{d_man}").status == 202
    assert call(host, "GET", f"/v2/app/manifests/{d_man}").status == 404
    assert call(host, "DELETE", f"/v2/app/blobs/{d_mono}").status == 202
    assert call(host, "GET", f"/v2/app/blobs/{d_mono}").status == 404
    assert call(host, "GET", f"/v2/other/blobs/{d_mono}").status == 200
    unknown = call(host, "GET", f"/v2/app/blobs/sha384:{'a' * 96}")
    assert unknown.status in (400, 404) and unknown.code() in ("DIGEST_INVALID", "UNSUPPORTED")


def test_final_put_whose_content_range_does_not_continue_the_upload_gets_416(
        reg: Served) -> None:
    host = reg.host
    data = os.urandom(3000)
    loc = call(host, "POST", "/v2/app/blobs/uploads/").header("Location")
    assert loc
    r = call(host, "PATCH", loc, data[:1000], {"Content-Range": "0-999"})
    assert r.status == 202
    loc = r.header("Location")
    bad = call(host, "PUT", f"{loc}?digest={digest_of(data)}", data[2000:],
               {"Content-Range": "2000-2999", "Content-Type": "application/octet-stream"})
    assert bad.status == 416, bad.body
    assert bad.code() == "RANGE_INVALID"
    # the upload survives a 416: its offset is unchanged, and it can still be finished
    status = call(host, "GET", loc)
    assert status.status == 204 and status.header("Range") == "0-999"
    garbled = call(host, "PATCH", loc, data[1000:2000], {"Content-Range": "bytes=oops"})
    assert garbled.status == 416
    good = call(host, "PUT", f"{loc}?digest={digest_of(data)}", data[1000:],
                {"Content-Range": "1000-2999", "Content-Type": "application/octet-stream"})
    assert good.status == 201, good.body
    assert call(host, "GET", f"/v2/app/blobs/{digest_of(data)}").body == data


def test_suffix_range_returns_the_last_bytes_of_a_blob(reg: Served) -> None:
    data = os.urandom(2000)
    d = push_blob(reg.host, "app", data)
    r = call(reg.host, "GET", f"/v2/app/blobs/{d}", headers={"Range": "bytes=-500"})
    assert r.status == 206
    assert r.body == data[-500:]
    assert r.header("Content-Range") == "bytes 1500-1999/2000"
    whole = call(reg.host, "GET", f"/v2/app/blobs/{d}", headers={"Range": "bytes=-5000"})
    assert whole.status == 206 and whole.body == data
    assert whole.header("Content-Range") == "bytes 0-1999/2000"
    none = call(reg.host, "GET", f"/v2/app/blobs/{d}", headers={"Range": "bytes=-0"})
    assert none.status == 416
    assert none.header("Content-Range") == "bytes */2000"
    head = call(reg.host, "GET", f"/v2/app/blobs/{d}", headers={"Range": "bytes=100-199"})
    assert head.status == 206 and head.body == data[100:200]


def _token(host: str, scopes: list[str]) -> dict[str, str]:
    basic = base64.b64encode(b"carol:pw").decode()
    query = "&".join(f"scope={s}" for s in scopes)
    r = call(host, "GET", f"/token?service=ketch-registry&{query}",
             headers={"Authorization": f"Basic {basic}"})
    assert r.status == 200, r.body
    return {"Authorization": "Bearer " + json.loads(r.body)["token"]}


def test_mount_with_a_token_lacking_pull_on_the_source_gets_a_401_challenge(
        inproc_registry: Callable[..., Served], tmp_path: Path) -> None:
    reg = inproc_registry(write_htpasswd(tmp_path / "htpasswd", "carol", "pw"), auth="token")
    assert call(reg.host, "GET", "/v2/").status == 401
    data = os.urandom(1000)
    src = _token(reg.host, ["repository:src:pull,push"])
    d = push_blob(reg.host, "src", data, headers=src)

    push_only = _token(reg.host, ["repository:app:pull,push"])
    r = call(reg.host, "POST", f"/v2/app/blobs/uploads/?mount={d}&from=src",
             headers=push_only)
    assert r.status == 401, (r.status, r.header("Location"))
    assert r.code() == "UNAUTHORIZED"
    challenge = r.header("WWW-Authenticate") or ""
    assert challenge.startswith("Bearer ")
    scope = challenge.split('scope="', 1)[1].split('"', 1)[0].split()
    assert "repository:src:pull" in scope
    assert any(s.startswith("repository:app:") and "push" in s for s in scope)
    # no upload was started (an empty list for no directory at all)
    assert list((reg.root / "repositories" / "app" / "_uploads").glob("*")) == []
    assert call(reg.host, "HEAD", f"/v2/app/blobs/{d}", headers=push_only).status == 404

    both = _token(reg.host, ["repository:app:pull,push", "repository:src:pull"])
    r = call(reg.host, "POST", f"/v2/app/blobs/uploads/?mount={d}&from=src", headers=both)
    assert r.status == 201, r.body
    assert call(reg.host, "GET", f"/v2/app/blobs/{d}", headers=both).body == data


def test_manifest_put_by_digest_with_tag_parameters_applies_the_tags(reg: Served) -> None:
    cfg = push_blob(reg.host, "app", b"{}")
    layer = push_blob(reg.host, "app", b"layer")
    body = manifest_bytes(cfg, [(layer, 5)])
    d = digest_of(body)
    r = call(reg.host, "PUT", f"/v2/app/manifests/{d}?tag=v1&tag=stable", body,
             {"Content-Type": OCI_MANIFEST})
    assert r.status == 201, r.body
    assert sorted(r.all("OCI-Tag")) == ["stable", "v1"]
    for tag in ("v1", "stable"):
        got = call(reg.host, "GET", f"/v2/app/manifests/{tag}")
        assert got.status == 200 and got.header("Docker-Content-Digest") == d
    assert json.loads(call(reg.host, "GET", "/v2/app/tags/list").body)["tags"] == [
        "stable", "v1"]
    bad = call(reg.host, "PUT", f"/v2/app/manifests/{d}?tag=-nope", body,
               {"Content-Type": OCI_MANIFEST})
    assert bad.status == 400 and bad.code() == "TAG_INVALID"
    assert json.loads(call(reg.host, "GET", "/v2/app/tags/list").body)["tags"] == [
        "stable", "v1"]


# -- the client side with sha512 ------------------------------------------------------------------
def test_pull_by_a_sha512_manifest_digest_verifies_it(reg: Served, ketch) -> None:
    from tests.images.archives import files_tar

    layer = files_tar({"hello": b"sha512 world"})
    diff = digest_of(layer)
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [diff]},
                      "config": {}}).encode()
    d_cfg = push_blob(reg.host, "app", cfg)
    push_blob(reg.host, "app", layer)
    body = manifest_bytes(d_cfg, [(diff, len(layer))], cfg_size=len(cfg))
    d512 = digest_of(body, "sha512")
    assert call(reg.host, "PUT", f"/v2/app/manifests/{d512}", body,
                {"Content-Type": OCI_MANIFEST}).status == 201
    proc = ketch("pull", f"{reg.host}/app@{d512}")
    assert f"Digest: {d512}" in proc.stdout
    assert ketch("image", "inspect", "-f", "{{.Id}}", f"{reg.host}/app@{d512}"
                 ).stdout.strip() == digest_of(cfg)


def test_pull_of_an_image_with_sha512_layers_fails_with_one_line(reg: Served, ketch) -> None:
    layer = b"not even a tar"
    d_layer = push_blob(reg.host, "app", layer, "sha512")
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]},
                      "config": {}}).encode()
    d_cfg = push_blob(reg.host, "app", cfg, "sha512")
    body = manifest_bytes(d_cfg, [(d_layer, len(layer))], cfg_size=len(cfg))
    assert call(reg.host, "PUT", "/v2/app/manifests/v1", body,
                {"Content-Type": OCI_MANIFEST}).status == 201
    proc = ketch("pull", f"{reg.host}/app:v1", check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "sha512" in lines[0], proc.stderr
    assert ketch("images", "-aq").stdout == ""
