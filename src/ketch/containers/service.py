"""The container service: Docker's container lifecycle over the image store, overlayfs,
the network service and the OCI runtime with its monitor.

Daemonless: the record in SQLite is the truth for what ketch decided; whether the process
still runs is read from the monitor's exit file. Any command that finds a container
whose process has exited finishes its bookkeeping (`_refresh`), so a container is
cleaned up even if the monitor's exit command never ran.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ketch.containers.records import ContainerRecord, ContainerRecords
from ketch.errors import Conflict, ImageNotFound, InvalidArgument, KetchError

if TYPE_CHECKING:
    from ketch.engine import Engine

_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ZERO_TIME = "0001-01-01T00:00:00Z"


class RunError(KetchError):
    """`run`/`start` could not start the process: exit 125, 126 or 127 as Docker."""

    exit_code_is_specific = True

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
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
    if not c.get("Healthcheck") and ic.get("Healthcheck"):
        c["Healthcheck"] = ic["Healthcheck"]
    return c


class ContainerService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.db = engine.db
        self.records = ContainerRecords(engine.db)
        self.dir = engine.root / "containers"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = engine.run_root / "containers"

    # -- paths and locks --------------------------------------------------------------
    def path(self, cid: str) -> Path:
        return self.dir / cid

    @contextmanager
    def lock(self, cid: str) -> Iterator[None]:
        """Serialises state changes of one container across ketch processes."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / f"{cid}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- lookup ------------------------------------------------------------------------
    def get(self, name_or_id: str) -> ContainerRecord:
        rec = self.records.find(name_or_id)
        return self._refresh(rec)

    def _refresh(self, rec: ContainerRecord) -> ContainerRecord:
        if rec.state not in ("running", "paused", "restarting"):
            return rec
        from ketch.containers import lifecycle

        if lifecycle.process_alive(self, rec):
            return rec
        lifecycle.finish(self, rec.id)
        return self.records.get(rec.id) or rec

    # -- create -----------------------------------------------------------------------
    def create(self, config: dict[str, Any], host_config: dict[str, Any] | None = None, *,
               name: str | None = None,
               networking_config: dict[str, Any] | None = None) -> ContainerRecord:
        host_config = dict(host_config or {})
        image_name = config.get("Image") or ""
        if not image_name:
            raise InvalidArgument("no image given: the first argument must be an image name")
        try:
            img = self.engine.images.resolve(image_name)
        except ImageNotFound:
            raise ImageNotFound(image_name) from None
        icfg = self.engine.images.get_config(img).raw
        merged = merge_image_config(config, icfg)
        if not merged.get("Cmd") and not merged.get("Entrypoint"):
            raise InvalidArgument("no command specified")
        if name is not None:
            if not _NAME_RE.match(name):
                raise InvalidArgument(
                    f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are'
                    " allowed")
            name = name.lstrip("/")
        chains = self.engine.images.ensure_unpacked(img)
        cid = secrets.token_hex(32)
        if not merged.get("Hostname"):
            merged["Hostname"] = cid[:12]
        merged["Image"] = image_name
        self._validate_host_config(host_config, merged)
        if networking_config:
            host_config.setdefault("_NetworkingConfig", networking_config)
        from ketch.containers import names

        rec = ContainerRecord(
            id=cid, name=name or names.generate({r.name for r in self.records.all()}),
            image_id=img.id, image_name=image_name, created=time.time(), state="created",
            pid=0, exit_code=0, error="", started_at=0.0, finished_at=0.0, restart_count=0,
            config=merged, host_config=host_config, chain_ids=chains)
        d = self.path(cid)
        d.mkdir(parents=True)
        try:
            self.records.insert(rec)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        return rec

    def _validate_host_config(self, hc: dict[str, Any], config: dict[str, Any]) -> None:
        mode = hc.get("NetworkMode") or "default"
        if mode == "default":
            hc["NetworkMode"] = "bridge"
        for spec in hc.get("Binds") or []:
            parts = spec.split(":")
            if len(parts) < 2 or not parts[1].startswith("/"):
                raise InvalidArgument(
                    f"invalid volume specification: '{spec}': the container path must be"
                    " absolute")
        restart = (hc.get("RestartPolicy") or {}).get("Name") or "no"
        if restart not in ("no", "always", "unless-stopped", "on-failure", ""):
            raise InvalidArgument(f"invalid restart policy '{restart}'")
        if hc.get("AutoRemove") and restart not in ("no", ""):
            raise InvalidArgument("conflicting options: cannot specify both --restart and"
                                  " --rm")

    # -- list / inspect -----------------------------------------------------------------
    def status_text(self, rec: ContainerRecord, now: float | None = None) -> str:
        from ketch.fmt.units import human_duration

        now = now or time.time()
        if rec.state == "running":
            return f"Up {human_duration(now - rec.started_at)}"
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
                   "network", "publish", "expose", "health", "volume", "is-task"}
        for k in filters:
            if k not in allowed:
                raise InvalidArgument(f"invalid filter '{k}'")
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
        now = time.time()
        out = []
        for r in recs:
            if not all and "status" not in filters and r.state not in ("running", "paused",
                                                                        "restarting"):
                continue
            if "status" in filters and r.state not in filters["status"]:
                continue
            if "name" in filters and not any(re.search(n.lstrip("/"), r.name)
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
                "NetworkSettings": {"Networks": (r.network.get("Networks") or {})},
                "Mounts": r.extra.get("Mounts") or [],
            }
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
        hc = {k: v for k, v in r.host_config.items() if not k.startswith("_")}
        hc.setdefault("NetworkMode", "bridge")
        hc.setdefault("PortBindings", {})
        hc.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        hc.setdefault("AutoRemove", False)
        hc.setdefault("Binds", None)
        hc.setdefault("Privileged", False)
        hc.setdefault("ReadonlyRootfs", False)
        hc.setdefault("Memory", 0)
        hc.setdefault("NanoCpus", 0)
        hc.setdefault("Runtime", "runc")
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
                "Status": r.state, "Running": r.state in ("running", "paused"),
                "Paused": r.state == "paused", "Restarting": r.state == "restarting",
                "OOMKilled": bool(r.extra.get("OOMKilled")), "Dead": r.state == "dead",
                "Pid": r.pid if r.state in ("running", "paused") else 0,
                "ExitCode": r.exit_code, "Error": r.error,
                "StartedAt": _ts(r.started_at), "FinishedAt": _ts(r.finished_at),
            },
            "Image": r.image_id,
            "ResolvConfPath": str(d / "resolv.conf"),
            "HostnamePath": str(d / "hostname"), "HostsPath": str(d / "hosts"),
            "LogPath": str(d / "ctr.log"), "Name": "/" + r.name,
            "RestartCount": r.restart_count, "Driver": "overlay2", "Platform": "linux",
            "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
            "ExecIDs": r.extra.get("ExecIDs") or None,
            "HostConfig": hc,
            "GraphDriver": {"Name": "overlay2", "Data": {
                "LowerDir": ":".join(lowers), "MergedDir": str(d / "merged"),
                "UpperDir": str(d / "upper"), "WorkDir": str(d / "work")}},
            "Mounts": r.extra.get("Mounts") or [],
            "Config": cfg,
            "NetworkSettings": self._network_settings(r),
        }
        if size:
            out["SizeRw"] = self.size_rw(r)
            out["SizeRootFs"] = out["SizeRw"] + self._image_size(r)
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
        nets = n.get("Networks") or {}
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
        with self.lock(rec.id):
            rec = self._refresh(self.records.get(rec.id) or rec)
            if rec.running:
                if not force:
                    raise Conflict(
                        f"cannot remove container \"/{rec.name}\": container is running:"
                        " stop the container before removing or force remove")
                from ketch.containers import lifecycle

                lifecycle.kill_now(self, rec)
                lifecycle.finish(self, rec.id, locked=True)
            self._delete(rec, volumes=volumes)
        return rec.id

    def _delete(self, rec: ContainerRecord, *, volumes: bool = False) -> None:
        from ketch.containers import lifecycle

        lifecycle.release_resources(self, rec)
        if volumes:
            lifecycle.remove_anonymous_volumes(self, rec)
        self.records.delete(rec.id)
        shutil.rmtree(self.path(rec.id), ignore_errors=True)
        (self.run_dir / f"{rec.id}.lock").unlink(missing_ok=True)

    def prune(self, filters: dict[str, list[str]] | None = None) -> PruneResult:
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
        if not _NAME_RE.match(new_name):
            raise InvalidArgument(
                f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are"
                " allowed")
        new_name = new_name.lstrip("/")
        if new_name == rec.name:
            raise InvalidArgument(
                "Renaming a container with the same name as its current name")
        self.records.update(rec.id, name=new_name)

    # -- lifecycle (ketch.containers.lifecycle does the work) ---------------------------
    def start(self, name_or_id: str) -> ContainerRecord:
        from ketch.containers import lifecycle

        return lifecycle.start(self, name_or_id)

    def stop(self, name_or_id: str, *, timeout: int | None = None,
             signal: str | None = None) -> None:
        from ketch.containers import lifecycle

        lifecycle.stop(self, name_or_id, timeout=timeout, signal=signal)

    def restart(self, name_or_id: str, *, timeout: int | None = None) -> None:
        self.stop(name_or_id, timeout=timeout)
        rec = self.get(name_or_id)
        self.records.update(rec.id, restart_count=rec.restart_count + 1)
        self.start(rec.id)

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

    def unpause(self, name_or_id: str) -> None:
        from ketch.containers import lifecycle

        rec = self.get(name_or_id)
        if rec.state != "paused":
            raise Conflict(f"container {rec.id} is not paused")
        lifecycle.monitor(self, rec).runtime.resume(rec.id)
        self.records.update(rec.id, state="running")

    def wait(self, name_or_id: str) -> int:
        from ketch.containers import lifecycle

        return lifecycle.wait(self, name_or_id)

    def logs(self, name_or_id: str, *, follow: bool = False, tail: int | None = None,
             since: float | None = None, until: float | None = None,
             timestamps: bool = False) -> Iterator[tuple[str, bytes]]:
        from ketch.containers import lifecycle
        from ketch.runtime.logs import read_log

        rec = self.get(name_or_id)
        p = lifecycle.paths(self, rec)

        def running() -> bool:
            cur = self.records.get(rec.id)
            return cur is not None and self._refresh(cur).running

        for chunk in read_log(p.log_path, follow=follow, tail=tail, since=since,
                              until=until, timestamps=timestamps,
                              is_done=lambda: not running()):
            yield chunk.stream, chunk.data

    def port_lines(self, name_or_id: str, port: str | None = None) -> list[str]:
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

    # -- hooks for images and GC -------------------------------------------------------
    def image_users(self, image_id: str) -> list[tuple[str, bool]]:
        return [(cid, running) for cid, running in self.records.users_of_image(image_id)]

    def df(self) -> list[dict[str, Any]]:
        return self.list(all=True, size=True)


def _label_ok(labels: dict[str, str], f: str) -> bool:
    k, eq, v = f.partition("=")
    return k in labels and (not eq or labels[k] == v)
