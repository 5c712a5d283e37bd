"""`create`: a new container record from an image and Docker's Config and HostConfig,
every setting checked first with Docker's messages (nothing is made when one is refused),
and the image reserved in the same transaction that writes the record."""

from __future__ import annotations

import os
import time

from ketch.containers.names import valid_name
from ketch.containers.records import ContainerRecord
from ketch.errors import ImageNotFound, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.containers.service import ContainerService


def merge_image_config(config: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """Fill a container Config from its image config, by Docker's rules."""
    c = dict(config)
    ic = image.get("config") or {}
    if c.get("Entrypoint") == [""]:
        # docker's --entrypoint "": no entrypoint at all, and the image's Cmd (an
        # argument list for the entrypoint being dropped) is not taken either
        c["Entrypoint"] = None
    elif not c.get("Entrypoint"):
        if not c.get("Cmd"):
            c["Cmd"] = ic.get("Cmd")
        if c.get("Entrypoint") is None:
            c["Entrypoint"] = ic.get("Entrypoint")
    env: dict[str, str] = {}
    order: list[str] = []
    for e in list(ic.get("Env") or []) + list(c.get("Env") or []):
        k, _, v = e.partition("=")
        if k not in env:
            order.append(k)
        env[k] = v
    # as dockerd: the image's and the user's variables only; a process without a PATH
    # gets the default one when it starts (runtime.spec.process_env), not the record
    c["Env"] = [f"{k}={env[k]}" for k in order]
    for key in ("WorkingDir", "User", "StopSignal"):
        if not c.get(key) and ic.get(key):
            c[key] = ic[key]
    for key in ("ExposedPorts", "Labels", "Volumes"):
        merged = dict(ic.get(key) or {})
        merged.update(c.get(key) or {})
        c[key] = merged or None
    if c.get("Healthcheck") or ic.get("Healthcheck"):
        from ketch.containers.health import merge

        c["Healthcheck"] = merge(c.get("Healthcheck"), ic.get("Healthcheck"))
    return c


def create(svc: ContainerService, config: dict[str, Any],
           host_config: dict[str, Any] | None = None, *, name: str | None = None,
           networking_config: dict[str, Any] | None = None,
           warnings: list[str] | None = None,
           platform: str | None = None, pod: str | None = None) -> ContainerRecord:
    """A new container in state "created". Docker's create warnings (settings this
    host cannot apply and drops) are appended to `warnings`. `pod`: the container
    joins that pod's namespaces (ketch.pods)."""
    host_config = dict(host_config or {})
    for key in ("_Pod", "_PodInfra"):  # set by ketch.pods only, never by a client
        host_config.pop(key, None)
    if pod:
        svc.engine.pods.join(pod, config, host_config)
    from ketch.containers.hostconfig import validate

    validate(config, host_config)
    from ketch.containers.restart import validate as validate_restart

    validate_restart(host_config)  # before the image, as the daemon checks it
    from ketch.containers.logconfig import resolve

    host_config["LogConfig"] = resolve(host_config, svc.engine.root_dir)
    warnings = [] if warnings is None else warnings
    image_name = config.get("Image") or ""
    if not image_name:
        raise InvalidArgument("no image given: the first argument must be an image name")
    try:
        img = svc.engine.images.resolve(image_name)
    except ImageNotFound:
        raise ImageNotFound(image_name) from None
    cfg = svc.engine.images.get_config(img)
    icfg = cfg.raw
    if platform:
        from ketch.oci.model import Platform

        # Docker uses a local image only when it is of the platform asked for;
        # otherwise the image is "not found" and the caller pulls that platform.
        if not Platform.parse(platform).matches(Platform.from_json(icfg)):
            raise ImageNotFound(image_name)
    merged = merge_image_config(config, icfg)
    if not merged.get("Cmd") and not merged.get("Entrypoint"):
        raise InvalidArgument("no command specified")
    if name is not None:
        if not valid_name(name):
            raise InvalidArgument(
                f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are'
                " allowed")
        name = name.lstrip("/")
    from ketch.oci.digest import chain_ids

    # ensure_unpacked reads the config and manifest again: only when a layer is missing
    chains = chain_ids(cfg.diff_ids)
    if not all(svc.engine.layers.has(c) for c in chains):
        chains = svc.engine.images.ensure_unpacked(img)
    cid = os.urandom(32).hex()
    _validate_host_config(svc, host_config, merged, warnings)
    _namespace_hostname(svc, host_config, merged)
    if not merged.get("Hostname"):
        merged["Hostname"] = cid[:12]
    merged["Image"] = image_name
    if networking_config:
        from ketch.containers.options import check_endpoints

        check_endpoints(networking_config,
                        lambda n: svc.engine.networks.inspect_network(n).ipv6)
        host_config.setdefault("_NetworkingConfig", networking_config)
    from ketch.containers import names

    rec = ContainerRecord(
        id=cid, name=name or names.generate(svc.records.names_taken()),
        image_id=img.id, image_name=image_name, created=time.time(), state="created",
        pid=0, exit_code=0, error="", started_at=0.0, finished_at=0.0, restart_count=0,
        config=merged, host_config=host_config, chain_ids=chains)
    d = os.path.join(svc.engine.root_dir, "containers", cid)  # no pathlib on create
    os.makedirs(d)
    try:
        # The record is the image's reservation: written in the transaction that
        # sees the image and its layers still recorded, so an `rmi` or `image prune`
        # either comes first (and this create fails) or sees the container.
        svc.records.insert(rec, check=lambda _conn: svc.engine.images.reserve(
            img.id, chains, image_name))
    except BaseException:
        import shutil

        shutil.rmtree(d, ignore_errors=True)
        raise
    svc.event(rec, "create")
    return rec


def _namespace_hostname(svc: ContainerService, hc: dict[str, Any],
                        config: dict[str, Any]) -> None:
    """Docker's host name for shared namespaces: the host's own with `--network
    host` or `--uts host`, the other container's with `--network container:X`."""
    mode = hc.get("NetworkMode") or "bridge"
    if mode.startswith("container:"):
        if config.get("Hostname"):
            raise InvalidArgument("conflicting options: hostname and the network mode")
        other = svc.get(mode.split(":", 1)[1])
        config["Hostname"] = other.config.get("Hostname") or other.id[:12]
        if other.config.get("Domainname"):
            config["Domainname"] = other.config["Domainname"]
    elif hc.get("UTSMode") == "host":
        if config.get("Hostname"):
            raise InvalidArgument("conflicting options: hostname and the UTS mode")
        import socket

        config["Hostname"] = socket.gethostname()
    elif mode == "host" and not config.get("Hostname"):
        import socket

        config["Hostname"] = socket.gethostname()


def check_host_config(svc: ContainerService, host_config: dict[str, Any]) -> list[str]:
    """Refuse settings `create` would refuse (Docker's messages), creating nothing;
    the warnings `create` would give. For settings applied to containers made later
    (a build's RUN steps)."""
    from ketch.containers.hostconfig import validate

    hc = dict(host_config)
    if hc.get("Binds") or hc.get("Mounts"):
        raise InvalidArgument("mounts cannot be checked ahead of create")
    validate({}, hc)
    warnings: list[str] = []
    _validate_host_config(svc, hc, {}, warnings)
    return warnings


def _validate_host_config(svc: ContainerService, hc: dict[str, Any], config: dict[str, Any],
                          warnings: list[str]) -> None:
    from ketch.containers import options

    options.validate(svc, hc, config, warnings)
    mode = hc.get("NetworkMode") or "default"
    if mode == "default":
        hc["NetworkMode"] = "bridge"
    from ketch.containers.security import parse_security_opts

    parse_security_opts(hc.get("SecurityOpt"))
    # Every mount is checked before anything exists, with Docker's messages; named
    # volumes exist from `create` on, as in Docker (`volume rm` sees the user).
    from ketch.containers.mounts import check_tmpfs_options, mount_point, parse_bind
    from ketch.containers.volumes import VolumeStore

    points = [parse_bind(b) for b in hc.get("Binds") or []]
    points += [mount_point(m) for m in hc.get("Mounts") or []]
    for opts in (hc.get("Tmpfs") or {}).values():
        check_tmpfs_options(opts or "")
    store = VolumeStore(svc.engine)
    for p in points:
        if p.type == "volume" and p.source:
            store.check_new_name(p.source)  # before any volume is made
    for p in points:
        if p.type == "volume" and p.source:
            store.create(p.source, labels=p.volume_labels, options=p.volume_options)
    if hc.get("Init") or (hc.get("Init") is None and svc.settings.init):
        svc.settings.init_binary()  # refused now, not at start, when it is missing
