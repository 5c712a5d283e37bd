"""The infra container's image: `localhost/ketch-pause:<version>`, made offline by ketch
from the host's static busybox the first time a pod is created.

Why busybox and not catatonit (Podman's choice): busybox-static is already what ketch's
offline base image is made from, so a host that runs ketch's tests has it; catatonit is
one more package for the same job. The infra process only has to hold the namespaces
open and exit cleanly on SIGTERM. Members never share its PID namespace, so it never
has orphans to reap (the other half of catatonit's job). The image holds /bin/busybox
and two applet links, nothing else, and its bytes are fixed: the same busybox always
gives the same image ID.

Its seccomp profile is its own (`infra_seccomp`), not the default one: an allow-list of
the calls runc's init makes after it loads the filter, plus those of the shell loop,
every one of them also allowed by the default profile, so the infra is more confined
than a container. It is also why starting a pod is quicker: runc compiles a container's
filter on every `runc create`, and the default profile's ~370 names took it 70-150 ms
on a 2-core host where this one takes a few (bench/bench_pods.py).
"""

from __future__ import annotations

from ketch import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    import tarfile

    from ketch.images.service import ImageService

PAUSE_IMAGE = f"localhost/ketch-pause:{__version__}"
# PID 1 in its namespace ignores signals it has no handler for: the shell's trap
# makes SIGTERM (and SIGINT) end it at once, with status 0, as catatonit does
PAUSE_SCRIPT = "trap 'exit 0' TERM INT; while :; do sleep 86400 & wait $!; done"
PAUSE_CMD = ["/bin/sh", "-c", PAUSE_SCRIPT]
_MTIME = 1700000000

# What the infra may call once runc has loaded its filter (runc loads it before it
# drops capabilities, as ketch does not set no-new-privileges): runc init's last steps
# (credentials, capabilities, closing file descriptors, the exec fifo), the Go runtime
# under it, then busybox's sh and sleep. Found with strace of the infra's start (runc
# 1.1), with the variants other runc versions and architectures use (close_range, the
# stat and open family, pidfd_open); all are in the default profile's unconditional list.
_INFRA_SYSCALLS = (
    # runc init: credentials, capabilities, cwd, the exec fifo, then execve
    "capget", "capset", "chdir", "fchdir", "getcwd", "prctl", "setgid", "setgroups",
    "setsid", "setuid", "umask", "execve", "execveat",
    # files and descriptors
    "access", "close", "close_range", "dup", "dup2", "dup3", "faccessat", "faccessat2",
    "fcntl", "fstat", "fstatfs", "getdents64", "lseek", "lstat", "newfstatat", "open",
    "openat", "openat2", "pipe2", "poll", "ppoll", "pread64", "read", "readlink",
    "readlinkat", "socketpair", "stat", "statfs", "statx", "write",
    # memory and the Go runtime's threads, signals and polling
    "brk", "epoll_create1", "epoll_ctl", "epoll_pwait", "futex",
    "getrandom", "getrlimit", "madvise", "mmap", "mprotect", "munmap", "prlimit64",
    "rseq", "sched_getaffinity", "sched_yield", "set_robust_list", "set_tid_address",
    "sigaltstack", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend",
    "restart_syscall", "tgkill", "kill", "pidfd_open", "pidfd_send_signal",
    # the shell's loop: fork a sleep, wait for it, and leave on SIGTERM
    "fork", "vfork", "wait4", "waitid", "nanosleep", "clock_nanosleep", "pause",
    "getpid", "getppid", "gettid", "getuid", "geteuid", "getegid", "exit", "exit_group",
)


def _entry(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    import tarfile

    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.linkname, ti.mtime = kind, mode, size, link, _MTIME
    return ti


def pause_rootfs() -> bytes:
    """The rootfs tarball of the pause image (made once per state root: tarfile and
    the busybox lookup are imported here, not by every `pod create`)."""
    import io
    import tarfile

    from ketch.images.busybox import find_busybox

    with open(find_busybox(), "rb") as f:
        data = f.read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("bin", "dev", "proc", "sys", "etc"):
            tf.addfile(_entry(d, tarfile.DIRTYPE, 0o755))
        tf.addfile(_entry("bin/busybox", tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
        for applet in ("sh", "sleep"):
            tf.addfile(_entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox"))
    return buf.getvalue()


def ensure_pause_image(images: ImageService) -> str:
    """The pause image's reference, imported first if this state root lacks it."""
    from ketch.errors import KetchError

    try:
        images.resolve(PAUSE_IMAGE)
        return PAUSE_IMAGE
    except KetchError:
        pass
    import io

    from ketch.images.busybox import BusyboxMissing

    try:
        tar = pause_rootfs()
    except BusyboxMissing as e:
        raise KetchError(f"cannot make the pod infra image: {e}") from None
    images.import_tar(io.BytesIO(tar), ref=PAUSE_IMAGE, message="ketch pod infra",
                      changes=[f"CMD {_json(PAUSE_CMD)}"])
    return PAUSE_IMAGE


def infra_seccomp() -> str:
    """The infra's `--security-opt seccomp=` value: the allow-list above (denied calls
    fail with EPERM, as under the default profile), with the default profile's
    architectures but x32 and its rules for arch_prctl (amd64 and x32 only), clone (no
    new namespaces) and clone3 (ENOSYS, so libc falls back to clone). The infra runs
    the host's busybox-static (its sh and sleep, which ketch puts in the pause image),
    built for the host's own architecture and making no x32 call, so its filter need
    not list x32 on a kernel that runs it: no probe of the kernel (and no ctypes) for
    `pod create`, and one architecture less for runc to compile."""
    from ketch.runtime.seccomp import default_profile

    default = default_profile(x32=False)
    kept = [r for r in default["syscalls"]
            if r["names"][0] in ("arch_prctl", "clone", "clone3")]
    profile = {
        "defaultAction": default["defaultAction"],
        "defaultErrnoRet": default["defaultErrnoRet"],
        "archMap": default["archMap"],
        "syscalls": [{"names": list(_INFRA_SYSCALLS), "action": "SCMP_ACT_ALLOW"}, *kept],
    }
    from ketch import fastjson

    return "seccomp=" + fastjson.dumps(profile)


def _json(v: object) -> str:
    import json

    return json.dumps(v)
