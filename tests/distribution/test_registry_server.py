"""The registry server speaks the OCI Distribution Spec: uploads are verified, manifests
validated, tags paginated, errors in the spec's JSON shape."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.distribution.conftest import write_htpasswd


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def call(host: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    c = http.client.HTTPConnection(host, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        c.close()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(host: str, repo: str, data: bytes) -> str:
    r = call(host, "POST", f"/v2/{repo}/blobs/uploads/?digest={sha(data)}", data)
    assert r.status == 201, r.body
    return sha(data)


def push_image(host: str, repo: str, tag: str, config: bytes = b'{"os":"linux"}') -> str:
    layer = b"layer-bytes-" + tag.encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": push_blob(host, repo, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": push_blob(host, repo, layer), "size": len(layer)}],
    }).encode()
    r = call(host, "PUT", f"/v2/{repo}/manifests/{tag}", manifest,
             {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 201, r.body
    assert r.headers["docker-content-digest"] == sha(manifest)
    return sha(manifest)


def test_base_endpoint_announces_api_version(inproc_registry) -> None:
    reg = inproc_registry()
    r = call(reg.host, "GET", "/v2/")
    assert r.status == 200
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"


def test_upload_with_wrong_digest_is_rejected_and_nothing_stored(inproc_registry) -> None:
    reg = inproc_registry()
    data = b"hello registry"
    wrong = sha(b"something else")
    r = call(reg.host, "POST", "/v2/app/blobs/uploads/")
    assert r.status == 202
    r = call(reg.host, "PUT", r.headers["location"] + f"?digest={wrong}", data)
    assert r.status == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    # Monolithic POST too.
    r = call(reg.host, "POST", f"/v2/app/blobs/uploads/?digest={wrong}", data)
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    for d in (wrong, sha(data)):
        assert call(reg.host, "HEAD", f"/v2/app/blobs/{d}").status == 404
    blobs = reg.root / "blobs" / "sha256"
    assert list(blobs.rglob("*")) == []  # (an empty list for no directory at all)


def test_chunked_upload_assembles_patches_in_order(inproc_registry) -> None:
    reg = inproc_registry()
    parts = [b"a" * 1000, b"b" * 500, b"c" * 7]
    data = b"".join(parts)
    r = call(reg.host, "POST", "/v2/app/blobs/uploads/")
    loc, offset = r.headers["location"], 0
    for p in parts:
        r = call(reg.host, "PATCH", loc, p,
                 {"Content-Range": f"{offset}-{offset + len(p) - 1}",
                  "Content-Type": "application/octet-stream"})
        assert r.status == 202
        offset += len(p)
        assert r.headers["range"] == f"0-{offset - 1}"
        loc = r.headers["location"]
    # A chunk at the wrong offset is refused with 416.
    bad = call(reg.host, "PATCH", loc, b"x", {"Content-Range": "5-5"})
    assert bad.status == 416
    r = call(reg.host, "PUT", loc + f"?digest={sha(data)}")
    assert r.status == 201
    assert r.headers["docker-content-digest"] == sha(data)
    got = call(reg.host, "GET", f"/v2/app/blobs/{sha(data)}")
    assert got.body == data
    head = call(reg.host, "HEAD", f"/v2/app/blobs/{sha(data)}")
    assert head.headers["content-length"] == str(len(data))


def test_blobs_are_served_only_to_repositories_that_link_them(inproc_registry) -> None:
    reg = inproc_registry()
    d = push_blob(reg.host, "one", b"shared")
    assert call(reg.host, "HEAD", f"/v2/two/blobs/{d}").status == 404
    r = call(reg.host, "POST", f"/v2/two/blobs/uploads/?mount={d}&from=one")
    assert r.status == 201
    assert call(reg.host, "GET", f"/v2/two/blobs/{d}").body == b"shared"
    # A mount from a repository without the blob falls back to a new upload session.
    r = call(reg.host, "POST", f"/v2/three/blobs/uploads/?mount={d}&from=nowhere")
    assert r.status == 202


def test_manifest_referencing_unknown_blob_is_rejected(inproc_registry) -> None:
    reg = inproc_registry()
    config = b"{}"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": 2},
        "layers": []}).encode()
    r = call(reg.host, "PUT", "/v2/app/manifests/v1", manifest,
             {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 404
    assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    r = call(reg.host, "PUT", "/v2/app/manifests/v1", b"not json",
             {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.json()["errors"][0]["code"] == "MANIFEST_INVALID"


def test_manifests_by_tag_and_digest_index_and_delete(inproc_registry) -> None:
    reg = inproc_registry()
    digest = push_image(reg.host, "app", "v1")
    by_tag = call(reg.host, "GET", "/v2/app/manifests/v1")
    by_digest = call(reg.host, "GET", f"/v2/app/manifests/{digest}")
    assert by_tag.body == by_digest.body
    assert by_tag.headers["content-type"] == "application/vnd.oci.image.manifest.v1+json"
    assert by_tag.headers["docker-content-digest"] == digest

    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest, "size": len(by_tag.body),
                       "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    r = call(reg.host, "PUT", "/v2/app/manifests/multi", index,
             {"Content-Type": "application/vnd.docker.distribution.manifest.list.v2+json"})
    assert r.status == 201

    assert call(reg.host, "DELETE", f"/v2/app/manifests/{digest}").status == 202
    r = call(reg.host, "GET", f"/v2/app/manifests/{digest}")
    assert r.status == 404 and r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert call(reg.host, "GET", "/v2/app/manifests/v1").status == 404


def test_tags_list_paginates_with_link_header(inproc_registry) -> None:
    reg = inproc_registry()
    for tag in ("v3", "v1", "v5", "v2", "v4"):
        push_image(reg.host, "lib/app", tag)
    everything = call(reg.host, "GET", "/v2/lib/app/tags/list").json()
    assert everything == {"name": "lib/app", "tags": ["v1", "v2", "v3", "v4", "v5"]}
    seen, path = [], "/v2/lib/app/tags/list?n=2"
    while path:
        r = call(reg.host, "GET", path)
        page = r.json()["tags"]
        assert len(page) <= 2
        seen += page
        link = r.headers.get("link")
        path = link.split(">")[0].lstrip("<") if link else ""
    assert seen == ["v1", "v2", "v3", "v4", "v5"]
    assert call(reg.host, "GET", "/v2/lib/app/tags/list?n=2&last=v4").json()["tags"] == ["v5"]
    assert call(reg.host, "GET", "/v2/_catalog").json() == {"repositories": ["lib/app"]}
    missing = call(reg.host, "GET", "/v2/nothing/tags/list")
    assert missing.status == 404 and missing.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_invalid_repository_name_is_refused(inproc_registry) -> None:
    reg = inproc_registry()
    r = call(reg.host, "GET", "/v2/Bad_Name/tags/list")
    assert r.status == 400 and r.json()["errors"][0]["code"] == "NAME_INVALID"


@pytest.mark.parametrize("path", ["/v2/", "/v2/_catalog", "/v2/app/tags/list",
                                  "/v2/app/manifests/latest"])
def test_htpasswd_auth_is_enforced_on_every_endpoint(inproc_registry, tmp_path: Path,
                                                     path: str) -> None:
    reg = inproc_registry(write_htpasswd(tmp_path / "htpasswd", "alice", "s3cret"))
    r = call(reg.host, "GET", path)
    assert r.status == 401
    assert r.headers["www-authenticate"].startswith("Basic ")
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    wrong = base64.b64encode(b"alice:nope").decode()
    assert call(reg.host, "GET", path, headers={"Authorization": f"Basic {wrong}"}
                ).status == 401
    good = base64.b64encode(b"alice:s3cret").decode()
    assert call(reg.host, "GET", path, headers={"Authorization": f"Basic {good}"}
                ).status != 401


def _token(host: str, scope: str, user: bytes = b"carol:pw") -> str:
    basic = base64.b64encode(user).decode()
    r = call(host, "GET", f"/token?service=ketch-registry&scope={scope}",
             headers={"Authorization": f"Basic {basic}"})
    assert r.status == 200, r.body
    return r.json()["token"]


def test_bearer_tokens_grant_only_their_scope(inproc_registry, tmp_path: Path) -> None:
    reg = inproc_registry(write_htpasswd(tmp_path / "htpasswd", "carol", "pw"), auth="token")
    r = call(reg.host, "GET", "/v2/app/tags/list")
    assert r.status == 401
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="http://{reg.host}/token"')
    assert 'scope="repository:app:pull"' in challenge
    bad = base64.b64encode(b"carol:wrong").decode()
    assert call(reg.host, "GET", "/token?scope=repository:app:pull",
                headers={"Authorization": f"Basic {bad}"}).status == 401

    pull_only = {"Authorization": "Bearer " + _token(reg.host, "repository:app:pull")}
    assert call(reg.host, "POST", "/v2/app/blobs/uploads/", headers=pull_only).status == 401
    assert call(reg.host, "GET", "/v2/other/tags/list", headers=pull_only).status == 401
    push = {"Authorization": "Bearer " + _token(reg.host, "repository:app:pull,push")}
    assert call(reg.host, "POST", "/v2/app/blobs/uploads/", headers=push).status == 202
    forged = pull_only["Authorization"][:-4] + "AAAA"
    assert call(reg.host, "GET", "/v2/", headers={"Authorization": forged}).status == 401


def test_garbage_collect_removes_only_unreferenced_blobs(ketch, inproc_registry) -> None:
    reg = inproc_registry()
    push_image(reg.host, "app", "v1", config=b'{"os":"linux","v":1}')
    orphan = push_blob(reg.host, "app", b"never referenced")
    old = push_image(reg.host, "app", "v2", config=b'{"os":"linux","v":2}')
    push_image(reg.host, "app", "v2", config=b'{"os":"linux","v":3}')  # v2 moves on
    dry = ketch("registry", "garbage-collect", "--root", str(reg.root), "--dry-run").stdout
    assert f"blob eligible for deletion: {orphan}" in dry
    assert call(reg.host, "HEAD", f"/v2/app/blobs/{orphan}").status == 200
    out = ketch("registry", "garbage-collect", "--root", str(reg.root),
                "--delete-untagged").stdout
    assert f"deleted blob: {orphan}" in out
    assert f"deleted blob: {old}" in out
    assert call(reg.host, "HEAD", f"/v2/app/blobs/{orphan}").status == 404
    for tag in ("v1", "v2"):
        m = call(reg.host, "GET", f"/v2/app/manifests/{tag}")
        assert m.status == 200
        for d in [json.loads(m.body)["config"], *json.loads(m.body)["layers"]]:
            assert call(reg.host, "HEAD", f"/v2/app/blobs/{d['digest']}").status == 200


def test_referrers_lists_manifests_with_a_subject(inproc_registry) -> None:
    reg = inproc_registry()
    subject = push_image(reg.host, "app", "v1")
    size = len(call(reg.host, "GET", f"/v2/app/manifests/{subject}").body)
    empty = b"{}"
    sbom = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": push_blob(reg.host, "app", empty), "size": 2},
        "layers": [],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": subject, "size": size}}).encode()
    r = call(reg.host, "PUT", f"/v2/app/manifests/{sha(sbom)}", sbom,
             {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 201 and r.headers["oci-subject"] == subject
    found = call(reg.host, "GET", f"/v2/app/referrers/{subject}").json()
    assert [m["digest"] for m in found["manifests"]] == [sha(sbom)]
    assert found["manifests"][0]["artifactType"] == "application/spdx+json"
    filtered = call(reg.host, "GET",
                    f"/v2/app/referrers/{subject}?artifactType=application/other")
    assert filtered.json()["manifests"] == []
    assert filtered.headers["oci-filters-applied"] == "artifactType"
