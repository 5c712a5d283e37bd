"""`--security-opt`: what a user may ask for, and what ketch applies.

Docker splits the work in two and so does ketch. The client side (`client_security_opts`)
reads a `seccomp=FILE` profile and sends its compacted JSON instead of the path, so the
container keeps the profile it was created with even if the file changes or goes, and
turns `systempaths=unconfined` into empty MaskedPaths/ReadonlyPaths. The engine side
(`parse_security_opts`) validates every option at `create` (nothing is created when one
is wrong) and tells `start` what to put into config.json.

Accepted, as Docker accepts them (`key=value`, or the legacy `key:value`):
`seccomp=unconfined|builtin|<profile JSON>`, `no-new-privileges[=BOOL]`,
`label=disable`, `apparmor=unconfined`. ketch applies neither SELinux labels nor
AppArmor profiles (the machines it targets have neither enabled), so other `label=`
values and named AppArmor profiles are refused instead of being silently ignored.
"""

from __future__ import annotations

from ketch.errors import InvalidArgument, os_words
from ketch.values import value

SECCOMP_BUILTIN = "builtin"
SECCOMP_UNCONFINED = "unconfined"

_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@value
class SecurityOptions:
    """The container's resolved security options."""

    # "builtin" (Docker's default profile), "unconfined", or a profile as JSON text
    seccomp: str = SECCOMP_BUILTIN
    no_new_privileges: bool = False


def _split(opt: str) -> tuple[str, str, bool]:
    if "=" in opt:
        k, _, v = opt.partition("=")
        return k, v, True
    if ":" in opt:
        k, _, v = opt.partition(":")
        return k, v, True
    return opt, "", False


def client_security_opts(opts: list[str]) -> tuple[list[str], bool]:
    """What the docker CLI does before sending `--security-opt` values: check each has a
    value, replace a profile path by the profile's compacted JSON, and take out
    `systempaths=unconfined` (returned as the second item)."""
    out: list[str] = []
    unconfined_paths = False
    for opt in opts:
        if opt == "systempaths=unconfined":
            unconfined_paths = True
            continue
        k, v, ok = _split(opt)
        if k != "no-new-privileges" and (not ok or not v):
            raise InvalidArgument(f'invalid --security-opt: "{opt}"')
        if k == "seccomp" and v not in (SECCOMP_BUILTIN, SECCOMP_UNCONFINED):
            import json  # only for a profile file: json is not on create's usual path

            try:
                with open(v, "rb") as f:
                    data = f.read()
            except OSError as e:
                reason = os_words(e)
                raise InvalidArgument(
                    f"opening seccomp profile ({v}) failed: open {v}: {reason}") from None
            try:
                doc = json.loads(data)
            except ValueError as e:
                raise InvalidArgument(
                    f"compacting json for seccomp profile ({v}) failed: {e}") from None
            opt = "seccomp=" + json.dumps(doc, separators=(",", ":"))
        out.append(opt)
    return out, unconfined_paths


def _label(value_: str, opt: str) -> None:
    if value_ == "disable":
        return
    raise InvalidArgument(
        f'invalid --security-opt "{opt}": ketch applies no SELinux labels; only '
        "label=disable is accepted")


def _apparmor(value_: str, opt: str) -> None:
    if value_ == "unconfined":
        return
    raise InvalidArgument(
        f'invalid --security-opt "{opt}": ketch cannot apply the AppArmor profile '
        f'"{value_}"; only apparmor=unconfined is accepted')


def parse_security_opts(opts: list[str] | None) -> SecurityOptions:
    """Validate HostConfig.SecurityOpt (Docker's messages) → what to apply."""
    result = SecurityOptions()
    for opt in opts or []:
        if opt == "no-new-privileges":
            result.no_new_privileges = True
            continue
        if opt == "disable":  # the daemon's spelling of label=disable
            continue
        k, v, ok = _split(opt)
        if not ok:
            raise InvalidArgument(f'invalid --security-opt 1: "{opt}"')
        if k == "label":
            _label(v, opt)
        elif k == "apparmor":
            _apparmor(v, opt)
        elif k == "seccomp":
            if v not in (SECCOMP_BUILTIN, SECCOMP_UNCONFINED):
                _check_profile(v)
            result.seccomp = v
        elif k == "no-new-privileges":
            if v in _TRUE:
                result.no_new_privileges = True
            elif v in _FALSE:
                result.no_new_privileges = False
            else:
                raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
        else:
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
    return result


def _check_profile(text: str) -> None:
    """Convert once with the default capabilities, so a profile runc could not load is
    refused at create, not at every start."""
    from ketch.runtime.seccomp import load_profile, oci_seccomp
    from ketch.runtime.spec import DEFAULT_CAPABILITIES

    oci_seccomp(load_profile(text), DEFAULT_CAPABILITIES)
