"""`Engine`: the one façade the CLI, the API server and library users call.

It owns the state root and hands out the services that do the work (images,
containers, networks, builder). Services load lazily so a command only pays for what
it uses.
"""

from __future__ import annotations

import os
from functools import cached_property

from ketch import __version__
from ketch.errors import KetchError
from ketch.store.db import Database

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from ketch.containers.service import ContainerService
    from ketch.images.service import ImageService
    from ketch.layers.store import LayerStore
    from ketch.store.content import ContentStore
    from ketch.store.images import ImageRecords
    from ketch.store.intents import Intent, Intents

DEFAULT_ROOT = "/var/lib/ketch"
DEFAULT_RUN_ROOT = "/run/ketch"
API_VERSION = "1.45"
MIN_API_VERSION = "1.24"


class Engine:
    def __init__(self, root: str | os.PathLike[str] | None = None,
                 run_root: str | os.PathLike[str] | None = None) -> None:
        # Paths as strings first: `root` and `run_root` are Paths on first use, so a
        # command that needs neither (`ps`) does not import pathlib (and re with it).
        self.root_dir = os.path.abspath(root or os.environ.get("KETCH_ROOT") or DEFAULT_ROOT)
        self.run_root_dir = os.path.abspath(run_root or os.environ.get("KETCH_RUN_ROOT")
                                            or DEFAULT_RUN_ROOT)
        os.makedirs(self.root_dir, mode=0o711, exist_ok=True)
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

        return ContentStore(self.root)

    @cached_property
    def records(self) -> ImageRecords:
        from ketch.store.images import ImageRecords

        return ImageRecords(self.db)

    @cached_property
    def layers(self) -> LayerStore:
        from ketch.layers.store import LayerStore

        return LayerStore(self.root, self.db, self.records, self.content)

    @cached_property
    def images(self) -> ImageService:
        from ketch.images.service import ImageService

        svc = ImageService(self)
        svc.users = self._image_users
        return svc

    @cached_property
    def networks(self) -> Any:
        from ketch.network.service import NetworkService

        return NetworkService(self.db, self.root, self.run_root)

    @cached_property
    def containers(self) -> ContainerService:
        from ketch.containers.service import ContainerService

        return ContainerService(self)

    # Images ask who uses them through the Engine, so images never import containers.
    def _image_users(self, image_id: str) -> list[tuple[str, bool]]:
        return self.containers.image_users(image_id)

    def layer_users(self) -> set[str]:
        return self.containers.records.chains_in_use()

    # -- crash recovery ---------------------------------------------------------------
    @cached_property
    def intents(self) -> Intents:
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

    # -- builds (ketch.build) ----------------------------------------------------------------
    def build(self, context: str, dockerfile: str | None, options: Any, emit: Any,
              emit_bytes: Any = None) -> Any:
        """Build an image: `context` is a directory, a tarball or "-" (stdin);
        `options` a ketch.build.executor.BuildOptions; `emit` receives the step output."""
        from ketch.build.context import prepare
        from ketch.build.executor import build

        with self.intents.held("images.write"):  # its context staging is in tmp/
            prepared = prepare(context, dockerfile, self.root / "tmp")
            try:
                return build(self, prepared.context, prepared.dockerfile_text,
                             prepared.dockerfile_name, options, emit, emit_bytes)
            finally:
                prepared.context.close()

    # -- registries (ketch.distribution) ---------------------------------------------------
    def pull(self, name: str, say: Any, *, quiet: bool = False) -> Any:
        """Pull `name` from its registry; `say` receives Docker's progress lines."""
        from ketch.distribution.pull import pull

        return pull(self, name, say, quiet=quiet)

    def push(self, name: str, say: Any) -> str:
        from ketch.distribution.push import push

        return push(self, name, say)

    # -- networking (ketch.network) ------------------------------------------------------
    def network_setup(self, rec: Any) -> dict[str, Any]:
        """Give a container its network: NetworkSettings data, "netns", "attachment"."""
        from ketch.containers.netglue import setup

        return setup(self, rec)

    def network_teardown(self, rec: Any) -> None:
        from ketch.containers.netglue import teardown

        teardown(self, rec)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- system -------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        import platform

        kernel = platform.release()
        from ketch.oci.model import host_platform

        plat = host_platform()
        details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                   "GitCommit": "", "GoVersion": "python" + platform.python_version(),
                   "Os": "linux", "Arch": plat.architecture, "KernelVersion": kernel,
                   "BuildTime": "", "Experimental": False}
        return {"Platform": {"Name": "ketch"}, "Version": __version__,
                "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                "GitCommit": "", "GoVersion": details["GoVersion"], "Os": "linux",
                "Arch": plat.architecture, "KernelVersion": kernel, "BuildTime": "",
                "Components": [{"Name": "Engine", "Version": __version__,
                                "Details": details}]}

    def info(self) -> dict[str, Any]:
        import platform
        import shutil

        from ketch.containers.logconfig import root_defaults

        images = self.records.all()
        counts = self._container_counts()
        mem = 0
        try:
            with open("/proc/meminfo") as f:
                mem = int(f.readline().split()[1]) * 1024
        except OSError:
            pass
        runtimes = {n: {"path": shutil.which(n) or n} for n in ("runc", "crun")
                    if shutil.which(n)}
        return {
            "ID": "", "Containers": sum(counts.values()),
            "ContainersRunning": counts.get("running", 0),
            "ContainersPaused": counts.get("paused", 0),
            "ContainersStopped": sum(v for k, v in counts.items()
                                     if k not in ("running", "paused")),
            "Images": len(images), "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", _fs_type(self.root)]],
            "DockerRootDir": str(self.root), "KernelVersion": platform.release(),
            "OperatingSystem": _os_name(), "OSType": "linux",
            "Architecture": platform.machine(), "NCPU": os.cpu_count() or 1,
            "MemTotal": mem, "Name": platform.node(), "ServerVersion": __version__,
            "CgroupDriver": "cgroupfs", "CgroupVersion": _cgroup_version(),
            "Runtimes": runtimes, "DefaultRuntime": "runc",
            "LoggingDriver": root_defaults(self.root)[0],
            "SecurityOptions": _security_options(), "Labels": [],
            "ExperimentalBuild": False, "Swarm": {"LocalNodeState": "inactive"},
        }

    def _container_counts(self) -> dict[str, int]:
        return self.containers.records.state_counts()

    def system_df(self) -> dict[str, Any]:
        images = self.images.list(all=True, container_count=True)
        layers_size = sum(layer.size for layer in self.records.all_layers())
        return {"LayersSize": layers_size, "Images": images,
                "Containers": self._df_containers(), "Volumes": [], "BuildCache": []}

    def _df_containers(self) -> list[dict[str, Any]]:
        return self.containers.df()


def _security_options() -> list[str]:
    """What every container gets: Docker's seccomp profile when the kernel filters
    syscalls. No AppArmor or SELinux (ketch applies neither), no cgroup namespace
    (containers share the host's), not rootless."""
    from ketch.runtime.seccomp import seccomp_supported

    return ["name=seccomp,profile=builtin"] if seccomp_supported() else []


def _fs_type(path: Path) -> str:
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
