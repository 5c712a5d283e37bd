"""Image reference grammar and Docker Hub normalisation.

The tables are taken from distribution/reference's own tests (reference_test.go,
normalize_test.go, regexp_test.go), so ketch accepts and rejects exactly what docker does.
"""

from __future__ import annotations

import pytest

from ketch.errors import InvalidArgument, InvalidReference
from ketch.reference import (
    HUB_AUTH_KEY,
    Reference,
    is_full_image_id,
    is_valid_tag,
    looks_like_id_prefix,
    parse,
    registry_for_auth,
)
from ketch.reference import familiar as familiar_of

F64 = "f" * 64
SHA = "sha256:" + F64
REAL_DIGEST = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"

# input -> (domain, path, tag, digest), parsed with default_tag=None so the table shows
# exactly what the input said.
VALID = [
    ("test_com", "docker.io", "library/test_com", None, None),
    ("test.com:tag", "docker.io", "library/test.com", "tag", None),
    ("test.com:5000", "docker.io", "library/test.com", "5000", None),
    ("test.com/repo:tag", "test.com", "repo", "tag", None),
    ("test:5000/repo", "test:5000", "repo", None, None),
    ("test:5000/repo:tag", "test:5000", "repo", "tag", None),
    ("test:5000/repo@" + SHA, "test:5000", "repo", None, SHA),
    ("test:5000/repo:tag@" + SHA, "test:5000", "repo", "tag", SHA),
    ("lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", None),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", None, None),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux",
     "some-long-tag", None),
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io",
     "test.example.com/my-app", "test.example.com", None),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None),
    ("xn--7o8h.com/myimage:xn--7o8h.com@sha512:" + "f" * 128, "xn--7o8h.com", "myimage",
     "xn--7o8h.com", "sha512:" + "f" * 128),
    ("foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", None),
    ("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", "8080", None),
    ("192.168.1.1", "docker.io", "library/192.168.1.1", None, None),
    ("192.168.1.1:tag", "docker.io", "library/192.168.1.1", "tag", None),
    ("192.168.1.1/repo", "192.168.1.1", "repo", None, None),
    ("192.168.1.1:5000/repo", "192.168.1.1:5000", "repo", None, None),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", None),
    ("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", "tag", None),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "repo", None, None),
    ("[2001:db8::1]:5000/repo:tag@" + SHA, "[2001:db8::1]:5000", "repo", "tag", SHA),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", None, None),
    ("[::1]:5000/repo", "[::1]:5000", "repo", None, None),
    ("localhost/app", "localhost", "app", None, None),
    ("localhost:8080/name@" + SHA, "localhost:8080", "name", None, SHA),
    ("localhost:8080@" + SHA, "docker.io", "library/localhost", "8080", SHA),
    ("docker/docker", "docker.io", "docker/docker", None, None),
    ("docker.io/debian", "docker.io", "library/debian", None, None),
    ("index.docker.io/docker/docker", "docker.io", "docker/docker", None, None),
    ("index.docker.io/debian", "docker.io", "library/debian", None, None),
    ("docker-rules/docker", "docker.io", "docker-rules/docker", None, None),
    ("docker---rules/docker", "docker.io", "docker---rules/docker", None, None),
    ("dock__er/docker", "docker.io", "dock__er/docker", None, None),
    ("d/docker", "docker.io", "d/docker", None, None),
    ("jess/t", "docker.io", "jess/t", None, None),
    ("registry.io/foo/project--id.module--name.ver---sion--name", "registry.io",
     "foo/project--id.module--name.ver---sion--name", None, None),
    ("example.com/some_separator__underscore/myimage", "example.com",
     "some_separator__underscore/myimage", None, None),
    ("Asdf.com/foo/bar", "Asdf.com", "foo/bar", None, None),
    ("Docker/docker", "Docker", "docker", None, None),
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io",
     "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", None, None),
    ("docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", "docker.io",
     "library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", None, None),
    ("a/" * 127 + "a:tag-puts-this-over-max", "docker.io", "a/" * 127 + "a",
     "tag-puts-this-over-max", None),
]  # fmt: skip

INVALID = [
    "",
    ":justtag",
    "@" + SHA,
    "repo@sha256:" + "f" * 34,
    "validname@invaliddigest:" + F64,
    "Uppercase:tag",
    "test:5000/Uppercase/lowercase:tag",
    "a/" * 128 + "a:tag",
    "aa/asdf$$^/aa",
    "[2001:db8::1]",
    "[2001:db8::1]:5000",
    "[2001:db8::1]:tag",
    "[fe80::1%eth0]:5000/repo",
    "[fe80::1%@invalidzone]:5000/repo",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "fc00::1:5000/debian",
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "-docker/docker",
    "-docker.io/docker/docker",
    "docker-/docker",
    "-docker-/docker",
    "docker///docker",
    "docker.io/docker///docker",
    "____/____",
    "_docker/_docker",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "docker/",
    "example.com/__underscore/myimage",
    "example.com/..dots/myimage",
    "example.com/.dots/myimage",
    "registry.com:8080/myapp:invalid~tag",
    "registry.com:8080/myapp@sha256:badbadbadbad",
    "registry.com:8080/myapp@bad",
    "localhost:http/name@" + SHA,
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "repo@sha256:" + "F" * 64,
    "repo:" + "t" * 129,
]


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest"), VALID)
def test_valid_reference_parses_to_domain_path_tag_and_digest(
    text: str, domain: str, path: str, tag: str | None, digest: str | None
) -> None:
    assert parse(text, default_tag=None) == Reference(domain, path, tag, digest)


@pytest.mark.parametrize("text", INVALID)
def test_invalid_reference_is_rejected(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse(text)


def test_invalid_reference_is_an_invalid_argument_for_the_front_doors() -> None:
    with pytest.raises(InvalidArgument):
        parse("-bad")


@pytest.mark.parametrize(
    ("text", "full"),
    [
        ("node", "docker.io/library/node:latest"),
        ("node:18-alpine", "docker.io/library/node:18-alpine"),
        ("user/app", "docker.io/user/app:latest"),
        ("docker.io/node", "docker.io/library/node:latest"),
        ("index.docker.io/library/node:18", "docker.io/library/node:18"),
        ("index.docker.io/user/app", "docker.io/user/app:latest"),
        ("library/foo/bar", "docker.io/library/foo/bar:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("ghcr.io/org/tool:v1", "ghcr.io/org/tool:v1"),
        ("redis@" + REAL_DIGEST, "docker.io/library/redis@" + REAL_DIGEST),
        ("busybox:latest@" + REAL_DIGEST, "docker.io/library/busybox:latest@" + REAL_DIGEST),
    ],
)
def test_parse_normalises_like_docker(text: str, full: str) -> None:
    assert str(parse(text)) == full


def test_default_tag_is_added_only_to_a_bare_name() -> None:
    assert parse("node").tag == "latest"
    assert parse("node", default_tag=None).tag is None
    assert parse("node", default_tag="lts").tag == "lts"
    # A digest pins the image already; docker does not invent a tag next to it.
    assert parse("node@" + REAL_DIGEST).tag is None


def test_repository_is_the_full_name_without_tag_or_digest() -> None:
    assert parse("node:18").repository == "docker.io/library/node"
    assert parse("localhost:5000/a/b@" + SHA).repository == "localhost:5000/a/b"


# FamiliarName cases from distribution/reference's TestParseRepositoryInfo.
@pytest.mark.parametrize(
    ("text", "familiar_name", "path", "domain"),
    [
        ("fooo/bar", "fooo/bar", "fooo/bar", "docker.io"),
        ("index.docker.io/fooo/bar", "fooo/bar", "fooo/bar", "docker.io"),
        ("library/ubuntu", "ubuntu", "library/ubuntu", "docker.io"),
        ("ubuntu", "ubuntu", "library/ubuntu", "docker.io"),
        ("docker.io/library/ubuntu", "ubuntu", "library/ubuntu", "docker.io"),
        ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io"),
        ("other/library", "other/library", "other/library", "docker.io"),
        ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase",
         "private/moonbase", "127.0.0.1:8000"),
        ("example.com/privatebase", "example.com/privatebase", "privatebase", "example.com"),
        ("ubuntu-12.04-base", "ubuntu-12.04-base", "library/ubuntu-12.04-base", "docker.io"),
        ("docker.io/foo", "foo", "library/foo", "docker.io"),
        ("library/foo/bar", "library/foo/bar", "library/foo/bar", "docker.io"),
        ("store/foo/bar", "store/foo/bar", "store/foo/bar", "docker.io"),
        ("Foo/bar", "Foo/bar", "bar", "Foo"),
        ("FOO/bar", "FOO/bar", "bar", "FOO"),
    ],
)  # fmt: skip
def test_familiar_name_drops_docker_io_and_library_as_docker_prints_it(
    text: str, familiar_name: str, path: str, domain: str
) -> None:
    ref = parse(text)
    assert ref.familiar_name == familiar_name
    assert ref.path == path
    assert ref.domain == domain


@pytest.mark.parametrize(
    ("text", "familiar"),
    [
        ("node", "node:latest"),
        ("docker.io/user/app:1.0", "user/app:1.0"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("busybox:latest@" + REAL_DIGEST, "busybox:latest@" + REAL_DIGEST),
        ("docker.io/library/redis@" + REAL_DIGEST, "redis@" + REAL_DIGEST),
    ],
)
def test_familiar_string_is_what_docker_shows(text: str, familiar: str) -> None:
    assert parse(text).familiar() == familiar
    # the string form listings use on stored (normalised) names says the same
    assert familiar_of(str(parse(text))) == familiar


def test_familiar_form_parses_back_to_the_same_reference() -> None:
    for text in ("node", "user/app:2", "localhost:5000/app@" + SHA, "[::1]:5000/x:y"):
        ref = parse(text)
        assert parse(ref.familiar()) == ref


def test_uppercase_repository_gets_dockers_message() -> None:
    with pytest.raises(InvalidReference) as e:
        parse("Foo")
    assert str(e.value) == (
        "invalid reference format: repository name (library/Foo) must be lowercase"
    )


def test_uppercase_path_under_a_registry_names_the_offending_path() -> None:
    with pytest.raises(InvalidReference) as e:
        parse("test:5000/Uppercase/lowercase:tag")
    assert str(e.value) == (
        "invalid reference format: repository name (Uppercase/lowercase) must be lowercase"
    )


def test_bare_64_hex_is_refused_as_a_name_because_it_is_an_image_id() -> None:
    ident = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
    with pytest.raises(InvalidReference) as e:
        parse(ident)
    assert str(e.value) == (
        f"invalid repository name ({ident}), cannot specify 64-byte hexadecimal strings"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid reference format"),
        ("aa/asdf$$^/aa", "invalid reference format"),
        ("repo@sha256:" + "f" * 34, "invalid checksum digest length"),
        ("repo@sha256:" + "F" * 64, "invalid checksum digest format"),
        ("validname@invaliddigest:" + F64, "unsupported digest algorithm"),
        ("a/" * 128 + "a:tag", "repository name must not be more than 255 characters"),
    ],
)
def test_error_messages_are_distribution_references(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as e:
        parse(text)
    assert str(e.value) == message


def test_name_length_limit_counts_the_path_not_the_registry() -> None:
    # 255 characters of path are allowed even behind a long registry host name.
    path = "a/" * 127 + "a"
    assert parse("registry.example.com:5000/" + path).path == path
    with pytest.raises(InvalidReference):
        parse("registry.example.com:5000/" + path + "a")


def test_digest_must_have_the_algorithms_length_of_lower_hex() -> None:
    assert parse("x@sha384:" + "a" * 96).digest == "sha384:" + "a" * 96
    with pytest.raises(InvalidReference):
        parse("x@sha512:" + "a" * 64)


def test_with_tag_keeps_the_digest_and_validates_the_tag() -> None:
    ref = parse("test.com:8000/foo@" + SHA)
    assert str(ref.with_tag("TAG5")) == "test.com:8000/foo:TAG5@" + SHA
    assert str(parse("foo").with_tag("tag2")) == "docker.io/library/foo:tag2"
    with pytest.raises(InvalidReference):
        parse("busybox").with_tag("-foo")


def test_with_digest_keeps_the_tag_and_validates_the_digest() -> None:
    assert str(parse("foo:1").with_digest(SHA)) == "docker.io/library/foo:1@" + SHA
    with pytest.raises(InvalidReference):
        parse("busybox").with_digest("foo")
    with pytest.raises(InvalidReference):
        parse("busybox").with_digest("sha256:abc")


def test_reference_is_immutable_and_hashable() -> None:
    ref = parse("node")
    assert {ref: 1}[parse("docker.io/library/node:latest")] == 1
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("tag", "ok"),
    [("latest", True), ("v1.2.3-rc_1", True), ("_x", True), ("-x", False), (".x", False),
     ("t" * 128, True), ("t" * 129, False), ("é", False), ("a b", False)],
)  # fmt: skip
def test_tag_grammar(tag: str, ok: bool) -> None:
    assert is_valid_tag(tag) is ok


@pytest.mark.parametrize(
    ("text", "full"),
    [
        (F64, True),
        ("sha256:" + F64, True),
        ("F" * 64, False),
        ("f" * 63, False),
        ("f" * 65, False),
        ("sha512:" + F64, False),
        ("node", False),
    ],
)
def test_full_image_id(text: str, full: bool) -> None:
    assert is_full_image_id(text) is full


@pytest.mark.parametrize(
    ("text", "looks"),
    [
        ("abcd", True),
        ("dbcc1", True),
        ("sha256:abcd", True),
        (F64, True),
        ("abc", False),  # too short to be taken for an ID, as in moby
        ("f" * 65, False),
        ("ABCD", False),
        ("node", False),
        ("sha256:", False),
    ],
)
def test_id_prefix_detection(text: str, looks: bool) -> None:
    assert looks_like_id_prefix(text) is looks


def test_id_prefix_minimum_length_is_adjustable_for_containers() -> None:
    assert looks_like_id_prefix("ab", min_length=1)


@pytest.mark.parametrize(
    ("registry", "key"),
    [
        ("docker.io", HUB_AUTH_KEY),
        ("index.docker.io", HUB_AUTH_KEY),
        ("registry-1.docker.io", HUB_AUTH_KEY),
        ("https://index.docker.io/v1/", HUB_AUTH_KEY),
        ("localhost:5000", "localhost:5000"),
        ("https://ghcr.io", "ghcr.io"),
        ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
    ],
)
def test_registry_for_auth_uses_config_json_keys(registry: str, key: str) -> None:
    assert registry_for_auth(registry) == key


def test_registry_for_auth_of_a_reference_uses_its_domain() -> None:
    assert HUB_AUTH_KEY == "https://index.docker.io/v1/"
    assert registry_for_auth(parse("node")) == HUB_AUTH_KEY
    assert registry_for_auth(parse("localhost:5000/app")) == "localhost:5000"
