"""`Engine`: the one façade the CLI, the API server and library users call.

It is also the composition root: it owns the state root, builds the stores and the
services (images, containers, networks, volumes) and hands each what it needs, so no
service imports this module. Images, distribution and the stores get their concrete
dependencies; the container service and the builder see the Engine through the small
Protocols they declare (`ketch.containers.host.ContainerHost`,
`ketch.builder.host.BuildHost`), which lets a command build only the services it touches:
`ps` never loads the image store, the network service or the builder.

Every operation a front door offers is a method here, or a method of a service exposed
here (`engine.containers.stop(...)`, `engine.images.tag(...)`), taking plain values
and returning Docker-shaped results. Front doors parse and render; they never import a
service package.

Size: the façade is the whole public API, one short method per operation, documented for
library users; it holds no behaviour of its own.
"""

from __future__ import annotations

import os

from ketch import __version__
from ketch.errors import InvalidArgument, KetchError, NotFound
from ketch.store.db import Database
from ketch.values import cached_property

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path
    from typing import IO, Any

    from ketch.builder.events import BuildEvent, BuildEvents, Cancellation
    from ketch.builder.executor import BuildResult
    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService
    from ketch.containers.volumes import VolumeStore
    from ketch.distribution.progress import PullResult, PushResult
    from ketch.images.service import ImageService, PruneReport
    from ketch.kube.play import DownReport, PlayReport
    from ketch.layers.store import LayerStore
    from ketch.network.service import NetworkService
    from ketch.pods.records import PodRecord
    from ketch.pods.service import PodService
    from ketch.progress import Progress
    from ketch.store.content import ContentStore
    from ketch.store.images import ImageRecords
    from ketch.store.intents import Intent, Intents


DEFAULT_ROOT = "/var/lib/ketch"
DEFAULT_RUN_ROOT = "/run/ketch"
API_VERSION = "1.45"
MIN_API_VERSION = "1.24"


def _make_dir(path: str, what: str, mode: int) -> None:
    """Make the state or run root (and its parents), or say in one line why not. The run
    root is made by the services that keep state there (containers, networks): image
    commands never need it."""
    try:
        os.makedirs(path, mode=mode, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InvalidArgument(f"cannot use {path} as the {what}: it (or a parent) is not"
                              " a directory") from None
    except OSError as e:
        raise InvalidArgument(f"cannot use {path} as the {what}: {e.strerror}") from None


class Engine:
    """A ketch state root, and everything that can be done with it.

    `Engine(root, run_root)` opens (creating if needed) the state under `root` (default
    `$KETCH_ROOT` or /var/lib/ketch) with run state under `run_root` (default
    `$KETCH_RUN_ROOT` or /run/ketch). Use it as a context manager, or call `close()`.

    Services, created on first use: `images`, `containers`, `networks`, `volumes`;
    stores: `content` (blobs), `records` (image records), `layers` (unpacked layers).
    Errors are `ketch.errors.KetchError` subclasses with a one-line message.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None,
                 run_root: str | os.PathLike[str] | None = None) -> None:
        # Paths as strings first: `root` and `run_root` are Paths on first use, so a
        # command that needs neither (`ps`) does not import pathlib (and re with it).
        self.root_dir = os.path.abspath(root or os.environ.get("KETCH_ROOT") or DEFAULT_ROOT)
        self.run_root_dir = os.path.abspath(run_root or os.environ.get("KETCH_RUN_ROOT")
                                            or DEFAULT_RUN_ROOT)
        _make_dir(self.root_dir, "state root", 0o711)
        self.db = Database(os.path.join(self.root_dir, "ketch.db"))

    @cached_property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self.root_dir)

    @cached_property
    def run_root(self) -> Path:
        from pathlib import Path

        return Path(self.run_root_dir)

    # The stores load on first use: `ps` needs neither blobs nor layers.
    @cached_property
    def content(self) -> ContentStore:
        from ketch.store.content import ContentStore

        return ContentStore(self.root_dir)

    @cached_property
    def records(self) -> ImageRecords:
        from ketch.store.images import ImageRecords

        return ImageRecords(self.db)

    @cached_property
    def layers(self) -> LayerStore:
        from ketch.layers.store import LayerStore

        return LayerStore(self.root_dir, self.db, self.records, self.content)

    @cached_property
    def images(self) -> ImageService:
        """Local images: list, inspect, history, tag, remove, prune, import, load, save."""
        from ketch.images.service import ImageService

        service = ImageService(self.root_dir, self.db, self.records, self.content, self.layers,
                               users=self._image_users, layer_users=self.layer_users,
                               intents=lambda: self.intents)
        try:
            # Trees a killed emptier left (see ketch.store.trash); usually no trash/.
            if os.listdir(os.path.join(self.root_dir, "trash")):
                self.layers.empty_trash()
        except FileNotFoundError:
            pass
        return service

    @cached_property
    def networks(self) -> NetworkService:
        """Networks: create, list, inspect, remove, prune (see also `network_*` here)."""
        from ketch.network.service import NetworkService

        _make_dir(self.run_root_dir, "run root", 0o777)  # (the umask applies)
        return NetworkService(self.db, self.root_dir, self.run_root_dir)

    @cached_property
    def containers(self) -> ContainerService:
        """Containers: create, start, stop, kill, list, inspect, logs, remove, prune, ..."""
        from ketch.containers.service import ContainerService

        service = ContainerService(self)  # refuses another run root first (claim_run_root)
        _make_dir(self.run_root_dir, "run root", 0o777)  # (the umask applies)
        return service

    @cached_property
    def pods(self) -> PodService:
        """Pods: groups of containers sharing an infra container's namespaces (the
        `pod_*` methods here are the stable names for library users)."""
        from ketch.pods.service import PodService

        return PodService(self)

    @cached_property
    def volumes(self) -> VolumeStore:
        """Named and anonymous volumes: create, list, inspect, remove, prune."""
        from ketch.containers.volumes import VolumeStore

        return VolumeStore(self)

    def reopen(self) -> Engine:
        """A new Engine on the same state (its own database connection), e.g. for a
        child process after fork."""
        return Engine(self.root_dir, self.run_root_dir)

    # Images ask who uses them through the Engine, so images never import containers.
    def _image_users(self, image_id: str) -> list[tuple[str, bool]]:
        return self.containers.image_users(image_id)

    def layer_users(self) -> set[str]:
        """Chain IDs of the layers containers stand on (kept by image gc)."""
        return self.containers.records.chains_in_use()

    # -- crash recovery ---------------------------------------------------------------
    @cached_property
    def intents(self) -> Intents:
        """The journal of state changes in progress, for crash recovery."""
        from ketch.store.intents import Intents

        return Intents(self.db)

    def recover(self, *, repair: bool = True) -> list[tuple[Intent, str]]:
        """Finish or undo what killed ketch processes left: every intent whose owner is
        dead goes to the service its kind names (`containers.start` → containers), which
        rolls it back or forward. Costs one query when there is nothing to do. Returns
        (intent, outcome) for each one found."""
        found = self.intents.orphaned()
        report: list[tuple[Intent, str]] = []
        for intent in found:
            if not repair:
                report.append((intent, "found"))
                continue
            if not self.intents.claim(intent):
                continue  # another process is recovering it
            service = getattr(self, intent.kind.partition(".")[0], None)
            try:
                done = service.recover(intent) if service is not None else True
            except Exception as e:  # the command goes on; the intent is retried later
                report.append((intent, f"failed: {e}"))
                continue
            if done:
                self.intents.end(intent.id)
                report.append((intent, "repaired"))
            else:
                report.append((intent, "deferred"))
        return report

    def check(self, *, repair: bool = False) -> list[tuple[str, str]]:
        """`system check`: what killed processes left, as (what, outcome) pairs; outcome
        is "found" without `repair`, else "repaired", "deferred" or "failed: ...".
        Looks at the intents, staging in tmp/ of dead writers, containers recorded as
        running whose process is gone, and network state of containers with no record."""
        from ketch.store.tmpclean import clean_tmp, debris

        out = [(i.describe(), outcome) for i, outcome in self.recover(repair=repair)]
        for path in debris(self.root / "tmp"):
            out.append((f"staging {path.name} of a dead process",
                        "repaired" if repair else "found"))
        if repair:
            clean_tmp(self.root / "tmp")
        for what, fix in self.containers.check():
            out.append((what, self._repair(fix) if repair else "found"))
        known = {r.id for r in self.containers.records.all()}
        for cid in self.networks.sandboxes():
            if cid not in known:
                out.append((f"network state of removed container {cid[:12]}",
                            self._repair(lambda c=cid: self.networks.teardown(c))
                            if repair else "found"))
        return out

    @staticmethod
    def _repair(fix: Any) -> str:
        try:
            fix()
        except (OSError, KetchError) as e:
            return f"failed: {e}"
        return "repaired"

    # -- builds (ketch.builder) ----------------------------------------------------------------
    def build(self, context: str, dockerfile: str | None = None, *,
              context_tar: IO[bytes] | None = None,
              tags: Iterable[str] = (), build_args: dict[str, str | None] | None = None,
              target: str | None = None, no_cache: bool = False, pull: bool = False,
              labels: dict[str, str] | None = None, network: str | None = None,
              platform: str | None = None, remove: bool = True,
              force_remove: bool = False, extra_hosts: Iterable[str] = (),
              auth: dict[str, tuple[str, str]] | None = None,
              run_host_config: dict[str, Any] | None = None,
              cache_from: Iterable[str] = ()
              ) -> BuildEvents:
        """Build an image from a Dockerfile, as `docker build` with the classic builder,
        as an iterator of events (ketch.builder.events): the builder's output lines
        (`BuildLog`), a RUN step's raw output (`BuildOutput`), the image built
        (`BuildImage`), then the `BuildResult` (image ID, tags, warnings). A failed step
        raises `BuildError` from the iterator. The build runs as the iterator is
        drained; closing it early, or its `cancel()` from another thread, cancels the
        build.

        `context` is a directory, a tarball or "-" (a tar read from `context_tar`,
        default standard input); `dockerfile` a path (default `Dockerfile` in the
        context). A tar context whose members climb out of it (`..`, absolute names) is
        refused (InvalidArgument) before anything is unpacked. `auth` (as for `pull`)
        is what pulling base images uses instead of the stored logins.
        `run_host_config` (Engine API HostConfig keys: resources, SecurityOpt, Ulimits,
        CgroupParent, ...) applies to every RUN step's container, checked first.
        `cache_from` names images whose histories are cache sources besides the local
        cache (ketch.builder.cachefrom)."""
        import contextlib

        from ketch.builder.events import events_of

        # the typed parameters above, for the builder's record
        options_kw: dict[str, Any] = dict(
            tags=list(tags), build_args=dict(build_args or {}), target=target,
            no_cache=no_cache, pull=pull, labels=dict(labels or {}), network=network,
            platform=platform, remove=remove, force_remove=force_remove,
            extra_hosts=list(extra_hosts), run_host_config=dict(run_host_config or {}),
            cache_from=list(cache_from))

        def work(emit: Callable[[BuildEvent], None], cancel: Cancellation) -> BuildResult:
            from ketch.builder.context import prepare
            from ketch.builder.executor import BuildOptions, build

            options = BuildOptions(**options_kw)
            given: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            if auth is not None:
                from ketch.distribution import credentials

                given = credentials.given(auth)
            with given, self.intents.held("images.write"):  # context staging in tmp/
                prepared = prepare(context, dockerfile, self.root / "tmp", context_tar,
                                   dockerfile_in_context=context_tar is not None)
                try:
                    return build(self, prepared.context, prepared.dockerfile_text,
                                 prepared.dockerfile_name, options, emit, cancel)
                finally:
                    prepared.context.close()

        return events_of(work)

    def build_prune(self, *, all: bool = False,
                    filters: dict[str, list[str]] | None = None) -> PruneReport:
        """Remove the build cache: dangling (intermediate) images and the remembered
        digests of context files. Tagged images are never build cache. `all` (-a): also
        every image's standing as a step's cache entry, so that no later build takes a
        step from what is left (the images stay: they are tagged images' parents).
        `filters`: image prune's (until, label) choose the images removed."""
        from ketch.builder.checksum import forget

        report = self.images.prune(filters=filters)
        if all:
            with self.images.writing():
                self.records.forget_cache_keys()
        forget(self.db)
        return report

    # -- registries (ketch.distribution) ---------------------------------------------------
    def pull(self, name: str, *, quiet: bool = False, platform: str | None = None,
             auth: dict[str, tuple[str, str]] | None = None, all_tags: bool = False
             ) -> Iterator[Progress | PullResult]:
        """Pull `name` from its registry, as an iterator of events: `Progress` (Docker's
        status messages; the per-layer ones left out when `quiet`), then a `PullResult`.
        `str(event)` is the docker CLI's line, `event.message()` the Engine API's JSON
        message. The pull runs as the iterator is advanced: drain it. `platform` picks
        that entry of a multi-platform image. `auth` (registry key as
        `reference.registry_for_auth` gives it -> (user, password)) replaces the stored
        logins for this pull, as a client's X-Registry-Auth does; {} pulls anonymously.
        `all_tags`: `name` is a repository whose every tag is pulled, in one stream."""
        from ketch.distribution.pull import pull

        return _with_auth(auth, pull(lambda: self.images, self.records, self.root_dir, name,
                                     quiet=quiet, platform=platform, all_tags=all_tags))

    def push(self, name: str, *, auth: dict[str, tuple[str, str]] | None = None,
             compression_format: str | None = None,
             compression_level: int | str | None = None,
             all_tags: bool = False) -> Iterator[Progress | PushResult]:
        """Push the local image `name` to its registry, as an iterator of events:
        `Progress`, then a `PushResult` (tag, manifest digest, size). The push runs as
        the iterator is advanced: drain it. `auth` as for `pull`. Layers stored
        uncompressed are sent as `compression_format` ("gzip" by default, "zstd", "none")
        at `compression_level`; both are checked before anything is sent. `all_tags`:
        `name` is a repository whose every local tag is pushed (a PushResult each)."""
        from ketch.distribution.compression import parse
        from ketch.distribution.push import push

        parse(compression_format, compression_level)
        return _with_auth(auth, push(self.images, name, compression_format=compression_format,
                                     compression_level=compression_level,
                                     all_tags=all_tags))

    def search(self, term: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """`docker search`: ketch knows no index to search (Docker Hub's search API is a
        service of Docker's own, and registries have none), so this always fails."""
        from ketch.errors import KetchError

        if not term:
            from ketch.errors import InvalidArgument

            raise InvalidArgument("term is required: the text to search for")
        raise KetchError(f"cannot search for {term!r}: ketch has no index to search (Docker"
                         " Hub's search service is not reachable, registries offer none)")

    def registry_tags(self, repository: str) -> list[str]:
        """The tags a registry holds for `repository` (a name without tag or digest)."""
        from ketch import reference
        from ketch.distribution.pull import list_tags

        return sorted(list_tags(reference.parse(repository, default_tag=None)))

    def login(self, server: str | None, username: str | None,
              password: str | None, *, store: bool = True) -> tuple[str, str | None]:
        """Check the credentials against `server` (default Docker Hub) and store them
        (unless not `store`: the Engine API's client keeps its own); without a username
        or password, the stored ones are checked again. Returns the key the credentials
        are stored under, and the docker config file's path when it now holds a new
        password unencrypted (None otherwise: a credential helper keeps it, or it was
        there already). Rejected credentials raise Unauthorized."""
        from ketch import reference
        from ketch.distribution import credentials
        from ketch.distribution.transport import RegistryUnauthorized, Transport
        from ketch.errors import InvalidArgument, KetchError, Unauthorized

        server = server or reference.HUB_AUTH_KEY
        key = reference.registry_for_auth(server)
        if not username or not password:
            stored = credentials.get(key)
            if stored is None or (username and stored[0] != username):
                raise InvalidArgument("Cannot perform an interactive login from a"
                                      " non TTY device")
            username, password = stored
        domain = "docker.io" if key == reference.HUB_AUTH_KEY else key
        t = Transport(domain, (username, password))
        try:
            t.ping()
        except RegistryUnauthorized as e:
            if e.message.startswith("login attempt to "):
                raise Unauthorized(e.message) from None
            raise Unauthorized(f"login to {server} failed: {e.message}") from None
        except KetchError as e:
            raise KetchError(f"login to {server} failed: {e.message}") from None
        finally:
            t.close()
        plain = credentials.store(key, username, password) if store else None
        return key, plain

    def logout(self, server: str | None) -> tuple[str, bool]:
        """Forget the stored credentials of `server` (default Docker Hub); returns the
        key and whether there were any."""
        from ketch import reference
        from ketch.distribution import credentials

        key = reference.registry_for_auth(server or reference.HUB_AUTH_KEY)
        return key, credentials.remove(key)

    # -- networking (ketch.network) ------------------------------------------------------
    def network_setup(self, rec: ContainerRecord) -> dict[str, Any]:
        """Give a container its network: NetworkSettings data, "netns", "attachment"."""
        from ketch.containers.netglue import setup

        return setup(self, rec)

    def network_teardown(self, rec: ContainerRecord) -> None:
        """Take a container's network down (veths, rules, leases)."""
        from ketch.containers.netglue import teardown

        teardown(self, rec)

    def network_inspect(self, name_or_id: str) -> dict[str, Any]:
        """`docker network inspect` data of one network, with its containers' names."""
        from ketch.network.lookup import surely_missing

        if surely_missing(self.db, name_or_id):  # (`inspect` of a name that is something else)
            raise NotFound(f"network {name_or_id} not found")
        from ketch.containers.netglue import network_json

        return network_json(self, self.networks.inspect_network(name_or_id))

    def network_list(self, filters: dict[str, list[str]] | None = None
                     ) -> list[dict[str, Any]]:
        """`docker network ls` data: each network as `network_inspect` shows it."""
        from ketch.containers.netglue import network_json

        return [network_json(self, self.networks.inspect_network(n.id))
                for n in self.networks.list_networks(filters)]

    def network_create(self, request: dict[str, Any]) -> dict[str, Any]:
        """Create a network from Docker's NetworkCreateRequest: {"Id", "Warning"}."""
        from ketch.containers.netglue import create_from_request

        return create_from_request(self, request)

    def network_connect(self, network: str, container: str, *, aliases: Iterable[str] = (),
                        ip: str | None = None, ip6: str | None = None) -> None:
        """Connect a running container to a network (`docker network connect`)."""
        from ketch.containers.netglue import connect

        connect(self, container, network, aliases=list(aliases), ip=ip, ip6=ip6)

    def network_disconnect(self, network: str, container: str) -> None:
        """Disconnect a container from a network (`docker network disconnect`)."""
        from ketch.containers.netglue import disconnect

        disconnect(self, container, network)

    # -- pods (ketch.pods) ----------------------------------------------------------------
    def pod_create(self, name: str | None = None, *, publish: Iterable[str] = (),
                   network: str | None = None, hostname: str | None = None,
                   add_hosts: Iterable[str] = (),
                   labels: dict[str, str] | None = None) -> PodRecord:
        """Create a pod and its infra container (not started), as `podman pod create`:
        `publish` are `-p` values (the pod's ports), `network` the infra's network
        (bridge, host or a user-defined network), `add_hosts` `HOST:IP` lines for every
        member's /etc/hosts. A name in use is a Conflict; nothing is left when refused.
        Containers join with `containers.create(..., pod=NAME)`."""
        return self.pods.create(name, publish=list(publish), network=network,
                                hostname=hostname, add_hosts=list(add_hosts),
                                labels=labels)

    def pod_start(self, name_or_id: str) -> PodRecord:
        """Start the infra container and every member (see PodService.start)."""
        return self.pods.start(name_or_id)

    def pod_stop(self, name_or_id: str, *, timeout: int | None = None) -> PodRecord:
        """Stop the members (each after its stop timeout, or `timeout`), then the infra."""
        return self.pods.stop(name_or_id, timeout=timeout)

    def pod_restart(self, name_or_id: str, *, timeout: int | None = None) -> PodRecord:
        """Stop the pod (as `pod_stop`), then start it again."""
        return self.pods.restart(name_or_id, timeout=timeout)

    def pod_kill(self, name_or_id: str, signal: str | int = "KILL") -> PodRecord:
        """Send `signal` to every running container of the pod."""
        return self.pods.kill(name_or_id, signal)

    def pod_pause(self, name_or_id: str) -> PodRecord:
        """Freeze every running container of the pod."""
        return self.pods.pause(name_or_id)

    def pod_unpause(self, name_or_id: str) -> PodRecord:
        """Thaw the pod's paused containers."""
        return self.pods.unpause(name_or_id)

    def pod_rm(self, name_or_id: str, *, force: bool = False,
               timeout: int | None = None) -> str:
        """Remove the pod with its members and infra; running ones only with `force`.
        Returns the pod ID."""
        return self.pods.remove(name_or_id, force=force, timeout=timeout)

    def pod_prune(self) -> list[str]:
        """Remove every pod none of whose containers runs; returns their IDs."""
        return self.pods.prune()

    def pod_list(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        """Podman's `pod ps` reports (Id, Name, Created, Status, InfraId, Labels,
        Networks, Containers); filters id, name, label, status, ctr-names, ctr-ids."""
        return self.pods.list(filters)

    def pod_inspect(self, name_or_id: str) -> dict[str, Any]:
        """Podman's `pod inspect` document."""
        return self.pods.inspect(name_or_id)

    def pod_logs(self, name_or_id: str, **kw: Any) -> Iterator[tuple[ContainerRecord, str,
                                                                     bytes]]:
        """(member, stream, data) of the members' logs; keywords as `containers.logs`,
        plus `container` to read one member."""
        return self.pods.logs(name_or_id, **kw)

    def pod_top(self, name_or_id: str, ps_args: list[str] | None = None
                ) -> tuple[list[str], list[list[str]]]:
        """The processes of the pod's running containers: (ps titles, rows)."""
        return self.pods.top(name_or_id, ps_args)

    def pod_connect(self, name_or_id: str, port: int) -> socket.socket:
        """A TCP connection to 127.0.0.1:`port` inside the pod's network namespace (a
        port-forward's); Conflict when the pod is not running."""
        return self.pods.connect(name_or_id, port)

    def pod_sysctls(self, name_or_id: str, values: dict[str, str]) -> None:
        """Namespaced sysctls for a pod: given to its infra before it starts; `net.*`
        ones written in its network namespace while it runs."""
        self.pods.set_sysctls(name_or_id, values)

    # -- Kubernetes YAML (ketch.kube) ---------------------------------------------------
    def kube_play(self, path: str, *, stdin: IO[str] | None = None, replace: bool = False,
                  network: str | None = None, build: bool | None = None,
                  start: bool = True, configmaps: Iterable[str] = (),
                  progress: Callable[[str], None] | None = None) -> PlayReport:
        """`podman kube play`: make the pods, containers and volumes a Kubernetes YAML
        file ("-": read from `stdin`) describes, and start them (unless not `start`).
        Images are built from a folder named after them beside the file when missing, or
        always with `build=True` (never with False), else pulled. `replace` removes pods of
        the same names first; `configmaps` are YAML files of more ConfigMaps for the
        pods (Podman's --configmap). YAML that is not Kubernetes raises KubeError naming
        file, document and field, before anything is made; a failure later removes what the
        play had made. `progress` gets build and pull lines. Returns the pods (IDs,
        container IDs), the volumes made and the warnings about what was not honoured."""
        from ketch.kube.play import play, read_source

        text, source, folder = read_source(path, stdin)
        return play(self, text, source, folder=folder, replace=replace, network=network,
                    build=build, start=start, configmaps=list(configmaps),
                    progress=progress)

    def kube_down(self, path: str, *, stdin: IO[str] | None = None,
                  force: bool = False) -> DownReport:
        """`podman kube down`: remove the pods a YAML file describes, with their
        containers, emptyDir volumes and ConfigMap/Secret files; the claims' volumes
        stay unless `force`."""
        from ketch.kube.play import down, read_source

        text, source, _ = read_source(path, stdin)
        return down(self, text, source, force=force)

    def kube_generate(self, names: Iterable[str], *, kind: str = "pod",
                      service: bool = False) -> str:
        """`podman kube generate`: Kubernetes YAML (a Pod, or with `kind="deployment"` a
        Deployment) for pods or containers, with a NodePort Service when `service`;
        `kube_play` of it makes an equivalent pod."""
        from ketch.kube.generate import generate

        return generate(self, list(names), kind=kind, service=service)

    # -- containers: attached sessions, files ------------------------------------------
    # The attached forms drive this process's standard streams and terminal.
    def run_attached(self, container: str, *, stdin: bool, tty: bool,
                     detach_keys: str | None = None, sig_proxy: bool = True,
                     remove: bool = False, stdout: bool = True, stderr: bool = True,
                     on_started: Callable[[], None] | None = None) -> int:
        """Start a created container attached to this process's terminal/streams and
        return its exit code (0 when detached with the detach keys); `remove` removes it
        if starting fails (its monitor removes it after exit when it has AutoRemove).
        `on_started` is called once the container runs, before the session streams."""
        from ketch.containers.attach import run_attached

        return run_attached(self.containers, container, stdin=stdin, tty=tty,
                            detach_keys=detach_keys, sig_proxy=sig_proxy, remove=remove,
                            stdout=stdout, stderr=stderr, on_started=on_started)

    def attach(self, container: str, *, stdin: bool = True, detach_keys: str | None = None,
               sig_proxy: bool = True) -> int:
        """Attach this process's streams to a running container; its exit code."""
        from ketch.containers.attach import attach_running

        return attach_running(self.containers, container, stdin=stdin,
                              detach_keys=detach_keys, sig_proxy=sig_proxy)

    def exec(self, container: str, command: list[str], *, env: Iterable[str] = (),
             user: str | None = None, workdir: str | None = None, tty: bool = False,
             stdin: bool = False, detach: bool = False, privileged: bool = False,
             detach_keys: str | None = None) -> int:
        """Run `command` in a running container with this process's streams; its exit
        code (0 when detached). Callers carrying the streams themselves use
        containers.exec_create / exec_start / exec_resize / exec_inspect."""
        from ketch.containers.attach import exec_attached

        return exec_attached(self.containers, container, command, env=list(env),
                             user=user, workdir=workdir, tty=tty, stdin=stdin,
                             detach=detach, privileged=privileged, detach_keys=detach_keys)

    def copy_from_container(self, container: str, path: str, dest: str, *,
                            follow_link: bool = False, out: IO[bytes] | None = None) -> int:
        """`docker cp CONTAINER:PATH DEST`: DEST a host path, or "-" for a tar written to
        `out` (standard output by default). Returns the bytes of tar that moved."""
        from ketch.containers.copy import copy_out

        return copy_out(self.containers, container, path, dest, follow_link, out)

    def copy_to_container(self, container: str, src: str, path: str, *,
                          follow_link: bool = False, copy_uid_gid: bool = False,
                          tar: IO[bytes] | None = None,
                          no_overwrite_dir_non_dir: bool = False) -> int:
        """`docker cp SRC CONTAINER:PATH`: SRC a host path, or "-" for a tar read from
        `tar` (standard input by default; checked whole before anything is written).
        Returns the bytes of tar that moved."""
        from ketch.containers.copy import copy_in

        return copy_in(self.containers, container, src, path, follow_link, copy_uid_gid,
                       tar, no_overwrite_dir_non_dir)

    def container_path_stat(self, container: str, path: str) -> dict[str, Any]:
        """Docker's stat of a path in a container: name, size, mode (Go FileMode bits),
        mtime, linkTarget."""
        from ketch.containers.copy import stat_path

        return stat_path(self.containers, container, path)

    def export(self, container: str, output: str | None = None,
               out: IO[bytes] | None = None) -> int:
        """A container's root filesystem as a tar, into the file `output` or to `out`
        (standard output by default)."""
        from ketch.containers.copy import export

        return export(self.containers, container, output, out)

    def restart_wait(self, container: str, token: str, at: float) -> int:
        """The process a restart policy leaves behind: sleep until `at`, then start the
        container if `token` is still the one its record waits for."""
        from ketch.containers.restart import wait_and_start

        return wait_and_start(self.containers, container, token, at)

    def restore_restart_policies(self) -> list[str]:
        """Start what restart policies want running after a reboot (`always`, and
        `unless-stopped` unless stopped by the user); the names started."""
        from ketch.containers.restart import restore

        return restore(self.containers)

    def restart_policies_unit(self) -> str:
        """A systemd unit that runs `ketch system restart-policies` at boot."""
        from ketch.containers.restart import unit_file

        return unit_file(self.root_dir, self.run_root_dir)

    def container_healthcheck(self, container: str) -> str:
        """Run the container's health check once now and record it (what the health
        timer runs); its health status: starting, healthy or unhealthy."""
        from ketch.containers.health import check

        return check(self.containers, container)

    def container_cleanup(self, container: str, exec_id: str | None = None) -> None:
        """Finish a container whose process exited, or with `exec_id` one of its detached
        exec sessions (the monitor's exit command)."""
        if exec_id is not None:
            self.containers.exec_cleanup(exec_id, container)
            return
        self.containers.cleanup(container)

    # -- events (ketch.events) -------------------------------------------------------------
    def events(self, *, since: str | None = None, until: str | None = None,
               filters: dict[str, list[str]] | None = None,
               stopped: Callable[[], bool] | None = None) -> Iterator[dict[str, Any]]:
        """`docker events`: the events every ketch process journaled, as dicts of
        dockerd's JSON shape (Type, Action, Actor, scope, time, timeNano, and status/id/
        from for containers and images).

        `since`/`until` as the docker CLI takes them (RFC 3339, Unix seconds, a duration
        like 10m before now). Without `since` only new events come; without `until`, or
        with one in the future, the iterator follows the journal until then, or until
        `stopped()` is true (checked a few times a second). Bad values and unknown
        filters raise InvalidArgument here, before anything is read."""
        import time

        from ketch.events.reader import Filter, parse_time, read

        now = time.time()
        start = parse_time(since, now)
        end = parse_time(until, now)
        flt = Filter(filters)
        return read(self.root_dir, since=start, until=end, filters=flt, stopped=stopped)

    # -- value grammars the front doors share ---------------------------------------------
    @staticmethod
    def port_bindings(spec: str) -> list[tuple[str, dict[str, str]]]:
        """A `-p` value (`[IP:][HOST:]CONTAINER[/PROTO]`, ranges allowed) as Engine API
        PortBindings entries: ("80/tcp", {"HostIp": ..., "HostPort": ...}) pairs."""
        from ketch.network.ports import parse_publish

        return [(f"{b.container_port}/{b.protocol}",
                 {"HostIp": b.host_ip or "", "HostPort": str(b.host_port or "")})
                for b in parse_publish(spec)]

    @staticmethod
    def security_opts(opts: list[str]) -> tuple[list[str], bool]:
        """`--security-opt` values as the Engine API's SecurityOpt (a seccomp profile
        path replaced by its JSON), and whether `systempaths=unconfined` was among them."""
        from ketch.containers.security import client_security_opts

        return client_security_opts(opts)

    @staticmethod
    def restart_policy(spec: str) -> dict[str, Any]:
        """A `--restart` value (`NAME[:COUNT]`) as an Engine API RestartPolicy."""
        from ketch.containers.restart import parse_flag

        return parse_flag(spec)

    @staticmethod
    def check_volume_flag(spec: str) -> None:
        """Refuse a `-v` value the docker CLI refuses before sending it."""
        from ketch.containers.hostconfig import check_volume_flag

        check_volume_flag(spec)

    @staticmethod
    def ulimit(spec: str) -> dict[str, Any]:
        """A `--ulimit` value (`nofile=1024[:2048]`) as an Engine API Ulimits entry."""
        from ketch.containers.hostconfig import parse_ulimit

        return parse_ulimit(spec)

    @staticmethod
    def mount(spec: str) -> dict[str, Any]:
        """A `--mount` value as an Engine API Mount object."""
        from ketch.containers.mounts import parse_mount_flag

        return parse_mount_flag(spec)

    @staticmethod
    def exposed_port(spec: str) -> str:
        """An `--expose`/EXPOSE value as an ExposedPorts key (`80` -> `80/tcp`)."""
        from ketch.images.changes import normalize_port

        return normalize_port(spec)

    @staticmethod
    def exposed_ports(spec: str) -> list[str]:
        """`--expose 7000-7001` → ["7000/tcp", "7001/tcp"], one key per port as docker's."""
        from ketch.network.ports import parse_expose

        return parse_expose(spec)

    def close(self, *, exiting: bool = False) -> None:
        """Close the database connection. `exiting`: the process ends right after
        without the interpreter's teardown (`os._exit`); see `Database.close`."""
        self.db.close(exiting=exiting)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- system -------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        """`docker version`'s server part (the Engine API's GET /version)."""
        import sys  # (sys.version's first word is what platform.python_version() reads)

        kernel = os.uname().release
        from ketch.oci.model import host_platform

        plat = host_platform()
        details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                   "GitCommit": "", "GoVersion": "python" + sys.version.split()[0],
                   "Os": "linux", "Arch": plat.architecture, "KernelVersion": kernel,
                   "BuildTime": "", "Experimental": "false"}
        return {"Platform": {"Name": "ketch"}, "Version": __version__,
                "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                "GitCommit": "", "GoVersion": details["GoVersion"], "Os": "linux",
                "Arch": plat.architecture, "KernelVersion": kernel, "BuildTime": "",
                "Components": [{"Name": "Engine", "Version": __version__,
                                "Details": details}]}

    def info(self) -> dict[str, Any]:
        """`docker info` data (the Engine API's GET /info)."""
        from ketch.containers.logconfig import root_defaults
        from ketch.network.models import NETWORK_DRIVERS
        from ketch.runtime import version_commit, which
        from ketch.runtime.logs import LOG_DRIVERS

        images = self.records.all()
        counts = self._container_counts()
        mem = 0
        try:
            with open("/proc/meminfo") as f:
                mem = int(f.readline().split()[1]) * 1024
        except OSError:
            pass
        runtimes = {n: {"path": path} for n in ("runc", "crun") if (path := which(n))}
        runc = runtimes.get("runc", {}).get("path")
        commit = version_commit(runc) if runc else "N/A"
        try:
            init = self.containers.settings.init_binary()
        except InvalidArgument:
            init = ""
        host = os.uname()  # (what platform's release, machine and node read)
        return {
            "ID": "", "Containers": sum(counts.values()),
            "ContainersRunning": counts.get("running", 0),
            "ContainersPaused": counts.get("paused", 0),
            "ContainersStopped": sum(v for k, v in counts.items()
                                     if k not in ("running", "paused")),
            "Images": len(images), "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", _fs_type(self.root_dir)]],
            "DockerRootDir": self.root_dir, "KernelVersion": host.release,
            "OperatingSystem": _os_name(), "OSType": "linux",
            "Architecture": host.machine, "NCPU": os.cpu_count() or 1,
            "MemTotal": mem, "Name": host.nodename, "ServerVersion": __version__,
            "CgroupDriver": "cgroupfs", "CgroupVersion": _cgroup_version(),
            "Runtimes": runtimes, "DefaultRuntime": "runc",
            "InitBinary": init, "RuncCommit": {"ID": commit, "Expected": commit},
            "LoggingDriver": root_defaults(self.root_dir)[0],
            "Plugins": {"Volume": ["local"], "Network": list(NETWORK_DRIVERS),
                        "Authorization": None, "Log": list(LOG_DRIVERS)},
            "SecurityOptions": _security_options(), "Labels": [],
            "ExperimentalBuild": False, "Swarm": {"LocalNodeState": "inactive"},
        }

    def _container_counts(self) -> dict[str, int]:
        return self.containers.records.state_counts()

    def system_df(self) -> dict[str, Any]:
        """`docker system df` data: images, containers, volumes, build cache."""
        images = self.images.list(all=True, container_count=True)
        layers_size = sum(layer.size for layer in self.records.all_layers())
        return {"LayersSize": layers_size, "Images": images,
                "Containers": self._df_containers(), "Volumes": self.volumes.df(),
                "BuildCache": []}

    def _df_containers(self) -> list[dict[str, Any]]:
        return self.containers.df()


def _with_auth(auth: dict[str, tuple[str, str]] | None,
               events: Iterator[Any]) -> Iterator[Any]:
    """`events` drained with `auth` instead of the stored logins (when not None)."""
    if auth is None:
        return events

    def drain() -> Iterator[Any]:
        from ketch.distribution import credentials

        with credentials.given(auth):
            yield from events

    return drain()


def _security_options() -> list[str]:
    """What every container gets: Docker's seccomp profile when the kernel filters
    syscalls. No AppArmor or SELinux (ketch applies neither), no cgroup namespace
    (containers share the host's), not rootless."""
    from ketch.runtime.seccomp import seccomp_supported

    return ["name=seccomp,profile=builtin"] if seccomp_supported() else []


def _fs_type(path: str) -> str:
    best, fstype = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1]
                if str(path).startswith(mnt) and len(mnt) > len(best):
                    best, fstype = mnt, parts[2]
    except OSError:
        pass
    return fstype


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
