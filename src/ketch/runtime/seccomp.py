"""Seccomp: Docker's default profile and the conversion of a Docker-format profile into
the OCI runtime-spec `linux.seccomp` object that runc compiles into a BPF filter.

A Docker-format profile (the JSON `--security-opt seccomp=FILE` takes) has rules that
depend on the container: `includes`/`excludes` by capability, architecture and kernel
version. `oci_seccomp` resolves them against one container's capability set and this
host, so `--cap-add SYS_ADMIN` opens mount/unshare/setns as it does under Docker.

The facts of the default profile (which syscalls, which argument filters, which
capability opens what) are those of moby's `profiles/seccomp/default.json`; the lists
below are grouped by purpose. They were checked name by name against a 2023 version of
that file, plus the calls of kernels 6.5-6.7 moby added in 2024 to match containerd's
profile (moby#47341: cachestat, fchmodat2, map_shadow_stack, futex_requeue/wait/wake).
A name this host's libseccomp does not know is skipped by runc. This module is
imported only when a container's config.json is written.
"""

from __future__ import annotations

import os

from ketch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


EPERM = 1
ENOSYS = 38

# --- the syscalls every container may make ----------------------------------------

_FILES = (
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2",
    "fadvise64", "fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2",
    "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "flock",
    "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futimesat", "getcwd", "getdents", "getdents64", "lchown", "lchown32",
    "link", "linkat", "_llseek", "lseek", "lstat", "lstat64", "mkdir", "mkdirat", "mknod",
    "mknodat", "name_to_handle_at", "newfstatat", "open", "openat", "openat2", "pread64",
    "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
    "readlinkat", "readv", "rename", "renameat", "renameat2", "rmdir", "sendfile",
    "sendfile64", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink",
    "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate", "truncate64",
    "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
    "vmsplice", "write", "writev", "cachestat",
)
_XATTRS = (
    "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "lgetxattr",
    "listxattr", "llistxattr", "lremovexattr", "lsetxattr", "removexattr", "setxattr",
)
_EVENTS = (
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
    "fanotify_mark", "inotify_add_watch", "inotify_init", "inotify_init1",
    "inotify_rm_watch", "_newselect", "pause", "poll", "ppoll", "ppoll_time64",
    "pselect6", "pselect6_time64", "select", "signalfd", "signalfd4",
)
_ASYNC_IO = (
    "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "io_setup", "io_submit", "io_uring_enter", "io_uring_register", "io_uring_setup",
    "ioctl", "ioprio_get", "ioprio_set",
)
_MEMORY = (
    "brk", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap", "msync", "munlock",
    "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages",
    "map_shadow_stack",
)
_PROCESSES = (
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "getcpu",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrlimit", "get_robust_list",
    "getrusage", "getsid", "get_thread_area", "gettid", "kill", "pidfd_open",
    "pidfd_send_signal", "prctl", "prlimit64", "process_mrelease", "restart_syscall",
    "rseq", "seccomp", "setpgid", "setpriority", "setrlimit", "set_robust_list", "setsid",
    "set_thread_area", "set_tid_address", "tgkill", "tkill", "ugetrlimit", "vfork",
    "wait4", "waitid", "waitpid",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
)
_IDENTITY = (
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getresgid", "getresgid32", "getresuid", "getresuid32", "getuid",
    "getuid32", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
    "setgroups", "setgroups32", "setregid", "setregid32", "setresgid", "setresgid32",
    "setresuid", "setresuid32", "setreuid", "setreuid32", "setuid", "setuid32",
)
_SIGNALS = (
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
    "sigaltstack", "sigprocmask", "sigreturn",
)
_TIME = (
    "adjtimex", "alarm", "clock_adjtime", "clock_adjtime64", "clock_getres",
    "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "getitimer", "gettimeofday", "nanosleep", "setitimer", "time",
    "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64",
    "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
    "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
)
_SYNC_AND_IPC = (
    "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake",
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl",
    "msgget", "msgrcv", "msgsnd", "pipe", "pipe2", "semctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
)
_NETWORK = (  # socket(2) itself has an argument rule below
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
    "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send",
    "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socketcall", "socketpair",
)
_SYSTEM_INFO = ("getrandom", "sysinfo", "uname")

ALWAYS_ALLOWED: tuple[str, ...] = tuple(sorted(
    {n for group in (_FILES, _XATTRS, _EVENTS, _ASYNC_IO, _MEMORY, _PROCESSES, _IDENTITY,
                     _SIGNALS, _TIME, _SYNC_AND_IPC, _NETWORK, _SYSTEM_INFO)
     for n in group}))

# personality(2) values a container may set: PER_LINUX, UNAME26, PER_LINUX32,
# UNAME26|PER_LINUX32, and the query 0xffffffff.
PERSONALITY_VALUES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)

AF_VSOCK = 40

# clone(2) flags that create namespaces: without CAP_SYS_ADMIN, clone must not carry
# any of them (CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP).
CLONE_NAMESPACE_FLAGS = (0x00020000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
                         | 0x40000000 | 0x02000000)

# --- syscalls a capability opens --------------------------------------------------

CAPABILITY_SYSCALLS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CAP_DAC_READ_SEARCH", ("open_by_handle_at",)),
    ("CAP_SYS_ADMIN", (
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree",
        "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname",
        "setns", "syslog", "umount", "umount2", "unshare")),
    ("CAP_SYS_BOOT", ("reboot",)),
    ("CAP_SYS_CHROOT", ("chroot",)),
    ("CAP_SYS_MODULE", ("delete_module", "finit_module", "init_module")),
    ("CAP_SYS_PACCT", ("acct",)),
    ("CAP_SYS_PTRACE", ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                        "process_vm_writev", "ptrace")),
    ("CAP_SYS_RAWIO", ("ioperm", "iopl")),
    ("CAP_SYS_TIME", ("clock_settime", "clock_settime64", "settimeofday", "stime")),
    ("CAP_SYS_TTY_CONFIG", ("vhangup",)),
    ("CAP_SYS_NICE", ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node")),
    ("CAP_SYSLOG", ("syslog",)),
    ("CAP_BPF", ("bpf",)),
    ("CAP_PERFMON", ("perf_event_open",)),
)

# --- syscalls of one architecture (Go's GOARCH names, as Docker profiles spell them) --

ARCH_SYSCALLS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("amd64", "x32"), ("arch_prctl",)),
    (("amd64", "x32", "x86"), ("modify_ldt",)),
    (("arm", "arm64"), ("arm_fadvise64_64", "arm_sync_file_range", "breakpoint",
                        "cacheflush", "set_tls", "sync_file_range2")),
    (("ppc64le",), ("swapcontext", "sync_file_range2")),
    (("s390", "s390x"), ("s390_pci_mmio_read", "s390_pci_mmio_write",
                         "s390_runtime_instr")),
    (("riscv64",), ("riscv_flush_icache",)),
)

# Native architecture → the compat architectures its kernel may also run. x32 is left
# out of the default profile on a kernel that does not run x32 binaries (kernel_runs_x32):
# its syscalls then end as any other architecture's the filter does not list, and runc
# compiles the filter in 29 ms of CPU instead of 37 (a busybox `runc run`, 24 ms without
# any filter), on every container start.
ARCH_MAP: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    ("SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
    ("SCMP_ARCH_MIPS64", ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32")),
    ("SCMP_ARCH_MIPS64N32", ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64")),
    ("SCMP_ARCH_MIPSEL64", ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32")),
    ("SCMP_ARCH_MIPSEL64N32", ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64")),
    ("SCMP_ARCH_S390X", ("SCMP_ARCH_S390",)),
    ("SCMP_ARCH_RISCV64", ()),
)

# uname -m → (Go's GOARCH, libseccomp's native architecture)
_MACHINES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "armv6l": ("arm", "SCMP_ARCH_ARM"),
    "i686": ("386", "SCMP_ARCH_X86"),
    "i386": ("386", "SCMP_ARCH_X86"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
}

ACTIONS = frozenset({
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
})
OPERATORS = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
    "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
})


def _allow(names: tuple[str, ...] | list[str], **extra: Any) -> dict[str, Any]:
    return {"names": list(names), "action": "SCMP_ACT_ALLOW", **extra}


def default_profile(x32: bool | None = None) -> dict[str, Any]:
    """Docker's default profile, in Docker's profile format (what `seccomp=FILE` takes):
    deny with EPERM what is not listed. `x32`: whether x32 is one of its architectures
    (None: when this kernel runs x32 binaries, kernel_runs_x32)."""
    rules: list[dict[str, Any]] = [_allow(ALWAYS_ALLOWED)]
    # ptrace and process_vm_* became safe to allow once the kernel stopped letting
    # ptrace bypass seccomp (4.8); with CAP_SYS_PTRACE they are allowed anyway.
    rules.append(_allow(("process_vm_readv", "process_vm_writev", "ptrace"),
                        includes={"minKernel": "4.8"}))
    rules.append(_allow(("socket",), args=[
        {"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]))
    for persona in PERSONALITY_VALUES:
        rules.append(_allow(("personality",), args=[
            {"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]))
    for arches, names in ARCH_SYSCALLS:
        rules.append(_allow(names, includes={"arches": list(arches)}))
    for cap, names in CAPABILITY_SYSCALLS:
        rules.append(_allow(names, includes={"caps": [cap]}))
    # Without CAP_SYS_ADMIN: clone only without namespace flags (its flags are the
    # second argument on s390), and clone3 answers ENOSYS, whose flags live in memory
    # a filter cannot read, so that libc falls back to clone.
    rules.append(_allow(("clone",), args=[
        {"index": 0, "value": CLONE_NAMESPACE_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}],
        excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}))
    rules.append(_allow(("clone",), args=[
        {"index": 1, "value": CLONE_NAMESPACE_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}],
        includes={"arches": ["s390", "s390x"]}, excludes={"caps": ["CAP_SYS_ADMIN"]}))
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS,
                  "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    if x32 is None:
        x32 = kernel_runs_x32()
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [{"architecture": a, "subArchitectures": [
            s for s in subs if x32 or s != "SCMP_ARCH_X32"]} for a, subs in ARCH_MAP],
        "syscalls": rules,
    }


# --- host facts ---------------------------------------------------------------------


def host_arch() -> tuple[str, str]:
    """(GOARCH, native libseccomp architecture) of this machine; ("", "") if unknown."""
    return _MACHINES.get(os.uname().machine, ("", ""))


def _version_tuple(text: str) -> tuple[int, int]:
    parts = text.split("-", 1)[0].split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise InvalidArgument(f"invalid kernel version {text!r} in seccomp profile") from None


def _kernel_at_least(minimum: str) -> bool:
    return _version_tuple(os.uname().release) >= _version_tuple(minimum)


_mode: str | None = None  # this process's Seccomp field ("" without one), once read


def _seccomp_mode() -> str:
    """The Seccomp field of /proc/self/status: "0" unfiltered, "2" filtered; "" where the
    kernel has no seccomp."""
    global _mode
    if _mode is None:  # (found whole before it is kept: threads of a pod start ask too)
        mode = ""
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Seccomp:"):
                        mode = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        _mode = mode
    return _mode


def seccomp_supported() -> bool:
    """The kernel filters syscalls: /proc/self/status has the Seccomp field."""
    return _seccomp_mode() != ""


_X32_GETPID = 0x40000000 | 39  # __X32_SYSCALL_BIT | x32's getpid
_x32: bool | None = None  # kernel_runs_x32's answer, once found


def kernel_runs_x32() -> bool:
    """Whether this x86-64 kernel runs x32 binaries: an x32 getpid answers, where a kernel
    built without the x32 ABI (or booted with it off) says ENOSYS. A process that a filter
    already confines does not ask (a filter that does not list x32 kills the asker) and
    keeps x32, as Docker's profile does."""
    global _x32
    if _x32 is None:  # (as _seccomp_mode: found whole before it is kept)
        runs = True
        if os.uname().machine == "x86_64" and _seccomp_mode() == "0":
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            runs = libc.syscall(_X32_GETPID) != -1 or ctypes.get_errno() != ENOSYS
        _x32 = runs
    return _x32


# --- Docker profile → OCI -------------------------------------------------------------


def load_profile(text: str) -> dict[str, Any]:
    """A Docker-format profile from its JSON text (Docker's message when it is not)."""
    from ketch import fastjson

    try:
        doc = fastjson.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"Decoding seccomp profile failed: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(
            "Decoding seccomp profile failed: the profile must be a JSON object")
    return doc


def _bad(reason: str) -> InvalidArgument:
    return InvalidArgument(f"invalid seccomp profile: {reason}")


def _check_args(args: Any) -> list[dict[str, Any]]:
    if args is None:
        return []
    if not isinstance(args, list):
        raise _bad('"args" must be a list')
    out = []
    for arg in args:
        if not isinstance(arg, dict):
            raise _bad('each entry of "args" must be an object')
        op = arg.get("op")
        if op not in OPERATORS:
            raise _bad(f"unknown operator {op!r}")
        entry = {"index": arg.get("index", 0), "value": arg.get("value", 0), "op": op}
        if arg.get("valueTwo"):
            entry["valueTwo"] = arg["valueTwo"]
        for key in ("index", "value", "valueTwo"):
            if key in entry and (not isinstance(entry[key], int) or entry[key] < 0):
                raise _bad(f'"{key}" of an argument must be a non-negative integer')
        out.append(entry)
    return out


def _check_action(action: Any, where: str) -> str:
    if action not in ACTIONS:
        raise _bad(f"unknown action {action!r} in {where}")
    return str(action)


def _filter(rule: dict[str, Any], key: str) -> dict[str, Any]:
    f = rule.get(key) or {}
    if not isinstance(f, dict):
        raise _bad(f'"{key}" must be an object')
    return f


def _applies(rule: dict[str, Any], caps: set[str], goarch: str) -> bool:
    """Docker's rule: an `excludes` match drops the rule; every `includes` condition must
    hold (all listed capabilities present, this architecture listed, kernel new enough)."""
    ex = _filter(rule, "excludes")
    if goarch in (ex.get("arches") or []):
        return False
    if any(c in caps for c in ex.get("caps") or []):
        return False
    if ex.get("minKernel") and _kernel_at_least(str(ex["minKernel"])):
        return False
    inc = _filter(rule, "includes")
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if any(c not in caps for c in inc.get("caps") or []):
        return False
    return not (inc.get("minKernel") and not _kernel_at_least(str(inc["minKernel"])))


def oci_seccomp(profile: dict[str, Any], capabilities: list[str] | tuple[str, ...]
                ) -> dict[str, Any]:
    """The runtime-spec `linux.seccomp` object for a container holding `capabilities`
    (its bounding set), from a Docker-format `profile`. Raises InvalidArgument on a
    profile runc could not load."""
    if not isinstance(profile, dict):
        raise _bad("the profile must be a JSON object")
    if profile.get("architectures") and profile.get("archMap"):
        raise _bad("both 'architectures' and 'archMap' are specified in the seccomp "
                   "profile, use either 'architectures' or 'archMap'")
    caps = set(capabilities)
    goarch, native = host_arch()
    out: dict[str, Any] = {
        "defaultAction": _check_action(profile.get("defaultAction"), "defaultAction")}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    arches = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if isinstance(entry, dict) and entry.get("architecture") == native:
            arches.append(native)
            arches.extend(entry.get("subArchitectures") or [])
    if arches:
        out["architectures"] = arches
    for key in ("listenerPath", "listenerMetadata", "flags"):
        if profile.get(key):
            out[key] = profile[key]
    syscalls: list[dict[str, Any]] = []
    rules = profile.get("syscalls") or []
    if not isinstance(rules, list):
        raise _bad('"syscalls" must be a list')
    for rule in rules:
        if not isinstance(rule, dict):
            raise _bad('each entry of "syscalls" must be an object')
        names = rule.get("names") or []
        if rule.get("name"):
            if names:
                raise _bad("use either 'name' or 'names'")
            names = [rule["name"]]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _bad('"names" must be a list of syscall names')
        action = _check_action(rule.get("action"), f"the rule for {', '.join(names)}")
        args = _check_args(rule.get("args"))
        if not names or not _applies(rule, caps, goarch):
            continue
        call: dict[str, Any] = {"names": list(names), "action": action}
        if rule.get("errnoRet") is not None:
            call["errnoRet"] = rule["errnoRet"]
        if args:
            call["args"] = args
        syscalls.append(call)
    if syscalls:
        out["syscalls"] = syscalls
    return out
