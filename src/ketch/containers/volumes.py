"""Named and anonymous volumes: directories under `volumes/<name>/_data`, as Docker's
local driver keeps them.

The local driver's options (`type`, `device`, `o`: tmpfs, bind or NFS volumes) are kept
in `opts.json`; such a volume is mounted (mount(2)) on `_data` while a container uses it
and unmounted when the last one stops, as Docker's local driver does. `active` lists the
containers holding the mount, under the volume's lock. An empty volume is seeded from
the image's content at its mount point (`seed_from_image`).
"""

from __future__ import annotations

import builtins

from ketch.errors import Conflict, InvalidArgument, KetchError, NotFound
from ketch.ids import is_full_id
from ketch.values import cached_property, contextmanager

# typing for annotations only, shutil on first use: `create` loads this module
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager
    from pathlib import Path
    from typing import Any

    from _typeshed import StrPath

    from ketch.containers.host import ContainerHost

# A local volume's name, Docker's [a-zA-Z0-9][a-zA-Z0-9_.-]+, checked without `re` and
# pathlib (with `Path`s on first use) since `create` builds a VolumeStore.
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _ALNUM | frozenset("_.-")


def _valid_name(name: str) -> bool:
    return len(name) >= 2 and name[0] in _ALNUM and all(c in _NAME_REST for c in name[1:])
# The local driver's options (Docker 20.10) and which others each one needs.
DRIVER_OPTIONS = ("type", "device", "o")
_REQUIRED = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
_NETWORK_FS = frozenset(("nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "9p"))

# Every `volume create` flag and how it takes effect (tests/containers/test_option_table.py
# keeps this table, the declared flags and the tests in step).
VOLUME_CREATE_OPTIONS: dict[str, str] = {
    "--driver": "only 'local'",
    "--label": "Labels of the volume",
    "--name": "the volume's name (as the argument; both must agree)",
    "--opt": "the local driver's type/device/o: tmpfs, bind (o=bind) and local devices,"
             " mounted while a container uses the volume; network filesystems refused",
}


def check_driver_options(options: dict[str, str]) -> None:
    for key in options:
        if key not in DRIVER_OPTIONS:
            raise InvalidArgument(f'invalid option: "{key}"')
    for key, needs in _REQUIRED.items():
        if key in options:
            for other in needs:
                if other not in options:
                    raise InvalidArgument(f'missing required option: "{other}"')
    fstype = options.get("type", "")
    if fstype in _NETWORK_FS or any(o.startswith("addr=")
                                    for o in options.get("o", "").split(",")):
        raise InvalidArgument(f'volume type "{fstype}" is a network filesystem: ketch mounts'
                              " no network filesystems (tmpfs, bind and local devices only)")


def _as_path(path: str) -> Path:
    from pathlib import Path

    return Path(path)


class VolumeStore:
    def __init__(self, engine: ContainerHost) -> None:
        self.engine = engine

    @cached_property
    def dir(self) -> Path:
        return self.engine.root / "volumes"

    def path(self, name: str) -> Path:
        return _as_path(self._where(name))

    def _where(self, name: str) -> str:
        """The volume's directory as text: reading one (inspect, ls) needs no pathlib."""
        if not _valid_name(name):
            raise InvalidArgument(
                f'"{name}" includes invalid characters for a local volume name, only'
                ' "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
        return f"{self.engine.root_dir}/volumes/{name}"

    def _read_json(self, name: str, file: str) -> Any:
        from ketch.fastjson import loads

        try:
            with open(f"{self._where(name)}/{file}", "rb") as f:
                return loads(f.read())
        except (OSError, ValueError):
            return None

    def ensure(self, name: str) -> Path:
        data = self.path(name) / "_data"
        data.mkdir(parents=True, exist_ok=True)
        return data

    @staticmethod
    def check_new_name(name: str) -> None:
        """Refuse a name a new volume cannot have, in dockerd's local driver's words (what
        `volume create` and a `-v NAME:/path` of `run` both say)."""
        if not _valid_name(name):
            from ketch.fmt.gofmt import quote

            raise InvalidArgument(
                f"create {name}: volume name is too short, names should be at least two"
                " alphanumeric characters" if len(name) == 1 else
                f"create {name}: {quote(name)} includes invalid characters for a local"
                ' volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you'
                " intended to pass a host directory, use absolute path")

    def create(self, name: str | None = None, *, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None, driver: str = "local",
               exclusive: bool = False) -> dict[str, Any]:
        """Create a volume (an existing one is returned as it is, as Docker does; with
        `exclusive`, Conflict). A refusal names the volume, as dockerd's ("create NAME:
        ...")."""
        import os

        options = dict(options or {})
        name = name or os.urandom(32).hex()
        if driver != "local":
            raise InvalidArgument(f"create {name}: error looking up volume plugin {driver}:"
                                  f' plugin "{driver}" not found')
        self.check_new_name(name)
        try:
            check_driver_options(options)
        except InvalidArgument as e:
            raise InvalidArgument(f"create {name}: {e.message}") from None
        with self._store_lock():  # (a removal of the name takes the directory away)
            existed = (self.path(name) / "_data").is_dir()
            if existed and exclusive:
                raise Conflict(f"create {name}: volume already exists")
            if not existed:
                # metadata first: a volume whose `_data` exists is complete
                self.path(name).mkdir(parents=True, exist_ok=True)
                if labels:
                    self._write_json(name, "labels.json", labels)
                if options:
                    self._write_json(name, "opts.json", options)
            self.ensure(name)
        if not existed:
            self.event("create", name)
        return self.inspect(name)

    def _store_lock(self) -> AbstractContextManager[None]:
        """Creations and removals of volumes one at a time (volumes/.lock): a removal
        renaming a volume away while a creation of the name writes its metadata failed
        that creation with an internal error."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return _flocked(self.dir / ".lock")

    def event(self, action: str, name: str, **attrs: object) -> None:
        """Journal a volume event (ketch.events), with dockerd's attributes."""
        from ketch.events import emit

        emit(self.engine.root_dir, "volume", action, name, {"driver": "local", **attrs})

    def _write_json(self, name: str, file: str, data: dict[str, str]) -> None:
        import json
        import os

        meta = self.path(name) / file
        tmp = meta.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, meta)

    def options(self, name: str) -> dict[str, str]:
        return self._read_json(name, "opts.json") or {}

    # -- mounting driver volumes -----------------------------------------------------------
    def _lock(self, name: str) -> AbstractContextManager[None]:
        return _flocked(self.path(name) / "lock")

    def _holders(self, name: str) -> set[str]:
        try:
            return set((self.path(name) / "active").read_text().split())
        except OSError:
            return set()

    def _set_holders(self, name: str, holders: set[str]) -> None:
        import os

        f = self.path(name) / "active"
        if not holders:
            f.unlink(missing_ok=True)
            return
        tmp = f.with_suffix(".tmp")
        tmp.write_text("\n".join(sorted(holders)) + "\n")
        os.replace(tmp, f)

    def acquire(self, name: str, holder: str) -> Path:
        """The volume's data directory for container `holder`, with the driver's
        filesystem mounted on it first if the volume has `type`/`device` options."""
        data = self.ensure(name)
        opts = self.options(name)
        if not opts:
            return data
        from ketch.containers.rootfs import is_mounted

        with self._lock(name):
            if not is_mounted(data):
                mount_device(opts, data)
            self._set_holders(name, self._holders(name) | {holder})
        return data

    def release(self, name: str, holder: str) -> None:
        """Container `holder` no longer uses the volume: the last one out unmounts it."""
        if not self.options(name) or not (self.path(name) / "_data").is_dir():
            return
        from ketch.containers.rootfs import unmount

        with self._lock(name):
            known = {r.id for r in self.engine.containers.records.all()}
            holders = {h for h in self._holders(name) if h != holder and h in known}
            self._set_holders(name, holders)
            if not holders:
                unmount(self.path(name) / "_data")

    def labels(self, name: str) -> dict[str, str] | None:
        return self._read_json(name, "labels.json") or None

    def inspect(self, name: str) -> dict[str, Any]:
        import os
        import stat
        import time

        if not _valid_name(name):  # (no volume can have it: dockerd's "no such volume")
            raise NotFound(f"get {name}: no such volume")
        where = self._where(name)
        try:
            st = os.stat(where)
        except OSError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise NotFound(f"get {name}: no such volume")
        # the local driver's format: RFC 3339 in seconds, local time
        created = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(st.st_mtime))
        created = created[:-2] + ":" + created[-2:]
        return {"CreatedAt": created.replace("+00:00", "Z"), "Driver": "local",
                "Labels": self.labels(name), "Mountpoint": f"{where}/_data", "Name": name,
                "Options": self.options(name) or None, "Scope": "local"}

    def list(self, filters: dict[str, builtins.list[str]] | None = None
             ) -> builtins.list[dict[str, Any]]:
        """The volumes, by name; `filters` as `docker volume ls --filter`: dangling,
        driver, label (key or key=value, all must match), name (substring)."""
        filters = filters or {}
        for k in filters:
            if k not in LS_FILTERS:
                raise InvalidArgument(f"invalid filter '{k}'")
        dangling = filters.get("dangling") or []
        if any(w.lower() not in ("true", "1", "false", "0") for w in dangling):
            # dockerd's check: a value that is not a boolean is refused, not ignored
            raise InvalidArgument(f"invalid filter 'dangling=[{' '.join(dangling)}]'")
        import os

        top = f"{self.engine.root_dir}/volumes"
        try:
            names = sorted(os.listdir(top))
        except (FileNotFoundError, NotADirectoryError):
            return []
        vols = []
        for n in names:
            try:
                vols.append(self.inspect(n))
            except NotFound:
                continue  # removed since the listing (a prune beside this one), or no volume
        return [v for v in vols if self._matches(v, filters)]

    def _matches(self, v: dict[str, Any], filters: dict[str, builtins.list[str]]) -> bool:
        for key, wanted in filters.items():
            if key == "dangling":
                dangling = not self.in_use(v["Name"])
                if not any((w.lower() in ("true", "1")) == dangling for w in wanted):
                    return False
            elif key == "driver":
                if v["Driver"] not in wanted:
                    return False
            elif key == "name":
                from ketch.filtermatch import matches

                if not any(matches(w, v["Name"]) for w in wanted):
                    return False
            elif key == "label":
                if not all(_has_label(v, w) for w in wanted):
                    return False
        return True

    def in_use(self, name: str) -> builtins.list[str]:
        users = []
        for r in self.engine.containers.records.all():
            binds = [b.split(":")[0] for b in r.host_config.get("Binds") or []]
            mounts = [m.get("Source") for m in r.host_config.get("Mounts") or []]
            anon = list((r.extra.get("anon_volumes") or {}).values())
            if name in binds or name in mounts or name in anon:
                users.append(r.id)
        return users

    def remove(self, name: str, *, force: bool = False, missing_ok: bool = False) -> None:
        if not _valid_name(name):  # (no volume can have it: dockerd's "no such volume")
            if missing_ok:
                return
            raise NotFound(f"get {name}: no such volume")
        p = self.path(name)
        from ketch.containers.rootfs import is_mounted, unmount
        from ketch.store.trash import delete_tree, take

        with self._store_lock():
            if not p.is_dir():
                if missing_ok:
                    return
                raise NotFound(f"get {name}: no such volume")
            users = self.in_use(name)
            if users and not force:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            # never delete through a mount: a bind volume's `_data` is the user's directory
            unmount(p / "_data")
            if is_mounted(p / "_data"):
                raise Conflict(f"remove {name}: the volume's filesystem is still mounted")
            # one rename (into the trash) claims it: of two removals at once (two
            # prunes), the other finds no such volume
            taken = take(self.engine.root_dir, str(p))
            if taken is None:
                raise NotFound(f"get {name}: no such volume")
        delete_tree(taken, ignore_errors=False)
        self.event("destroy", name)

    def df(self) -> builtins.list[dict[str, Any]]:
        """`docker system df` data: each volume with UsageData {Size, RefCount}."""
        out = []
        for v in self.list():
            size = _files_size(v["Mountpoint"])
            out.append(dict(v, UsageData={"Size": size, "RefCount": len(self.in_use(v["Name"]))}))
        return out

    @staticmethod
    def is_anonymous(name: str) -> bool:
        """Anonymous volumes get 64 hex digits for a name, as Docker's do."""
        return is_full_id(name)

    def prune(self, *, all: bool = False, filters: dict[str, builtins.list[str]] | None = None
              ) -> tuple[builtins.list[str], int]:
        """Remove unused volumes: anonymous ones only (Docker 23+) unless `all` or the
        filter all=true; the filters label / label! spare volumes without / with the
        label. Returns the removed names and the bytes they held."""
        filters = dict(filters or {})
        for k in filters:
            if k not in ("label", "label!", "all"):
                raise InvalidArgument(f"invalid filter '{k}'")
        for w in filters.get("all", []):
            if w.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'all={w}'")
        all = all or any(w.lower() in ("true", "1") for w in filters.pop("all", []))
        removed, space = [], 0
        for v in self.list():
            if not all and not self.is_anonymous(v["Name"]):
                continue
            if not all_labels(v, filters.get("label", [])) or any(
                    _has_label(v, f) for f in filters.get("label!", [])):
                continue
            if self.in_use(v["Name"]):
                continue
            size = _files_size(v["Mountpoint"])
            try:
                self.remove(v["Name"])
            except (NotFound, Conflict):
                continue  # another prune took it meanwhile, or a container did
            space += size
            removed.append(v["Name"])
        return removed, space


LS_FILTERS = ("dangling", "driver", "label", "name")


def _files_size(top: str) -> int:
    """The bytes of the regular files under `top` (symlinks are not followed, nor
    counted), what `system df` and `volume prune` report for a volume."""
    import os
    import stat

    size = 0
    for where, _dirs, files in os.walk(top):
        for name in files:
            try:
                st = os.lstat(f"{where}/{name}")
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                size += st.st_size
    return size


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """An exclusive flock of `path` (made if missing) for the body."""
    import fcntl
    import os

    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _has_label(v: dict[str, Any], f: str) -> bool:
    """`f` is "key" (any value) or "key=value"."""
    labels = v.get("Labels") or {}
    k, eq, val = f.partition("=")
    return k in labels and (not eq or labels[k] == val)


def all_labels(v: dict[str, Any], wanted: list[str]) -> bool:
    return all(_has_label(v, f) for f in wanted)


def mount_device(opts: dict[str, str], target: Path) -> None:
    """mount(2) the local driver's `device` of `type` with options `o` on `target`."""
    import ctypes
    import os

    from ketch.containers.mounts import split_mount_options
    from ketch.containers.rootfs import libc

    device = opts.get("device") or ""
    if not device:
        raise InvalidArgument("missing device in volume options")
    flags, data = split_mount_options(opts.get("o") or "")
    fstype = opts.get("type") or ""
    if libc().mount(device.encode(), str(target).encode(),
                    fstype.encode() if fstype and fstype != "none" else None, flags,
                    data.encode() if data else None) != 0:
        e = ctypes.get_errno()
        # moby's mount error: flags and data only when there are any
        detail = (f", flags: {flags:#x}" if flags else "") + (f", data: {data}" if data else "")
        raise KetchError(f"error while mounting volume '{target}': failed to mount local"
                         f" volume: mount {device}:{target}{detail}:"
                         f" {os.strerror(e).lower()}")


def seed_from_image(rootfs: StrPath, target: str, data: Path) -> bool:
    """Docker's copy-up: an empty volume gets what the image has at `target` (owners,
    modes, xattrs, symlinks as links) and that directory's own owner and mode. A volume
    with anything in it is left alone. The image path is walked in-root and copied from
    the descriptor that walk returned, so no symlink leads outside either tree."""
    import os
    import stat
    import threading

    from ketch.archive import InRoot, extract, write_dir_fd
    from ketch.errors import UnsafeArchive

    with os.scandir(data) as it:
        if any(True for _ in it):
            return False
    root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            got = InRoot(root_fd).open_dir(target)
        except (OSError, UnsafeArchive):
            return False  # missing, or not a directory: nothing to copy
        if got is None:
            return False
        src_fd = got[0]
    finally:
        os.close(root_fd)
    try:
        r, w = os.pipe()
        failed: list[BaseException] = []

        def produce() -> None:
            try:
                with open(w, "wb") as out:
                    write_dir_fd(src_fd, out)
            except BaseException as e:  # reported by the reading side
                failed.append(e)

        t = threading.Thread(target=produce, daemon=True)
        t.start()
        try:
            with open(r, "rb") as stream:
                extract(stream, data, whiteouts="none", same_owner=True, digest=False)
        finally:
            t.join()
        if failed:
            raise failed[0]
        st = os.fstat(src_fd)
        os.chown(data, st.st_uid, st.st_gid)
        os.chmod(data, stat.S_IMODE(st.st_mode))
    finally:
        os.close(src_fd)
    return True
