"""The container state machine: one owner of a container's transitions over the runtime
(runc or crun under conmon), overlayfs and the network service.

start:  rootfs mounted → network set up → config.json → conmon runs `runc create`
        → (caller attaches) → `runc start` → record "running"
stop/kill/pause/unpause/restart: signals and freezes through the runtime
finish: exit code recorded → runtime state, network, mounts released → restart policy
        or `--rm` removal
Every step has its undo, and a failed start undoes everything it did.

`ContainerService` is the façade (its `lifecycle`); creating a container and removing
one that never ran are record operations that stay there, on the lean import path
(tests/containers/test_import_budgets.py: `create` and `rm` never load this module).
What a running container holds (mounts, /etc files, network, volumes) is acquired and
released by `containers.resources`.
"""

from __future__ import annotations

import _signal  # not `signal`: its enums import enum (ms for `pause`; ketch.runtime.spec)
import os
import time

from ketch.containers.records import ContainerRecord
from ketch.errors import Conflict, InvalidArgument, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ketch.containers import resources
    from ketch.containers.podns import InfraStart
    from ketch.containers.service import ContainerService
    from ketch.network.sandbox import DeferredStep
    from ketch.runtime.monitor import ConmonMonitor, ContainerPaths
    from ketch.runtime.oci import OCIRuntime

DEFAULT_STOP_TIMEOUT = 10

# conmon runs the exit command the moment the container exits, and waits for it. Usually
# someone is already finishing the container (an attached `run`, `stop`, `wait`, or any
# command that looks at it), so the command waits a moment and starts Python only if the
# container's pid file (removed by whoever finishes it) is still there: a `run --rm` then
# costs no second interpreter, while a detached container nobody watches is still cleaned
# up (and removed, with --rm) a second after it exits. The wait looks for the pid file
# after 10, 30, 70, 150, 300, 600 and 1000 ms (seven sleeps, each a fork), so conmon ends
# soon after the container is finished rather than a second later (a `rm -f` left its
# monitor behind for that second). A container that never started has no pid file:
# nothing to wait for, and the `start` that failed undoes it itself.
_EXIT_SCRIPT = ('for d in 0.01 0.02 0.04 0.08 0.15 0.3 0.4; do [ -e "$0" ] || exit 0;'
                ' sleep $d; done; [ -e "$0" ] || exit 0; exec "$@"')
# With a restart policy the exit is acted on at once: the policy's backoff is the only
# delay before the restart (an attached `run` finishing meanwhile is harmless: the
# second to take the container lock finds the exit recorded).
_EXIT_SCRIPT_NOW = '[ -e "$0" ] || exit 0; exec "$@"'


class Lifecycle:
    """The state transitions of the service's containers. One per service: it keeps the
    runtimes and conmon's path it found for the process."""

    def __init__(self, svc: ContainerService) -> None:
        self.svc = svc
        # One runtime per name and process: finding the binaries on $PATH for every
        # record made `ps -a` with many running containers slow.
        self._runtimes: dict[str, OCIRuntime] = {}
        self._conmon: str | None = None

    # -- plumbing ------------------------------------------------------------------------------
    def paths(self, rec: ContainerRecord) -> ContainerPaths:
        from ketch.runtime.monitor import ContainerPaths

        svc = self.svc
        from ketch.containers.logconfig import log_file

        return ContainerPaths.create(rec.id, svc.path(rec.id), f"{svc.run_dir}/{rec.id}",
                                     log_file(rec.host_config, f"{svc.path(rec.id)}/ctr.log"))

    def runtime(self, rec: ContainerRecord) -> OCIRuntime:
        """The driver of the container's OCI runtime (one per name and process): all a
        pause or an unpause needs, without the monitor's module."""
        from ketch.runtime.oci import OCIRuntime

        name = rec.host_config.get("Runtime") or "runc"
        if name not in ("runc", "crun"):
            raise InvalidArgument(f"unknown runtime {name!r}: use runc or crun")
        runtime = self._runtimes.get(name)
        if runtime is None:
            runtime = self._runtimes[name] = OCIRuntime(
                name, f"{self.svc.engine.run_root_dir}/{name}")
        return runtime

    def monitor(self, rec: ContainerRecord) -> ConmonMonitor:
        from ketch.runtime.monitor import ConmonMonitor

        runtime = self.runtime(rec)
        if self._conmon is None:
            from ketch.runtime.oci import which

            self._conmon = which("conmon") or ""
        return ConmonMonitor(runtime, self._conmon or None,
                             exit_command=self._exit_command(rec))

    def _exit_command(self, rec: ContainerRecord) -> list[str]:
        from ketch.launcher import self_command

        svc = self.svc
        cleanup = [*self_command(), "--root", svc.engine.root_dir,
                   "--run-root", svc.engine.run_root_dir, "container", "cleanup", rec.id]
        script = _EXIT_SCRIPT
        if (rec.host_config.get("RestartPolicy") or {}).get("Name") not in (None, "", "no"):
            script = _EXIT_SCRIPT_NOW
        return ["/bin/sh", "-c", script, self.paths(rec).pidfile, *cleanup]

    def process_alive(self, rec: ContainerRecord) -> bool:
        mon = self.monitor(rec)
        p = self.paths(rec)
        if mon.exit_status(p) is not None:
            return False
        return mon.monitor_alive(p)

    # -- start ---------------------------------------------------------------------------------
    def start(self, name_or_id: str, *,
              before_start: Callable[[ContainerPaths], None] | None = None,
              policy_token: str | None = None,
              network_ready: Callable[[str], None] | None = None,
              namespaces_ready: Callable[[], None] | None = None,
              infra_start: InfraStart | None = None) -> ContainerRecord:
        """Start the container. `policy_token`: a restart by the restart policy
        (containers.restart), done only if the record still waits for that restart.
        `network_ready`: called with the path of the container's own network namespace
        once it exists, in the helper thread of the deferred network plumbing, beside
        the runtime's create; the process starts after it returned, and what it raises
        fails the start (the CRI attaches a sandbox to CNI there).

        A pod member joins its infra's namespaces. When the infra is not running, its
        start runs beside the member's (`infra_start`, or one of the member's own):
        the member is created once the infra's namespaces exist (`namespaces_ready`,
        called by the infra's start when they do) and its process starts once the infra
        has started; the infra's failure is the member's."""
        svc = self.svc
        rec = svc.get(name_or_id)
        if infra_start is None and rec.host_config.get("_Pod") and not rec.running:
            infra_start = svc.engine.pods.start_infra_beside(rec.host_config["_Pod"])
        if infra_start is None:
            return self._start(rec, name_or_id, before_start, policy_token, network_ready,
                               namespaces_ready)
        return infra_start.member(lambda after_infra: self._start(
            rec, name_or_id, after_infra, policy_token, network_ready, namespaces_ready),
            before_start)

    def _start(self, rec: ContainerRecord, name_or_id: str,
               before_start: Callable[[ContainerPaths], None] | None,
               policy_token: str | None, network_ready: Callable[[str], None] | None,
               namespaces_ready: Callable[[], None] | None) -> ContainerRecord:
        svc = self.svc
        with svc.lock(rec.id):
            rec = svc._refresh(svc.reread(rec, name_or_id), locked=True)
            if rec.state in ("running", "paused"):
                return rec
            if rec.state == "restarting" and (policy_token is None or (
                    rec.extra.get("Restarter") or {}).get("token") != policy_token):
                return rec  # Docker: starting a restarting container changes nothing
            if policy_token is not None and rec.state != "restarting":
                return rec  # the restart was called off (stop, kill, start, rm)
            if rec.state == "removing":
                raise Conflict(f"container {rec.name} is being removed")
            # again at each start: a long-lived front door (the API service) checked when
            # it began, and a command with another run root may have taken over since
            svc.records.claim_run_root(svc.engine.run_root_dir)
            # If this process is killed before the record says "running", whoever finds
            # the intent undoes the start (containers/recovery.py): mounts, runtime, network.
            with svc.engine.intents.held("containers.start", rec.id):
                return self._start_locked(rec, before_start, policy_token, network_ready,
                                          namespaces_ready)

    def _start_locked(self, rec: ContainerRecord,
                      before_start: Callable[[ContainerPaths], None] | None,
                      policy_token: str | None,
                      network_ready: Callable[[str], None] | None = None,
                      namespaces_ready: Callable[[], None] | None = None) -> ContainerRecord:
        # (what a start needs and a pause or a look does not: mounts, the network)
        from ketch.containers import resources
        from ketch.containers.ocispec import container_spec
        from ketch.containers.rootfs import OverlayMount, mount_overlay
        from ketch.runtime.monitor import ContainerStartError, read_int, write_config
        from ketch.runtime.spec import generate_config
        from ketch.runtime.users import resolve_groups, resolve_user

        svc = self.svc
        d = svc.path(rec.id)
        rootfs = f"{d}/merged"
        lowers = svc.engine.layers.lower_dirs(rec.chain_ids) if rec.chain_ids else []
        if not lowers:
            os.makedirs(f"{d}/empty", exist_ok=True)
            lowers = [f"{d}/empty"]
        mount_overlay(OverlayMount(lowers, f"{d}/upper", f"{d}/work", rootfs,
                                   volatile=bool(rec.host_config.get("AutoRemove"))))
        net: dict[str, Any] = {}
        p = self.paths(rec)
        mon = self.monitor(rec)
        started = False
        later: list[DeferredStep] = []
        plumbing: resources.Background | None = None
        try:
            c = rec.config
            hc = rec.host_config
            user = resolve_user(rootfs, c.get("User") or None)
            if hc.get("GroupAdd"):
                user.additional_gids = list(user.additional_gids) + resolve_groups(
                    rootfs, list(hc["GroupAdd"]))
            wd = c.get("WorkingDir") or "/"
            os.makedirs(os.path.join(rootfs, wd.lstrip("/")), exist_ok=True)  # Docker creates WORKDIR
            mounts, shown, root_propagation = resources.mounts(svc, rec, rootfs)
            net = resources.network_up(svc, rec, later)
            if network_ready is not None and net.get("netns") not in (None, "host"):
                later.append(_ready_step(network_ready, net["netns"]))
            from ketch.containers import options

            link_hosts, link_env = options.links(svc, rec, net)
            resources.write_etc_files(svc, rec, net, link_hosts)
            spec = container_spec(svc, rec, rootfs, user, wd, mounts, net)
            spec.rootfs_propagation = root_propagation
            if hc.get("_PodInfra"):
                from ketch.containers import podns

                podns.pin(svc, rec, spec)  # (the network namespace exists already)
                if namespaces_ready is not None:
                    namespaces_ready()
            # link variables come first: the container's own -e wins, as in Docker
            own = {e.partition("=")[0] for e in spec.env}
            spec.env = [e for e in link_env if e.partition("=")[0] not in own] + spec.env
            write_config(d, generate_config(spec))
            plumbing = resources.Background(later)
            try:
                from ketch.containers.logconfig import policy

                # Docker and the CRI close a container's stdin when an attached client
                # ends its input only for StdinOnce; a terminal's never
                mon.create_container(p, name=rec.name, terminal=bool(c.get("Tty")),
                                     stdin=bool(c.get("OpenStdin")), log=policy(hc),
                                     leave_stdin_open=bool(c.get("Tty"))
                                     or not c.get("StdinOnce"))
            except BaseException:
                plumbing.wait(raise_error=False)
                raise
            started = True
            plumbing.wait()  # the network is complete before the process can run
            if before_start is not None:
                before_start(p)
            started_at = time.time()  # the process may run (and exit) before start returns
            mon.start(p)
            pid = read_int(p.pidfile) or 0
        except ContainerStartError as e:
            resources.cancel(later, plumbing)
            self._undo_start(rec, mon, p, started)
            svc.records.update(rec.id, error=e.message, exit_code=e.exit_code)
            self.remove_if_auto(rec)
            from ketch.containers.service import RunError

            raise RunError(e.message, e.exit_code) from None
        except BaseException:
            resources.cancel(later, plumbing)
            self._undo_start(rec, mon, p, started)
            self.remove_if_auto(rec)
            raise
        from ketch.containers.restart import started_fields

        fields = started_fields(rec, policy_token)
        fields["extra"]["Mounts"] = shown
        if policy_token is None:
            fields["finished_at"] = 0.0
        svc.records.update(rec.id, state="running", pid=pid, started_at=started_at,
                           exit_code=0, error="", network=resources.public_net(net), **fields)
        rec = svc.records.get(rec.id) or rec
        svc.event(rec, "start")
        if rec.config.get("Healthcheck"):  # (the module only for a container with one)
            from ketch.containers.health import start_timer
            start_timer(svc, rec, pid)
        return rec

    def remove_if_auto(self, rec: ContainerRecord) -> None:
        """A `--rm` container that could not start is removed, as Docker does (also when
        started detached, where no attached CLI is left to do it)."""
        svc = self.svc
        if rec.host_config.get("AutoRemove"):
            try:
                svc._delete(rec, volumes=True, release=False)
            except KetchError:
                pass

    def _undo_start(self, rec: ContainerRecord, mon: ConmonMonitor,
                    p: ContainerPaths, started: bool) -> None:
        try:
            if started:
                mon.runtime.kill(rec.id, _signal.SIGKILL)
        except KetchError:
            pass
        self.release_resources(rec)

    # -- stop / kill / finish ------------------------------------------------------------------
    def kill(self, name_or_id: str, sig: str | int = "KILL") -> None:
        from ketch.containers.restart import cancels, suppress
        from ketch.runtime.spec import signal_number

        svc = self.svc
        # dockerd's order: the signal is parsed first (0 is none), then the container's
        # checked, then whether the host has such a signal
        try:
            num = signal_number(sig)
        except (KetchError, ValueError):
            num = 0
        if num == 0:
            raise InvalidArgument(f"Invalid signal: {sig}")
        rec = svc.get(name_or_id)
        if not 0 < num <= _signal.SIGRTMAX:
            raise InvalidArgument(f"Cannot kill container: {name_or_id}: The linux daemon does"
                                  f" not support signal {num}")
        if not rec.running:
            raise Conflict(f"Cannot kill container: {name_or_id}: Container {rec.id} is not"
                           " running")
        with svc.lock(rec.id):
            rec = svc.reread(rec, name_or_id)
            # Docker counts a kill as the user stopping the container (unless-stopped stays
            # down), and a kill with the stop signal or SIGKILL calls the policy off
            suppress(svc, rec, cancel=cancels(rec, num))
        if rec.state == "restarting":
            return  # nothing runs: the wait was called off, or goes on (another signal)
        mon = self.monitor(rec)
        mon.runtime.kill(rec.id, num)
        svc.event(rec, "kill", signal=num)
        if num == _signal.SIGKILL:
            # as dockerd's: a SIGKILL returns once the container has stopped (up to 10 s)
            # and its exit is recorded, so the next command finds it exited
            try:
                mon.wait_exit(self.paths(rec), timeout=10)
            except (TimeoutError, KetchError):
                return  # still dying, or its monitor is gone: whoever looks next finishes it
            self.finish(rec.id)

    def kill_now(self, rec: ContainerRecord) -> None:
        svc = self.svc
        mon = self.monitor(rec)
        p = self.paths(rec)
        if rec.state == "paused":
            try:
                mon.runtime.resume(rec.id)
            except KetchError:
                pass
        try:
            if not mon.runtime.kill_init(rec.id, _signal.SIGKILL):
                mon.runtime.kill(rec.id, _signal.SIGKILL)
            svc.event(rec, "kill", signal=int(_signal.SIGKILL))
        except KetchError:
            pass
        try:
            mon.wait_exit(p, timeout=10)
        except (TimeoutError, KetchError):
            pass

    def stop(self, name_or_id: str, *, timeout: int | None = None,
             signal: str | None = None) -> None:
        from ketch.containers.restart import suppress
        from ketch.runtime.spec import signal_number

        svc = self.svc
        rec = svc.get(name_or_id)
        if not rec.running:
            return  # Docker: stopping a stopped container succeeds
        with svc.lock(rec.id):
            rec = svc.reread(rec, name_or_id)
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
        mon = self.monitor(rec)
        p = self.paths(rec)
        if rec.state == "paused":
            try:
                mon.runtime.resume(rec.id)
            except KetchError:
                pass
        try:
            self._stop_process(rec, mon, p, sig, timeout)
        except KetchError:
            if mon.exit_status(p) is None and mon.monitor_alive(p):
                raise
        self.finish(rec.id)
        svc.event(rec, "stop")

    def _stop_process(self, rec: ContainerRecord, mon: ConmonMonitor,
                      p: ContainerPaths, sig: int, timeout: int) -> None:
        """The stop signal, and SIGKILL if the process outlives `timeout` (-1: forever)."""
        svc = self.svc
        if timeout != 0:
            mon.runtime.kill(rec.id, sig)
            svc.event(rec, "kill", signal=sig)
            try:
                mon.wait_exit(p, timeout=timeout if timeout > 0 else None)
                return
            except TimeoutError:
                pass
        if not mon.runtime.kill_init(rec.id, _signal.SIGKILL):
            mon.runtime.kill(rec.id, _signal.SIGKILL)
        svc.event(rec, "kill", signal=int(_signal.SIGKILL))
        mon.wait_exit(p, timeout=30)

    def finish(self, cid: str, *, locked: bool = False,
               apply_policy: bool = True) -> None:
        """Record the exit and release what the running container held (idempotent); the
        restart policy decides whether the container is restarted (containers.restart)."""
        svc = self.svc
        if not locked:
            with svc.lock(cid):
                self._finish(cid, apply_policy)
                if svc.records.get(cid) is None:
                    # removed meanwhile (--rm): the lock file we just made is all that is left
                    from ketch.fdio import remove_file
                    remove_file(f"{svc.run_dir}/{cid}.lock")
        else:
            self._finish(cid, apply_policy)

    def _finish(self, cid: str, apply_policy: bool = True) -> None:
        svc = self.svc
        rec = svc.records.get(cid)
        if rec is None or rec.state not in ("running", "paused"):
            return  # "restarting": finished already, a restart is waiting
        mon = self.monitor(rec)
        p = self.paths(rec)
        status = mon.exit_status(p)
        if status is None and mon.monitor_alive(p):
            return  # still running
        code = status.exit_code if status else 137
        # the monitor stamps the exit when it reaps the process, ketch the start after the
        # runtime's start returns: a process quicker than that return would show an exit
        # before its start (inspect, the restart policy's back-off); never earlier
        finished = max(status.finished_at if status else time.time(), rec.started_at)
        extra = dict(rec.extra)
        extra.pop("stopping", None)
        extra["OOMKilled"] = bool(status and status.oom_killed)
        if extra["OOMKilled"]:
            svc.event(rec, "oom")  # dockerd sends it before "die"
        svc.event(rec, "die", exitCode=code)  # before the network goes, as dockerd's order
        if rec.config.get("Healthcheck"):  # (its timer's pid file, if it has one)
            from ketch.containers.health import stop_timer
            stop_timer(svc, rec.id)
        self.release_resources(rec)
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
            svc.engine.pods.infra_exited(rec)
        if rec.host_config.get("AutoRemove"):
            # An attached `run --rm` (or `wait`) may find the record gone before it reads
            # the exit code: the record leaves it behind.
            svc._delete(svc.records.get(cid) or rec, volumes=True, release=False,
                        exit_code=code)

    def release_resources(self, rec: ContainerRecord) -> None:
        from ketch.containers import resources
        from ketch.containers.rootfs import unmount

        svc = self.svc
        p = self.paths(rec)
        # `runc delete` (a process) and the network teardown (the veth deletion waits for
        # the kernel) overlap; the rootfs is unmounted once the runtime is done with it.
        # Nothing here may stop the rest: a container whose runtime cannot even be found
        # must still lose its network and overlay.
        finish: Callable[[], None] | None = None
        try:
            finish = self.monitor(rec).cleanup_begin(p)
        except KetchError:
            pass
        try:
            resources.network_down(svc, rec)
        except KetchError:
            pass
        if rec.host_config.get("_PodInfra"):
            from ketch.containers import podns

            podns.unpin(svc, rec.id)
        if finish is not None:
            try:
                finish()
            except KetchError:
                pass
        unmount(f"{svc.path(rec.id)}/merged")
        resources.release_volumes(svc, rec)

    def cleanup(self, name_or_id: str) -> None:
        """The monitor's exit command: finish the container now that its process exited."""
        svc = self.svc
        try:
            rec = svc.records.find(name_or_id)
        except KetchError:
            return
        if not rec.running:
            # never started (a failed create) or already finished: the `start` that failed
            # may hold the lock while it waits for conmon, which waits for us
            return
        self.finish(rec.id)

    def wait(self, name_or_id: str) -> int:
        """Block until the container's process exits, or return at once if it is not
        running; its exit code (also after `--rm`). As Docker's wait, an exit the restart
        policy acts on counts: a restarting container is waited for until its next exit."""
        svc = self.svc
        rec = svc.get(name_or_id)
        mon = self.monitor(rec)
        p = self.paths(rec)
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
                self.finish(rec.id)
                continue
            if not mon.monitor_alive(p):
                self.finish(rec.id)
                continue
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    # -- refresh / pause / unpause / restart ---------------------------------------------------
    def refresh(self, rec: ContainerRecord, *, locked: bool = False) -> ContainerRecord:
        """A running record, finished first if its process has exited (the service's
        `_refresh` for running and paused containers)."""
        if self.process_alive(rec):
            return rec
        self.finish(rec.id, locked=locked)
        return self.svc.records.get(rec.id) or rec

    def pause(self, name_or_id: str, *, strict: bool = True) -> bool:
        """Not `strict` (commit's): False for one paused or stopped already (a pause of
        the user's that came first stays), looked at under its lock."""
        with self.svc.locked(name_or_id) as rec:  # an exit finished meanwhile wins
            if rec.state != "running" and not strict:
                return False
            if rec.state == "paused":
                raise Conflict(f"Container {rec.id} is already paused")
            if rec.state != "running":
                raise Conflict(f"Container {rec.id} is not running")
            self.runtime(rec).pause(rec.id)
            self.svc.records.update(rec.id, state="paused")
        self.svc.event(rec, "pause")
        return True

    def unpause(self, name_or_id: str) -> None:
        svc = self.svc
        with svc.locked(name_or_id) as rec:
            if rec.state != "paused":
                raise Conflict(f"Container {rec.id} is not paused")
            self.runtime(rec).resume(rec.id)
            svc.records.update(rec.id, state="running")
        svc.event(rec, "unpause")

    def restart(self, name_or_id: str, *, timeout: int | None = None,
                signal: str | None = None) -> None:
        # RestartCount counts restarts by the restart policy, not `docker restart`
        svc = self.svc
        rec = svc.get(name_or_id)
        self.stop(rec.id, timeout=timeout, signal=signal)
        svc.event(self.start(rec.id), "restart")


def _ready_step(network_ready: Callable[[str], None], netns: str) -> DeferredStep:
    from ketch.network.sandbox import DeferredStep

    return DeferredStep(lambda: network_ready(netns), lambda: None)
