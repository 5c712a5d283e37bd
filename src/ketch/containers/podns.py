"""A pod's namespaces for its members to join, and its infra's start beside theirs.

The infra container's IPC and UTS namespaces are pinned as files beside the network
namespaces (<run root>/netns/<id>-ipc, -uts) before the runtime creates the infra. The
network namespace is pinned by the network service already; with these two, a member
joins all of its pod's namespaces by path and can be created beside its infra instead
of after it (`InfraStart`), as CRI-O's pinns lets a sandbox's containers join it. The
pins exist from the infra's start until its resources are released
(Lifecycle.release_resources).
"""

from __future__ import annotations

import os

from ketch.errors import KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    from ketch.containers.host import ContainerHost
    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService
    from ketch.runtime.monitor import ContainerPaths
    from ketch.runtime.spec import ContainerSpec

    T = TypeVar("T")

KINDS = ("ipc", "uts")


def path(run_root: str, cid: str, kind: str) -> str:
    return f"{run_root}/netns/{cid}-{kind}"


def pin(svc: ContainerService, rec: ContainerRecord, spec: ContainerSpec) -> None:
    """The infra's new IPC and UTS namespaces (those the spec would have the runtime
    make) made now and pinned; the spec joins them by path. runc still sets the
    hostname and the domain name in the UTS namespace it joins."""
    from ketch.network import netns

    paths = {kind: path(svc.engine.run_root_dir, rec.id, kind) for kind in KINDS
             if getattr(spec, f"{kind}_ns") is None}
    if not paths:
        return
    unpin(svc, rec.id)  # left by a start that was killed half-way
    netns.pin(paths)
    for kind, p in paths.items():
        setattr(spec, f"{kind}_ns", p)


def pinned(svc: ContainerService, cid: str, kind: str) -> str | None:
    """The path of the container's pinned namespace of this kind, if it has one."""
    p = path(svc.engine.run_root_dir, cid, kind)
    return p if os.path.lexists(p) else None


def pinned_ids(run_root: str) -> set[str]:
    """The containers that have pins (`system check` looks for those of removed ones)."""
    try:
        names = os.listdir(os.path.join(run_root, "netns"))
    except OSError:
        return set()
    return {name.rsplit("-", 1)[0] for name in names
            if name.rpartition("-")[2] in KINDS}


def held(run_root: str, cid: str) -> bool:
    return any(os.path.lexists(path(run_root, cid, kind)) for kind in KINDS)


def unpin(svc: ContainerService, cid: str) -> None:
    """Drop the pins (what a release does: never raises, as nothing may stop the rest)."""
    from ketch.network import netns

    for kind in KINDS:
        p = path(svc.engine.run_root_dir, cid, kind)
        if os.path.lexists(p):
            try:
                netns.remove(p)
            except OSError:
                pass


class InfraStart:
    """The start of a pod's infra container in a thread of its own, beside the start of
    a member (Lifecycle.start): built once the infra's namespaces exist, which is all a
    member needs to be created. `wait` ends when the infra's start has, and raises what
    it raised; `join` only ends with it. The thread has its own Engine (its own
    database connection), as the Engine API service has one per request."""

    def __init__(self, engine: ContainerHost, infra_id: str) -> None:
        import threading

        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(engine, infra_id),
                                        name="ketch-infra-start")
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            self.wait()

    def _run(self, engine: ContainerHost, infra_id: str) -> None:
        try:
            with engine.reopen() as mine:
                mine.containers.start(infra_id, namespaces_ready=self._ready.set)
        except BaseException as e:  # handed to the member's start by wait()
            self.error = e
        finally:
            self._ready.set()  # (also when the infra was running already)

    def member(self, start: Callable[[Callable[[ContainerPaths], None]], T],
               before_start: Callable[[ContainerPaths], None] | None) -> T:
        """A member's start (`start`, given its `before_start`) beside this infra's: the
        member's process starts once the infra's start has ended well (then
        `before_start`). A member whose own create failed because the infra's did (the
        infra's undo dropped the namespaces it was joining: "namespace path: lstat
        ...-ipc") fails with the infra's error, the cause; one that failed alone, with
        its own. Returns when the infra's start has ended too."""

        def after_infra(p: ContainerPaths) -> None:
            self.wait()
            if before_start is not None:
                before_start(p)

        try:
            return start(after_infra)
        except KetchError:
            self.wait()
            raise
        finally:
            self.join()  # (a failure the member never waited for is not the member's)

    def join(self) -> None:
        self._thread.join()

    def wait(self) -> None:
        """Join the infra's start; raise what it raised, each caller its own copy (the
        members of a pod wait on one infra in threads of their own: one exception object
        raised in each would have its traceback and context rewritten by all of them)."""
        self._thread.join()
        error = self.error
        if error is None:
            return
        import copy

        try:
            mine = copy.copy(error)  # (message, exit code and the rest of its attributes)
        except Exception:  # noqa: BLE001 (a class that cannot be rebuilt from its args)
            mine = error
        raise mine.with_traceback(error.__traceback__)
