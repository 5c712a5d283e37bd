"""What a running container holds, acquired at start and released at finish: its mounts
(binds, volumes, tmpfs), its /etc files (hostname, hosts, resolv.conf), its network and
its volume references."""

from __future__ import annotations

import os

from ketch.errors import InvalidArgument, KetchError, os_words

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from typing import Any

    from _typeshed import StrPath

    from ketch.containers.records import ContainerRecord
    from ketch.containers.service import ContainerService
    from ketch.network.sandbox import DeferredStep


def write_etc_files(svc: ContainerService, rec: ContainerRecord,
                    net: dict[str, Any], link_hosts: list[tuple[str, str]]) -> None:
    from ketch.network.files import render_hosts, render_resolv_conf

    d = svc.path(rec.id)
    hc = rec.host_config
    hostname = rec.config.get("Hostname") or rec.id[:12]
    att = net["attachment"]
    extra: list[str | tuple[str, str]] = [*(hc.get("ExtraHosts") or ()), *link_hosts]
    exact = hc.get("_ResolvConf")  # a front door's own file (the CRI's DNSConfig)
    for name, text in (
            ("hostname", hostname + "\n"),
            ("hosts", render_hosts(att, hostname, extra, rec.config.get("Domainname") or "")),
            ("resolv.conf", exact if isinstance(exact, str) else render_resolv_conf(
                att, hc.get("Dns") or (), hc.get("DnsSearch") or (),
                hc.get("DnsOptions") or ()))):
        with open(f"{d}/{name}", "w", encoding="utf-8") as f:
            f.write(text)


def mounts(svc: ContainerService, rec: ContainerRecord, rootfs: StrPath
            ) -> tuple[list[Any], list[dict[str, Any]], str | None]:
    """OCI mounts for binds, volumes and tmpfs, Docker's `Mounts` for inspect, and the
    propagation the container's root needs for shared or slave binds (None: runc's).

    Volumes are mounted by their driver first (local driver options) and, when empty,
    seeded from the image's content at their mount point (not with `nocopy`)."""
    from ketch.containers.mounts import (
        DEFAULT_PROPAGATION,
        MountPoint,
        check_propagation,
        check_tmpfs_options,
        mount_point,
        parse_bind,
    )
    from ketch.containers.volumes import VolumeStore, seed_from_image
    from ketch.runtime.spec import Mount

    d = svc.path(rec.id)
    hc = rec.host_config
    store = VolumeStore(svc.engine)
    mounts = [Mount(f"/etc/{name}", f"{d}/{name}", "bind", ["rbind", "rprivate"])
              for name in ("hostname", "hosts", "resolv.conf")]
    shown: list[dict[str, Any]] = []
    root_propagation: str | None = None
    # Docker copies image content into volumes once, for the container's creation: a
    # volume its own container emptied stays empty across restarts
    first_start = "Mounts" not in rec.extra
    points: list[MountPoint] = [parse_bind(b) for b in hc.get("Binds") or []]
    points += [mount_point(m) for m in hc.get("Mounts") or []]
    for target, opts in (hc.get("Tmpfs") or {}).items():
        check_tmpfs_options(opts or "")
        points.append(MountPoint("tmpfs", target, tmpfs_data=opts or ""))
    targets = {p.target for p in points}
    from ketch.containers.options import volumes_from

    for m, ro in volumes_from(svc, rec):
        if m["Destination"] in targets:  # the container's own mounts win
            continue
        targets.add(m["Destination"])
        if m["Type"] == "volume":
            points.append(MountPoint("volume", m["Destination"], m.get("Name") or "",
                                     read_only=ro, copy_data=False))
        else:
            points.append(MountPoint(m["Type"], m["Destination"], m["Source"], read_only=ro,
                                     propagation=m.get("Propagation") or ""))
    for target in (rec.config.get("Volumes") or {}):
        if target not in targets:  # an image VOLUME (or `-v /path`): an anonymous volume
            points.append(MountPoint("volume", target))
    seen: set[str] = set()
    for mp in points:
        if mp.target in seen:
            raise InvalidArgument(f"Duplicate mount point: {mp.target}")
        seen.add(mp.target)
        ro_opt = ["ro"] if mp.read_only else []
        if mp.type == "tmpfs":
            extra = [o for o in mp.tmpfs_data.split(",") if o]
            mounts.append(Mount(mp.target, "tmpfs", "tmpfs",
                                ["nosuid", "nodev", "noexec"] + ro_opt + extra))
            continue
        propagation = mp.propagation or DEFAULT_PROPAGATION
        name = ""
        if mp.type == "bind":
            source = mp.source
            if not os.path.exists(source):
                try:  # Docker creates a missing -v source
                    os.makedirs(source, exist_ok=True)
                except OSError as e:
                    raise InvalidArgument(
                        f"error while creating mount source path '{source}': mkdir"
                        f" {e.filename}: {os_words(e)}") from None
            wanted = check_propagation(source, propagation)
            if wanted == "rshared" or (wanted and root_propagation is None):
                root_propagation = "shared" if wanted == "rshared" else "rslave"
        else:
            # an anonymous volume keeps its name across restarts, and `rm -v` finds it
            anon = rec.extra.setdefault("anon_volumes", {})
            name = mp.source or anon.get(mp.target) or os.urandom(32).hex()
            if not mp.source and anon.get(mp.target) != name:
                anon[mp.target] = name
                # the record names it before it exists: a `volume prune` meanwhile
                # (anonymous volumes are what it takes) finds it in use, where it removed
                # it between its making and the end of this start
                svc.records.update(rec.id, extra=rec.extra)
            if not store.path(name).is_dir():
                store.create(name, labels=mp.volume_labels, options=mp.volume_options)
            data = store.acquire(name, rec.id)
            store.event("mount", name, container=rec.id, destination=mp.target,
                        propagation="", **{"read/write": str(not mp.read_only).lower()})
            if mp.copy_data and first_start:
                seed_from_image(rootfs, mp.target, data)
            source = str(data)
        mounts.append(Mount(mp.target, source, "bind",
                            ["rbind" if mp.recursive else "bind", propagation] + ro_opt))
        shown.append({"Type": mp.type, "Name": name, "Source": source,
                      "Destination": mp.target, "Driver": "local" if name else "",
                      "Mode": mp.mode, "RW": not mp.read_only, "Propagation":
                      "" if name else propagation})
    return mounts, shown, root_propagation


def volume_names(rec: ContainerRecord) -> list[str]:
    """The volumes a container refers to: named ones in its mounts and its anonymous ones."""
    names = [b.split(":")[0] for b in rec.host_config.get("Binds") or []
             if b.count(":") >= 1 and not b.startswith("/")]
    names += [m["Source"] for m in rec.host_config.get("Mounts") or []
              if m.get("Type") == "volume" and m.get("Source")]
    names += list((rec.extra.get("anon_volumes") or {}).values())
    return list(dict.fromkeys(names))


def release_volumes(svc: ContainerService, rec: ContainerRecord) -> None:
    from ketch.containers.volumes import VolumeStore

    store = VolumeStore(svc.engine)
    mounted = rec.state in ("running", "paused")  # not again when a stopped one is removed
    for name in volume_names(rec):
        try:
            store.release(name, rec.id)
        except KetchError:
            continue
        if mounted and store.path(name).is_dir():
            store.event("unmount", name, container=rec.id)


def network_up(svc: ContainerService, rec: ContainerRecord,
               later: list[DeferredStep] | None = None) -> dict[str, Any]:
    """Set up the container's network; NetworkSettings data + "netns" + "attachment".
    With `later`, the plumbing inside the namespace is left there (netglue.setup)."""
    if later is None:
        return svc.engine.network_setup(rec)
    from ketch.containers.netglue import setup

    return setup(svc.engine, rec, later=later)


class Background:
    """Deferred network steps, run in a helper thread while conmon has the runtime
    create the container: both wait on the kernel, and the runtime needs only the
    namespace to exist. `wait` joins, and raises what a step raised."""

    def __init__(self, steps: list[DeferredStep]) -> None:
        self.steps = steps
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if steps:  # (threading only then: a pod's member, which joins, has none)
            import threading

            self.thread = threading.Thread(target=self._run, name="ketch-net-plumb")
            self.thread.start()

    def _run(self) -> None:
        for i, step in enumerate(self.steps):
            try:
                step()
            except BaseException as e:  # handed to the caller's thread by wait()
                self.error = e
                for rest in self.steps[i + 1:]:
                    rest.cancel()
                return

    def wait(self, *, raise_error: bool = True) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if raise_error and self.error is not None:
            error, self.error = self.error, None
            raise error


def network_down(svc: ContainerService, rec: ContainerRecord) -> None:
    svc.engine.network_teardown(rec)


def cancel(later: list[DeferredStep], plumbing: Background | None) -> None:
    """A start that failed: deferred network steps that never ran release what they hold
    (the teardown in _undo_start removes what they made)."""
    if plumbing is not None:
        plumbing.wait(raise_error=False)
    else:
        for step in later:
            step.cancel()


def public_net(net: dict[str, Any]) -> dict[str, Any]:
    """What the record keeps: NetworkSettings data, without live objects."""
    out = {k: v for k, v in net.items() if k not in ("netns", "attachment")}
    if net.get("netns") not in (None, "host"):
        out["SandboxKey"] = net["netns"]
    return out


def remove_anonymous_volumes(svc: ContainerService, rec: ContainerRecord) -> None:
    from ketch.containers.volumes import VolumeStore

    store = VolumeStore(svc.engine)
    for name in (rec.extra.get("anon_volumes") or {}).values():
        # the container being removed still counts as a user; anyone else keeps it
        if any(cid != rec.id for cid in store.in_use(name)):
            continue
        store.remove(name, force=True, missing_ok=True)
