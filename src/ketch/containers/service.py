"""The container service: Docker's container lifecycle over the image store, overlayfs,
the network service and the OCI runtime with its monitor.

Daemonless: the record in SQLite is the truth for what ketch decided; whether the process
still runs is read from the monitor's exit file. Any command that finds a container
whose process has exited finishes its bookkeeping (`_refresh`), so a container is
cleaned up even if the monitor's exit command never ran.

The service is the façade the Engine calls; the work of each command lives beside it:
`create` (create.py), the state transitions (lifecycle.py, `self.lifecycle`), what a
running container holds (resources.py), `inspect` (inspect.py), `logs` (logs.py), `top`
(top.py), `diff` (diff.py), `commit` (commit.py), stats (stats.py), exec sessions
(execs.py), attach (attach.py), crash recovery (recovery.py).

Size: over 600 lines because it is the façade (some sixty public methods, most a few
lines that hand over to the modules above) and keeps only the record-level operations
that must stay on the lean import paths of `ps`, `rm` and `logs --tail`
(tests/containers/test_import_budgets.py, test_ps.py): lookup and refresh, listing,
removal and prune.
"""

from __future__ import annotations

import builtins
import os
import time

from ketch.containers.records import ContainerRecord, ContainerRecords
from ketch.errors import Conflict, InvalidArgument, KetchError, NotFound
from ketch.values import cached_property, contextmanager, field, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from ketch.containers.host import ContainerHost
    from ketch.containers.lifecycle import Lifecycle
    from ketch.containers.podns import InfraStart
    from ketch.containers.settings import ContainerSettings
    from ketch.store.images import ImageRecord


class RunError(KetchError):
    """`run`/`start` could not start the process: exit 125, 126 or 127 as Docker."""

    exit_code_is_specific = True

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        # dockerd answers a command that cannot be found or run as the request's fault
        # (400, its invalid-config error), any other start failure as its own (500)
        self.http_status = 400 if exit_code in (126, 127) else 500


@value
class PruneResult:
    deleted: list[str] = field(default_factory=list)
    space_reclaimed: int = 0


class ContainerService:
    def __init__(self, engine: ContainerHost) -> None:
        self.engine = engine
        self.db = engine.db
        self.records = ContainerRecords(engine.db)
        self.records.claim_run_root(engine.run_root_dir)
        os.makedirs(os.path.join(engine.root_dir, "containers"), exist_ok=True)

    @cached_property
    def settings(self) -> ContainerSettings:
        from ketch.containers.settings import ContainerSettings

        return ContainerSettings.load(self.engine.root_dir)

    # Paths as text: pathlib's import (re, enum, fnmatch, urllib.parse with it) cost
    # every `run` and `start` ~7 ms of CPU.
    @cached_property
    def dir(self) -> str:
        return f"{self.engine.root_dir}/containers"

    @cached_property
    def run_dir(self) -> str:
        return f"{self.engine.run_root_dir}/containers"  # (run_path())

    # -- paths and locks --------------------------------------------------------------
    def path(self, cid: str) -> str:
        """The container's directory (config.json, upper, work, merged, its log)."""
        return f"{self.dir}/{cid}"

    def run_path(self, cid: str = "") -> str:
        """The container's transient directory under the run root (conmon's pid, exit
        and exec files: ketch.runtime.conmonfiles), as text (no pathlib for the commands
        that only look); the directory of them all without `cid`."""
        top = f"{self.engine.run_root_dir}/containers"
        return f"{top}/{cid}" if cid else top

    @contextmanager
    def lock(self, cid: str) -> Iterator[None]:
        """Serialises state changes of one container across ketch processes."""
        # string paths: `rm` of a created container needs no pathlib
        run_dir = self.run_path()
        os.makedirs(run_dir, exist_ok=True)
        fd = os.open(os.path.join(run_dir, f"{cid}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def locked(self, name_or_id: str) -> Iterator[ContainerRecord]:
        """The container's record for a read-modify-write: read again under its lock
        (with an exit that happened meanwhile finished first), so a change made by
        another process in between is neither lost nor overwritten. ContainerNotFound
        when it was removed in between."""
        rec = self.get(name_or_id)
        with self.lock(rec.id):
            yield self._refresh(self.reread(rec, name_or_id), locked=True)

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

    def reread(self, rec: ContainerRecord, name_or_id: str) -> ContainerRecord:
        """The record again, under the container's lock: a command that waited for the
        lock may find the container removed meanwhile (a concurrent `rm`, `prune`, an
        auto-remove), and goes no further with the record it read before."""
        current = self.records.get(rec.id)
        if current is None:
            from ketch.errors import ContainerNotFound

            # the lock file this command opened after the removal had taken the old one
            try:
                os.unlink(os.path.join(self.run_path(), f"{rec.id}.lock"))
            except FileNotFoundError:
                pass
            raise ContainerNotFound(name_or_id)
        return current

    def _refresh(self, rec: ContainerRecord, *, locked: bool = False) -> ContainerRecord:
        """The record, finished first if its process has exited. `locked`: the caller
        holds the container's lock (taking it again would wait for ourselves)."""
        if rec.state not in ("running", "paused", "restarting"):
            return rec
        if rec.state == "restarting":
            from ketch.containers.restart import settle_if_orphaned

            return settle_if_orphaned(self, rec, locked=locked)
        from ketch.runtime.conmonfiles import still_running

        # (the lifecycle, and the monitor under it, load only for an exit to finish)
        if still_running(self.run_path(rec.id), rec.id):
            return rec
        return self.lifecycle.refresh(rec, locked=locked)

    # -- create (ketch.containers.create does the work) ---------------------------------
    def create(self, config: dict[str, Any], host_config: dict[str, Any] | None = None, *,
               name: str | None = None,
               networking_config: dict[str, Any] | None = None,
               warnings: list[str] | None = None,
               platform: str | None = None, pod: str | None = None) -> ContainerRecord:
        """A new container in state "created". Docker's create warnings (settings this
        host cannot apply and drops) are appended to `warnings`. `pod`: the container
        joins that pod's namespaces (ketch.pods)."""
        from ketch.containers.create import create

        return create(self, config, host_config, name=name,
                      networking_config=networking_config, warnings=warnings,
                      platform=platform, pod=pod)

    def check_host_config(self, host_config: dict[str, Any]) -> list[str]:
        """Refuse settings `create` would refuse (Docker's messages), creating nothing;
        the warnings `create` would give. For settings applied to containers made later
        (a build's RUN steps)."""
        from ketch.containers.create import check_host_config

        return check_host_config(self, host_config)

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
        """The list's Ports, as dockerd gives them: a running container's published
        ports and its other exposed ports (no host side); none while it does not run,
        nor on the host's, no or another container's network."""
        if rec.state not in ("running", "paused", "restarting"):
            return []
        out = list(rec.network.get("Ports") or [])
        mode = rec.host_config.get("NetworkMode") or "bridge"
        if mode in ("host", "none") or mode.startswith("container:"):
            return out
        have = {(p.get("PrivatePort"), p.get("Type") or "tcp") for p in out}
        for key in (rec.config.get("ExposedPorts") or {}):
            port, _, proto = key.partition("/")
            first = port.split("-")[0]
            if not (first.isascii() and first.isdigit()):  # (create checks; older records)
                continue
            if (int(first), proto or "tcp") not in have:
                out.append({"PrivatePort": int(first), "Type": proto or "tcp"})
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
        # dockerd's checks of the values: a state it does not know, an exit code that is
        # not a number
        for v in filters.get("status", []):
            if v not in ("created", "restarting", "running", "removing", "paused", "exited",
                         "dead"):
                raise InvalidArgument(f"invalid filter 'status={v}'")
        for v in filters.get("exited", []):
            try:
                int(v, 10)
            except ValueError:
                raise InvalidArgument(f'strconv.Atoi: parsing "{v}": invalid syntax') from None
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
        from ketch.containers.psfilters import compile_filters
        from ketch.filtermatch import matches

        connected = compile_filters(filters)
        before = self.get(filters["before"][-1]).created if "before" in filters else None
        since = self.get(filters["since"][-1]).created if "since" in filters else None
        in_pods = (self.engine.pods.ids_matching(filters["pod"])
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
            if "name" in filters and not any(matches(n.lstrip("/"), r.name)
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
                # dockerd's: an argument with a space in single quotes, nothing escaped
                "Command": " ".join([path, *(f"'{a}'" if " " in a else a for a in args)]
                                    ).strip(),
                "Created": int(r.created), "Ports": self.ports(r), "Labels": labels,
                "State": r.state, "Status": self.status_text(r, now),
                "HostConfig": {"NetworkMode": r.host_config.get("NetworkMode", "bridge")},
                "NetworkSettings": {"Networks": self.networks(r, lean=True)},
                "Mounts": r.extra.get("Mounts") or [],
            }
            if connected is not None and not connected(item):
                continue
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
        upper = f"{self.engine.root_dir}/containers/{rec.id}/upper"  # (no pathlib: ps -s)
        for dirpath, _dirs, files in os.walk(upper):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
        return total

    def inspect(self, name_or_id: str, *, size: bool = False) -> dict[str, Any]:
        from ketch.containers.inspect import document

        return document(self, name_or_id, size=size)

    def networks(self, r: ContainerRecord, lean: bool = False) -> dict[str, Any]:
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

    # -- remove / prune / rename ---------------------------------------------------------
    def remove(self, name_or_id: str, *, force: bool = False, volumes: bool = False) -> str:
        rec = self.get(name_or_id)
        if rec.host_config.get("_PodInfra"):
            self.engine.pods.check_infra_removal(rec)
        with self.lock(rec.id):
            rec = self._refresh(self.reread(rec, name_or_id), locked=True)
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
                killed = False
                if rec.running:
                    from ketch.containers.restart import suppress

                    if not suppress(self, rec, cancel=True):  # a waiting restart is off
                        self.lifecycle.kill_now(rec)
                        self.lifecycle.finish(rec.id, locked=True, apply_policy=False)
                        killed = True
                current = self.records.get(rec.id)
                if current is None and killed:
                    # an --rm container: `finish` removed it, with its exit code (137)
                    # for a `wait` and its destroy event; not again with the ones of the
                    # record read before the kill (that `run --rm` then exited 0)
                    return rec.id
                current = current or rec
                # a `wait` on the container that `rm -f` killed gets its exit (137), as
                # dockerd's, though the record is gone by the time it looks
                self._delete(current, volumes=volumes,
                             exit_code=current.exit_code if killed else None)
        return rec.id

    def _delete(self, rec: ContainerRecord, *, volumes: bool = False,
                release: bool = True, exit_code: int | None = None) -> None:
        # `finish` has just released them when it auto-removes; a container that never
        # started, or whose exit was finished, holds none (and `rm` of one then loads
        # neither runtime nor network)
        if release and not self._holds_nothing(rec):
            self.lifecycle.release_resources(rec)
        if rec.started_at or rec.pid:
            from ketch.containers.logconfig import log_file
            from ketch.procstat import stop_recorded

            # a keeper still rotating the log would refill the directory removed below:
            # it is ended (its pid file is `<log>.keeper`, runtime.logs.stop_keeper)
            log = log_file(rec.host_config,
                           os.path.join(self.engine.root_dir, "containers", rec.id, "ctr.log"))
            stop_recorded(f"{log}.keeper")
        if volumes and rec.extra.get("anon_volumes"):
            from ketch.containers.resources import remove_anonymous_volumes

            remove_anonymous_volumes(self, rec)
        self.records.delete(rec.id, exit_code=exit_code)
        self.event(rec, "destroy")
        _remove_tree(os.path.join(self.engine.root_dir, "containers", rec.id))
        # conmon's pid, exit and socket directories under the run root go with it
        run_dir = self.run_path()
        _remove_tree(self.run_path(rec.id))
        try:
            os.unlink(os.path.join(run_dir, f"{rec.id}.lock"))
        except FileNotFoundError:
            pass

    def _holds_nothing(self, rec: ContainerRecord) -> bool:
        """Whether `rec` holds nothing to release: no runtime state, network sandbox,
        rootfs mount or volume: a container created and never started, or one whose
        exit was finished (`Lifecycle.finish` released all it held). The record says
        it is not running and the host agrees: a start or finish killed half-way (which
        recovery may not yet have redone) leaves the runtime's state, the namespace or
        the network's sandbox row behind. Containers with volumes always take the full
        release (a volume mounted with options counts its holders)."""
        hc = rec.host_config
        if (rec.state not in ("created", "exited") or rec.pid or hc.get("Binds")
                or hc.get("Mounts") or rec.extra.get("anon_volumes")):
            return False
        run_root, cdir = self.engine.run_root_dir, os.path.join(self.engine.root_dir,
                                                                 "containers", rec.id)
        if hc.get("_PodInfra"):
            from ketch.containers import podns

            if podns.held(run_root, rec.id):
                return False
        if (os.path.lexists(os.path.join(run_root, "netns", rec.id))
                or any(os.path.lexists(os.path.join(run_root, rt, rec.id))
                       for rt in ("runc", "crun"))
                or os.path.ismount(os.path.join(cdir, "merged"))):
            return False
        from ketch.network.lookup import has_sandbox

        return not has_sandbox(self.db, rec.id)

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
            if r.host_config.get("_PodInfra") and self.engine.pods.records.get(
                    r.host_config["_PodInfra"]):
                continue  # a pod's infra goes with its pod (pod rm, pod prune)
            if until is not None and r.created >= until:
                continue
            labels = r.config.get("Labels") or {}
            if any(not _label_ok(labels, f) for f in filters.get("label", [])):
                continue
            if any(_label_ok(labels, f) for f in filters.get("label!", [])):
                continue
            with self.lock(r.id):
                # what the listing saw may have changed before the lock was ours: a
                # `start` (of a `run`) that held it, or another removal
                current = self.records.get(r.id)
                if current is None:
                    continue
                current = self._refresh(current, locked=True)
                if current.running or current.state == "removing":
                    continue
                res.space_reclaimed += self.size_rw(current)
                self._delete(current)
            res.deleted.append(r.id)
        return res

    def rename(self, name_or_id: str, new_name: str) -> None:
        from ketch.containers.names import valid_name

        if not valid_name(new_name):
            self.get(name_or_id)  # (a missing container is said first, as dockerd does)
            raise InvalidArgument(
                f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are"
                " allowed")
        new_name = new_name.lstrip("/")
        with self.locked(name_or_id) as rec:  # (not a container an `rm` has just taken)
            if new_name == rec.name:
                raise InvalidArgument(
                    "Renaming a container with the same name as its current name")
            self.records.update(rec.id, name=new_name)
            self.event(self.records.get(rec.id) or rec, "rename", oldName=f"/{rec.name}")

    # -- lifecycle (ketch.containers.lifecycle owns the transitions) ------------------
    @cached_property
    def lifecycle(self) -> Lifecycle:
        from ketch.containers.lifecycle import Lifecycle

        return Lifecycle(self)

    def start(self, name_or_id: str, *,
              network_ready: Callable[[str], None] | None = None,
              namespaces_ready: Callable[[], None] | None = None,
              infra_start: InfraStart | None = None) -> ContainerRecord:
        return self.lifecycle.start(name_or_id, network_ready=network_ready,
                                    namespaces_ready=namespaces_ready,
                                    infra_start=infra_start)

    def stop(self, name_or_id: str, *, timeout: int | None = None,
             signal: str | None = None) -> None:
        self.lifecycle.stop(name_or_id, timeout=timeout, signal=signal)

    def restart(self, name_or_id: str, *, timeout: int | None = None,
                signal: str | None = None) -> None:
        self.lifecycle.restart(name_or_id, timeout=timeout, signal=signal)

    def kill(self, name_or_id: str, signal: str | int = "KILL") -> None:
        self.lifecycle.kill(name_or_id, signal)

    def pause(self, name_or_id: str) -> None:
        self.lifecycle.pause(name_or_id)

    def unpause(self, name_or_id: str) -> None:
        self.lifecycle.unpause(name_or_id)

    def wait(self, name_or_id: str) -> int:
        return self.lifecycle.wait(name_or_id)

    def cleanup(self, name_or_id: str) -> None:
        """The monitor's exit command: finish the container now that its process exited."""
        self.lifecycle.cleanup(name_or_id)

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
             detach_keys: str | None = None, *, tty: bool = False) -> bool:
        """Copy an attach session: output to the callables, input from the fd `stdin`,
        until the container's output ends; True when the detach keys were read (only
        looked for when the container has a terminal, `tty`)."""
        from ketch.containers import attach

        return attach.pump(session, attach.OutputStreams(stdout, stderr, stdin, detach_keys,
                                                         tty))

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
                   detach: bool = False,
                   on_streaming: Callable[[Callable[[], None]], Any] | None = None
                   ) -> int | None:
        """Run an exec session: output to the callables, input from the fd `stdin`; its
        exit code, or None when detached (or its streaming was ended through the function
        `on_streaming` is handed: see execs.start)."""
        from ketch.containers import execs

        return execs.start(self, exec_id, stdout=stdout, stderr=stderr, stdin=stdin,
                           detach=detach, on_streaming=on_streaming)

    def exec_cleanup(self, exec_id: str, name_or_id: str) -> None:
        """The monitor's exit command for a detached exec session of the container:
        record its end."""
        from ketch.containers import execs

        execs.finish(self, exec_id, name_or_id)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        from ketch.containers import execs

        return execs.inspect(self, exec_id)

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        from ketch.containers import execs

        execs.resize(self, exec_id, height, width)

    def check_detach_keys(self, spec: str | None) -> None:
        """Refuse a detach-keys value dockerd refuses at attach ('Invalid detach keys (SPEC)
        provided'): front doors check it before they make or attach anything."""
        if spec:
            from ketch.runtime.monitor import parse_detach_keys

            parse_detach_keys(spec)

    def resize(self, name_or_id: str, height: int, width: int) -> None:
        from ketch.containers import attach

        attach.resize(self, name_or_id, height, width)

    def reopen_log(self, name_or_id: str) -> None:
        """Have conmon reopen the running container's log path (after a rename: the
        kubelet's rotation); Conflict when it is not running."""
        from ketch.containers import logs

        logs.reopen(self, name_or_id)

    def logs(self, name_or_id: str, *, follow: bool = False, tail: int | None = None,
             since: float | None = None, until: float | None = None,
             timestamps: bool = False, details: bool = False,
             cancelled: Callable[[], bool] | None = None) -> Iterator[tuple[str, bytes]]:
        """(stream, data) of the container's log (see containers.logs.read)."""
        from ketch.containers.logs import read

        return read(self, name_or_id, follow=follow, tail=tail, since=since, until=until,
                    timestamps=timestamps, details=details, cancelled=cancelled)

    def port_lines(self, name_or_id: str, port: str | None = None) -> builtins.list[str]:
        rec = self.get(name_or_id)
        want = None
        if port:
            num, _, proto = port.partition("/")
            digits = num.isascii() and num.isdigit()
            if not digits or int(num) > 65535:  # docker's strconv.ParseUint(port, 10, 16)
                why = "value out of range" if digits else "invalid syntax"
                raise InvalidArgument(f'invalid port ({num}): strconv.ParseUint: parsing'
                                      f' "{num}": {why}')
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
            raise Conflict(f"Container {rec.id} is not running")
        return rec

    def top(self, name_or_id: str, ps_args: builtins.list[str] | None = None
            ) -> tuple[builtins.list[str], builtins.list[builtins.list[str]]]:
        """`top`: the host's `ps` output, rows limited to the container's processes."""
        from ketch.containers.top import top

        rec = self._running(name_or_id)
        result = top(self, rec, ps_args)
        self.event(rec, "top")  # (dockerd journals every top that answered)
        return result

    def diff(self, name_or_id: str) -> builtins.list[tuple[int, str]]:
        """`diff`: (0 changed, 1 added, 2 deleted, path) from the container's upper dir."""
        rec = self.get(name_or_id)
        from ketch.containers.diff import upper_changes

        lowers = self.engine.layers.lower_dirs(rec.chain_ids) if rec.chain_ids else []
        return upper_changes(f"{self.path(rec.id)}/upper", lowers)

    def commit(self, name_or_id: str, *, ref: str | None = None,
               changes: builtins.list[str] | None = None, message: str = "", author: str = "",
               pause: bool = True, config: dict[str, Any] | None = None) -> ImageRecord:
        """`commit`: a new image, the container's image plus its upper dir as a layer.
        `config` (the API's body) overrides the container's settings, which fill in
        what it leaves unset (moby's merge)."""
        from ketch.containers.commit import commit_container

        rec = self.get(name_or_id)
        if not (pause and rec.state == "running"):
            return commit_container(self, rec, ref=ref, changes=list(changes or []),
                                    message=message, author=author, user_config=config)
        # Killed while the container is frozen, this process leaves the intent for the
        # next ketch command to thaw it (lifecycle.recover).
        with self.engine.intents.held("containers.pause", rec.id):
            # (paused by someone else meanwhile: committed as it is, and left paused)
            paused = self.lifecycle.pause(rec.id, strict=False)
            try:
                return commit_container(self, rec, ref=ref, changes=list(changes or []),
                                        message=message, author=author,
                                        user_config=config)
            finally:
                if paused:
                    try:
                        self.unpause(rec.id)
                    except (Conflict, NotFound):
                        pass  # unpaused, or removed, by another command meanwhile

    def check(self) -> builtins.list[tuple[str, Any]]:
        """Containers recorded as running whose process is gone, and pinned pod
        namespaces of containers with no record: (what, repair)."""
        from ketch.containers import podns

        found = []
        recs = self.records.all()
        for rec in recs:
            if rec.running and not self.lifecycle.process_alive(rec):
                found.append((f"container {rec.short_id} recorded as {rec.state} but its"
                              " process is gone", lambda c=rec.id: self.lifecycle.finish(c)))
        known = {rec.id for rec in recs}
        for cid in podns.pinned_ids(self.engine.run_root_dir) - known:
            found.append((f"pinned namespaces of removed container {cid[:12]}",
                          lambda c=cid: podns.unpin(self, c)))
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
        from ketch.containers.stats import sample_rows

        return sample_rows(self, recs, interval)

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


def _remove_tree(path: str) -> None:
    """`shutil.rmtree(path, ignore_errors=True)` without shutil's import; an empty or
    missing directory (a container that never ran has one) costs one system call."""
    try:
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    from ketch.store.trash import delete_tree

    delete_tree(path)


def _label_ok(labels: dict[str, str], f: str) -> bool:
    k, eq, v = f.partition("=")
    return k in labels and (not eq or labels[k] == v)
