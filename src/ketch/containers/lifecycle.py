"""Starting, stopping and finishing containers: the container service's work over the
runtime (runc under conmon), overlayfs and the network service.

start:  rootfs mounted → network set up → config.json → conmon runs `runc create`
        → (caller attaches) → `runc start` → record "running"
finish: exit code recorded → runtime state, network, mounts released → `--rm` removal
Every step has its undo, and a failed start undoes everything it did.
"""

from __future__ import annotations

import os
import signal as _signal
import sys
import threading
import time
from pathlib import Path

from ketch.containers.records import ContainerRecord
from ketch.containers.rootfs import OverlayMount, mount_overlay, unmount
from ketch.errors import Conflict, InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ketch.containers.service import ContainerService
    from ketch.network.service import DeferredStep
    from ketch.runtime.monitor import ConmonMonitor, ContainerPaths

DEFAULT_STOP_TIMEOUT = 10


# -- plumbing -------------------------------------------------------------------------------
def paths(svc: ContainerService, rec: ContainerRecord) -> ContainerPaths:
    from ketch.runtime.monitor import ContainerPaths

    return ContainerPaths.create(rec.id, svc.path(rec.id), svc.run_dir / rec.id,
                                 svc.path(rec.id) / "ctr.log")


def monitor(svc: ContainerService, rec: ContainerRecord) -> ConmonMonitor:
    from ketch.runtime.monitor import ConmonMonitor
    from ketch.runtime.oci import OCIRuntime

    name = rec.host_config.get("Runtime") or "runc"
    if name not in ("runc", "crun"):
        raise InvalidArgument(f"unknown runtime {name!r}: use runc or crun")
    # One runtime per name and process: finding the binaries on $PATH for every record
    # made `ps -a` with many running containers slow.
    cache: dict[str, OCIRuntime] = svc.__dict__.setdefault("_runtimes", {})
    runtime = cache.get(name)
    if runtime is None:
        runtime = cache[name] = OCIRuntime(name, svc.engine.run_root / name)
    conmon: dict[str, str] = svc.__dict__.setdefault("_conmon", {})
    if "path" not in conmon:
        from ketch.runtime.oci import which

        conmon["path"] = which("conmon") or ""
    return ConmonMonitor(runtime, conmon["path"] or None,
                         exit_command=_exit_command(svc, rec))


# conmon runs the exit command the moment the container exits, and waits for it. Usually
# someone is already finishing the container (an attached `run`, `stop`, `wait`, or any
# command that looks at it), so the command waits a moment and starts Python only if the
# container's pid file (removed by whoever finishes it) is still there: a `run --rm` then
# costs no second interpreter, while a detached container nobody watches is still cleaned
# up (and removed, with --rm) a second after it exits. A container that never started has
# no pid file: nothing to wait for, and the `start` that failed undoes it itself.
_EXIT_SCRIPT = '[ -e "$0" ] || exit 0; sleep 1; [ -e "$0" ] || exit 0; exec "$@"'
# With a restart policy the exit is acted on at once: the policy's backoff is the only
# delay before the restart (an attached `run` finishing meanwhile is harmless: the
# second to take the container lock finds the exit recorded).
_EXIT_SCRIPT_NOW = '[ -e "$0" ] || exit 0; exec "$@"'


def _exit_command(svc: ContainerService, rec: ContainerRecord) -> list[str]:
    cleanup = [sys.executable, "-m", "ketch", "--root", str(svc.engine.root),
               "--run-root", str(svc.engine.run_root), "container", "cleanup", rec.id]
    script = _EXIT_SCRIPT
    if (rec.host_config.get("RestartPolicy") or {}).get("Name") not in (None, "", "no"):
        script = _EXIT_SCRIPT_NOW
    return ["/bin/sh", "-c", script, str(paths(svc, rec).pidfile), *cleanup]


def process_alive(svc: ContainerService, rec: ContainerRecord) -> bool:
    mon = monitor(svc, rec)
    p = paths(svc, rec)
    if mon.exit_status(p) is not None:
        return False
    return mon.monitor_alive(p)


# -- start ----------------------------------------------------------------------------------
def _write_etc_files(svc: ContainerService, rec: ContainerRecord,
                     net: dict[str, Any], link_hosts: list[tuple[str, str]]) -> None:
    from ketch.network.files import render_hosts, render_resolv_conf

    d = svc.path(rec.id)
    hc = rec.host_config
    hostname = rec.config.get("Hostname") or rec.id[:12]
    att = net["attachment"]
    (d / "hostname").write_text(hostname + "\n")
    extra: list[str | tuple[str, str]] = [*(hc.get("ExtraHosts") or ()), *link_hosts]
    (d / "hosts").write_text(render_hosts(att, hostname, extra,
                                          rec.config.get("Domainname") or ""))
    (d / "resolv.conf").write_text(render_resolv_conf(
        att, hc.get("Dns") or (), hc.get("DnsSearch") or (), hc.get("DnsOptions") or ()))


def _mounts(svc: ContainerService, rec: ContainerRecord, rootfs: Path
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
    mounts = [Mount("/etc/hostname", str(d / "hostname"), "bind", ["rbind", "rprivate"]),
              Mount("/etc/hosts", str(d / "hosts"), "bind", ["rbind", "rprivate"]),
              Mount("/etc/resolv.conf", str(d / "resolv.conf"), "bind",
                    ["rbind", "rprivate"])]
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
                os.makedirs(source, exist_ok=True)  # Docker creates a missing -v source
            wanted = check_propagation(source, propagation)
            if wanted == "rshared" or (wanted and root_propagation is None):
                root_propagation = "shared" if wanted == "rshared" else "rslave"
        else:
            # an anonymous volume keeps its name across restarts, and `rm -v` finds it
            anon = rec.extra.setdefault("anon_volumes", {})
            name = mp.source or anon.get(mp.target) or os.urandom(32).hex()
            if not mp.source:
                anon[mp.target] = name
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


def _release_volumes(svc: ContainerService, rec: ContainerRecord) -> None:
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


def _network_up(svc: ContainerService, rec: ContainerRecord,
                later: list[DeferredStep] | None = None) -> dict[str, Any]:
    """Set up the container's network; NetworkSettings data + "netns" + "attachment".
    With `later`, the plumbing inside the namespace is left there (netglue.setup)."""
    if later is None:
        return svc.engine.network_setup(rec)
    from ketch.containers.netglue import setup

    return setup(svc.engine, rec, later=later)


class _Background:
    """Deferred network steps, run in a helper thread while conmon has the runtime
    create the container: both wait on the kernel, and the runtime needs only the
    namespace to exist. `wait` joins, and raises what a step raised."""

    def __init__(self, steps: list[DeferredStep]) -> None:
        self.steps = steps
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if steps:
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


def _network_down(svc: ContainerService, rec: ContainerRecord) -> None:
    svc.engine.network_teardown(rec)


def start(svc: ContainerService, name_or_id: str, *,
          before_start: Callable[[ContainerPaths], None] | None = None,
          policy_token: str | None = None) -> ContainerRecord:
    """Start the container. `policy_token`: a restart by the restart policy
    (containers.restart), done only if the record still waits for that restart."""
    rec = svc.get(name_or_id)
    if rec.host_config.get("_Pod") and not rec.running:
        # a pod member joins the infra's namespaces: the infra runs first (ketch.pods)
        svc.engine.pods.ensure_infra_running(rec.host_config["_Pod"])  # type: ignore[attr-defined]
    with svc.lock(rec.id):
        rec = svc._refresh(svc.records.get(rec.id) or rec, locked=True)
        if rec.state in ("running", "paused"):
            return rec
        if rec.state == "restarting" and (policy_token is None or (
                rec.extra.get("Restarter") or {}).get("token") != policy_token):
            return rec  # Docker: starting a restarting container changes nothing
        if policy_token is not None and rec.state != "restarting":
            return rec  # the restart was called off (stop, kill, start, rm)
        if rec.state == "removing":
            raise Conflict(f"container {rec.name} is being removed")
        # If this process is killed before the record says "running", whoever finds
        # the intent undoes the start (containers/recovery.py): mounts, runtime, network.
        with svc.engine.intents.held("containers.start", rec.id):
            return _start_locked(svc, rec, before_start, policy_token)


def _start_locked(svc: ContainerService, rec: ContainerRecord,
                  before_start: Callable[[ContainerPaths], None] | None,
                  policy_token: str | None) -> ContainerRecord:
    from ketch.containers.security import parse_security_opts
    from ketch.runtime.monitor import ContainerStartError, write_config
    from ketch.runtime.spec import ContainerSpec, generate_config
    from ketch.runtime.users import resolve_groups, resolve_user

    d = svc.path(rec.id)
    rootfs = d / "merged"
    lowers = svc.engine.layers.lower_dirs(rec.chain_ids) if rec.chain_ids else []
    if not lowers:
        (d / "empty").mkdir(exist_ok=True)
        lowers = [d / "empty"]
    mount_overlay(OverlayMount(lowers, d / "upper", d / "work", rootfs,
                               volatile=bool(rec.host_config.get("AutoRemove"))))
    net: dict[str, Any] = {}
    p = paths(svc, rec)
    mon = monitor(svc, rec)
    started = False
    later: list[DeferredStep] = []
    plumbing: _Background | None = None
    try:
        c = rec.config
        hc = rec.host_config
        user = resolve_user(rootfs, c.get("User") or None)
        if hc.get("GroupAdd"):
            user.additional_gids = list(user.additional_gids) + resolve_groups(
                rootfs, list(hc["GroupAdd"]))
        wd = c.get("WorkingDir") or "/"
        os.makedirs(rootfs / wd.lstrip("/"), exist_ok=True)  # Docker creates WORKDIR
        mounts, shown, root_propagation = _mounts(svc, rec, rootfs)
        net = _network_up(svc, rec, later)
        from ketch.containers import options

        link_hosts, link_env = options.links(svc, rec, net)
        _write_etc_files(svc, rec, net, link_hosts)
        args = list(c.get("Entrypoint") or []) + list(c.get("Cmd") or [])
        if hc.get("Init") or (hc.get("Init") is None and svc.settings.init):
            # Docker's docker-init: tini as PID 1 reaps orphans and forwards signals
            from ketch.containers.settings import INIT_TARGET
            from ketch.runtime.spec import Mount

            mounts.append(Mount(INIT_TARGET, svc.settings.init_binary(), "bind",
                                ["bind", "ro"]))
            args = [INIT_TARGET, "--", *args]
        nano = hc.get("NanoCpus") or 0
        spec = ContainerSpec(
            id=rec.id, rootfs=rootfs, args=args, env=list(c.get("Env") or []),
            cwd=wd, user=user, hostname=c.get("Hostname") or rec.id[:12],
            terminal=bool(c.get("Tty")), mounts=mounts,
            readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
            privileged=bool(hc.get("Privileged")),
            cap_add=list(hc.get("CapAdd") or []), cap_drop=list(hc.get("CapDrop") or []),
            memory=hc.get("Memory") or None, memory_swap=hc.get("MemorySwap") or None,
            memory_reservation=hc.get("MemoryReservation") or None,
            cpus=(nano / 1e9) if nano else None, cpu_shares=hc.get("CpuShares") or None,
            cpuset_cpus=hc.get("CpusetCpus") or None,
            pids_limit=hc.get("PidsLimit") or None,
            netns_path=net.get("netns"), stop_signal=c.get("StopSignal"),
            sysctls=dict(hc.get("Sysctls") or {}),
            ulimits={u["Name"]: (u["Soft"], u["Hard"]) for u in hc.get("Ulimits") or []},
        )
        if hc.get("ShmSize"):
            spec.shm_size = hc["ShmSize"]
        security = parse_security_opts(hc.get("SecurityOpt"))
        spec.seccomp = security.seccomp
        spec.no_new_privileges = security.no_new_privileges
        if hc.get("MaskedPaths") is not None:
            spec.masked_paths = list(hc["MaskedPaths"])
        if hc.get("ReadonlyPaths") is not None:
            spec.readonly_paths = list(hc["ReadonlyPaths"])
        spec.rootfs_propagation = root_propagation
        options.apply(svc, rec, spec)
        # link variables come first: the container's own -e wins, as in Docker
        own = {e.partition("=")[0] for e in spec.env}
        spec.env = [e for e in link_env if e.partition("=")[0] not in own] + spec.env
        write_config(d, generate_config(spec))
        plumbing = _Background(later)
        try:
            from ketch.containers.logconfig import policy

            mon.create_container(p, name=rec.name, terminal=bool(c.get("Tty")),
                                 stdin=bool(c.get("OpenStdin")), log=policy(hc))
        except BaseException:
            plumbing.wait(raise_error=False)
            raise
        started = True
        plumbing.wait()  # the network is complete before the process can run
        if before_start is not None:
            before_start(p)
        started_at = time.time()  # the process may run (and exit) before start returns
        mon.start(p)
        pid = int(p.pidfile.read_text().strip()) if p.pidfile.exists() else 0
    except ContainerStartError as e:
        _cancel(later, plumbing)
        _undo_start(svc, rec, mon, p, started)
        svc.records.update(rec.id, error=e.message, exit_code=e.exit_code)
        _remove_if_auto(svc, rec)
        from ketch.containers.service import RunError

        raise RunError(e.message, e.exit_code) from None
    except BaseException:
        _cancel(later, plumbing)
        _undo_start(svc, rec, mon, p, started)
        _remove_if_auto(svc, rec)
        raise
    from ketch.containers.restart import started_fields

    fields = started_fields(rec, policy_token)
    fields["extra"]["Mounts"] = shown
    if policy_token is None:
        fields["finished_at"] = 0.0
    svc.records.update(rec.id, state="running", pid=pid, started_at=started_at,
                       exit_code=0, error="", network=_public_net(net), **fields)
    rec = svc.records.get(rec.id) or rec
    svc.event(rec, "start")
    from ketch.containers.health import start_timer

    start_timer(svc, rec, pid)
    return rec


def _cancel(later: list[DeferredStep], plumbing: _Background | None) -> None:
    """A start that failed: deferred network steps that never ran release what they hold
    (the teardown in _undo_start removes what they made)."""
    if plumbing is not None:
        plumbing.wait(raise_error=False)
    else:
        for step in later:
            step.cancel()


def _public_net(net: dict[str, Any]) -> dict[str, Any]:
    """What the record keeps: NetworkSettings data, without live objects."""
    out = {k: v for k, v in net.items() if k not in ("netns", "attachment")}
    if net.get("netns") not in (None, "host"):
        out["SandboxKey"] = net["netns"]
    return out


def _remove_if_auto(svc: ContainerService, rec: ContainerRecord) -> None:
    """A `--rm` container that could not start is removed, as Docker does (also when
    started detached, where no attached CLI is left to do it)."""
    if rec.host_config.get("AutoRemove"):
        try:
            svc._delete(rec, volumes=True, release=False)
        except KetchError:
            pass


def _undo_start(svc: ContainerService, rec: ContainerRecord, mon: ConmonMonitor,
                p: ContainerPaths, started: bool) -> None:
    try:
        if started:
            mon.runtime.kill(rec.id, _signal.SIGKILL)
    except KetchError:
        pass
    release_resources(svc, rec)


# -- stop / kill / finish ---------------------------------------------------------------------
def kill(svc: ContainerService, name_or_id: str, sig: str | int = "KILL") -> None:
    from ketch.containers.restart import cancels, suppress
    from ketch.runtime.spec import signal_number

    rec = svc.get(name_or_id)
    if not rec.running:
        raise Conflict(f"cannot kill container: {name_or_id}: container {rec.id} is not"
                       " running")
    try:
        num = signal_number(sig)
    except (KetchError, ValueError):
        raise InvalidArgument(f"invalid signal: {sig}") from None
    with svc.lock(rec.id):
        rec = svc.records.get(rec.id) or rec
        # Docker counts a kill as the user stopping the container (unless-stopped stays
        # down), and a kill with the stop signal or SIGKILL calls the policy off
        suppress(svc, rec, cancel=cancels(rec, num))
    if rec.state == "restarting":
        return  # nothing runs: the wait was called off, or goes on (another signal)
    monitor(svc, rec).runtime.kill(rec.id, num)
    svc.event(rec, "kill", signal=num)


def kill_now(svc: ContainerService, rec: ContainerRecord) -> None:
    mon = monitor(svc, rec)
    p = paths(svc, rec)
    if rec.state == "paused":
        try:
            mon.runtime.resume(rec.id)
        except KetchError:
            pass
    try:
        mon.runtime.kill(rec.id, _signal.SIGKILL)
        svc.event(rec, "kill", signal=int(_signal.SIGKILL))
    except KetchError:
        pass
    try:
        mon.wait_exit(p, timeout=10)
    except (TimeoutError, KetchError):
        pass


def stop(svc: ContainerService, name_or_id: str, *, timeout: int | None = None,
         signal: str | None = None) -> None:
    from ketch.containers.restart import suppress
    from ketch.runtime.spec import signal_number

    rec = svc.get(name_or_id)
    if not rec.running:
        return  # Docker: stopping a stopped container succeeds
    with svc.lock(rec.id):
        rec = svc.records.get(rec.id) or rec
        if not rec.running:
            return
        # stopped by the user: no restart until the next `start`; a restart that was
        # waiting is called off, and the container stays exited
        if suppress(svc, rec, cancel=True):
            return
        rec = svc.records.get(rec.id) or rec
    if timeout is None:
        timeout = rec.config.get("StopTimeout")
        timeout = DEFAULT_STOP_TIMEOUT if timeout is None else int(timeout)
    sig = signal_number(signal or rec.config.get("StopSignal") or "SIGTERM")
    mon = monitor(svc, rec)
    p = paths(svc, rec)
    if rec.state == "paused":
        try:
            mon.runtime.resume(rec.id)
        except KetchError:
            pass
    try:
        _stop_process(svc, rec, mon, p, sig, timeout)
    except KetchError:
        if mon.exit_status(p) is None and mon.monitor_alive(p):
            raise
    finish(svc, rec.id)
    svc.event(rec, "stop")


def _stop_process(svc: ContainerService, rec: ContainerRecord, mon: ConmonMonitor,
                  p: ContainerPaths, sig: int, timeout: int) -> None:
    """The stop signal, and SIGKILL if the process outlives `timeout` (-1: forever)."""
    if timeout != 0:
        mon.runtime.kill(rec.id, sig)
        svc.event(rec, "kill", signal=sig)
        try:
            mon.wait_exit(p, timeout=timeout if timeout > 0 else None)
            return
        except TimeoutError:
            pass
    mon.runtime.kill(rec.id, _signal.SIGKILL)
    svc.event(rec, "kill", signal=int(_signal.SIGKILL))
    mon.wait_exit(p, timeout=30)


def finish(svc: ContainerService, cid: str, *, locked: bool = False,
           apply_policy: bool = True) -> None:
    """Record the exit and release what the running container held (idempotent); the
    restart policy decides whether the container is restarted (containers.restart)."""
    if not locked:
        with svc.lock(cid):
            _finish(svc, cid, apply_policy)
            if svc.records.get(cid) is None:
                # removed meanwhile (--rm): the lock file we just made is all that is left
                (svc.run_dir / f"{cid}.lock").unlink(missing_ok=True)
    else:
        _finish(svc, cid, apply_policy)


def _finish(svc: ContainerService, cid: str, apply_policy: bool = True) -> None:
    rec = svc.records.get(cid)
    if rec is None or rec.state not in ("running", "paused"):
        return  # "restarting": finished already, a restart is waiting
    mon = monitor(svc, rec)
    p = paths(svc, rec)
    status = mon.exit_status(p)
    if status is None and mon.monitor_alive(p):
        return  # still running
    code = status.exit_code if status else 137
    finished = status.finished_at if status else time.time()
    extra = dict(rec.extra)
    extra.pop("stopping", None)
    extra["OOMKilled"] = bool(status and status.oom_killed)
    if extra["OOMKilled"]:
        svc.event(rec, "oom")  # dockerd sends it before "die"
    svc.event(rec, "die", exitCode=code)  # before the network goes, as dockerd's order
    from ketch.containers.health import stop_timer

    stop_timer(svc, rec.id)
    release_resources(svc, rec)
    # The policy acts on an exit the monitor recorded; a monitor gone without one (the
    # host rebooted) leaves the container exited, for the boot-time command.
    from ketch.containers import restart

    if apply_policy and status is not None and restart.should_restart(rec, code):
        restart.schedule(svc, rec, exit_code=code, finished_at=finished, extra=extra)
        return
    svc.records.update(cid, state="exited", exit_code=code, finished_at=finished, pid=0,
                       extra=extra)
    if rec.host_config.get("_PodInfra"):
        # its members lose their namespaces: they stop too (ketch.pods)
        svc.engine.pods.infra_exited(rec)  # type: ignore[attr-defined]
    if rec.host_config.get("AutoRemove"):
        # An attached `run --rm` (or `wait`) may find the record gone before it reads
        # the exit code: the record leaves it behind.
        svc._delete(svc.records.get(cid) or rec, volumes=True, release=False,
                    exit_code=code)


def release_resources(svc: ContainerService, rec: ContainerRecord) -> None:
    p = paths(svc, rec)
    # `runc delete` (a process) and the network teardown (the veth deletion waits for
    # the kernel) overlap; the rootfs is unmounted once the runtime is done with it.
    # Nothing here may stop the rest: a container whose runtime cannot even be found
    # must still lose its network and overlay.
    finish: Callable[[], None] | None = None
    try:
        finish = monitor(svc, rec).cleanup_begin(p)
    except KetchError:
        pass
    try:
        _network_down(svc, rec)
    except KetchError:
        pass
    if finish is not None:
        try:
            finish()
        except KetchError:
            pass
    unmount(svc.path(rec.id) / "merged")
    _release_volumes(svc, rec)


def remove_anonymous_volumes(svc: ContainerService, rec: ContainerRecord) -> None:
    from ketch.containers.volumes import VolumeStore

    store = VolumeStore(svc.engine)
    for name in (rec.extra.get("anon_volumes") or {}).values():
        # the container being removed still counts as a user; anyone else keeps it
        if any(cid != rec.id for cid in store.in_use(name)):
            continue
        store.remove(name, force=True, missing_ok=True)


def cleanup(svc: ContainerService, name_or_id: str) -> None:
    """The monitor's exit command: finish the container now that its process exited."""
    try:
        rec = svc.records.find(name_or_id)
    except KetchError:
        return
    if not rec.running:
        # never started (a failed create) or already finished: the `start` that failed
        # may hold the lock while it waits for conmon, which waits for us
        return
    finish(svc, rec.id)


def wait(svc: ContainerService, name_or_id: str) -> int:
    """Block until the container's process exits, or return at once if it is not
    running; its exit code (also after `--rm`). As Docker's wait, an exit the restart
    policy acts on counts: a restarting container is waited for until its next exit."""
    rec = svc.get(name_or_id)
    mon = monitor(svc, rec)
    p = paths(svc, rec)
    code = rec.exit_code
    count = rec.restart_count
    delay = 0.005
    while True:
        cur = svc.records.get(rec.id)
        if cur is None:
            remembered = svc.records.take_exit_code(rec.id)
            return code if remembered is None else remembered
        if not cur.running:
            return cur.exit_code
        if cur.state == "restarting":
            if cur.restart_count != count:
                return cur.exit_code
            svc._refresh(cur)  # the restart called off, or nobody left to make it
            time.sleep(0.05)
            continue
        status = mon.exit_status(p)
        if status is not None:
            code = status.exit_code
            finish(svc, rec.id)
            continue
        if not mon.monitor_alive(p):
            finish(svc, rec.id)
            continue
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
