"""The container service: Docker's container lifecycle over the image store, overlayfs,
the network service and the OCI runtime with its monitor.

Daemonless: the record in SQLite is the truth for what ketch decided; whether the process
still runs is read from the monitor's exit file. Any command that finds a container
whose process has exited finishes its bookkeeping (`_refresh`), so a container is
cleaned up even if the monitor's exit command never ran.
"""

from __future__ import annotations

import builtins
import os
import time
from contextlib import contextmanager
from functools import cached_property

from ketch.containers.records import ContainerRecord, ContainerRecords
from ketch.errors import Conflict, ImageNotFound, InvalidArgument, KetchError
from ketch.values import field, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any

    from ketch.containers.host import ContainerHost
    from ketch.containers.settings import ContainerSettings
    from ketch.store.images import ImageRecord

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def valid_name(name: str) -> bool:
    """Docker's container name rule, `^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`."""
    name = name[1:] if name.startswith("/") else name
    return (len(name) >= 2 and name[0].isascii() and name[0].isalnum()
            and all(c in _NAME_CHARS for c in name))
ZERO_TIME = "0001-01-01T00:00:00Z"


class RunError(KetchError):
    """`run`/`start` could not start the process: exit 125, 126 or 127 as Docker."""

    exit_code_is_specific = True

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@value
class PruneResult:
    deleted: list[str] = field(default_factory=list)
    space_reclaimed: int = 0


def _ts(t: float) -> str:
    if not t:
        return ZERO_TIME
    from ketch.fmt.units import rfc3339nano

    return rfc3339nano(t)


def merge_image_config(config: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """Fill a container Config from its image config, by Docker's rules."""
    c = dict(config)
    ic = image.get("config") or {}
    if not c.get("Entrypoint"):
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
    if not any(k == "PATH" for k in env):
        order.insert(0, "PATH")
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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


class ContainerService:
    def __init__(self, engine: ContainerHost) -> None:
        self.engine = engine
        self.db = engine.db
        self.records = ContainerRecords(engine.db)
        os.makedirs(os.path.join(engine.root_dir, "containers"), exist_ok=True)

    @cached_property
    def settings(self) -> ContainerSettings:
        from ketch.containers.settings import ContainerSettings

        return ContainerSettings.load(self.engine.root)

    # Paths on first use: listing containers needs none (and no pathlib import).
    @cached_property
    def dir(self) -> Path:
        return self.engine.root / "containers"

    @cached_property
    def run_dir(self) -> Path:
        return self.engine.run_root / "containers"

    # -- paths and locks --------------------------------------------------------------
    def path(self, cid: str) -> Path:
        return self.dir / cid

    @contextmanager
    def lock(self, cid: str) -> Iterator[None]:
        """Serialises state changes of one container across ketch processes."""
        # string paths: `rm` of a created container needs no pathlib
        run_dir = os.path.join(self.engine.run_root_dir, "containers")
        os.makedirs(run_dir, exist_ok=True)
        fd = os.open(os.path.join(run_dir, f"{cid}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- events ------------------------------------------------------------------------
    def event(self, rec: ContainerRecord, action: str, **extra: object) -> None:
        """Journal a container event (ketch.events) with dockerd's attributes: the
        container's labels, its image and name, and what `extra` adds."""
        from ketch.events import emit

        attrs: dict[str, object] = dict(rec.config.get("Labels") or {})
        attrs["image"] = rec.image_name
        attrs["name"] = rec.name
        attrs.update(extra)
        emit(self.engine.root_dir, "container", action, rec.id, attrs)

    # -- lookup ------------------------------------------------------------------------
    def get(self, name_or_id: str) -> ContainerRecord:
        rec = self.records.find(name_or_id)
        return self._refresh(rec)

    def _refresh(self, rec: ContainerRecord, *, locked: bool = False) -> ContainerRecord:
        """The record, finished first if its process has exited. `locked`: the caller
        holds the container's lock (taking it again would wait for ourselves)."""
        if rec.state not in ("running", "paused", "restarting"):
            return rec
        if rec.state == "restarting":
            from ketch.containers.restart import settle_if_orphaned

            return settle_if_orphaned(self, rec)
        from ketch.containers import lifecycle

        if lifecycle.process_alive(self, rec):
            return rec
        lifecycle.finish(self, rec.id, locked=locked)
        return self.records.get(rec.id) or rec

    # -- create -----------------------------------------------------------------------
    def create(self, config: dict[str, Any], host_config: dict[str, Any] | None = None, *,
               name: str | None = None,
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
            self.engine.pods.join(pod, config, host_config)  # type: ignore[attr-defined]
        from ketch.containers.hostconfig import validate

        validate(config, host_config)
        from ketch.containers.restart import validate as validate_restart

        validate_restart(host_config)  # before the image, as the daemon checks it
        from ketch.containers.logconfig import resolve

        host_config["LogConfig"] = resolve(host_config, self.engine.root)
        warnings = [] if warnings is None else warnings
        image_name = config.get("Image") or ""
        if not image_name:
            raise InvalidArgument("no image given: the first argument must be an image name")
        try:
            img = self.engine.images.resolve(image_name)
        except ImageNotFound:
            raise ImageNotFound(image_name) from None
        cfg = self.engine.images.get_config(img)
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
        if not all(self.engine.layers.has(c) for c in chains):
            chains = self.engine.images.ensure_unpacked(img)
        cid = os.urandom(32).hex()
        self._validate_host_config(host_config, merged, warnings)
        self._namespace_hostname(host_config, merged)
        if not merged.get("Hostname"):
            merged["Hostname"] = cid[:12]
        merged["Image"] = image_name
        if networking_config:
            from ketch.containers.options import check_endpoints

            check_endpoints(networking_config,
                            lambda n: self.engine.networks.inspect_network(n).ipv6)
            host_config.setdefault("_NetworkingConfig", networking_config)
        from ketch.containers import names

        rec = ContainerRecord(
            id=cid, name=name or names.generate(self.records.names_taken()),
            image_id=img.id, image_name=image_name, created=time.time(), state="created",
            pid=0, exit_code=0, error="", started_at=0.0, finished_at=0.0, restart_count=0,
            config=merged, host_config=host_config, chain_ids=chains)
        d = self.path(cid)
        d.mkdir(parents=True)
        try:
            # The record is the image's reservation: written in the transaction that
            # sees the image and its layers still recorded, so an `rmi` or `image prune`
            # either comes first (and this create fails) or sees the container.
            self.records.insert(rec, check=lambda _conn: self.engine.images.reserve(
                img.id, chains, image_name))
        except BaseException:
            import shutil

            shutil.rmtree(d, ignore_errors=True)
            raise
        self.event(rec, "create")
        return rec

    def _namespace_hostname(self, hc: dict[str, Any], config: dict[str, Any]) -> None:
        """Docker's host name for shared namespaces: the host's own with `--network
        host` or `--uts host`, the other container's with `--network container:X`."""
        mode = hc.get("NetworkMode") or "bridge"
        if mode.startswith("container:"):
            if config.get("Hostname"):
                raise InvalidArgument("conflicting options: hostname and the network mode")
            other = self.get(mode.split(":", 1)[1])
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

    def check_host_config(self, host_config: dict[str, Any]) -> list[str]:
        """Refuse settings `create` would refuse (Docker's messages), creating nothing;
        the warnings `create` would give. For settings applied to containers made later
        (a build's RUN steps)."""
        from ketch.containers.hostconfig import validate

        hc = dict(host_config)
        if hc.get("Binds") or hc.get("Mounts"):
            raise InvalidArgument("mounts cannot be checked ahead of create")
        validate({}, hc)
        warnings: list[str] = []
        self._validate_host_config(hc, {}, warnings)
        return warnings

    def _validate_host_config(self, hc: dict[str, Any], config: dict[str, Any],
                              warnings: list[str]) -> None:
        from ketch.containers import options

        options.validate(self, hc, config, warnings)
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
        store = VolumeStore(self.engine)
        for p in points:
            if p.type == "volume" and p.source:
                store.path(p.source)  # the name's check, before any volume is made
        for p in points:
            if p.type == "volume" and p.source:
                store.create(p.source, labels=p.volume_labels, options=p.volume_options)
        if hc.get("Init") or (hc.get("Init") is None and self.settings.init):
            self.settings.init_binary()  # refused now, not at start, when it is missing

    # -- list / inspect -----------------------------------------------------------------
    def status_text(self, rec: ContainerRecord, now: float | None = None) -> str:
        from ketch.fmt.units import human_duration

        now = now or time.time()
        if rec.state == "running":
            up = f"Up {human_duration(now - rec.started_at)}"
            if not (rec.config.get("Healthcheck") or {}).get("Test"):
                return up
            from ketch.containers.health import status_suffix

            return up + status_suffix(self, rec)
        if rec.state == "paused":
            return f"Up {human_duration(now - rec.started_at)} (Paused)"
        if rec.state == "restarting":
            return (f"Restarting ({rec.exit_code}) "
                    f"{human_duration(now - rec.finished_at)} ago")
        if rec.state == "exited":
            return f"Exited ({rec.exit_code}) {human_duration(now - rec.finished_at)} ago"
        if rec.state == "removing":
            return "Removal In Progress"
        if rec.state == "dead":
            return "Dead"
        return "Created"

    def command_line(self, rec: ContainerRecord) -> tuple[str, list[str]]:
        c = rec.config
        full = list(c.get("Entrypoint") or []) + list(c.get("Cmd") or [])
        return (full[0] if full else "", full[1:])

    def ports(self, rec: ContainerRecord) -> list[dict[str, Any]]:
        out = []
        for p in (rec.network.get("Ports") or []):
            out.append(p)
        if not out:
            for key in (rec.config.get("ExposedPorts") or {}):
                port, _, proto = key.partition("/")
                out.append({"PrivatePort": int(port.split("-")[0]), "Type": proto or "tcp"})
        return out

    def list(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
             limit: int = -1, size: bool = False, latest: bool = False) -> list[dict[str, Any]]:
        filters = filters or {}
        allowed = {"status", "name", "id", "ancestor", "label", "exited", "before", "since",
                   "network", "publish", "expose", "health", "volume", "is-task", "pod"}
        for k in filters:
            if k not in allowed:
                raise InvalidArgument(f"invalid filter '{k}'")
        if "health" in filters:
            from ketch.containers.health import check_filter
            from ketch.containers.health import status as health_status

            check_filter(filters["health"])
        recs = [self._refresh(r) for r in self.records.all()]
        if latest:
            limit = 1
        if limit > 0:
            all = True
        ancestors: set[str] | None = None
        if "ancestor" in filters:
            ancestors = set()
            for a in filters["ancestor"]:
                try:
                    ancestors.add(self.engine.images.resolve(a).id)
                except KetchError:
                    continue
        before = self.get(filters["before"][-1]).created if "before" in filters else None
        since = self.get(filters["since"][-1]).created if "since" in filters else None
        in_pods = (self.engine.pods.ids_matching(filters["pod"])  # type: ignore[attr-defined]
                   if "pod" in filters else None)
        now = time.time()
        out = []
        for r in recs:
            pod = r.host_config.get("_Pod") or r.host_config.get("_PodInfra")
            if in_pods is not None and pod not in in_pods:
                continue
            if not all and "status" not in filters and r.state not in ("running", "paused",
                                                                        "restarting"):
                continue
            if "status" in filters and r.state not in filters["status"]:
                continue
            if "name" in filters and not any(_search(n.lstrip("/"), r.name)
                                             for n in filters["name"]):
                continue
            if "id" in filters and not any(r.id.startswith(i) for i in filters["id"]):
                continue
            if ancestors is not None and r.image_id not in ancestors:
                continue
            labels = r.config.get("Labels") or {}
            if "label" in filters:
                ok = True
                for want in filters["label"]:
                    k, eq, v = want.partition("=")
                    if k not in labels or (eq and labels[k] != v):
                        ok = False
                if not ok:
                    continue
            if "exited" in filters and (r.state != "exited" or str(r.exit_code)
                                        not in filters["exited"]):
                continue
            if "health" in filters and health_status(self, r) not in filters["health"]:
                continue
            if before is not None and r.created >= before:
                continue
            if since is not None and r.created <= since:
                continue
            path, args = self.command_line(r)
            item: dict[str, Any] = {
                "Id": r.id, "Names": ["/" + r.name], "Image": r.image_name,
                "ImageID": r.image_id,
                "Command": " ".join([path, *args]).strip(),
                "Created": int(r.created), "Ports": self.ports(r), "Labels": labels,
                "State": r.state, "Status": self.status_text(r, now),
                "HostConfig": {"NetworkMode": r.host_config.get("NetworkMode", "bridge")},
                "NetworkSettings": {"Networks": self._networks(r, lean=True)},
                "Mounts": r.extra.get("Mounts") or [],
            }
            if pod:
                item["Pod"] = pod  # Podman's field: the pod the container is part of
            if size:
                item["SizeRw"] = self.size_rw(r)
                item["SizeRootFs"] = item["SizeRw"] + self._image_size(r)
            out.append(item)
        if limit > 0:
            out = out[:limit]
        return out

    def _image_size(self, rec: ContainerRecord) -> int:
        total = 0
        for ch in rec.chain_ids:
            lr = self.engine.records.layer(ch)
            total += lr.size if lr else 0
        return total

    def size_rw(self, rec: ContainerRecord) -> int:
        total = 0
        upper = self.path(rec.id) / "upper"
        for dirpath, _dirs, files in os.walk(upper):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
        return total

    def inspect(self, name_or_id: str, *, size: bool = False) -> dict[str, Any]:
        r = self.get(name_or_id)
        path, args = self.command_line(r)
        d = self.path(r.id)
        lowers = [str(self.engine.layers.path(c)) for c in reversed(r.chain_ids)]
        from ketch.containers.logconfig import reads_back

        hc = {k: v for k, v in r.host_config.items() if not k.startswith("_")}
        hc.setdefault("NetworkMode", "bridge")
        hc.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
        hc.setdefault("PortBindings", {})
        hc.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        hc.setdefault("AutoRemove", False)
        hc.setdefault("Binds", None)
        hc.setdefault("Privileged", False)
        hc.setdefault("ReadonlyRootfs", False)
        hc.setdefault("Memory", 0)
        hc.setdefault("NanoCpus", 0)
        hc.setdefault("Runtime", "runc")
        if not (hc.get("LogConfig") or {}).get("Type"):
            # Docker's default driver name: clients (docker-py's `run`) read the logs
            # back through the API only for drivers that keep them, as ketch's log does
            hc["LogConfig"] = {"Type": "json-file", "Config": {}}
        cfg = dict(r.config)
        cfg.setdefault("AttachStdin", False)
        cfg.setdefault("AttachStdout", False)
        cfg.setdefault("AttachStderr", False)
        cfg.setdefault("Tty", False)
        cfg.setdefault("OpenStdin", False)
        cfg.setdefault("StdinOnce", False)
        cfg.setdefault("Domainname", "")
        cfg.setdefault("User", "")
        cfg.setdefault("WorkingDir", "")
        out: dict[str, Any] = {
            "Id": r.id, "Created": _ts(r.created), "Path": path, "Args": args,
            "State": {
                # Docker counts a restarting container as running
                "Status": r.state, "Running": r.running,
                "Paused": r.state == "paused", "Restarting": r.state == "restarting",
                "OOMKilled": bool(r.extra.get("OOMKilled")), "Dead": r.state == "dead",
                "Pid": r.pid if r.state in ("running", "paused") else 0,
                "ExitCode": r.exit_code, "Error": r.error,
                "StartedAt": _ts(r.started_at), "FinishedAt": _ts(r.finished_at),
            },
            "Image": r.image_id,
            "ResolvConfPath": str(d / "resolv.conf"),
            "HostnamePath": str(d / "hostname"), "HostsPath": str(d / "hosts"),
            "LogPath": str(d / "ctr.log") if reads_back(hc) else "",
            "Name": "/" + r.name,
            "RestartCount": r.restart_count, "Driver": "overlay2", "Platform": "linux",
            "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
            "ExecIDs": _running_execs(self, r) or None,
            "HostConfig": hc,
            "GraphDriver": {"Name": "overlay2", "Data": {
                "LowerDir": ":".join(lowers), "MergedDir": str(d / "merged"),
                "UpperDir": str(d / "upper"), "WorkDir": str(d / "work")}},
            "Mounts": r.extra.get("Mounts") or [],
            "Config": cfg,
            "NetworkSettings": self._network_settings(r),
        }
        from ketch.containers.health import read as read_health

        health = read_health(self, r)
        if health is not None:
            out["State"]["Health"] = health
        if size:
            out["SizeRw"] = self.size_rw(r)
            out["SizeRootFs"] = out["SizeRw"] + self._image_size(r)
        return out

    def _networks(self, r: ContainerRecord, lean: bool = False) -> dict[str, Any]:
        """NetworkSettings.Networks: the endpoints of a running container; those it will
        get at its start otherwise (as Docker shows them, without addresses). `lean`
        (the list) reads the record alone: the network names as configured, no IDs of
        networks the container was never started on."""
        if r.state in ("running", "paused", "restarting"):
            return (r.network or {}).get("Networks") or {}
        if not lean:
            from ketch.containers.netglue import configured_networks

            return configured_networks(self.engine, r)
        mode = r.host_config.get("NetworkMode") or "bridge"
        if mode.startswith("container:"):
            return {}
        eps = {"bridge" if k == "default" else k: v for k, v in (
            (r.host_config.get("_NetworkingConfig") or {}).get("EndpointsConfig") or {}).items()}
        last = (r.network or {}).get("Networks") or {}
        out = {}
        for name in dict.fromkeys(["bridge" if mode == "default" else mode, *eps]):
            cfg = eps.get(name) or {}
            out[name] = {"IPAMConfig": cfg.get("IPAMConfig"), "Links": cfg.get("Links"),
                         "Aliases": list(cfg.get("Aliases") or []) or None,
                         "MacAddress": "",
                         "NetworkID": (last.get(name) or {}).get("NetworkID", ""),
                         "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                         "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                         "DriverOpts": cfg.get("DriverOpts"), "DNSNames": None}
        return out

    def _network_settings(self, r: ContainerRecord) -> dict[str, Any]:
        n = r.network or {}
        ports: dict[str, Any] = {}
        for key in (r.config.get("ExposedPorts") or {}):
            ports[key] = None
        for p in n.get("Ports") or []:
            if "PublicPort" not in p:
                continue
            key = f"{p['PrivatePort']}/{p['Type']}"
            ports.setdefault(key, None)
            ports[key] = (ports[key] or []) + [{"HostIp": p.get("IP", "0.0.0.0"),
                                                 "HostPort": str(p["PublicPort"])}]
        nets = self._networks(r)
        primary = nets.get("bridge") or (next(iter(nets.values())) if nets else {})
        return {
            "Bridge": "", "SandboxID": "", "SandboxKey": n.get("SandboxKey", ""),
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports if r.state in ("running", "paused") else {},
            "Gateway": primary.get("Gateway", ""), "IPAddress": primary.get("IPAddress", ""),
            "IPPrefixLen": primary.get("IPPrefixLen", 0),
            "MacAddress": primary.get("MacAddress", ""),
            "Networks": nets,
        }

    # -- remove / prune / rename ---------------------------------------------------------
    def remove(self, name_or_id: str, *, force: bool = False, volumes: bool = False) -> str:
        rec = self.get(name_or_id)
        if rec.host_config.get("_PodInfra"):
            self.engine.pods.check_infra_removal(rec)  # type: ignore[attr-defined]
        with self.lock(rec.id):
            rec = self._refresh(self.records.get(rec.id) or rec, locked=True)
            if rec.running:
                if not force and rec.state == "restarting":
                    raise Conflict(
                        f"You cannot remove a restarting container {rec.id}. Stop the"
                        " container before attempting removal or force remove")
                if not force:
                    raise Conflict(
                        f"cannot remove container \"/{rec.name}\": container is running:"
                        " stop the container before removing or force remove")
            # killed half-way, the removal is finished by the next command
            with self.engine.intents.held("containers.remove", rec.id,
                                          {"volumes": volumes}):
                if rec.running:
                    from ketch.containers import lifecycle
                    from ketch.containers.restart import suppress

                    if not suppress(self, rec, cancel=True):  # a waiting restart is off
                        lifecycle.kill_now(self, rec)
                        lifecycle.finish(self, rec.id, locked=True, apply_policy=False)
                self._delete(self.records.get(rec.id) or rec, volumes=volumes)
        return rec.id

    def _delete(self, rec: ContainerRecord, *, volumes: bool = False,
                release: bool = True, exit_code: int | None = None) -> None:
        # `finish` has just released them when it auto-removes; a container that never
        # started holds none (and `rm` of one then loads neither runtime nor network)
        if release and not self._never_started(rec):
            from ketch.containers import lifecycle

            lifecycle.release_resources(self, rec)
        if volumes and rec.extra.get("anon_volumes"):
            from ketch.containers import lifecycle

            lifecycle.remove_anonymous_volumes(self, rec)
        self.records.delete(rec.id, exit_code=exit_code)
        self.event(rec, "destroy")
        _remove_tree(os.path.join(self.engine.root_dir, "containers", rec.id))
        # conmon's pid, exit and socket directories under the run root go with it
        run_dir = os.path.join(self.engine.run_root_dir, "containers")
        _remove_tree(os.path.join(run_dir, rec.id))
        try:
            os.unlink(os.path.join(run_dir, f"{rec.id}.lock"))
        except FileNotFoundError:
            pass

    def _never_started(self, rec: ContainerRecord) -> bool:
        """Whether `rec` was created and never started, so that no runtime state, network
        sandbox, rootfs mount or volume reference exists to release. The record says so
        and the run root agrees: a start killed half-way (which recovery may not yet
        have undone) leaves the runtime's or the namespace's directory behind."""
        hc = rec.host_config
        if (rec.state != "created" or rec.started_at or rec.pid or rec.error or rec.network
                or hc.get("Binds") or hc.get("Mounts") or rec.extra.get("anon_volumes")):
            return False
        run_root, cdir = self.engine.run_root_dir, os.path.join(self.engine.root_dir,
                                                                 "containers", rec.id)
        return not (os.path.lexists(os.path.join(run_root, "netns", rec.id))
                    or any(os.path.lexists(os.path.join(run_root, rt, rec.id))
                           for rt in ("runc", "crun"))
                    or os.path.ismount(os.path.join(cdir, "merged")))

    def prune(self, filters: dict[str, builtins.list[str]] | None = None) -> PruneResult:
        filters = filters or {}
        for k in filters:
            if k not in ("until", "label", "label!"):
                raise InvalidArgument(f"invalid filter '{k}'")
        res = PruneResult()
        until = None
        if "until" in filters:
            from ketch.fmt.units import parse_timestamp

            until = parse_timestamp(filters["until"][-1], time.time())
        for r in self.records.all():
            r = self._refresh(r)
            if r.running or r.state == "removing":
                continue
            if r.host_config.get("_PodInfra") and self.engine.pods.records.get(  # type: ignore[attr-defined]
                    r.host_config["_PodInfra"]):
                continue  # a pod's infra goes with its pod (pod rm, pod prune)
            if until is not None and r.created >= until:
                continue
            labels = r.config.get("Labels") or {}
            if any(not _label_ok(labels, f) for f in filters.get("label", [])):
                continue
            if any(_label_ok(labels, f) for f in filters.get("label!", [])):
                continue
            res.space_reclaimed += self.size_rw(r)
            with self.lock(r.id):
                self._delete(r)
            res.deleted.append(r.id)
        return res

    def rename(self, name_or_id: str, new_name: str) -> None:
        rec = self.get(name_or_id)
        if not valid_name(new_name):
            raise InvalidArgument(
                f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are"
                " allowed")
        new_name = new_name.lstrip("/")
        if new_name == rec.name:
            raise InvalidArgument(
                "Renaming a container with the same name as its current name")
        self.records.update(rec.id, name=new_name)
        self.event(self.records.get(rec.id) or rec, "rename", oldName=f"/{rec.name}")

    # -- lifecycle (ketch.containers.lifecycle does the work) ---------------------------
    def start(self, name_or_id: str) -> ContainerRecord:
        from ketch.containers import lifecycle

        return lifecycle.start(self, name_or_id)

    def stop(self, name_or_id: str, *, timeout: int | None = None,
             signal: str | None = None) -> None:
        from ketch.containers import lifecycle

        lifecycle.stop(self, name_or_id, timeout=timeout, signal=signal)

    def restart(self, name_or_id: str, *, timeout: int | None = None,
                signal: str | None = None) -> None:
        # RestartCount counts restarts by the restart policy, not `docker restart`
        rec = self.get(name_or_id)
        self.stop(rec.id, timeout=timeout, signal=signal)
        self.event(self.start(rec.id), "restart")

    def kill(self, name_or_id: str, signal: str | int = "KILL") -> None:
        from ketch.containers import lifecycle

        lifecycle.kill(self, name_or_id, signal)

    def pause(self, name_or_id: str) -> None:
        from ketch.containers import lifecycle

        rec = self.get(name_or_id)
        if rec.state != "running":
            raise Conflict(f"container {rec.id} is not running")
        lifecycle.monitor(self, rec).runtime.pause(rec.id)
        self.records.update(rec.id, state="paused")
        self.event(rec, "pause")

    def unpause(self, name_or_id: str) -> None:
        from ketch.containers import lifecycle

        rec = self.get(name_or_id)
        if rec.state != "paused":
            raise Conflict(f"container {rec.id} is not paused")
        lifecycle.monitor(self, rec).runtime.resume(rec.id)
        self.records.update(rec.id, state="running")
        self.event(rec, "unpause")

    def wait(self, name_or_id: str) -> int:
        from ketch.containers import lifecycle

        return lifecycle.wait(self, name_or_id)

    def wait_condition(self, name_or_id: str, condition: str = "not-running", *,
                       cancelled: Callable[[], bool] | None = None) -> int | None:
        """Docker's `wait?condition=`: not-running, next-exit or removed (see
        containers.attach.wait_condition); None if `cancelled()` came first."""
        from ketch.containers import attach

        return attach.wait_condition(self, name_or_id, condition, cancelled=cancelled)

    def start_attached(self, name_or_id: str, sessions: int = 1
                       ) -> tuple[ContainerRecord, builtins.list[Any]]:
        """Start with `sessions` attach sessions connected before the process runs (for
        callers that carry the streams themselves); copy them with `pump`."""
        from ketch.containers import attach

        return attach.start_with_sessions(self, name_or_id, sessions)

    def attach_session(self, name_or_id: str) -> Any:
        """An attach session to a running container; copy it with `pump`."""
        from ketch.containers import attach

        return attach.session_of_running(self, name_or_id)

    def pump(self, session: Any, stdout: Callable[[bytes], Any] | None,
             stderr: Callable[[bytes], Any] | None, stdin: int | None = None,
             detach_keys: str | None = None) -> bool:
        """Copy an attach session: output to the callables, input from the fd `stdin`,
        until the container's output ends; True when the detach keys were read."""
        from ketch.containers import attach

        return attach.pump(session, attach.OutputStreams(stdout, stderr, stdin, detach_keys))

    # -- exec sessions (containers.execs) ----------------------------------------------
    def exec_create(self, name_or_id: str, command: builtins.list[str], *,
                    env: builtins.list[str] | None = None, user: str | None = None,
                    workdir: str | None = None, tty: bool = False, stdin: bool = False,
                    stdout: bool = True, stderr: bool = True, privileged: bool = False,
                    detach_keys: str | None = None,
                    console_size: tuple[int, int] | None = None) -> str:
        """Create an exec session in a running container; its ID."""
        from ketch.containers import execs

        return execs.create(self, name_or_id, command, env=env, user=user, workdir=workdir,
                            tty=tty, stdin=stdin, stdout=stdout, stderr=stderr,
                            privileged=privileged, detach_keys=detach_keys,
                            console_size=console_size)

    def exec_start(self, exec_id: str, *, stdout: Callable[[bytes], Any] | None = None,
                   stderr: Callable[[bytes], Any] | None = None, stdin: int | None = None,
                   detach: bool = False) -> int | None:
        """Run an exec session: output to the callables, input from the fd `stdin`; its
        exit code, or None when detached."""
        from ketch.containers import execs

        return execs.start(self, exec_id, stdout=stdout, stderr=stderr, stdin=stdin,
                           detach=detach)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        from ketch.containers import execs

        return execs.inspect(self, exec_id)

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        from ketch.containers import execs

        execs.resize(self, exec_id, height, width)

    def resize(self, name_or_id: str, height: int, width: int) -> None:
        from ketch.containers import attach

        attach.resize(self, name_or_id, height, width)

    def logs(self, name_or_id: str, *, follow: bool = False, tail: int | None = None,
             since: float | None = None, until: float | None = None,
             timestamps: bool = False, details: bool = False,
             cancelled: Callable[[], bool] | None = None) -> Iterator[tuple[str, bytes]]:
        """(stream, data) of the container's log. `details`: each line gets the log's
        extra attributes and a space before its text, as Docker's (ketch's log records
        carry no attributes, so the space alone). `cancelled`: polled while following;
        once true, the stream ends as if the container had exited (its reader left)."""
        from ketch.containers.logconfig import reads_back
        from ketch.runtime.logs import read_log

        rec = self.get(name_or_id)
        if not reads_back(rec.host_config):
            raise KetchError("configured logging driver does not support reading")
        # the log's path, as lifecycle.paths() names it, without loading the lifecycle
        # and the monitor: `logs --tail` is a read of a file's end
        log_path = self.path(rec.id) / "ctr.log"

        def running() -> bool:
            if cancelled is not None and cancelled():
                return False
            cur = self.records.get(rec.id)
            return cur is not None and self._refresh(cur).running

        at_line_start = {"stdout": True, "stderr": True}
        for chunk in read_log(log_path, follow=follow, tail=tail, since=since,
                              until=until, timestamps=timestamps,
                              is_done=lambda: not running()):
            data = chunk.data
            if details:
                data = _with_details(data, at_line_start, chunk.stream, timestamps)
            yield chunk.stream, data

    def port_lines(self, name_or_id: str, port: str | None = None) -> builtins.list[str]:
        rec = self.get(name_or_id)
        want = None
        if port:
            num, _, proto = port.partition("/")
            want = (int(num), proto or "tcp")
        lines = []
        for p in rec.network.get("Ports") or []:
            if "PublicPort" not in p or rec.state not in ("running", "paused"):
                continue
            if want and (p["PrivatePort"], p["Type"]) != want:
                continue
            ip = p.get("IP") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            prefix = "" if want else f"{p['PrivatePort']}/{p['Type']} -> "
            lines.append(f"{prefix}{host}:{p['PublicPort']}")
        return lines

    # -- top / diff / commit / stats ---------------------------------------------------
    def _running(self, name_or_id: str) -> ContainerRecord:
        rec = self.get(name_or_id)
        if rec.state not in ("running", "paused"):
            raise Conflict(f"container {rec.id} is not running")
        return rec

    def top(self, name_or_id: str, ps_args: builtins.list[str] | None = None
            ) -> tuple[builtins.list[str], builtins.list[builtins.list[str]]]:
        """`top`: the host's `ps` output, rows limited to the container's processes."""
        import subprocess

        from ketch.containers import lifecycle

        rec = self._running(name_or_id)
        pids = set(lifecycle.monitor(self, rec).runtime.ps(rec.id))
        args = list(ps_args or []) or ["-ef"]
        # Docker's daemon runs ps with no terminal and no COLUMNS: full command lines,
        # whatever width the caller's terminal or environment has.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        try:
            proc = subprocess.run(["ps", *args], capture_output=True, text=True, check=False,
                                  stdin=subprocess.DEVNULL, env=env)
        except OSError as e:
            raise KetchError(f"Error running ps: {e.strerror}") from None
        if proc.returncode != 0:
            raise KetchError(f"ps: {proc.stderr.strip() or 'exit status ' + str(proc.returncode)}")
        lines = proc.stdout.splitlines()
        if not lines:
            raise KetchError("ps printed nothing")
        titles = lines[0].split()
        if "PID" not in titles:
            raise KetchError("Couldn't find PID field in ps output")
        pid_at = titles.index("PID")
        rows = []
        for line in lines[1:]:
            fields = line.split()
            if len(fields) <= pid_at:
                continue
            try:
                pid = int(fields[pid_at])
            except ValueError:
                raise KetchError(f"Unexpected pid '{fields[pid_at]}'") from None
            if pid in pids:
                # the last column (the command) keeps its spaces
                n = len(titles) - 1
                rows.append(fields[:n] + [" ".join(fields[n:])])
        return titles, rows

    def diff(self, name_or_id: str) -> builtins.list[tuple[int, str]]:
        """`diff`: (0 changed, 1 added, 2 deleted, path) from the container's upper dir."""
        rec = self.get(name_or_id)
        lowers = self.engine.layers.lower_dirs(rec.chain_ids) if rec.chain_ids else []
        return _upper_changes(self.path(rec.id) / "upper", lowers)

    def commit(self, name_or_id: str, *, ref: str | None = None,
               changes: builtins.list[str] | None = None, message: str = "", author: str = "",
               pause: bool = True, config: dict[str, Any] | None = None) -> ImageRecord:
        """`commit`: a new image, the container's image plus its upper dir as a layer.
        `config` (the API's body) overrides the container's settings, which fill in
        what it leaves unset (moby's merge)."""
        rec = self.get(name_or_id)
        if not (pause and rec.state == "running"):
            return _commit_container(self, rec, ref=ref, changes=list(changes or []),
                                     message=message, author=author, user_config=config)
        # Killed while the container is frozen, this process leaves the intent for the
        # next ketch command to thaw it (lifecycle.recover).
        with self.engine.intents.held("containers.pause", rec.id):
            self.pause(rec.id)
            try:
                return _commit_container(self, rec, ref=ref, changes=list(changes or []),
                                         message=message, author=author,
                                         user_config=config)
            finally:
                self.unpause(rec.id)

    def check(self) -> builtins.list[tuple[str, Any]]:
        """Containers recorded as running whose process is gone: (what, repair)."""
        from ketch.containers import lifecycle

        found = []
        for rec in self.records.all():
            if rec.running and not lifecycle.process_alive(self, rec):
                found.append((f"container {rec.short_id} recorded as {rec.state} but its"
                              " process is gone", lambda c=rec.id: lifecycle.finish(self, c)))
        return found

    def recover(self, intent: Any) -> bool:
        """Finish or undo a container operation of a killed process (Engine.recover)."""
        from ketch.containers import recovery

        return recovery.recover(self, intent.kind.partition(".")[2], intent.subject,
                                intent.data)

    def stats_rows(self, names: builtins.list[str] | None = None, *, all: bool = False,
                   interval: float = 0.5) -> builtins.list[dict[str, str]]:
        """`stats --no-stream`: one row per container, as docker's stats columns."""
        if names:
            recs = [(n, self.get(n)) for n in names]
        else:
            recs = [(r.id[:12], r) for r in (self._refresh(x) for x in self.records.all())
                    if all or r.state in ("running", "paused")]
        return _stats_rows(self, recs, interval)

    def update(self, name_or_id: str, changes: dict[str, Any]) -> builtins.list[str]:
        """`update`: resource limits and restart policy (Docker's UpdateConfig), in the
        HostConfig and, while it runs, the container's cgroup; the warnings."""
        from ketch.containers.update import update

        return update(self, name_or_id, changes)

    def stats(self, name_or_id: str, *, stream: bool = True, one_shot: bool = False,
              interval: float = 1.0, cancelled: Callable[[], bool] | None = None
              ) -> Iterator[dict[str, Any]]:
        """Docker's stats documents (GET /containers/{id}/stats): one per `interval`
        while `stream`, else one (see containers.stats.stream)."""
        from ketch.containers import stats

        return stats.stream(self, name_or_id, follow=stream, one_shot=one_shot,
                            interval=interval, cancelled=cancelled)

    # -- hooks for images and GC -------------------------------------------------------
    def image_users(self, image_id: str) -> builtins.list[tuple[str, bool]]:
        return [(cid, running) for cid, running in self.records.users_of_image(image_id)]

    def df(self) -> builtins.list[dict[str, Any]]:
        return self.list(all=True, size=True)


def _with_details(data: bytes, at_line_start: dict[str, bool], stream: str,
                  timestamps: bool) -> bytes:
    """A space (the empty attribute list's separator) at the start of each line's text:
    after the timestamp with `-t`, so "TS  text" as Docker prints it."""
    lines = data.split(b"\n")
    out: builtins.list[bytes] = []
    for i, line in enumerate(lines):
        starts = at_line_start[stream] if i == 0 else True
        if i == len(lines) - 1 and not line:
            out.append(line)  # after the last newline: nothing yet
            continue
        if starts:
            if timestamps:
                ts, sep, rest = line.partition(b" ")
                line = ts + sep + b" " + rest
            else:
                line = b" " + line
        out.append(line)
    at_line_start[stream] = data.endswith(b"\n")
    return b"\n".join(out)


def _remove_tree(path: str) -> None:
    """`shutil.rmtree(path, ignore_errors=True)`; an empty or missing directory (a
    container that never ran has one) costs no shutil import (nor the re it loads)."""
    try:
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _label_ok(labels: dict[str, str], f: str) -> bool:
    k, eq, v = f.partition("=")
    return k in labels and (not eq or labels[k] == v)


# -- diff ----------------------------------------------------------------------------------
# Files the runtime creates in a container's root as mount points: Docker keeps them in a
# per-container init layer, so they are no change the user made.
_MOUNTPOINT_FILES = {"etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv"}
_MOUNTPOINT_DIRS = {"proc", "sys", "dev"}
_OPAQUE = "trusted.overlay.opaque"


def _is_whiteout(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _in_lowers(lowers: list[Path], parts: list[str]) -> os.stat_result | None:
    """What the image (overlay lower dirs, topmost first) has at `parts`, or None."""
    import stat

    for lower in lowers:
        cur = lower
        masks_below = False
        for i, part in enumerate(parts):
            cur = cur / part
            try:
                st = os.lstat(cur)
            except (FileNotFoundError, NotADirectoryError):
                break  # not in this layer: the layers below decide, unless masked
            if _is_whiteout(st):
                return None
            if i == len(parts) - 1:
                return st
            if not stat.S_ISDIR(st.st_mode):
                return None  # a file hides everything below its name
            if _opaque(cur):
                masks_below = True
        if masks_below:
            return None
    return None


def _opaque(path: Path | str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _upper_changes(upper: Path, lowers: list[Path]) -> list[tuple[int, str]]:
    """moby's overlay changes: whiteouts are deletions, entries the image lacks are
    additions, the rest modifications; a directory counts only if its own metadata
    changed or something directly in it was added or deleted."""
    import stat

    changes: dict[str, int] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(upper / rel if rel else upper))
        except OSError:
            continue
        for e in entries:
            path = f"{rel}/{e.name}" if rel else e.name
            st = e.stat(follow_symlinks=False)
            if _is_whiteout(st):
                changes[path] = 2
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            lower = _in_lowers(lowers, path.split("/"))
            if lower is None:
                if path in _MOUNTPOINT_FILES and stat.S_ISREG(st.st_mode) and not st.st_size:
                    continue
                if path in _MOUNTPOINT_DIRS and is_dir and not any(os.scandir(e.path)):
                    continue
                changes[path] = 1
            elif not (is_dir and stat.S_ISDIR(lower.st_mode)
                      and (st.st_mode, st.st_uid, st.st_gid)
                      == (lower.st_mode, lower.st_uid, lower.st_gid)
                      and not _opaque(e.path)):
                changes[path] = 0
            if is_dir:
                stack.append(path)
    for path, kind in list(changes.items()):
        parent = path.rpartition("/")[0]
        if kind in (1, 2) and parent and parent not in changes:
            changes[parent] = 0
    return sorted(((k, "/" + p) for p, k in changes.items()), key=lambda c: c[1])


# -- commit --------------------------------------------------------------------------------
_IMAGE_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes",
                      "WorkingDir", "Labels", "StopSignal", "Healthcheck", "ArgsEscaped",
                      "OnBuild", "Shell")


def _running_execs(svc: ContainerService, rec: ContainerRecord) -> list[str]:
    if rec.state not in ("running", "paused"):
        return []
    from ketch.containers import execs

    return execs.running_ids(svc, rec.id)


def _merge_config(user: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """A commit's Config from the caller over the container's: what the caller leaves
    unset comes from the container; ports, volumes, labels and Env (by name) are merged."""
    out = {k: v for k, v in user.items() if k in _IMAGE_CONFIG_KEYS and v not in (None, "",
                                                                                  [], {})}
    for k in ("ExposedPorts", "Volumes", "Labels"):
        if base.get(k):
            out[k] = {**base[k], **(out.get(k) or {})}
    if base.get("Env"):
        own = {e.partition("=")[0] for e in out.get("Env") or []}
        out["Env"] = list(out.get("Env") or []) + [e for e in base["Env"]
                                                   if e.partition("=")[0] not in own]
    if not out.get("Entrypoint"):
        if not out.get("Cmd") and base.get("Cmd") is not None:
            out["Cmd"] = base["Cmd"]
        if base.get("Entrypoint") is not None:
            out["Entrypoint"] = base["Entrypoint"]
    for k in ("User", "WorkingDir", "StopSignal", "Healthcheck", "OnBuild", "Shell"):
        if not out.get(k) and base.get(k) is not None:
            out[k] = base[k]
    return out


def _commit_container(svc: ContainerService, rec: ContainerRecord, *, ref: str | None,
                      changes: list[str], message: str, author: str,
                      user_config: dict[str, Any] | None = None) -> ImageRecord:
    import threading

    from ketch import reference
    from ketch.archive import write_layer_from_upper
    from ketch.images.changes import apply_changes
    from ketch.images.service import NewLayer, now_rfc3339

    images = svc.engine.images
    tags: list[str] = []
    if ref:
        target = reference.parse(ref)
        if target.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        tags = [str(target)]
    base = images.records.get(rec.image_id)
    if base is None:
        raise ImageNotFound(rec.image_id)
    base_cfg = images.get_config(base).raw
    base_manifest = images.get_manifest(base)
    config: dict[str, Any] = {
        k: v for k, v in base_cfg.items()
        if k in ("architecture", "os", "os.version", "os.features", "variant")}
    # Docker keeps the container's own settings (its command, env, ...) in the image.
    config["config"] = {k: rec.config[k] for k in _IMAGE_CONFIG_KEYS
                        if rec.config.get(k) is not None}
    if user_config:
        config["config"] = _merge_config(user_config, config["config"])
    apply_changes(config, changes)
    config["created"] = now_rfc3339()
    if author:
        config["author"] = author
    if message:
        config["comment"] = message  # `inspect`'s .Comment, as moby's commit
    path, args = svc.command_line(rec)
    history = list(base_cfg.get("history") or [])
    entry: dict[str, Any] = {"created": config["created"],
                             "created_by": " ".join([path, *args]).strip()}
    if author:
        entry["author"] = author
    if message:
        entry["comment"] = message
    history.append(entry)
    config["history"] = history
    diff_ids = list((base_cfg.get("rootfs") or {}).get("diff_ids") or [])

    upper = svc.path(rec.id) / "upper"
    lowers = svc.engine.layers.lower_dirs(rec.chain_ids) if rec.chain_ids else []
    r, w = os.pipe()
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            with open(w, "wb") as out:
                write_layer_from_upper(upper, out, lower_dirs=lowers)
        except BaseException as e:  # reported by the reading side
            failed.append(e)

    with images.writing():
        t = threading.Thread(target=produce, daemon=True)
        t.start()
        try:
            with open(r, "rb") as stream:
                layer = images.add_layer_stream(
                    stream, parent=rec.chain_ids[-1] if rec.chain_ids else None)
        finally:
            t.join()
        if failed:
            raise failed[0]
        config["rootfs"] = {"type": "layers", "diff_ids": diff_ids + [layer.diff_id]}
        layers = [NewLayer(d.digest, d.media_type, d.size, diff_id, 0)
                  for d, diff_id in zip(base_manifest.layers, diff_ids, strict=True)]
        image = images.commit(config, layers + [layer], parent=base.id, tags=tags)
    svc.event(rec, "commit", comment=message, imageID=image.id, imageRef=ref or "")
    return image


# -- stats ---------------------------------------------------------------------------------
def _stats_rows(svc: ContainerService, recs: list[tuple[str, ContainerRecord]],
                interval: float) -> list[dict[str, str]]:
    """Two Docker stats documents per container, `interval` apart (sampled in parallel),
    rendered as `docker stats` rows."""
    from concurrent.futures import ThreadPoolExecutor

    from ketch.containers import stats

    def sample_all(pre: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(recs)))) as pool:
            return list(pool.map(lambda i: stats.document(
                svc, recs[i][1], pre[i] if pre else None), range(len(recs))))

    if not recs:
        return []
    first = sample_all(None)
    if any(r.state in ("running", "paused") for _, r in recs):
        time.sleep(interval)
    second = sample_all(first)
    return [stats.row(doc, given) for doc, (given, _) in zip(second, recs, strict=True)]


def _search(pattern: str, text: str) -> bool:
    """The `name=` filter: a regular expression searched in the name, as Docker's."""
    import re

    try:
        return re.search(pattern, text) is not None
    except re.error as e:
        raise InvalidArgument(f"invalid name filter {pattern!r}: {e}") from None
