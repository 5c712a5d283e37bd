"""Every error a user can meet, with the exit code the CLI maps it to.

Front doors map these in one place each: the CLI to an exit code and a one-line message,
the API server to an HTTP status and {"message": ...}.
"""

from __future__ import annotations


class KetchError(Exception):
    """An error with a message meant for the user."""

    exit_code: int = 1
    http_status: int = 500
    # True when exit_code was chosen for this error (126/127 from a failed start) and
    # must not be replaced by the command's generic failure code (125 for `run`).
    exit_code_is_specific: bool = False
    # True when the message is printed as it is, without "Error: ": what the docker CLI
    # checks itself ("template parsing error: ...", "open FILE: ...", argument counts)
    bare: bool = False

    def __init__(self, message: str, *, bare: bool = False) -> None:
        super().__init__(message)
        self.message = message
        if bare:
            self.bare = True

    def __str__(self) -> str:
        return self.message


class NotFound(KetchError):
    http_status = 404


class ImageNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No such image: {name}")


class ContainerNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No such container: {name}")


class Unauthorized(KetchError):
    http_status = 401


class Conflict(KetchError):
    http_status = 409


class InvalidArgument(KetchError):
    http_status = 400


class Forbidden(KetchError):
    """Refused for what the object is, whatever the request says: a pre-defined
    network, one with containers still on it (Docker answers 403 there)."""

    http_status = 403


class InvalidReference(InvalidArgument):
    def __init__(self, name: str = "", detail: str = "invalid reference format") -> None:
        super().__init__(detail)
        self.name = name


class AmbiguousID(InvalidArgument):
    def __init__(self, prefix: str, kind: str = "image") -> None:
        super().__init__(
            f"{kind} ID prefix {prefix!r} is ambiguous: give more characters of the ID"
        )


class DigestMismatch(KetchError):
    http_status = 400


class UnsafeArchive(InvalidArgument):
    """A tar entry would land outside the directory it is extracted into."""


class RuntimeFailure(KetchError):
    """The OCI runtime (runc/crun) or the container monitor failed."""


class BuildError(KetchError):
    """A build step failed. `code` is a RUN's non-zero exit status, which the classic
    builder hands on (dockerd's JSON error carries it and docker build exits with it);
    1 for any other failure."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def os_words(e: OSError) -> str:
    """An OSError's reason as Go's syscall errors print it ("no such file or
    directory"), for the messages that quote dockerd's or the docker CLI's."""
    return (e.strerror or str(e)).lower()
