"""Metadata instructions applied to an image config: `import --change`, `commit --change`
and the builder's CMD/ENV/LABEL/... steps share this one implementation."""

from __future__ import annotations

from ketch.errors import InvalidArgument

TYPE_CHECKING = False  # `typing` costs milliseconds at start; a cached build loads this
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

CHANGE_INSTRUCTIONS = {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL",
                       "USER", "VOLUME", "WORKDIR"}

DEFAULT_SHELL = ["/bin/sh", "-c"]


def _identity(s: str) -> str:
    return s


def normalize_port(p: str) -> str:
    p = p.strip()
    port, _, proto = p.partition("/")
    proto = (proto or "tcp").lower()
    lo, _, hi = port.partition("-")
    try:
        a = int(lo)
        b = int(hi) if hi else a
    except ValueError:
        raise InvalidArgument(f"invalid containerPort: {port}") from None
    if not (0 < a <= 65535 and 0 < b <= 65535 and a <= b) or proto not in ("tcp", "udp",
                                                                             "sctp"):
        raise InvalidArgument(f"invalid port specification: {p!r}")
    return f"{port}/{proto}"


def apply_instruction(config: dict[str, Any], instr: Any,
                      expand: Callable[[str], str] = _identity, *,
                      cmd_set: bool = False) -> None:
    """Apply one parsed metadata instruction (ketch.dockerfile.parser.Instruction) to `config`.

    `cmd_set` says whether the same build stage already set CMD: ENTRYPOINT clears an
    inherited CMD but keeps one the Dockerfile gave before it (moby's cmdSet).
    """
    c = config.setdefault("config", {})
    cmd = instr.cmd.upper()
    args: list[str] = list(instr.args)
    if cmd in ("CMD", "ENTRYPOINT"):
        if instr.json_form:
            value = args
        else:
            value = list(c.get("Shell") or DEFAULT_SHELL) + [args[0] if args else ""]
        if cmd == "CMD":
            c["Cmd"] = value
        else:
            c["Entrypoint"] = value
            if not cmd_set:
                c["Cmd"] = None  # ENTRYPOINT resets an inherited CMD, as Docker does
        if not instr.json_form:
            c["ArgsEscaped"] = True
    elif cmd == "ENV":
        env = list(c.get("Env") or [])
        for k, v in zip(args[::2], args[1::2], strict=True):
            k, v = expand(k), expand(v)
            env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
        c["Env"] = env
    elif cmd == "LABEL":
        labels = dict(c.get("Labels") or {})
        for k, v in zip(args[::2], args[1::2], strict=True):
            labels[expand(k)] = expand(v)
        # Go marshals maps with sorted keys; so does Docker's image config.
        c["Labels"] = dict(sorted(labels.items()))
    elif cmd == "EXPOSE":
        from ketch.dockerfile.parser import parse_port_spec

        ports = dict(c.get("ExposedPorts") or {})
        for a in args:
            for word in expand(a).split():
                # `8000-8002/udp` exposes three ports, `80` is 80/tcp (nat.ParsePortSpecs)
                for p in parse_port_spec(word):
                    ports[p] = {}
        c["ExposedPorts"] = dict(sorted(ports.items()))
    elif cmd == "USER":
        c["User"] = expand(args[0])
    elif cmd == "WORKDIR":
        import posixpath

        wd = expand(args[0])
        if not wd.startswith("/"):
            wd = posixpath.join(c.get("WorkingDir") or "/", wd)
        c["WorkingDir"] = posixpath.normpath(wd)
    elif cmd == "VOLUME":
        vols = dict(c.get("Volumes") or {})
        for a in args:
            v = expand(a)
            if not v:
                raise InvalidArgument("VOLUME specified can not be an empty string")
            vols[v] = {}
        c["Volumes"] = dict(sorted(vols.items()))
    elif cmd == "STOPSIGNAL":
        sig = expand(args[0])
        _check_signal(sig)
        c["StopSignal"] = sig
    elif cmd == "ONBUILD":
        c["OnBuild"] = list(c.get("OnBuild") or []) + [args[0]]
    elif cmd == "SHELL":
        c["Shell"] = args
    elif cmd == "HEALTHCHECK":
        c["Healthcheck"] = healthcheck_config(instr)
    elif cmd == "MAINTAINER":
        config["author"] = args[0] if args else ""
    else:
        raise InvalidArgument(f"{cmd} is not a metadata instruction")


def _check_signal(sig: str) -> None:
    import signal

    name = sig.upper()
    if name.isdigit():
        if not 0 < int(name) < 65:
            raise InvalidArgument(f"Invalid signal: {sig}")
        return
    name = name if name.startswith("SIG") else "SIG" + name
    if not hasattr(signal, name) and not name.startswith("SIGRTM"):
        raise InvalidArgument(f"Invalid signal: {sig}")


def healthcheck_config(instr: Any) -> dict[str, Any]:
    from ketch.fmt.units import parse_duration

    args = list(instr.args)
    if args and args[0].upper() == "NONE":
        return {"Test": ["NONE"]}
    hc: dict[str, Any] = {}
    test_args = args[1:] if args and args[0].upper() == "CMD" else args
    if getattr(instr, "json_form", False) or len(test_args) > 1:
        hc["Test"] = ["CMD"] + test_args
    else:
        hc["Test"] = ["CMD-SHELL"] + test_args
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        v = instr.flags.get(flag)
        if v:
            hc[key] = int(parse_duration(str(v)) * 1e9)
    if instr.flags.get("retries"):
        hc["Retries"] = int(str(instr.flags["retries"]))
    return hc


def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> None:
    """`--change 'CMD ["x"]'`: each change is one Dockerfile metadata instruction."""
    if not changes:
        return
    from ketch.dockerfile.parser import parse

    for change in changes:
        word = change.strip().split(None, 1)[0].upper() if change.strip() else ""
        if word not in CHANGE_INSTRUCTIONS:
            raise InvalidArgument(
                f"{word or change!r} is not a valid change command: use one of "
                + ", ".join(sorted(CHANGE_INSTRUCTIONS)))
        df = parse("FROM scratch\n" + change + "\n")
        env = {}
        for e in (config.get("config") or {}).get("Env") or []:
            k, _, v = e.partition("=")
            env[k] = v

        def expand(s: str, env: dict[str, str] = env) -> str:
            from ketch.dockerfile.shell import expand as shell_expand

            return shell_expand(s, env)

        apply_instruction(config, df.stages[0].instructions[0], expand)
