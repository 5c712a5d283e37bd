"""Image references: the `[host[:port]/]path[:tag][@algo:hex]` grammar and Docker Hub names.

This module owns the one definition of what an image name is. It follows
distribution/reference (the package the docker CLI and moby vendor) rule for rule, so a
name that docker accepts parses here to the same domain, path, tag and digest, and a
name docker rejects fails here with the same message.

Everything is normalised on the way in: `node` becomes `docker.io/library/node:latest`,
and `familiar()` gives back the short form docker prints.
"""

from __future__ import annotations

from ketch.errors import InvalidReference
from ketch.ids import LOWER_HEX, is_full_id, is_id_prefix
from ketch.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

DEFAULT_DOMAIN = "docker.io"
# The Hub's original name. Users still type it, and credentials for the Hub are stored
# under its v1 URL, so it stays a synonym of docker.io.
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
# The key docker's config.json (and credential helpers) use for Docker Hub.
HUB_AUTH_KEY = "https://index.docker.io/v1/"
# Names that all mean Docker Hub when given to `login` or found in an auth lookup.
_HUB_HOSTNAMES = frozenset({DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, "registry-1.docker.io"})

# distribution/reference limits the path (domain excluded) since v0.6; the domain used to
# count too, which made long names valid or not depending on the registry's host name.
NAME_TOTAL_LENGTH_MAX = 255

def familiar(name: str) -> str:
    """The short form docker prints of a normalised name (`docker.io/library/node:1` ->
    `node:1`, `docker.io/user/app` -> `user/app`, other registries unchanged).

    Names stored by ketch went through `parse`, so plain string surgery is exact and
    spares listings a regex parse per tag.
    """
    prefix = DEFAULT_DOMAIN + "/"
    if not name.startswith(prefix):
        return name
    rest = name[len(prefix) :]
    if rest.startswith(OFFICIAL_REPO_PREFIX):
        short = rest[len(OFFICIAL_REPO_PREFIX) :]
        # "library/a/b" is a user namespace called library, not an official image.
        if "/" not in short.split("@", 1)[0].split(":", 1)[0]:
            return short
    return rest


# --- the grammar, built from the same pieces as distribution/reference's regexp.go ------
_ALPHANUMERIC = r"[a-z0-9]+"
# One period, one or two underscores, or any number of dashes: dashes may repeat so that
# host-like names ("a--b") stay valid; underscores may not, to keep names readable.
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
# Bracketed IPv6 only; zone identifiers ("%eth0") and embedded IPv4 are deliberately out.
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6 + r")"
_DOMAIN_AND_PORT = _HOST + r"(?::[0-9]+)?"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"

# Compiled on first use: most commands name images the fast path below takes whole, and
# compiling the full grammar costs milliseconds at start-up. `ascii`: Go's \w is
# [0-9A-Za-z_]; Python's would also admit non-ASCII letters in tags.
_PATTERNS: dict[str, tuple[str, bool]] = {
    "reference": (r"^(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?$", True),
    "anchored_name": (r"^(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")$", False),
    "anchored_digest": (r"^" + _DIGEST + r"$", False),
}
_compiled: dict[str, re.Pattern[str]] = {}


def _rx(name: str) -> re.Pattern[str]:
    pattern = _compiled.get(name)
    if pattern is None:
        import re

        source, ascii_only = _PATTERNS[name]
        pattern = _compiled[name] = re.compile(source, re.ASCII if ascii_only else 0)
    return pattern


_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _is_tag(tag: str) -> bool:
    # [\w][\w.-]{0,127} with Go's ASCII \w
    return (0 < len(tag) <= 128 and tag[0] not in ".-" and _TAG_CHARS.issuperset(tag))


def _is_path_component(c: str) -> bool:
    # [a-z0-9]+ joined by one "." , "_" or "__", or any run of "-"
    if not c or c[0] not in _LOWER_ALNUM or c[-1] not in _LOWER_ALNUM:
        return False
    i, n = 0, len(c)
    while i < n:
        ch = c[i]
        if ch in _LOWER_ALNUM:
            i += 1
            continue
        if ch == ".":
            i += 1
        elif ch == "_":
            i += 2 if c.startswith("__", i) else 1
        elif ch == "-":
            while i < n and c[i] == "-":
                i += 1
        else:
            return False
        if i >= n or c[i] not in _LOWER_ALNUM:
            return False
    return True


# Algorithms go-digest registers in the docker CLI, with their hex length.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}

# The messages are distribution/reference's and go-digest's, so users see what docker says.
ERR_INVALID_FORMAT = "invalid reference format"
ERR_TAG_INVALID_FORMAT = "invalid tag format"
ERR_NAME_EMPTY = "repository name must have at least one component"
ERR_NAME_CONTAINS_UPPERCASE = "repository name must be lowercase"
ERR_NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
ERR_DIGEST_INVALID_FORMAT = "invalid checksum digest format"
ERR_DIGEST_INVALID_LENGTH = "invalid checksum digest length"
ERR_DIGEST_UNSUPPORTED = "unsupported digest algorithm"


@value(frozen=True)
class Reference:
    """A normalised image reference: domain and path always set, tag and digest optional."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The full repository name without tag or digest: `docker.io/library/node`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The repository as docker shows it: `node`, `user/app`, `localhost:5000/app`."""
        return familiar(self.repository)

    def familiar(self) -> str:
        """The short form docker prints: `node:latest`, `user/app@sha256:...`."""
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        """The same repository with `tag`; a digest, if any, is kept (as WithTag does)."""
        if not _is_tag(tag):
            raise InvalidReference(tag, ERR_TAG_INVALID_FORMAT)
        return Reference(self.domain, self.path, tag, self.digest)

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to `digest`; a tag, if any, is kept."""
        _validate_digest(digest)
        return Reference(self.domain, self.path, self.tag, digest)

    def _suffix(self) -> str:
        out = ""
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    def __str__(self) -> str:
        return self.repository + self._suffix()


def parse(s: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse a name as the docker CLI does and return it normalised.

    This is ParseNormalizedNamed followed by TagNameOnly: a reference with neither tag
    nor digest gets `default_tag` (pass None to keep it bare). Raises InvalidReference
    with docker's message when `s` is not a valid image name.
    """
    if "/" not in s and "@" not in s:
        # The common shape, `name` or `name:tag` on Docker Hub, checked without the
        # full grammar (same rules: one lower-case path component, a valid tag).
        name, colon, tag = s.partition(":")
        if (_is_path_component(name) and (not colon or _is_tag(tag))
                and len(name) + len(OFFICIAL_REPO_PREFIX) <= NAME_TOTAL_LENGTH_MAX
                and not is_full_id(name)):
            if not colon:
                tag = default_tag  # type: ignore[assignment]  # a None default tag is checked on the next line
                if tag is not None and not _is_tag(tag):
                    raise InvalidReference(tag, ERR_TAG_INVALID_FORMAT)
            return Reference(DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name, tag or None, None)
    if is_full_id(s):
        # A bare 64-hex string is an image ID; letting it through as a name would make
        # `docker run <id>` ambiguous.
        raise InvalidReference(
            s,
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings",
        )
    domain, remainder = _split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReference(
            s, f"invalid reference format: repository name ({remote}) must be lowercase"
        )
    ref = _parse_canonical(domain + "/" + remainder, original=s)
    if default_tag is not None and ref.tag is None and ref.digest is None:
        if not _is_tag(default_tag):
            raise InvalidReference(default_tag, ERR_TAG_INVALID_FORMAT)
        ref = Reference(ref.domain, ref.path, default_tag, None)
    return ref


def _split_docker_domain(name: str) -> tuple[str, str]:
    """Decide whether the first component of `name` is a registry host.

    Mirrors splitDockerDomain: only a component with "." or ":" or the word localhost is
    a host (so "user/app" is a Hub namespace), and Hub names get the "library/" prefix.
    """
    first, sep, rest = name.partition("/")
    if not sep:
        # A single element ("ubuntu", "ubuntu:22.04") is always an official Hub image;
        # it must not be read as "host:port".
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if first == "localhost":
        domain, remote = first, rest
    elif first == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, rest
    elif "." in first or ":" in first:
        domain, remote = first, rest
    elif first.lower() != first:
        # Namespaces are lower-case, so an upper-case first element can only be a host.
        domain, remote = first, rest
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def _is_domain(domain: str) -> bool:
    # _DOMAIN_AND_PORT without the bracketed IPv6 form (that one goes to the regex)
    host, colon, port = domain.partition(":")
    if colon and not (port.isascii() and port.isdigit()):
        return False
    return all(c and c[0] != "-" and c[-1] != "-" and _HOST_CHARS.issuperset(c)
               for c in host.split("."))


def _parse_plain(s: str) -> Reference | None:
    """`host[:port]/path[:tag][@digest]` checked by hand, component by component, by
    the grammar's own rules; None for anything else (the regex then decides, and gives
    the error). A registry name would otherwise compile the full grammar, milliseconds
    of a re-pull."""
    name, at, digest = s.partition("@")
    if at:
        algorithm, _, encoded = digest.partition(":")
        if (len(encoded) != _DIGEST_HEX_LENGTH.get(algorithm, -1)
                or not LOWER_HEX.issuperset(encoded)):
            return None
    domain, _, rest = name.partition("/")
    path, colon, tag = rest.partition(":")
    if colon and not _is_tag(tag):
        return None
    if (not _is_domain(domain) or len(path) > NAME_TOTAL_LENGTH_MAX
            or not all(_is_path_component(c) for c in path.split("/"))):
        return None
    return Reference(domain, path, tag if colon else None, digest if at else None)


def _parse_canonical(s: str, *, original: str) -> Reference:
    """distribution/reference's Parse, for a string that already carries its domain."""
    if not s:
        raise InvalidReference(original, ERR_NAME_EMPTY)
    plain = _parse_plain(s)
    if plain is not None:
        return plain
    m = _rx("reference").match(s)
    if m is None:
        lowered = s.lower()
        if lowered != s and _rx("reference").match(lowered):
            raise InvalidReference(original, ERR_NAME_CONTAINS_UPPERCASE)
        raise InvalidReference(original, ERR_INVALID_FORMAT)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    nm = _rx("anchored_name").match(name)
    if nm is None or nm.group(1) is None:
        # Callers always prepend a domain, so this means the input had none that parses.
        raise InvalidReference(original, ERR_INVALID_FORMAT)
    domain, path = nm.group(1), nm.group(2)
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(original, ERR_NAME_TOO_LONG)
    if digest is not None:
        _validate_digest(digest, original=original)
    return Reference(domain, path, tag, digest)


def _validate_digest(digest: str, *, original: str | None = None) -> None:
    """go-digest's Parse: a registered algorithm and exactly its length of lower hex."""
    name = digest if original is None else original
    algorithm, sep, encoded = digest.partition(":")
    if not sep or not algorithm or not encoded:
        raise InvalidReference(name, ERR_DIGEST_INVALID_FORMAT)
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        if not _rx("anchored_digest").match(digest):
            raise InvalidReference(name, ERR_DIGEST_INVALID_FORMAT)
        raise InvalidReference(name, ERR_DIGEST_UNSUPPORTED)
    if len(encoded) != length:
        raise InvalidReference(name, ERR_DIGEST_INVALID_LENGTH)
    if not LOWER_HEX.issuperset(encoded):
        raise InvalidReference(name, ERR_DIGEST_INVALID_FORMAT)


def is_valid_tag(tag: str) -> bool:
    """True if `tag` may follow a ":" in a reference."""
    return _is_tag(tag)


def is_full_image_id(s: str) -> bool:
    """True for a complete image ID: 64 lower-case hex, bare or with "sha256:"."""
    return is_full_id(s[7:] if s.startswith("sha256:") else s)


def looks_like_id_prefix(s: str, *, min_length: int = 4) -> bool:
    """True if `s` could be a (possibly shortened) image ID.

    Same test as moby's image lookup (`^(sha256:)?[a-f0-9]{4,64}$`). Such a string may
    also be a valid name ("cafe", "dbcc1"): engines look the name up first and fall back
    to the ID prefix, which is why this is a "looks like", not a decision.
    """
    return is_id_prefix(s[7:] if s.startswith("sha256:") else s, min_length=min_length)


def registry_for_auth(ref: Reference | str) -> str:
    """The key under which credentials for `ref`'s registry live in docker's config.json.

    Docker Hub is stored under its historical v1 URL; every other registry under its
    host[:port]. A string is read as a registry address as given to `docker login`
    (scheme and path are ignored), not as an image name.
    """
    if isinstance(ref, Reference):
        host = ref.domain
    else:
        host = ref.strip()
        for scheme in ("https://", "http://"):
            if host.startswith(scheme):
                host = host[len(scheme) :]
                break
        host = host.split("/", 1)[0]
    if host in _HUB_HOSTNAMES:
        return HUB_AUTH_KEY
    return host
