"""The pod state machine, over the container service: a pod is an infra container (the
network, IPC and UTS namespaces; the published ports) and members that join it.

Each operation acts on the containers in Podman's order: the infra starts first and
stops last, so a member never runs without namespaces to join (a member is created
beside its infra once the infra's namespaces exist, and its process starts once the
infra runs: Lifecycle.start). A member's own lifecycle stays the container service's;
this module only orders the calls and keeps the pod's record. When the infra exits by
itself, the container service's exit path calls `infra_exited`, which stops the
members and marks them (State.Error says why): whoever finds the infra dead (its
monitor's exit command, or the next command that looks at it) does this, daemonless.

The pod-wide operations (start, stop, restart, kill, pause, unpause, rm) hold the pod's
lock (`locked`), as Podman's pod lock: a `pod start` beside a `pod kill` starts the pod
after the kill, or finds it started, where members were started into the namespaces of
an infra the kill was ending. A member's own start does not take it.

Size: one job, the pod state machine (the ordered operations, the lock, the infra's exit,
status and filters); the records and the infra image are modules of their own.
"""

from __future__ import annotations

import builtins
import os
import time

from ketch.errors import Conflict, InvalidArgument, KetchError
from ketch.filtermatch import matches
from ketch.pods.records import PodNotFound, PodRecord, PodRecords

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterator
    from typing import Any

    from ketch.containers.host import ContainerHost
    from ketch.containers.podns import InfraStart
    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService

SHARED_NAMESPACES = ["ipc", "net", "uts"]
INFRA_EXITED = "the pod's infra container exited"
_NETWORK_ON_POD = "network cannot be configured when it is shared with a pod"
FILTERS = ("id", "name", "label", "status", "ctr-names", "ctr-ids", "ctr-number")


class PodService:
    def __init__(self, engine: ContainerHost) -> None:
        self.engine = engine
        self.records = PodRecords(engine.db)
        self._held: set[str] = set()  # pods whose lock this service holds (`locked`)

    @property
    def containers(self) -> ContainerService:
        return self.engine.containers

    def get(self, name_or_id: str) -> PodRecord:
        return self.records.find(name_or_id)

    def locked(self, name_or_id: str) -> _PodLock:
        """`with pods.locked(P) as pod:` the pod's record, read again under the pod's
        lock (a flock of RUN_ROOT/pods/ID.lock, across ketch processes): PodNotFound
        when it was removed meanwhile. Taken again by its holder (restart, rm), it is
        held already."""
        return _PodLock(self, name_or_id)

    def event(self, pod: PodRecord, action: str) -> None:
        """A pod event in the journal (`ketch events --filter type=pod`), as Podman's."""
        from ketch.events import emit

        emit(self.engine.root_dir, "pod", action, pod.id, {"name": pod.name, **pod.labels})

    # -- the pod's containers ---------------------------------------------------------
    def infra(self, pod: PodRecord) -> ContainerRecord | None:
        if not pod.infra_id:
            return None
        rec = self.containers.records.get(pod.infra_id)
        return self.containers._refresh(rec) if rec is not None else None

    def members(self, pod: PodRecord) -> list[ContainerRecord]:
        """The pod's containers other than the infra, oldest first (finished first when
        their process has exited)."""
        out = [r for r in self.containers.records.all()
               if r.host_config.get("_Pod") == pod.id]
        out.sort(key=lambda r: r.created)
        return [self.containers._refresh(r) for r in out]

    def all_containers(self, pod: PodRecord) -> list[ContainerRecord]:
        infra = self.infra(pod)
        return ([infra] if infra is not None else []) + self.members(pod)

    # -- create -----------------------------------------------------------------------
    def create(self, name: str | None = None, *, publish: list[str] | None = None,
               network: str | None = None, hostname: str | None = None,
               add_hosts: list[str] | None = None,
               labels: dict[str, str] | None = None) -> PodRecord:
        """A new pod with its infra container (created, not started): Podman's `pod
        create`. Nothing is left behind when any part is refused."""
        from ketch.containers.names import valid_name

        if name is not None and not valid_name(name):
            raise InvalidArgument(f"invalid pod name {name!r}: only [a-zA-Z0-9]"
                                  "[a-zA-Z0-9_.-] are allowed")
        if network and network.startswith("container:"):
            raise InvalidArgument(f"pods cannot use network mode {network!r}: a pod's"
                                  " infra container owns its network")
        port_bindings: dict[str, list[dict[str, str]]] = {}
        exposed: dict[str, dict[str, Any]] = {}
        if publish:  # (the parser's imports cost a pod without ports ~5 ms)
            from ketch.network.ports import parse_publish
        for spec in publish or []:
            for b in parse_publish(spec):
                key = f"{b.container_port}/{b.protocol}"
                exposed[key] = {}
                port_bindings.setdefault(key, []).append(
                    {"HostIp": b.host_ip or "", "HostPort": str(b.host_port or "")})
        if network and network not in ("bridge", "default", "host"):
            self.engine.networks.inspect_network(network)  # no such network: refused now
        from ketch.containers import names

        if name is None:
            name = names.generate(self.records.names())
        pod_id = os.urandom(32).hex()
        pod = PodRecord(id=pod_id, name=name, created=time.time(), infra_id="",
                        labels=dict(labels or {}),
                        config={"Hostname": hostname or ("" if network == "host" else name),
                                "Network": network or "bridge",
                                "PortBindings": port_bindings,
                                "ExtraHosts": list(add_hosts or [])})
        # killed before the infra is recorded on the pod, the next command undoes it all
        with self.engine.intents.held("pods.create", pod_id):
            self._create(pod, exposed, port_bindings)
        self.event(pod, "create")
        return self.records.get(pod_id) or pod

    def _create(self, pod: PodRecord, exposed: dict[str, Any],
                port_bindings: dict[str, Any]) -> None:
        pod_id, name = pod.id, pod.name
        network = pod.config["Network"]
        add_hosts = pod.config["ExtraHosts"]
        self.records.insert(pod)  # the name is taken (or refused) first
        infra_id = ""
        try:
            from ketch.pods.infra import ensure_pause_image, infra_seccomp

            image = ensure_pause_image(self.engine.images)
            config: dict[str, Any] = {
                "Image": image, "Hostname": pod.config["Hostname"] or name,
                "ExposedPorts": exposed or None,
                "Labels": {}, "StopTimeout": 10,
            }
            host_config: dict[str, Any] = {
                "NetworkMode": network, "PortBindings": port_bindings,
                "ExtraHosts": list(add_hosts or []) or None, "IpcMode": "shareable",
                "Init": False, "SecurityOpt": [infra_seccomp()],
            }
            if network == "host":
                config.pop("Hostname")
            infra = self.containers.create(config, host_config, name=f"{pod_id[:12]}-infra")
            infra_id = infra.id
            self.containers.records.update(
                infra.id, host_config={**infra.host_config, "_PodInfra": pod_id})
            self.records.set_infra(pod_id, infra.id)
        except BaseException:
            self.records.delete(pod_id)
            if infra_id:
                self.containers.remove(infra_id, force=True)
            raise

    # -- members ----------------------------------------------------------------------
    def join(self, pod_name: str, config: dict[str, Any], host_config: dict[str, Any]
             ) -> None:
        """Make a container's settings those of a member of the pod (`create --pod`):
        the infra's network, IPC and UTS namespaces. Network settings of its own are
        refused with Podman's messages: they belong to the pod."""
        pod = self.get(pod_name)
        mode = host_config.get("NetworkMode") or "default"
        if mode != "default" or host_config.get("_NetworkingConfig"):
            raise InvalidArgument("invalid config provided: networks must be defined when"
                                  f" the pod is created: {_NETWORK_ON_POD}")
        if host_config.get("PortBindings") or host_config.get("PublishAllPorts"):
            raise InvalidArgument("invalid config provided: published or exposed ports must"
                                  f" be defined when the pod is created: {_NETWORK_ON_POD}")
        if host_config.get("ExtraHosts"):
            raise InvalidArgument("invalid config provided: extra host entries must be"
                                  f" specified on the pod: {_NETWORK_ON_POD}")
        if config.get("Hostname"):
            raise InvalidArgument("invalid config provided: cannot set hostname when"
                                  " joining the pod's UTS namespace")
        infra = f"container:{pod.infra_id}"
        host_config["NetworkMode"] = infra
        if (host_config.get("IpcMode") or "private") in ("private", "shareable"):
            host_config["IpcMode"] = infra
        if not host_config.get("UTSMode"):
            host_config["UTSMode"] = infra
        # the pod's extra hosts are in every member's /etc/hosts, as in the infra's
        host_config["ExtraHosts"] = list(pod.config.get("ExtraHosts") or []) or None
        host_config["_Pod"] = pod.id

    def check_infra_removal(self, infra: ContainerRecord) -> None:
        """`rm` of an infra container: refused while its pod exists, as Podman does
        (`pod rm` removes the pod record first, then its containers)."""
        pod = self.records.get(infra.host_config.get("_PodInfra") or "")
        if pod is not None:
            raise Conflict(f"container {infra.id} is the infra container of pod {pod.id} and"
                           " cannot be removed without removing the pod")

    def start_infra_beside(self, pod_id: str) -> InfraStart | None:
        """Start the pod's infra if it is not running, beside the start of members: the
        returned start has made the infra's namespaces, which is what a member's start
        waits for (see Lifecycle.start); None when the infra runs already."""
        pod = self.records.get(pod_id)
        if pod is None:
            raise PodNotFound(pod_id)
        infra = self.infra(pod)
        if infra is None:
            raise KetchError(f"pod {pod.name} has no infra container")
        if infra.state == "paused":
            raise Conflict(f"pod {pod.name} is paused: unpause it first")
        if infra.state == "running":
            return None
        from ketch.containers.podns import InfraStart

        return InfraStart(self.engine, infra.id)

    # -- state changes ------------------------------------------------------------------
    def start(self, name_or_id: str) -> PodRecord:
        """Start the infra and every member not running (Podman's `pod start`): the
        members at once, each created beside the infra and started once it runs."""
        with self.locked(name_or_id) as pod:
            infra_start = self.start_infra_beside(pod.id)
            waiting = [m for m in self.members(pod) if m.state not in ("running", "paused")]
            failed: dict[str, str] = {}

            def start(m: ContainerRecord) -> None:
                try:
                    self._in_own_engine(len(waiting) > 1, lambda e: e.containers.start(
                        m.id, infra_start=infra_start))
                except KetchError as e:
                    failed[m.id] = f"{m.name}: {e.message}"

            try:
                self._each_at_once(waiting, start)
            finally:
                if infra_start is not None:
                    infra_start.join()
            if infra_start is not None:
                infra_start.wait()  # (raises its failure if no member did)
            if failed:
                raise KetchError(f"starting pod {pod.name}: " + "; ".join(
                    failed[m.id] for m in waiting if m.id in failed))
            self.event(pod, "start")
            return pod

    def _in_own_engine(self, own: bool, work: Callable[[ContainerHost], object]) -> None:
        """`work` with an Engine of its own (its own database connection: for a thread
        beside others) or with this one."""
        if not own:
            work(self.engine)
            return
        with self.engine.reopen() as mine:
            work(mine)

    def stop(self, name_or_id: str, *, timeout: int | None = None) -> PodRecord:
        """Stop the members (all at once), then the infra."""
        with self.locked(name_or_id) as pod:
            self._stop_members_then_infra(pod, timeout, ("running", "paused", "restarting"))
            self.event(pod, "stop")
            return pod

    def _stop_members_then_infra(self, pod: PodRecord, timeout: int | None,
                                 states: tuple[str, ...]) -> None:
        self._stop_together([c for c in self.members(pod) if c.state in states], timeout)
        infra = self.infra(pod)
        if infra is not None and infra.state in states:
            self.containers.stop(infra.id, timeout=timeout)

    def _stop_together(self, members: builtins.list[ContainerRecord],
                       timeout: int | None) -> None:
        """Stop the members at the same time, each with its own stop signal and timeout,
        as Podman's `pod stop` does: a pod whose members ignore SIGTERM stops in one
        timeout, not in the sum of them. The first failure is raised once all have
        ended."""
        self._each_at_once(members, lambda c: self.containers.stop(c.id, timeout=timeout))

    @staticmethod
    def _each_at_once(members: builtins.list[ContainerRecord],
                      work: Callable[[ContainerRecord], object]) -> None:
        """`work` on every member, each in a thread of its own; the first failure is
        raised once all have ended."""
        if len(members) < 2:
            for c in members:
                work(c)
            return
        import threading

        failures: builtins.list[BaseException] = []

        def one(c: ContainerRecord) -> None:
            try:
                work(c)
            except BaseException as e:  # re-raised in the calling thread below
                failures.append(e)

        threads = [threading.Thread(target=one, args=(c,), name=f"member-{c.id[:12]}")
                   for c in members]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise failures[0]

    def restart(self, name_or_id: str, *, timeout: int | None = None) -> PodRecord:
        with self.locked(name_or_id) as pod:
            self.stop(pod.id, timeout=timeout)
            return self.start(pod.id)

    def kill(self, name_or_id: str, signal: str | int = "KILL") -> PodRecord:
        """Send the signal to every running container of the pod, members first."""
        with self.locked(name_or_id) as pod:
            running = [c for c in self._members_then_infra(pod) if c.state == "running"]
            if not running:
                raise Conflict(f"pod {pod.name} has no running containers to kill")
            for c in running:
                self.containers.kill(c.id, signal)
            self.event(pod, "kill")
            return pod

    def pause(self, name_or_id: str) -> PodRecord:
        with self.locked(name_or_id) as pod:
            running = [c for c in self._members_then_infra(pod) if c.state == "running"]
            if not running:
                raise Conflict(f"pod {pod.name} is not running")
            for c in running:
                self.containers.pause(c.id)
            self.event(pod, "pause")
            return pod

    def unpause(self, name_or_id: str) -> PodRecord:
        with self.locked(name_or_id) as pod:
            paused = [c for c in self.all_containers(pod) if c.state == "paused"]
            if not paused:
                raise Conflict(f"pod {pod.name} is not paused")
            for c in paused:
                self.containers.unpause(c.id)
            self.event(pod, "unpause")
            return pod

    def remove(self, name_or_id: str, *, force: bool = False,
               timeout: int | None = None) -> str:
        """Remove the pod, its members and its infra. A running container is refused
        without `force`, before anything is removed."""
        with self.locked(name_or_id) as pod:
            return self._remove(pod, force, timeout)

    def _remove(self, pod: PodRecord, force: bool, timeout: int | None) -> str:
        everything = self._members_then_infra(pod)
        if not force:
            busy = [c for c in everything if c.running]
            if busy:
                raise Conflict(f"pod {pod.id} has containers that are not ready to be removed:"
                               f" cannot remove container {busy[0].id} as it is"
                               f" {busy[0].state} - running or paused containers cannot be"
                               " removed without force: container state improper")
        if force and timeout is not None:
            self._stop_members_then_infra(pod, timeout, ("running",))
        # the record goes first: then the infra may be removed, and a removal cut short
        # leaves containers that `rm` takes, not a pod that cannot be emptied
        with self.engine.intents.held("pods.remove", pod.id,
                                      {"containers": [c.id for c in everything]}):
            self.records.delete(pod.id)
            for c in everything:
                self.containers.remove(c.id, force=True, volumes=False)
        try:  # (a command waiting for the lock finds the pod gone)
            os.unlink(os.path.join(self.engine.run_root_dir, "pods", f"{pod.id}.lock"))
        except FileNotFoundError:
            pass
        self.event(pod, "remove")
        return pod.id

    def prune(self) -> list[str]:
        """Remove every pod with no running or paused container."""
        removed = []
        for pod in self.records.all():
            if any(c.running for c in self.all_containers(pod)):
                continue
            removed.append(self.remove(pod.id, force=True))
        return removed

    def _members_then_infra(self, pod: PodRecord) -> list[ContainerRecord]:
        infra = self.infra(pod)
        return self.members(pod) + ([infra] if infra is not None else [])

    # -- reading ------------------------------------------------------------------------
    def status(self, pod: PodRecord, containers: list[ContainerRecord] | None = None) -> str:
        """Podman's pod status: Created, Running, Paused, Exited or Degraded (some of
        its containers running, some not)."""
        states = [c.state for c in (containers if containers is not None
                                    else self.all_containers(pod))]
        if not states or all(s == "created" for s in states):
            return "Created"
        if all(s == "running" for s in states):
            return "Running"
        if all(s == "paused" for s in states):
            return "Paused"
        if not any(s in ("running", "paused", "restarting") for s in states):
            return "Exited"
        return "Degraded"

    def list(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        """`pod ps`: one summary per pod (Podman's ListPodsReport fields)."""
        filters = filters or {}
        for k in filters:
            if k not in FILTERS:
                raise InvalidArgument(f"{k} is an invalid filter")
        out = []
        for pod in self.records.all():
            ctrs = self.all_containers(pod)
            status = self.status(pod, ctrs)
            if not _matches(pod, status, ctrs, filters):
                continue
            out.append({
                "Id": pod.id, "Name": pod.name, "Created": pod.created, "Status": status,
                "InfraId": pod.infra_id, "Labels": pod.labels,
                "Networks": [pod.config.get("Network") or "bridge"],
                "Containers": [{"Id": c.id, "Names": c.name, "Status": c.state}
                               for c in ctrs],
            })
        return out

    def inspect(self, name_or_id: str) -> dict[str, Any]:
        """Podman's `pod inspect` shape."""
        from ketch.fmt.units import rfc3339nano

        pod = self.get(name_or_id)
        ctrs = self.all_containers(pod)
        cfg = pod.config
        network = cfg.get("Network") or "bridge"
        return {
            "Id": pod.id, "Name": pod.name, "Created": rfc3339nano(pod.created),
            "ExitPolicy": "continue", "State": self.status(pod, ctrs),
            "Hostname": cfg.get("Hostname") or "", "Labels": pod.labels,
            "CreateCgroup": False, "CreateInfra": True, "InfraContainerID": pod.infra_id,
            "InfraConfig": {
                "PortBindings": cfg.get("PortBindings") or {},
                "HostNetwork": network == "host", "StaticIP": "", "StaticMAC": "",
                "NoManageResolvConf": False, "DNSServer": None, "DNSSearch": None,
                "DNSOption": None, "NoManageHosts": False,
                "HostAdd": cfg.get("ExtraHosts") or None, "Networks": [network],
                "NetworkOptions": None,
            },
            "SharedNamespaces": list(SHARED_NAMESPACES),
            "NumContainers": len(ctrs),
            "Containers": [{"Id": c.id, "Name": c.name, "State": c.state} for c in ctrs],
        }

    def logs(self, name_or_id: str, *, container: str | None = None, follow: bool = False,
             tail: int | None = None, since: float | None = None,
             until: float | None = None, timestamps: bool = False
             ) -> Iterator[tuple[ContainerRecord, str, bytes]]:
        """The members' logs, one container after the other (the infra writes none):
        (member, stream, data). With `follow`, every member is followed at once."""
        pod = self.get(name_or_id)
        members = self.members(pod)
        if container is not None:
            members = [m for m in members if container in (m.name, m.id)
                       or (len(container) >= 3 and m.id.startswith(container))]
            if not members:
                raise KetchError(f"container {container} is not in pod {pod.name}")
        kw: dict[str, Any] = dict(tail=tail, since=since, until=until,
                                  timestamps=timestamps)
        if not follow or len(members) < 2:
            for m in members:
                for stream, data in self.containers.logs(m.id, follow=follow, **kw):
                    yield m, stream, data
            return
        yield from self._follow_all(members, kw)

    def _follow_all(self, members: builtins.list[ContainerRecord], kw: dict[str, Any]
                    ) -> Iterator[tuple[ContainerRecord, str, bytes]]:
        """Several members' logs followed at once, as their lines come (a reader thread
        each; the database gives each thread its own SQLite connection)."""
        import queue
        import threading

        q: queue.Queue[tuple[ContainerRecord, str, bytes] | None] = queue.Queue(maxsize=256)
        stop = threading.Event()

        def read(m: ContainerRecord) -> None:
            try:
                for stream, data in self.containers.logs(m.id, follow=True,
                                                         cancelled=stop.is_set, **kw):
                    q.put((m, stream, data))
            except KetchError:
                pass
            finally:
                q.put(None)

        threads = [threading.Thread(target=read, args=(m,), daemon=True) for m in members]
        for t in threads:
            t.start()
        left = len(threads)
        try:
            while left:
                item = q.get()
                if item is None:
                    left -= 1
                    continue
                yield item
        finally:
            stop.set()

    def connect(self, name_or_id: str, port: int) -> socket.socket:
        """A TCP connection to 127.0.0.1:`port` inside the pod's network namespace (its
        infra process's), as a port-forward needs: the socket keeps that namespace, so
        the caller can use it from any thread."""
        import socket

        from ketch.network.netns import run_in

        pod = self.get(name_or_id)
        infra = self.infra(pod)
        if infra is None or not infra.running or not infra.pid:
            raise Conflict(f"pod {pod.name} is not running")
        return run_in(f"/proc/{infra.pid}/ns/net",
                      lambda: socket.create_connection(("127.0.0.1", port), timeout=10))

    def set_sysctls(self, name_or_id: str, values: dict[str, str]) -> None:
        """Namespaced sysctls for the pod (Docker's whitelist): before it starts, on its
        infra, which runc gives them as it starts; while it runs, `net.*` ones written
        in its network namespace at once (as for an interface that appeared later)."""
        if not values:
            return
        from ketch.containers.options import SYSCTL_NAMES, SYSCTL_PREFIXES

        pod = self.get(name_or_id)
        for key, value in values.items():
            if key not in SYSCTL_NAMES and not key.startswith(SYSCTL_PREFIXES):
                raise InvalidArgument(f"sysctl '{key}={value}' is not whitelisted")
        infra = self.infra(pod)
        if infra is None:
            raise KetchError(f"pod {pod.name} has no infra container")
        if not infra.running:
            sysctls = {**(infra.host_config.get("Sysctls") or {}), **values}
            self.containers.records.update(infra.id, host_config={**infra.host_config,
                                                                  "Sysctls": sysctls})
            return
        late = [k for k in values if not k.startswith("net.")]
        if late:
            raise Conflict(f"pod {pod.name} is running: sysctl {late[0]!r} can only be set"
                           " before it starts")
        from ketch.network.netns import run_in

        def write() -> None:
            for key, value in values.items():
                try:
                    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                        f.write(value)
                except OSError as e:
                    raise InvalidArgument(f"sysctl '{key}={value}': {e.strerror}") from None

        run_in(f"/proc/{infra.pid}/ns/net", write)

    def top(self, name_or_id: str, ps_args: builtins.list[str] | None = None
            ) -> tuple[builtins.list[str], builtins.list[builtins.list[str]]]:
        """The processes of every running container of the pod (infra included, as
        Podman shows it), under the titles of `ps`."""
        pod = self.get(name_or_id)
        running = [c for c in self.all_containers(pod) if c.state in ("running", "paused")]
        if not running:
            raise Conflict(f"pod {pod.id} is not running")
        titles: list[str] = []
        rows: list[list[str]] = []
        for c in running:
            t, r = self.containers.top(c.id, ps_args)
            titles = titles or t
            rows.extend(r)
        return titles, rows

    def infra_exited(self, infra: ContainerRecord) -> None:
        """The infra container has exited (the container service's exit path calls
        this): its members lose their network, so they are stopped, and marked with
        the reason."""
        pod_id = infra.host_config.get("_PodInfra")
        if not pod_id:
            return
        svc = self.containers

        def stop_and_mark(m: ContainerRecord) -> None:
            try:
                if m.state == "paused":
                    svc.unpause(m.id)
                svc.stop(m.id)
                svc.records.update(m.id, error=INFRA_EXITED)
            except KetchError:
                pass  # removed meanwhile, or already stopping

        # all at once, as `pod stop`: members that ignore SIGTERM went one stop timeout
        # after another (a second member of a dead pod still ran 10 s after the first)
        self._each_at_once([m for m in svc.records.all() if m.host_config.get("_Pod") == pod_id
                            and m.state in ("running", "paused")], stop_and_mark)

    def recover(self, intent: Any) -> bool:
        """Finish or undo a pod operation whose process was killed (Engine.recover): a
        create is undone (record and infra container), a removal is finished."""
        op = intent.kind.partition(".")[2]
        if op == "create":
            pod = self.records.get(intent.subject)
            if pod is not None and pod.infra_id:
                return True  # killed after the pod was complete
            self.records.delete(intent.subject)
            try:
                infra = self.containers.records.find(f"{intent.subject[:12]}-infra")
            except KetchError:
                return True
            self.containers.remove(infra.id, force=True)
        elif op == "remove":
            self.records.delete(intent.subject)
            for cid in intent.data.get("containers") or []:
                if self.containers.records.get(cid) is not None:
                    self.containers.remove(cid, force=True)
        return True

    def ids_matching(self, refs: builtins.list[str]) -> set[str]:
        """The IDs of the pods the names or ID prefixes refer to (`ps --filter pod=`)."""
        out = set()
        for pod in self.records.all():
            if any(r in (pod.name, pod.id) or (r and pod.id.startswith(r)) for r in refs):
                out.add(pod.id)
        return out


def pod_of(rec: ContainerRecord) -> str:
    """The ID of the pod a container belongs to (member or infra), or ""."""
    return rec.host_config.get("_Pod") or rec.host_config.get("_PodInfra") or ""


def _matches(pod: PodRecord, status: str, ctrs: list[ContainerRecord],
             filters: dict[str, list[str]]) -> bool:
    for key, wants in filters.items():
        if key == "id" and not any(pod.id.startswith(w) for w in wants):
            return False
        if key == "name" and not any(matches(w, pod.name) for w in wants):
            return False
        if key == "status" and status.lower() not in [w.lower() for w in wants]:
            return False
        if key == "label":
            for want in wants:
                k, eq, v = want.partition("=")
                if k not in pod.labels or (eq and pod.labels[k] != v):
                    return False
        if key == "ctr-names" and not any(w in c.name for w in wants for c in ctrs):
            return False
        if key == "ctr-ids" and not any(c.id.startswith(w) for w in wants for c in ctrs):
            return False
        if key == "ctr-number" and str(len(ctrs) - 1) not in wants:
            return False
    return True


class _PodLock:
    """PodService.locked (a class, not contextlib's decorator: `pod create` loads
    neither contextlib nor functools)."""

    def __init__(self, pods: PodService, name_or_id: str) -> None:
        self.pods = pods
        self.name_or_id = name_or_id
        self.fd = -1
        self.pod_id = ""

    def __enter__(self) -> PodRecord:
        pods = self.pods
        pod = pods.get(self.name_or_id)
        if pod.id in pods._held:
            return pod
        import fcntl

        where = os.path.join(pods.engine.run_root_dir, "pods")
        os.makedirs(where, exist_ok=True)
        self.fd = os.open(os.path.join(where, f"{pod.id}.lock"), os.O_CREAT | os.O_RDWR,
                          0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            current = pods.records.get(pod.id)
            if current is None:
                raise PodNotFound(self.name_or_id)
        except BaseException:
            os.close(self.fd)
            raise
        self.pod_id = pod.id
        pods._held.add(pod.id)
        return current

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            self.pods._held.discard(self.pod_id)
            os.close(self.fd)
            self.fd = -1
